// Private to lib/ctrl: the block's memory layout and the lock-free pieces it is made of, shared by the lifecycle
// (ctrl.cpp), the ring (ring.cpp) and the mirror (mirror.cpp). A change here is a change of kLayoutVersion.
//
// Memory model notes:
//  - Everything another process may read while it is being written is an address-free, lock-free std::atomic
//    (ring sequences, reply ids, seqlock counters and the words of the records behind them), so a reader never
//    races on plain memory, and the block works the same between threads and between processes.
//  - Ring commands are plain data: a producer writes a cell only while it holds the producer mutex and the cell is
//    free; the consumer reads it only after the acquire load of the published sequence.
//  - The header prefix (magic, layout version, size, owner pid) keeps its offsets in every layout version, so any
//    build can tell a stale block or another version from a live one.
#pragma once

#include <pthread.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <thread>
#include <type_traits>

#include "ctrl/ctrl.h"

namespace mg::ctrl {

static_assert(std::atomic<uint64_t>::is_always_lock_free, "the block needs lock-free 64-bit atomics");
static_assert(std::atomic<uint32_t>::is_always_lock_free, "the block needs lock-free 32-bit atomics");
static_assert(sizeof(std::atomic<uint64_t>) == 8 && alignof(std::atomic<uint64_t>) == 8);
static_assert(sizeof(std::atomic<uint32_t>) == 4);
static_assert((kRingSlots & (kRingSlots - 1)) == 0, "kRingSlots must be a power of two");
static_assert(std::is_trivially_copyable_v<Command> && std::is_trivially_copyable_v<Reply>);
static_assert(std::is_trivially_copyable_v<GatewayInfo> && std::is_trivially_copyable_v<InstanceInfo> &&
              std::is_trivially_copyable_v<TunnelInfo> && std::is_trivially_copyable_v<WorkerInfo> &&
              std::is_trivially_copyable_v<PortInfo> && std::is_trivially_copyable_v<CounterHelp>);
// Mirror records carry no padding: what a reader copies is exactly the fields the writer set.
static_assert(std::has_unique_object_representations_v<GatewayInfo> &&
              std::has_unique_object_representations_v<TunnelInfo> &&
              std::has_unique_object_representations_v<WorkerInfo> &&
              std::has_unique_object_representations_v<PortInfo> &&
              std::has_unique_object_representations_v<CounterHelp>);

namespace detail {

constexpr uint32_t kSeqlockTries = 100000;  // a reader gives up after this many torn/busy copies

constexpr size_t words_for(size_t bytes) { return (bytes + 7) / 8; }

// A record as plain words, each an atomic: copied in and out with relaxed word accesses, ordered by the
// surrounding seqlock / id protocol.
template <class T>
struct Words {
  std::atomic<uint64_t> w[words_for(sizeof(T))];

  void store(const T& v) noexcept {
    uint64_t buf[words_for(sizeof(T))] = {};
    std::memcpy(buf, &v, sizeof(T));
    for (size_t i = 0; i < words_for(sizeof(T)); ++i) w[i].store(buf[i], std::memory_order_relaxed);
  }
  void load(T* v) const noexcept {
    uint64_t buf[words_for(sizeof(T))];
    for (size_t i = 0; i < words_for(sizeof(T)); ++i) buf[i] = w[i].load(std::memory_order_relaxed);
    std::memcpy(static_cast<void*>(v), buf, sizeof(T));
  }
};

// One mirror record behind a seqlock: odd = being written.
template <class T>
struct alignas(64) SeqRecord {
  std::atomic<uint32_t> seq;
  uint32_t reserved;
  Words<T> data;

  void write(const T& v) noexcept {
    const uint32_t s = seq.load(std::memory_order_relaxed);
    seq.store(s + 1, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_release);
    data.store(v);
    seq.store(s + 2, std::memory_order_release);
  }
  bool read(T* out) const noexcept {
    for (uint32_t tries = 0; tries < kSeqlockTries; ++tries) {
      const uint32_t s1 = seq.load(std::memory_order_acquire);
      if (s1 & 1u) {
        if (tries > 64) std::this_thread::yield();
        continue;
      }
      data.load(out);
      std::atomic_thread_fence(std::memory_order_acquire);
      if (seq.load(std::memory_order_relaxed) == s1) return true;
    }
    return false;
  }
};

struct alignas(64) RingCell {
  std::atomic<uint64_t> seq;  // == p: free for position p; == p + 1: published for position p
  Command cmd;
};

struct alignas(64) ReplySlot {
  std::atomic<uint64_t> id;   // request id of the reply held, 0 = none / being written; stored last (release)
  Words<Reply> data;
};

}  // namespace detail

struct Block::Layout {
  // ---- header (the first 32 bytes keep their offsets in every layout version) ----
  std::atomic<uint64_t> magic;          // kMagic, stored last at creation (release); 0 = closed / not ready
  uint32_t layout_version;              // kLayoutVersion
  uint32_t header_reserved;
  uint64_t size;                        // sizeof(Layout)
  int32_t owner_pid;                    // the data plane process (the only consumer and mirror writer)
  uint32_t owner_start_ticks;           // its start time (process_start_ticks), 0 = unknown
  uint64_t start_time_ns;               // CLOCK_REALTIME at creation
  std::atomic<uint64_t> generation;     // state generation, set by the owner
  std::atomic<uint64_t> next_request_id;
  uint32_t ring_slots, reply_slots, max_tunnels, max_instances, max_workers, max_drop_reasons;
  uint32_t command_size, reply_size;

  // ---- producers ----
  alignas(64) pthread_mutex_t producer_mutex;  // process-shared, robust
  alignas(64) std::atomic<uint64_t> tail;      // next position to publish; only under producer_mutex
  alignas(64) std::atomic<uint64_t> head;      // next position to consume; only the owner stores it

  // ---- doorbell (Block::wait_command) ----
  // A futex word in the shared mapping (so FUTEX_WAIT/WAKE without FUTEX_PRIVATE_FLAG work between processes):
  // producers add one after publishing; the consumer sleeps on the value it saw. `waiting` is 1 while the
  // consumer may be asleep, so producers make the wake syscall only then.
  alignas(64) std::atomic<uint32_t> doorbell;
  std::atomic<uint32_t> waiting;

  // ---- ring, replies, mirror ----
  detail::RingCell ring[kRingSlots];
  detail::ReplySlot replies[kReplySlots];
  detail::SeqRecord<GatewayInfo> gateway;
  detail::SeqRecord<InstanceInfo> instances[kMaxInstances];
  detail::SeqRecord<TunnelInfo> tunnels[kMaxTunnels];
  detail::SeqRecord<WorkerInfo> workers[kMaxWorkers];
  detail::SeqRecord<PortInfo> ports[kMaxPorts];
  detail::SeqRecord<CounterHelp> counter_help;  // layout 6
};

// Pin the layout: a change here is a change of kLayoutVersion.
static_assert(std::is_standard_layout_v<Block::Layout>);
static_assert(offsetof(Block::Layout, magic) == 0);
static_assert(offsetof(Block::Layout, layout_version) == 8);
static_assert(offsetof(Block::Layout, size) == 16);
static_assert(offsetof(Block::Layout, owner_pid) == 24);
static_assert(offsetof(Block::Layout, owner_start_ticks) == 28);
static_assert(offsetof(Block::Layout, start_time_ns) == 32);
static_assert(offsetof(Block::Layout, generation) == 40);
static_assert(offsetof(Block::Layout, next_request_id) == 48);
static_assert(offsetof(Block::Layout, ring_slots) == 56);
static_assert(offsetof(Block::Layout, producer_mutex) == 128);
static_assert(sizeof(pthread_mutex_t) == 40);
static_assert(offsetof(Block::Layout, tail) == 192);
static_assert(offsetof(Block::Layout, head) == 256);
static_assert(offsetof(Block::Layout, doorbell) == 320);
static_assert(offsetof(Block::Layout, ring) == 384);
static_assert(sizeof(detail::RingCell) == 128);
static_assert(sizeof(detail::ReplySlot) == 192);
static_assert(offsetof(Block::Layout, replies) == 384 + kRingSlots * 128);
static_assert(sizeof(Block::Layout) % 64 == 0);

}  // namespace mg::ctrl
