// mg::route — where an inner destination may go: a route table from prefixes to sets of tunnels
// (docs/ARCHITECTURE.md "Routes"). A route says "this prefix is reachable through these tunnels" (a static
// [inside] prefix: every tunnel; a route a device announced: that device's tunnels). Each distinct set of tunnels
// gets a small id; the flow step keeps one selection table per set, so a flow only lands on a tunnel that can
// reach its destination.
//
// Pieces and who owns them:
//   - Route: control-side description (prefix, tunnel set). Built from the config and, later, from routes learned.
//   - Table: built by main from a list of routes (may allocate, may fail with a message), IMMUTABLE afterwards:
//     any number of workers look up in one at once. Longest prefix match through DPDK's rte_lpm (IPv4) and
//     rte_lpm6 (IPv6), whose next hop is the set id. Main publishes a new Table with the rest of the state and
//     frees the old one after RCU quiescence (rte_lpm memory comes from the EAL: a Table needs rte_eal_init).
//
// Per packet (lookup4_burst / lookup6_burst): no allocation, no exception, no log, no virtual call.
#pragma once

#include <bitset>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "net/limits.h"

struct rte_lpm;
struct rte_lpm6;

namespace mg::route {

using TunnelSet = std::bitset<mg::kMaxTunnels>;
using SetId = uint16_t;
inline constexpr SetId kNoRoute = 0xffff;
// Distinct tunnel sets one Table may hold: each costs a selection table in the data plane.
inline constexpr uint32_t kMaxSets = 64;
// Routes per address family: the rte_lpm / rte_lpm6 rule capacity.
inline constexpr uint32_t kMaxRoutes = 1u << 20;

struct Route {
  uint8_t family = 4;    // 4 or 6
  uint8_t addr[16] = {}; // network byte order; IPv4 in addr[0..4)
  uint8_t len = 0;       // prefix length: 0..32 or 0..128
  TunnelSet tunnels;     // non-empty
};

// "10.0.0.0/8", "2001:db8::/32": for messages. (Prefixes are parsed once, by lib/config.)
std::string format_prefix(const Route& r);

class Table {
 public:
  // Routes with the same prefix and length are one route whose set is the union (two devices announcing the same
  // prefix). Refused (nullptr, *err): a bad family or length, host bits set, an empty set, a tunnel id >= tunnels,
  // more than kMaxSets distinct sets or kMaxRoutes routes per family, or rte_lpm failing (no EAL, no memory).
  static std::unique_ptr<const Table> build(const std::vector<Route>& routes, uint32_t tunnels, std::string* err);
  ~Table();
  Table(const Table&) = delete;
  Table& operator=(const Table&) = delete;

  // dst[i]: IPv4 destinations in HOST byte order (what rte_lpm takes). out[i]: the set id of the longest match,
  // kNoRoute when none.
  void lookup4_burst(const uint32_t dst[], uint16_t n, SetId out[]) const noexcept;
  // dst[i]: 16-byte IPv6 addresses (network order).
  void lookup6_burst(const uint8_t (*dst)[16], uint16_t n, SetId out[]) const noexcept;
  SetId lookup4(uint32_t dst_host_order) const noexcept;
  SetId lookup6(const uint8_t dst[16]) const noexcept;

  uint32_t sets() const noexcept { return uint32_t(sets_.size()); }
  const TunnelSet& set(SetId s) const noexcept { return sets_[s]; }
  uint32_t routes4() const noexcept { return n4_; }
  uint32_t routes6() const noexcept { return n6_; }
  // The merged routes, in the order first seen (for views and tests).
  const std::vector<Route>& routes() const noexcept { return routes_; }

 private:
  Table() = default;
  rte_lpm* lpm4_ = nullptr;
  rte_lpm6* lpm6_ = nullptr;
  uint32_t n4_ = 0, n6_ = 0;
  std::vector<TunnelSet> sets_;
  std::vector<Route> routes_;
};

}  // namespace mg::route
