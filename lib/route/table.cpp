// Table: routes merged by prefix, tunnel sets numbered, rte_lpm / rte_lpm6 filled with set ids.
#include <arpa/inet.h>
#include <rte_errno.h>
#include <rte_lpm.h>
#include <rte_lpm6.h>
#include <rte_memory.h>

#include <atomic>
#include <cstring>
#include <map>
#include <string>
#include <tuple>

#include "route/route.h"

namespace mg::route {

namespace {

std::atomic<uint32_t> g_names{0};  // rte_lpm objects need unique names (they live in EAL memzones)

std::string lpm_name(const char* what) {
  return std::string(what) + std::to_string(g_names.fetch_add(1, std::memory_order_relaxed));
}

bool host_bits_clear(const Route& r) {
  const uint32_t bits = r.family == 4 ? 32 : 128;
  for (uint32_t b = r.len; b < bits; ++b)
    if (r.addr[b / 8] & (0x80u >> (b % 8))) return false;
  return true;
}

// rte_lpm needs a tbl8 group per /24 that holds longer prefixes, rte_lpm6 one per 8 bits beyond the first 24 of
// each prefix (and fewer when they share them): start from an estimate, double on ENOSPC.
constexpr uint32_t kMaxTbl8 = 1u << 20;

}  // namespace

Table::~Table() {
  if (lpm4_ != nullptr) rte_lpm_free(lpm4_);
  if (lpm6_ != nullptr) rte_lpm6_free(lpm6_);
}

std::unique_ptr<const Table> Table::build(const std::vector<Route>& routes, uint32_t tunnels, std::string* err) {
  std::unique_ptr<Table> t(new Table());
  // Merge: one route per (family, prefix), its set the union of all that name it.
  std::map<std::tuple<uint8_t, std::string, uint8_t>, size_t> seen;
  for (const Route& r : routes) {
    if (r.family != 4 && r.family != 6) {
      *err = "route: family must be 4 or 6";
      return nullptr;
    }
    if (r.len > (r.family == 4 ? 32 : 128)) {
      *err = "route " + format_prefix(r) + ": prefix length over " + (r.family == 4 ? "32" : "128");
      return nullptr;
    }
    if (!host_bits_clear(r)) {
      *err = "route " + format_prefix(r) + ": host bits set";
      return nullptr;
    }
    if (r.tunnels.none()) {
      *err = "route " + format_prefix(r) + ": no tunnel";
      return nullptr;
    }
    for (uint32_t i = tunnels; i < r.tunnels.size(); ++i)
      if (r.tunnels.test(i)) {
        *err = "route " + format_prefix(r) + ": tunnel " + std::to_string(i) + " does not exist";
        return nullptr;
      }
    const auto key = std::make_tuple(r.family, std::string(reinterpret_cast<const char*>(r.addr), 16), r.len);
    auto [it, fresh] = seen.try_emplace(key, t->routes_.size());
    if (fresh) t->routes_.push_back(r);
    else t->routes_[it->second].tunnels |= r.tunnels;
  }
  // Sets, numbered in the order first seen; a route's next hop is its set's id.
  std::vector<SetId> set_of(t->routes_.size());
  for (size_t i = 0; i < t->routes_.size(); ++i) {
    SetId id = 0;
    while (id < t->sets_.size() && t->sets_[id] != t->routes_[i].tunnels) ++id;
    if (id == t->sets_.size()) {
      if (t->sets_.size() == kMaxSets) {
        *err = "routes: more than " + std::to_string(kMaxSets) + " distinct sets of tunnels";
        return nullptr;
      }
      t->sets_.push_back(t->routes_[i].tunnels);
    }
    set_of[i] = id;
    (t->routes_[i].family == 4 ? t->n4_ : t->n6_) += 1;
  }
  if (t->n4_ > kMaxRoutes || t->n6_ > kMaxRoutes) {
    *err = "routes: more than " + std::to_string(kMaxRoutes) + " of one address family";
    return nullptr;
  }

  for (uint32_t tbl8 = 256 + t->n4_; t->n4_ > 0; tbl8 *= 2) {
    rte_lpm_config c{};
    c.max_rules = t->n4_;
    c.number_tbl8s = tbl8;
    t->lpm4_ = rte_lpm_create(lpm_name("mg_rt4_").c_str(), SOCKET_ID_ANY, &c);
    if (t->lpm4_ == nullptr) {
      *err = std::string("routes: rte_lpm_create: ") + rte_strerror(rte_errno);
      return nullptr;
    }
    int rc = 0;
    for (size_t i = 0; i < t->routes_.size() && rc == 0; ++i) {
      const Route& r = t->routes_[i];
      if (r.family != 4) continue;
      uint32_t a;
      std::memcpy(&a, r.addr, 4);
      rc = rte_lpm_add(t->lpm4_, ntohl(a), r.len, set_of[i]);
    }
    if (rc == 0) break;
    rte_lpm_free(t->lpm4_);
    t->lpm4_ = nullptr;
    if (rc != -ENOSPC || tbl8 >= kMaxTbl8) {
      *err = "routes: rte_lpm_add: " + std::string(rte_strerror(-rc));
      return nullptr;
    }
  }
  for (uint32_t tbl8 = 256 + 4 * t->n6_; t->n6_ > 0; tbl8 *= 2) {
    rte_lpm6_config c{};
    c.max_rules = t->n6_;
    c.number_tbl8s = tbl8;
    t->lpm6_ = rte_lpm6_create(lpm_name("mg_rt6_").c_str(), SOCKET_ID_ANY, &c);
    if (t->lpm6_ == nullptr) {
      *err = std::string("routes: rte_lpm6_create: ") + rte_strerror(rte_errno);
      return nullptr;
    }
    int rc = 0;
    for (size_t i = 0; i < t->routes_.size() && rc == 0; ++i)
      if (t->routes_[i].family == 6) rc = rte_lpm6_add(t->lpm6_, t->routes_[i].addr, t->routes_[i].len, set_of[i]);
    if (rc == 0) break;
    rte_lpm6_free(t->lpm6_);
    t->lpm6_ = nullptr;
    if (rc != -ENOSPC || tbl8 >= kMaxTbl8) {
      *err = "routes: rte_lpm6_add: " + std::string(rte_strerror(-rc));
      return nullptr;
    }
  }
  return t;
}

void Table::lookup4_burst(const uint32_t dst[], uint16_t n, SetId out[]) const noexcept {
  if (lpm4_ == nullptr) {
    for (uint16_t i = 0; i < n; ++i) out[i] = kNoRoute;
    return;
  }
  uint32_t hop[64];
  for (uint16_t off = 0; off < n; off += 64) {
    const uint16_t k = uint16_t(n - off < 64 ? n - off : 64);
    rte_lpm_lookup_bulk(lpm4_, dst + off, hop, k);
    for (uint16_t i = 0; i < k; ++i)
      out[off + i] = (hop[i] & RTE_LPM_LOOKUP_SUCCESS) ? SetId(hop[i] & 0xffffff) : kNoRoute;
  }
}

void Table::lookup6_burst(const uint8_t (*dst)[16], uint16_t n, SetId out[]) const noexcept {
  if (lpm6_ == nullptr) {
    for (uint16_t i = 0; i < n; ++i) out[i] = kNoRoute;
    return;
  }
  int32_t hop[64];
  for (uint16_t off = 0; off < n; off += 64) {
    const uint16_t k = uint16_t(n - off < 64 ? n - off : 64);
    // rte_lpm6 takes a non-const array but only reads it.
    rte_lpm6_lookup_bulk_func(lpm6_, const_cast<uint8_t(*)[16]>(dst + off), hop, k);
    for (uint16_t i = 0; i < k; ++i) out[off + i] = hop[i] >= 0 ? SetId(hop[i]) : kNoRoute;
  }
}

SetId Table::lookup4(uint32_t dst) const noexcept {
  SetId s;
  lookup4_burst(&dst, 1, &s);
  return s;
}

SetId Table::lookup6(const uint8_t dst[16]) const noexcept {
  uint8_t a[1][16];
  std::memcpy(a[0], dst, 16);
  SetId s;
  lookup6_burst(a, 1, &s);
  return s;
}

}  // namespace mg::route
