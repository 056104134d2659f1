// mg::flow — flow spreading: packet -> flow hash -> sticky tunnel (docs/ARCHITECTURE.md "Flow spreading").
//
// Pieces and who owns them:
//   - flow hash: XXH3-64 of the flow key (net/flow_key.h states which fields: 5-tuple, or 3-tuple for ICMP,
//     other protocols and every fragment), seeded. Pure functions, thread-safe.
//   - SelectionTable: weighted Maglev table over the tunnels that are `up` with weight > 0, plus every tunnel's
//     state/epoch/drain deadline. Built by main (control side; may allocate and throw), IMMUTABLE afterwards:
//     any number of workers read one concurrently without synchronisation. Main publishes a new one with an
//     atomic pointer store and frees the old one after RCU quiescence (not done here).
//   - PinTable: one per worker, owned and touched by that worker only (flows reach a worker through RSS, so no
//     sharing and no locks). flow hash -> (tunnel, tunnel epoch, last seen). Fixed capacity, allocated once.
//   - Counters: inside the PinTable, plain increments by its worker; others may copy them racily (monotonic
//     64-bit values, torn reads impossible on x86-64) for telemetry.
//
// Per packet, the hot path (spread_burst, or hash_burst + PinTable::assign_burst) allocates nothing, throws
// nothing, logs nothing and makes no virtual call.
//
// A worker's step, per rx burst of inner IP packets (pkts[i] = start of the IP header):
//   const SelectionTable* sel = <RCU-protected load of main's current table>;
//   spread_burst(pins, *sel, pkts, lens, n, now, hashes, tunnel);  // tunnel[i] == kNoTunnel: drop
//   ... group by tunnel[i], ESP encap per group ...
// Main, on a command: spec[t].set_state(...) or spec[t].weight = w; auto next = SelectionTable::build(spec,
// seed, size); publish next; after quiescence free the old one.
//
// States: `up` takes new flows (weight > 0) and keeps pins. `draining` takes no new flows; its pins stay
// until they are idle or until its drain deadline has passed, then move. `down` takes nothing; its pins are void
// at once: TunnelSpec::set_state bumps the tunnel's epoch, pins carry the epoch they were made under, and each
// hit compares it with the current SelectionTable, so no pin table is ever walked. When a tunnel comes back
// `up`, pins elsewhere stay; only new flows use it.
//
// Time: `now` is a caller-chosen tick (e.g. milliseconds or TSC >> k) as uint32_t; idle timeouts and drain
// deadlines are in the same unit. Differences are taken modulo 2^32, so a pin idle for more than 2^31 ticks
// may look fresh: pick a unit where that is weeks.
#pragma once

#include <bitset>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "net/flow_key.h"
#include "net/limits.h"

namespace mg::flow {

using TunnelId = uint16_t;
inline constexpr TunnelId kNoTunnel = 0xffff;
inline constexpr uint32_t kMaxTunnels = mg::kMaxTunnels;  // net/limits.h
inline constexpr uint32_t kMinTableSize = 65537;     // Maglev needs a prime; at least this many slots
inline constexpr uint32_t kMaxTableSize = 1u << 24;
inline constexpr uint64_t kInvalidHash = 0;          // hash_burst's mark for an unparsable packet

enum class TunnelState : uint8_t { kUp = 0, kDraining = 1, kDown = 2 };
// A set of tunnel ids (the same type as route::TunnelSet: the tunnels that can reach a destination).
using TunnelMask = std::bitset<kMaxTunnels>;
const char* to_string(TunnelState s) noexcept;

// Seeded flow hash, never kInvalidHash.
uint64_t flow_hash(const net::FlowKey& key, uint64_t seed) noexcept;

// Burst: extracts the flow key of each L3 packet pkts[i][0..lens[i]) and writes its hash, or kInvalidHash when
// the packet does not parse. Returns how many parsed.
uint16_t hash_burst(const uint8_t* const pkts[], const uint32_t lens[], uint16_t n, uint64_t seed,
                    uint64_t hashes[]) noexcept;

// Control-side description of one tunnel. Kept by main, one per tunnel id, and fed to SelectionTable::build.
struct TunnelSpec {
  uint32_t weight = 1;          // share of new flows; 0 = none
  TunnelState state = TunnelState::kUp;
  uint16_t epoch = 0;           // bumped on every entry into `down`; wraps after 65536 downs (harmless)
  bool has_deadline = false;    // draining: pins move once now >= drain_deadline
  uint32_t drain_deadline = 0;

  // The only correct way to change state: it keeps the epoch rule above.
  void set_state(TunnelState s, bool with_deadline = false, uint32_t deadline = 0) noexcept;
};

// Immutable after build(). Hot members first; select() touches one slot.
class SelectionTable {
 public:
  // What a pin hit finds when it checks its tunnel.
  enum class Verdict : uint8_t { kKeep, kVoidDown, kVoidDrain, kVoidRoute };

  // Throws std::invalid_argument on more than kMaxTunnels tunnels or a table size that is not a prime in
  // [kMinTableSize, kMaxTableSize]. Rebuilding with the same seed and specs gives the same table; a tunnel's
  // Maglev permutation depends only on (seed, tunnel id), which keeps disruption low across rebuilds.
  // members: the table of one route's tunnel set (docs/ARCHITECTURE.md "Routes"): only those tunnels take new
  // flows, and a pin on any other is void (kVoidRoute: its flow moves into the set). The permutations do not
  // depend on the set, so tables of different sets nearly agree where they overlap (4 tunnels, one left out:
  // 99.93 % of the slots the others own in the full table are theirs in the set's).
  static std::unique_ptr<const SelectionTable> build(std::span<const TunnelSpec> tunnels, uint64_t seed,
                                                     uint32_t table_size = kMinTableSize,
                                                     const TunnelMask* members = nullptr);

  // The tunnel for a new flow, or kNoTunnel when no tunnel is up with weight > 0.
  TunnelId select(uint64_t hash) const noexcept {
    // Upper 32 bits: the pin table indexes with the lower ones. Multiply-shift maps onto [0, size) without
    // a division and stays uniform for a 32-bit input.
    return slots_[uint32_t((uint64_t(uint32_t(hash >> 32)) * size_) >> 32)];
  }

  Verdict check(TunnelId t, uint16_t epoch, uint32_t now) const noexcept {
    if (t >= n_tunnels_) return Verdict::kVoidDown;  // tunnel removed since the pin was made
    const Rt r = rt_[t];
    if (r.out_of_set) [[unlikely]] return Verdict::kVoidRoute;
    if (r.state == TunnelState::kDown || r.epoch != epoch) return Verdict::kVoidDown;
    if (r.state == TunnelState::kDraining && r.has_deadline && int32_t(now - r.drain_deadline) >= 0)
      return Verdict::kVoidDrain;
    return Verdict::kKeep;
  }
  uint16_t epoch(TunnelId t) const noexcept { return rt_[t].epoch; }

  uint64_t seed() const noexcept { return seed_; }
  uint32_t size() const noexcept { return size_; }
  uint32_t tunnels() const noexcept { return n_tunnels_; }
  // Slots owned by tunnel t (cold: walks the table). For tests and tools.
  uint32_t slots_of(TunnelId t) const noexcept;

 private:
  SelectionTable() = default;
  // What a worker needs per tunnel on a pin hit, 8 bytes so 8 tunnels share a cache line.
  struct Rt {
    TunnelState state;
    bool has_deadline : 1;
    bool out_of_set : 1;   // not in this table's route set (build's members)
    uint16_t epoch;
    uint32_t drain_deadline;
  };
  static_assert(sizeof(Rt) == 8);

  // hot: read on every packet
  const TunnelId* slots_ = nullptr;
  const Rt* rt_ = nullptr;
  uint32_t size_ = 0;
  uint32_t n_tunnels_ = 0;
  uint64_t seed_ = 0;
  // cold: storage behind the pointers above
  std::vector<TunnelId> slot_store_;
  std::vector<Rt> rt_store_;
};

// Per-tunnel counters of one worker. One worker writes them all, so they share cache lines freely; the block
// as a whole is aligned so that it never shares a line with another worker's data.
struct TunnelCounters {
  uint64_t pinned = 0;  // pins resident now (a gauge; idle pins count until their slot is reused)
  uint64_t placed = 0;     // flows placed here by the selection table: new flows plus moved_in
  uint64_t moved_in = 0;   // of those, flows whose pin was void (tunnel down or re-upped, drain deadline)
  // Flows without a (live) pin placed here; idle flows coming back count as new.
  uint64_t new_flows() const noexcept { return placed - moved_in; }
};

struct alignas(64) SpreadCounters {
  uint64_t hits = 0;         // packets that followed a valid pin
  uint64_t new_flows = 0;    // packets whose flow had no pin
  uint64_t invalid = 0;      // packets with kInvalidHash
  uint64_t no_tunnel = 0;    // packets with no tunnel to go to (none up with weight > 0)
  uint64_t moved_down = 0;   // pins voided because their tunnel went down, flow placed elsewhere
  uint64_t moved_drain = 0;  // pins voided by a passed drain deadline
  uint64_t moved_route = 0;  // pins voided because their tunnel left the set of the flow's route
  uint64_t moved_idle = 0;   // idle pins whose flow came back and landed on another tunnel
  uint64_t expired = 0;      // idle pins reclaimed (by their flow, by a new flow, or by expire())
  uint64_t evicted = 0;      // live pins pushed out because both candidate buckets were full (oldest first)
};
static_assert(sizeof(SpreadCounters) == 128);
static_assert(sizeof(TunnelCounters) == 24);

class PinTable {
 public:
  // capacity: pin slots (rounded up to a power of two of 4-pin buckets); idle_timeout in ticks. Size it at
  // twice the flows a worker should hold: eviction of live pins starts before the table is full (measured on
  // 1 Mi slots: 0.004 % of insertions evict at 50 % load, 1.2 % at 75 %, 11 % when as many flows as slots).
  // Allocates 16 bytes per pin once, from the heap in 2 MiB-aligned blocks marked for transparent huge pages
  // (a 1 M-pin table spans 16 MiB: with 4 KiB pages nearly every lookup would also miss the TLB). Or, with
  // `memory`, uses the caller's zeroed, 64-byte aligned block of bytes_needed(capacity) (e.g. rte_zmalloc on
  // the worker's NUMA node), which must outlive the table. Throws std::invalid_argument for capacity 0 or
  // > 2^30, std::bad_alloc when out of memory.
  PinTable(uint32_t capacity, uint32_t idle_timeout, void* memory = nullptr);
  static size_t bytes_needed(uint32_t capacity) noexcept;
  ~PinTable();
  PinTable(const PinTable&) = delete;
  PinTable& operator=(const PinTable&) = delete;

  // The tunnel for each of n flow hashes at time `now`: a valid pin is followed and refreshed; otherwise the
  // selection table picks and the result is pinned. out[i] = kNoTunnel for kInvalidHash or when no tunnel can
  // take the flow. Returns how many got a tunnel. Repeated hashes in one burst behave as in sequence.
  uint16_t assign_burst(const SelectionTable& sel, const uint64_t hashes[], uint16_t n, uint32_t now,
                        TunnelId out[]) noexcept;

  // hash_burst and assign_burst in one pass: each packet's bucket is requested as soon as its hash is known,
  // so the lines arrive while the rest of the burst is being hashed.
  uint16_t spread_burst(const SelectionTable& sel, const uint8_t* const pkts[], const uint32_t lens[], uint16_t n,
                        uint32_t now, uint64_t hashes[], TunnelId out[]) noexcept;

  // Housekeeping for idle moments of the worker (an empty rx poll): frees the idle pins (idle for more than
  // idle_timeout at `now`, as assign_burst judges them) of the next `buckets` buckets, from a cursor kept in the
  // table that wraps, so that `pinned` gauges and resident() count live flows only; counted in `expired`.
  // Bounded: one cache line per bucket, so a worker can call it with a small budget (e.g. 16) whenever a poll
  // comes back empty and still sweep the whole table (memory_bytes() / 64 buckets) in that many / budget calls.
  // Never needed for correctness: idle slots are reused on insertion anyway. Returns pins freed.
  uint32_t expire(uint32_t now, uint32_t buckets) noexcept;

  // Read-only: where a flow would go now, without changing anything (tools, tests, telemetry).
  TunnelId peek(const SelectionTable& sel, uint64_t hash, uint32_t now) const noexcept;

  const SpreadCounters& counters() const noexcept { return counters_; }
  const TunnelCounters& tunnel_counters(TunnelId t) const noexcept { return tunnel_counters_[t]; }
  uint32_t capacity() const noexcept { return uint32_t(mask_ + 1) * kWays; }
  size_t memory_bytes() const noexcept { return size_t(mask_ + 1) * sizeof(Bucket); }
  uint32_t idle_timeout() const noexcept { return idle_timeout_; }
  uint64_t resident() const noexcept { return resident_; }  // pins held now, idle ones included

 private:
  static constexpr uint32_t kWays = 4;
  // Four pins per 64-byte line, fields side by side (structure of arrays) so that one vector compare tests all
  // four hashes: a lookup is then branch-free until hit-or-miss, which is predictable, where a loop over the
  // slots mispredicts on which slot matched. 16 bytes per pin. The key is the 64-bit flow hash, not the 40-byte
  // flow key: two flows collide with probability ~n^2/2^65 (3e-8 at 1 M flows) and then merely share a
  // tunnel, while a full key would triple the memory and the lines touched per lookup.
  //
  // A flow lives in its primary bucket, or, when that was full at insertion, in its secondary one; the primary
  // then carries an overflow mark (bit 15 of tunnel[0]; tunnel ids stay below kMaxTunnels) and only then does
  // a lookup that misses the primary read the secondary. At the loads we size for (<= 50 %) nearly all lookups
  // touch one line instead of two, which is what a table far larger than the caches is bound by (measured:
  // 17.3 -> 13.6 ns/packet at 100 k flows in a 2 Mi-pin table).
  struct alignas(64) Bucket {
    uint64_t hash[kWays];       // 0 = empty slot (flow hashes are never 0)
    uint32_t last_seen[kWays];
    uint16_t tunnel[kWays];     // TunnelId; bit 15 of tunnel[0] = overflow mark of the bucket
    uint16_t epoch[kWays];      // tunnel epoch when pinned; a mismatch voids the pin
  };
  static_assert(sizeof(Bucket) == 64 && alignof(Bucket) == 64, "one bucket = one cache line");
  static_assert(kMaxTunnels <= 0x8000, "bit 15 of Bucket::tunnel is the overflow mark");
  static constexpr uint16_t kOverflow = 0x8000;
  struct Slot {
    Bucket* b;
    uint32_t i;
  };

  size_t primary(uint64_t h) const noexcept { return size_t(h & mask_); }
  size_t secondary(uint64_t h) const noexcept { return size_t((h * 0x9e3779b97f4a7c15ull) >> 32) & mask_; }
  static TunnelId tunnel_at(const Bucket& b, uint32_t i) noexcept { return TunnelId(b.tunnel[i] & ~kOverflow); }
  static bool overflowed(const Bucket& b) noexcept { return (b.tunnel[0] & kOverflow) != 0; }
  Slot find(uint64_t h) const noexcept;
  uint16_t lookup_burst(const SelectionTable& sel, const uint64_t hashes[], uint16_t n, uint32_t now,
                        TunnelId out[]) noexcept;
  TunnelId assign_one(const SelectionTable& sel, uint64_t h, uint32_t now) noexcept;
  TunnelId place(const SelectionTable& sel, Slot s, uint64_t h, uint32_t now, bool moved) noexcept;
  Slot victim(uint64_t h, uint32_t now) noexcept;
  Slot free_slot(Bucket* b, uint32_t now) noexcept;
  void release(Slot s) noexcept;

  // hot
  Bucket* buckets_ = nullptr;
  uint64_t mask_ = 0;
  uint32_t idle_timeout_ = 0;
  uint64_t resident_ = 0;  // pins in the table, idle ones included
  uint64_t sweep_ = 0;     // next bucket for expire()
  SpreadCounters counters_;
  // cold-ish: written on new flows only
  std::unique_ptr<TunnelCounters[]> tunnel_counters_;
  void* owned_ = nullptr;  // storage we allocated (freed in the destructor), or null for caller memory
};

// The worker's whole step for one burst of L3 packets: what hash_burst with sel.seed() and then assign_burst
// do, fused (PinTable::spread_burst). hashes is caller scratch of n entries (kept: the data plane may reuse
// them). Returns how many got a tunnel.
inline uint16_t spread_burst(PinTable& pins, const SelectionTable& sel, const uint8_t* const pkts[],
                             const uint32_t lens[], uint16_t n, uint32_t now, uint64_t hashes[],
                             TunnelId out[]) noexcept {
  return pins.spread_burst(sel, pkts, lens, n, now, hashes, out);
}

}  // namespace mg::flow
