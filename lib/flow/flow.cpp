#include "flow/flow.h"

#include <algorithm>
#include <stdexcept>
#include <string>

// Header-only XXH3 so the hash inlines into hash_burst (a call per packet would cost as much as the hash).
#define XXH_INLINE_ALL
#include <xxhash.h>

namespace mg::flow {

const char* to_string(TunnelState s) noexcept {
  switch (s) {
    case TunnelState::kUp: return "up";
    case TunnelState::kDraining: return "draining";
    case TunnelState::kDown: return "down";
  }
  return "unknown";
}

static inline uint64_t hash_key(const net::FlowKey& k, uint64_t seed) noexcept {
  const uint64_t h = XXH3_64bits_withSeed(&k, k.hash_len(), seed);
  return h == kInvalidHash ? 1 : h;  // 0 marks empty pin slots and bad packets
}

uint64_t flow_hash(const net::FlowKey& key, uint64_t seed) noexcept { return hash_key(key, seed); }

uint16_t hash_burst(const uint8_t* const pkts[], const uint32_t lens[], uint16_t n, uint64_t seed,
                    uint64_t hashes[]) noexcept {
  uint16_t ok = 0;
  for (uint16_t i = 0; i < n; ++i) {
    net::FlowKey k;
    if (net::extract_flow_key(pkts[i], lens[i], &k) == net::ParseStatus::kOk) {
      hashes[i] = hash_key(k, seed);
      ++ok;
    } else {
      hashes[i] = kInvalidHash;
    }
  }
  return ok;
}

void TunnelSpec::set_state(TunnelState s, bool with_deadline, uint32_t deadline) noexcept {
  if (s == TunnelState::kDown && state != TunnelState::kDown) ++epoch;
  state = s;
  has_deadline = s == TunnelState::kDraining && with_deadline;
  drain_deadline = has_deadline ? deadline : 0;
}

// ---------------------------------------------------------------------------------------------------------
// SelectionTable: Maglev (Eisenbud et al., NSDI 2016) with weights as in Envoy: in round r a tunnel of weight w
// takes its next preferred free slot while count * max_w < r * w, so slot counts follow the weights to within
// a slot or two.

static bool is_prime(uint32_t n) noexcept {
  if (n < 2) return false;
  for (uint32_t d = 2; uint64_t(d) * d <= n; ++d)
    if (n % d == 0) return false;
  return true;
}

std::unique_ptr<const SelectionTable> SelectionTable::build(std::span<const TunnelSpec> tunnels, uint64_t seed,
                                                            uint32_t table_size) {
  if (tunnels.size() > kMaxTunnels)
    throw std::invalid_argument("selection table: " + std::to_string(tunnels.size()) + " tunnels, at most " +
                                std::to_string(kMaxTunnels));
  if (table_size < kMinTableSize || table_size > kMaxTableSize || !is_prime(table_size))
    throw std::invalid_argument("selection table: size " + std::to_string(table_size) + " must be a prime in [" +
                                std::to_string(kMinTableSize) + ", " + std::to_string(kMaxTableSize) + "]");
  std::unique_ptr<SelectionTable> t(new SelectionTable());
  t->seed_ = seed;
  t->size_ = table_size;
  t->n_tunnels_ = uint32_t(tunnels.size());
  t->rt_store_.resize(tunnels.size());
  t->slot_store_.assign(table_size, kNoTunnel);

  struct Cand {
    TunnelId id;
    uint64_t weight, count, pos, skip;
  };
  std::vector<Cand> cand;
  uint64_t max_w = 0;
  for (size_t i = 0; i < tunnels.size(); ++i) {
    const TunnelSpec& s = tunnels[i];
    t->rt_store_[i] = Rt{s.state, s.has_deadline, s.epoch, s.drain_deadline};
    if (s.state != TunnelState::kUp || s.weight == 0) continue;
    // The permutation depends on (seed, id) only, so a tunnel keeps its preferred slots across rebuilds.
    const uint64_t id = i;
    const XXH128_hash_t p = XXH3_128bits_withSeed(&id, sizeof id, seed);
    cand.push_back(Cand{TunnelId(i), s.weight, 0, p.low64 % table_size, p.high64 % (table_size - 1) + 1});
    max_w = std::max<uint64_t>(max_w, s.weight);
  }
  if (!cand.empty()) {
    TunnelId* slots = t->slot_store_.data();
    uint32_t filled = 0;
    for (uint64_t round = 1; filled < table_size; ++round) {
      for (Cand& c : cand) {
        if (c.count * max_w >= round * c.weight) continue;
        while (slots[c.pos] != kNoTunnel) {
          c.pos += c.skip;
          if (c.pos >= table_size) c.pos -= table_size;
        }
        slots[c.pos] = c.id;
        ++c.count;
        if (++filled == table_size) break;
      }
    }
  }
  t->slots_ = t->slot_store_.data();
  t->rt_ = t->rt_store_.data();
  return t;
}

uint32_t SelectionTable::slots_of(TunnelId id) const noexcept {
  return uint32_t(std::count(slot_store_.begin(), slot_store_.end(), id));
}

// ---------------------------------------------------------------------------------------------------------
// PinTable

PinTable::PinTable(uint32_t capacity, uint32_t idle_timeout) : idle_timeout_(idle_timeout) {
  if (capacity == 0 || capacity > (1u << 30))
    throw std::invalid_argument("pin table: capacity " + std::to_string(capacity) + " not in [1, 2^30]");
  uint64_t buckets = 1;
  while (buckets * kWays < capacity) buckets <<= 1;
  storage_.reset(new Bucket[buckets]());
  buckets_ = storage_.get();
  mask_ = buckets - 1;
  tunnel_counters_.reset(new TunnelCounters[kMaxTunnels]());
}

PinTable::~PinTable() = default;

PinTable::Pin* PinTable::find(uint64_t h) noexcept {
  Bucket& a = buckets_[bucket1(h)];
  for (Pin& p : a.pin)
    if (p.hash == h) return &p;
  Bucket& b = buckets_[bucket2(h)];
  for (Pin& p : b.pin)
    if (p.hash == h) return &p;
  return nullptr;
}

// A slot for a new pin. Power of two choices: the bucket with more free (empty or idle) slots, which keeps
// buckets even and makes overflow rare until the table is nearly full. With no free slot in either, the least
// recently seen of the eight goes (eviction of the oldest among the candidates, as in a set-associative cache).
PinTable::Pin* PinTable::victim(uint64_t h, uint32_t now) noexcept {
  Bucket* bk[2] = {&buckets_[bucket1(h)], &buckets_[bucket2(h)]};
  Pin* free_slot[2] = {nullptr, nullptr};
  int free_count[2] = {0, 0};
  Pin* oldest = nullptr;
  uint32_t oldest_age = 0;
  for (int b = 0; b < 2; ++b) {
    for (Pin& p : bk[b]->pin) {
      const uint32_t age = now - p.last_seen;
      if (p.hash == kInvalidHash || age > idle_timeout_) {
        if (!free_slot[b] || p.hash == kInvalidHash) free_slot[b] = &p;  // an empty slot before an idle one
        ++free_count[b];
      } else if (!oldest || age > oldest_age) {
        oldest = &p;
        oldest_age = age;
      }
    }
  }
  Pin* p = free_count[1] > free_count[0] ? free_slot[1] : free_slot[0];
  if (p) {
    if (p->hash != kInvalidHash) {
      ++counters_.expired;
      --tunnel_counters_[p->tunnel].pinned;
      p->hash = kInvalidHash;
    }
    return p;
  }
  ++counters_.evicted;
  --tunnel_counters_[oldest->tunnel].pinned;
  oldest->hash = kInvalidHash;
  return oldest;
}

// Places flow h with the selection table into slot p (empty). Cold relative to a hit.
TunnelId PinTable::place(const SelectionTable& sel, Pin* p, uint64_t h, uint32_t now) noexcept {
  const TunnelId t = sel.select(h);
  if (t == kNoTunnel) {
    ++counters_.no_tunnel;
    return kNoTunnel;
  }
  *p = Pin{h, now, t, sel.epoch(t)};
  ++tunnel_counters_[t].pinned;
  ++tunnel_counters_[t].placed;
  return t;
}

inline TunnelId PinTable::assign_one(const SelectionTable& sel, uint64_t h, uint32_t now) noexcept {
  if (h == kInvalidHash) {
    ++counters_.invalid;
    return kNoTunnel;
  }
  Pin* p = find(h);
  if (!p) {
    ++counters_.new_flows;
    return place(sel, victim(h, now), h, now);
  }
  const TunnelId old = p->tunnel;
  uint64_t* moved;
  if (now - p->last_seen > idle_timeout_) {
    ++counters_.expired;
    moved = &counters_.moved_idle;
  } else {
    switch (sel.check(old, p->epoch, now)) {
      case SelectionTable::Verdict::kKeep:
        p->last_seen = now;
        ++counters_.hits;
        return old;
      case SelectionTable::Verdict::kVoidDown: moved = &counters_.moved_down; break;
      default: moved = &counters_.moved_drain; break;
    }
  }
  --tunnel_counters_[old].pinned;
  p->hash = kInvalidHash;
  const TunnelId t = place(sel, p, h, now);
  if (t != old) ++*moved;  // an idle flow may well land where it was
  return t;
}

uint16_t PinTable::assign_burst(const SelectionTable& sel, const uint64_t hashes[], uint16_t n, uint32_t now,
                                TunnelId out[]) noexcept {
  // Both candidate lines of every packet are requested before the first is needed: with 1 M pins they miss
  // every cache level, and 64 overlapping misses cost little more than one.
  for (uint16_t i = 0; i < n; ++i) {
    __builtin_prefetch(&buckets_[bucket1(hashes[i])]);
    __builtin_prefetch(&buckets_[bucket2(hashes[i])]);
  }
  uint16_t ok = 0;
  for (uint16_t i = 0; i < n; ++i) {
    out[i] = assign_one(sel, hashes[i], now);
    ok += out[i] != kNoTunnel;
  }
  return ok;
}

TunnelId PinTable::peek(const SelectionTable& sel, uint64_t h, uint32_t now) const noexcept {
  if (h == kInvalidHash) return kNoTunnel;
  const Pin* p = const_cast<PinTable*>(this)->find(h);
  if (p && now - p->last_seen <= idle_timeout_ && sel.check(p->tunnel, p->epoch, now) == SelectionTable::Verdict::kKeep)
    return p->tunnel;
  return sel.select(h);
}

}  // namespace mg::flow
