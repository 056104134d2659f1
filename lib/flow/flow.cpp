#include "flow/flow.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
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

static inline uint64_t hash_packet(const uint8_t* p, uint32_t len, uint64_t seed) noexcept {
  net::FlowKey k;
  return net::extract_flow_key(p, len, &k) == net::ParseStatus::kOk ? hash_key(k, seed) : kInvalidHash;
}

uint16_t hash_burst(const uint8_t* const pkts[], const uint32_t lens[], uint16_t n, uint64_t seed,
                    uint64_t hashes[]) noexcept {
  uint16_t ok = 0;
  for (uint16_t i = 0; i < n; ++i) {
    hashes[i] = hash_packet(pkts[i], lens[i], seed);
    ok += hashes[i] != kInvalidHash;
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
                                                            uint32_t table_size, const TunnelMask* members) {
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
    const bool out = members != nullptr && !members->test(i);
    t->rt_store_[i] = Rt{s.state, s.has_deadline, out, s.epoch, s.drain_deadline};
    if (out || s.state != TunnelState::kUp || s.weight == 0) continue;
    // The permutation depends on (seed, id) only, so a tunnel keeps its preferred slots across rebuilds.
    const uint64_t id = i;
    const XXH128_hash_t p = XXH3_128bits_withSeed(&id, sizeof id, seed);
    cand.push_back(Cand{TunnelId(i), s.weight, 0, p.low64 % table_size, p.high64 % (table_size - 1) + 1});
    max_w = std::max<uint64_t>(max_w, s.weight);
  }
  if (!cand.empty()) {
    TunnelId* slots = t->slot_store_.data();
    std::vector<uint64_t> taken((table_size + 63) / 64, 0);
    uint32_t filled = 0;
    for (uint64_t round = 1; filled < table_size; ++round) {
      for (Cand& c : cand) {
        if (c.count * max_w >= round * c.weight) continue;
        // Look at the next 4 positions of the permutation at once: the taken bits come from an 8 KiB bitmap
        // (L1) and the first free one is a count-trailing-zeros, so most placements cost no mispredicted
        // branch; the loop that a branch per probe would be was 3/4 of the build time.
        for (;;) {
          uint64_t p[4];
          unsigned busy = 0;
          uint64_t q = c.pos;
          for (unsigned k = 0; k < 4; ++k) {
            p[k] = q;
            busy |= unsigned(taken[q >> 6] >> (q & 63) & 1) << k;
            q += c.skip;
            q -= q >= table_size ? table_size : 0;
          }
          if (busy != 0xf) {
            c.pos = p[__builtin_ctz(~busy)];
            break;
          }
          c.pos = q;
        }
        taken[c.pos >> 6] |= uint64_t(1) << (c.pos & 63);
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

static uint64_t buckets_for(uint32_t capacity) noexcept {
  uint64_t buckets = 1;
  while (buckets * 4 < capacity) buckets <<= 1;
  return buckets;
}

size_t PinTable::bytes_needed(uint32_t capacity) noexcept { return buckets_for(capacity) * sizeof(Bucket); }

PinTable::PinTable(uint32_t capacity, uint32_t idle_timeout, void* memory) : idle_timeout_(idle_timeout) {
  if (capacity == 0 || capacity > (1u << 30))
    throw std::invalid_argument("pin table: capacity " + std::to_string(capacity) + " not in [1, 2^30]");
  const uint64_t buckets = buckets_for(capacity);
  const size_t bytes = buckets * sizeof(Bucket);
  tunnel_counters_.reset(new TunnelCounters[kMaxTunnels]());
  if (!memory) {
    constexpr size_t kHuge = 2u << 20;
    const size_t alloc = (bytes + kHuge - 1) / kHuge * kHuge;
    memory = std::aligned_alloc(bytes >= kHuge ? kHuge : alignof(Bucket), alloc);
    if (!memory) throw std::bad_alloc();
    if (bytes >= kHuge) ::madvise(memory, alloc, MADV_HUGEPAGE);  // advice only: fine if THP is off
    std::memset(memory, 0, alloc);
    owned_ = memory;
  }
  buckets_ = static_cast<Bucket*>(memory);
  mask_ = buckets - 1;
}

PinTable::~PinTable() { std::free(owned_); }

// Bit i set when slot i holds h. Written as a plain loop: GCC turns it into one vector compare and a mask.
static inline unsigned match(const uint64_t (&hash)[4], uint64_t h) noexcept {
  unsigned m = 0;
  for (unsigned i = 0; i < 4; ++i) m |= unsigned(hash[i] == h) << i;
  return m;
}

void PinTable::release(Slot s) noexcept {
  --tunnel_counters_[tunnel_at(*s.b, s.i)].pinned;
  --resident_;
  s.b->hash[s.i] = kInvalidHash;
}

inline PinTable::Slot PinTable::find(uint64_t h) const noexcept {
  Bucket* b = &buckets_[primary(h)];
  unsigned m = match(b->hash, h);
  if (m == 0 && overflowed(*b)) [[unlikely]] {
    b = &buckets_[secondary(h)];
    m = match(b->hash, h);
  }
  return m ? Slot{b, unsigned(__builtin_ctz(m))} : Slot{nullptr, 0};
}

// An empty slot of b, else an idle one (reclaimed), else none.
PinTable::Slot PinTable::free_slot(Bucket* b, uint32_t now) noexcept {
  Slot idle{};
  for (uint32_t i = 0; i < kWays; ++i) {
    if (b->hash[i] == kInvalidHash) return {b, i};
    if (!idle.b && now - b->last_seen[i] > idle_timeout_) idle = {b, i};
  }
  if (idle.b) {
    ++counters_.expired;
    release(idle);
  }
  return idle;
}

// A slot for a new pin: a free one in the primary bucket; else in the secondary (marking the primary); else
// one cuckoo step: a pin of either bucket moves to its other bucket if that has room; else the least recently seen pin of the two buckets goes (eviction of the oldest among the candidates,
// as in a set-associative cache).
PinTable::Slot PinTable::victim(uint64_t h, uint32_t now) noexcept {
  Bucket* const bk[2] = {&buckets_[primary(h)], &buckets_[secondary(h)]};
  const int nb = bk[1] == bk[0] ? 1 : 2;
  if (const Slot s = free_slot(bk[0], now); s.b) return s;
  if (nb == 2) {
    bk[0]->tunnel[0] |= kOverflow;
    if (const Slot s = free_slot(bk[1], now); s.b) return s;
  }
  // The kick costs up to eight more cache misses and nearly always fails in a table that is really full (a
  // flood of new flows): there, evict at once.
  const bool kick = resident_ < (mask_ + 1) * kWays / 8 * 7;
  for (int k = 0; k < nb && kick; ++k) {
    Bucket* const b = bk[k];
    for (uint32_t i = 0; i < kWays; ++i) {
      const uint64_t hj = b->hash[i];
      Bucket* const pj = &buckets_[primary(hj)];
      Bucket* const alt = pj == b ? &buckets_[secondary(hj)] : pj;  // its other bucket
      if (alt == b) continue;
      const Slot t = free_slot(alt, now);
      if (!t.b) continue;
      t.b->hash[t.i] = hj;
      t.b->last_seen[t.i] = b->last_seen[i];
      t.b->tunnel[t.i] = uint16_t(tunnel_at(*b, i) | (t.b->tunnel[t.i] & kOverflow));
      t.b->epoch[t.i] = b->epoch[i];
      pj->tunnel[0] |= kOverflow;   // no-op when it moved back home: marks are never cleared
      b->hash[i] = kInvalidHash;    // moved, not released: the pin lives on
      return {b, i};
    }
  }
  Slot oldest{bk[0], 0};
  uint32_t oldest_age = 0;
  for (int k = 0; k < nb; ++k)
    for (uint32_t i = 0; i < kWays; ++i)
      if (const uint32_t age = now - bk[k]->last_seen[i]; age >= oldest_age) {
        oldest = {bk[k], i};
        oldest_age = age;
      }
  ++counters_.evicted;
  release(oldest);
  return oldest;
}

// Places flow h with the selection table into the empty slot s. Cold relative to a hit.
TunnelId PinTable::place(const SelectionTable& sel, Slot s, uint64_t h, uint32_t now, bool moved) noexcept {
  const TunnelId t = sel.select(h);
  if (t == kNoTunnel) {
    ++counters_.no_tunnel;
    return kNoTunnel;
  }
  s.b->hash[s.i] = h;
  s.b->last_seen[s.i] = now;
  s.b->tunnel[s.i] = uint16_t(t | (s.b->tunnel[s.i] & kOverflow));
  s.b->epoch[s.i] = sel.epoch(t);
  ++tunnel_counters_[t].pinned;
  ++tunnel_counters_[t].placed;
  tunnel_counters_[t].moved_in += moved;
  ++resident_;
  return t;
}

inline TunnelId PinTable::assign_one(const SelectionTable& sel, uint64_t h, uint32_t now) noexcept {
  if (h == kInvalidHash) [[unlikely]] {
    ++counters_.invalid;
    return kNoTunnel;
  }
  const Slot s = find(h);
  if (!s.b) [[unlikely]] {
    ++counters_.new_flows;
    return place(sel, victim(h, now), h, now, false);
  }
  const TunnelId old = tunnel_at(*s.b, s.i);
  uint64_t* moved;
  const bool idle = now - s.b->last_seen[s.i] > idle_timeout_;
  if (idle) [[unlikely]] {
    ++counters_.expired;
    moved = &counters_.moved_idle;
  } else {
    switch (sel.check(old, s.b->epoch[s.i], now)) {
      case SelectionTable::Verdict::kKeep:
        s.b->last_seen[s.i] = now;
        ++counters_.hits;
        return old;
      case SelectionTable::Verdict::kVoidDown: moved = &counters_.moved_down; break;
      case SelectionTable::Verdict::kVoidRoute: moved = &counters_.moved_route; break;
      default: moved = &counters_.moved_drain; break;
    }
  }
  release(s);
  const TunnelId t = place(sel, s, h, now, !idle);
  if (t != old) ++*moved;  // an idle flow may well land where it was
  return t;
}

uint16_t PinTable::lookup_burst(const SelectionTable& sel, const uint64_t hashes[], uint16_t n, uint32_t now,
                                TunnelId out[]) noexcept {
  // The primaries were requested by the caller; the few flows that live in their secondary bucket are
  // requested now, before the first lookup needs them.
  for (uint16_t i = 0; i < n; ++i) {
    const Bucket& a = buckets_[primary(hashes[i])];
    if (overflowed(a) && !match(a.hash, hashes[i])) __builtin_prefetch(&buckets_[secondary(hashes[i])]);
  }
  uint16_t ok = 0;
  for (uint16_t i = 0; i < n; ++i) {
    out[i] = assign_one(sel, hashes[i], now);
    ok += out[i] != kNoTunnel;
  }
  return ok;
}

uint16_t PinTable::assign_burst(const SelectionTable& sel, const uint64_t hashes[], uint16_t n, uint32_t now,
                                TunnelId out[]) noexcept {
  // Every packet's primary line is requested before the first is needed: with 1 M pins they miss every cache
  // level, and 32 overlapping misses cost little more than one.
  for (uint16_t i = 0; i < n; ++i) __builtin_prefetch(&buckets_[primary(hashes[i])]);
  return lookup_burst(sel, hashes, n, now, out);
}

uint16_t PinTable::spread_burst(const SelectionTable& sel, const uint8_t* const pkts[], const uint32_t lens[],
                                uint16_t n, uint32_t now, uint64_t hashes[], TunnelId out[]) noexcept {
  const uint64_t seed = sel.seed();
  for (uint16_t i = 0; i < n; ++i) {
    hashes[i] = hash_packet(pkts[i], lens[i], seed);
    __builtin_prefetch(&buckets_[primary(hashes[i])]);
  }
  return lookup_burst(sel, hashes, n, now, out);
}

uint32_t PinTable::expire(uint32_t now, uint32_t buckets) noexcept {
  uint32_t freed = 0;
  for (uint64_t n = std::min<uint64_t>(buckets, mask_ + 1); n > 0; --n) {
    Bucket* const b = &buckets_[sweep_];
    sweep_ = (sweep_ + 1) & mask_;
    for (uint32_t i = 0; i < kWays; ++i) {
      if (b->hash[i] != kInvalidHash && now - b->last_seen[i] > idle_timeout_) {
        release({b, i});
        ++freed;
      }
    }
  }
  counters_.expired += freed;
  return freed;
}

TunnelId PinTable::peek(const SelectionTable& sel, uint64_t h, uint32_t now) const noexcept {
  if (h == kInvalidHash) return kNoTunnel;
  const Slot s = find(h);
  if (s.b && now - s.b->last_seen[s.i] <= idle_timeout_ &&
      sel.check(tunnel_at(*s.b, s.i), s.b->epoch[s.i], now) == SelectionTable::Verdict::kKeep)
    return tunnel_at(*s.b, s.i);
  return sel.select(h);
}

}  // namespace mg::flow
