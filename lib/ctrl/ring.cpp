// mg::ctrl — the command ring: producers (clients) under the robust producer mutex, the single consumer, replies
// keyed by request id, and the doorbell that lets the consumer sleep until a command arrives. See ctrl.h.
#include <linux/futex.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <climits>
#include <cstring>
#include <ctime>
#include <thread>

#include "ctrl/ctrl.h"
#include "ctrl/layout.h"

namespace mg::ctrl {

using namespace detail;

uint64_t Block::next_request_id() noexcept {
  uint64_t id;
  do id = mem_->next_request_id.fetch_add(1, std::memory_order_relaxed) + 1;
  while (id == 0);
  return id;
}

namespace {

// Takes the robust producer mutex; a holder that died leaves it EOWNERDEAD, which we repair and take.
// Producers hold it for a few hundred nanoseconds; a holder that is stopped (SIGSTOP, a debugger) must not hang
// every other client, so waiting is bounded (kLockWaitMs, then kFull: the ring cannot take the command now).
constexpr int64_t kLockWaitMs = 500;

SubmitError lock_producers(pthread_mutex_t* m) noexcept {
  int rc = pthread_mutex_trylock(m);  // the usual case, and where a dead holder is found
  if (rc == EOWNERDEAD) {
    pthread_mutex_consistent(m);
    return SubmitError::kOk;
  }
  if (rc == 0) return SubmitError::kOk;
  timespec until{};
  clock_gettime(CLOCK_REALTIME, &until);  // timedlock, not clocklock(MONOTONIC): sanitizers intercept it
  until.tv_sec += kLockWaitMs / 1000;
  until.tv_nsec += (kLockWaitMs % 1000) * 1000000;
  if (until.tv_nsec >= 1000000000) {
    until.tv_sec += 1;
    until.tv_nsec -= 1000000000;
  }
  rc = pthread_mutex_timedlock(m, &until);
  if (rc == EOWNERDEAD) {
    pthread_mutex_consistent(m);
    rc = 0;
  }
  if (rc == ETIMEDOUT) return SubmitError::kFull;
  return rc == 0 ? SubmitError::kOk : SubmitError::kBadBlock;
}

int futex(std::atomic<uint32_t>* word, int op, uint32_t val, const timespec* timeout) noexcept {
  // Not FUTEX_PRIVATE_FLAG: the word is in a MAP_SHARED mapping and the other side is another process.
  static_assert(sizeof(std::atomic<uint32_t>) == sizeof(uint32_t));
  return int(syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), op, val, timeout, nullptr, 0));
}

// After publishing: a new doorbell value (so a consumer about to sleep on the old one does not), and a wake when the
// consumer said it may be asleep. The fence pairs with the one in wait_command: either the consumer sees the
// published cell, or we see `waiting` set (Dekker).
void ring_doorbell(Block::Layout* L) noexcept {
  L->doorbell.fetch_add(1, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (L->waiting.load(std::memory_order_relaxed) != 0) futex(&L->doorbell, FUTEX_WAKE, INT_MAX, nullptr);
}

bool published(const Block::Layout* L) noexcept {
  const uint64_t head = L->head.load(std::memory_order_relaxed);
  return L->ring[head & (kRingSlots - 1)].seq.load(std::memory_order_acquire) == head + 1;
}

}  // namespace

Command make_command(Op op, uint32_t target, uint32_t value, uint32_t deadline_ms) noexcept {
  Command c{};
  c.version = kLayoutVersion;
  c.length = sizeof(Command);
  c.op = uint16_t(op);
  c.target = target;
  c.value = value;
  c.deadline_ms = deadline_ms;
  c.client_pid = int32_t(getpid());
  c.client_uid = uint32_t(geteuid());
  return c;
}

// The producer protocol, with stop points for fault injection (what a client killed there leaves behind).
static SubmitError submit_impl(Block::Layout* L, const Command& c, int stop) noexcept {
  if (const SubmitError le = lock_producers(&L->producer_mutex); le != SubmitError::kOk) return le;
  if (stop == 0) return SubmitError::kOk;  // "killed" holding the lock
  uint64_t tail = L->tail.load(std::memory_order_relaxed);
  for (uint32_t guard = 0; guard <= kRingSlots; ++guard) {
    RingCell& cell = L->ring[tail & (kRingSlots - 1)];
    const uint64_t s = cell.seq.load(std::memory_order_acquire);
    if (s == tail) {
      std::memcpy(&cell.cmd, &c, sizeof(Command));
      if (stop == 1) return SubmitError::kOk;  // killed before publishing
      cell.seq.store(tail + 1, std::memory_order_release);
      if (stop == 2) {  // killed after publishing, before advancing the tail
        ring_doorbell(L);
        return SubmitError::kOk;
      }
      L->tail.store(tail + 1, std::memory_order_relaxed);
      pthread_mutex_unlock(&L->producer_mutex);
      ring_doorbell(L);
      return SubmitError::kOk;
    }
    if (s == tail + 1 || s == tail + kRingSlots) {
      // A producer killed after publishing did not advance the tail: skip its (whole) command.
      ++tail;
      L->tail.store(tail, std::memory_order_relaxed);
      continue;
    }
    break;  // the cell still holds an unconsumed command of the previous lap: full
  }
  pthread_mutex_unlock(&L->producer_mutex);
  return SubmitError::kFull;
}

SubmitError Block::submit(const Command& c) noexcept {
  if (mem_->magic.load(std::memory_order_acquire) != kMagic && !owner_) return SubmitError::kNoGateway;
  return submit_impl(mem_, c, 3);
}

void Block::submit_partial(const Command& c, SubmitStop stop) noexcept {
  submit_impl(mem_, c, int(stop));
}

std::optional<Reply> Block::wait_reply(uint64_t request_id, uint32_t timeout_ms) const noexcept {
  if (request_id == 0) return std::nullopt;
  const ReplySlot& slot = mem_->replies[request_id % kReplySlots];
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    if (slot.id.load(std::memory_order_acquire) == request_id) {
      Reply r;
      slot.data.load(&r);
      std::atomic_thread_fence(std::memory_order_acquire);
      if (slot.id.load(std::memory_order_relaxed) == request_id) {
        r.message[sizeof r.message - 1] = '\0';
        return r;
      }
      // Overwritten while we copied: our reply is gone (kReplySlots newer requests); keep waiting until timeout.
    }
    if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
}

std::optional<Reply> Block::call(Op op, uint32_t target, uint32_t value, uint32_t deadline_ms, uint32_t timeout_ms,
                                 SubmitError* e) {
  Command c = make_command(op, target, value, deadline_ms);
  c.request_id = next_request_id();
  const SubmitError se = submit(c);
  if (se != SubmitError::kOk) {
    if (e) *e = se;
    return std::nullopt;
  }
  auto r = wait_reply(c.request_id, timeout_ms);
  if (e) *e = r || owner_alive() ? SubmitError::kOk : SubmitError::kNoGateway;
  return r;
}

bool Block::poll(Command* out) noexcept {
  const uint64_t head = mem_->head.load(std::memory_order_relaxed);
  RingCell& cell = mem_->ring[head & (kRingSlots - 1)];
  if (cell.seq.load(std::memory_order_acquire) != head + 1) return false;
  std::memcpy(out, &cell.cmd, sizeof(Command));
  cell.seq.store(head + kRingSlots, std::memory_order_release);
  mem_->head.store(head + 1, std::memory_order_relaxed);
  return true;
}

bool Block::wait_command(uint32_t timeout_us) noexcept {
  if (published(mem_)) return true;
  if (timeout_us == 0) return false;
  using Clock = std::chrono::steady_clock;
  const auto deadline = Clock::now() + std::chrono::microseconds(timeout_us);
  for (;;) {
    const uint32_t seen = mem_->doorbell.load(std::memory_order_relaxed);
    mem_->waiting.store(1, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_seq_cst);  // pairs with ring_doorbell's
    if (published(mem_)) break;
    const auto left = deadline - Clock::now();
    if (left <= Clock::duration::zero()) break;
    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(left).count();
    const timespec ts{time_t(ns / 1000000000), long(ns % 1000000000)};
    // Returns at once (EAGAIN) if a producer rang since `seen`; otherwise sleeps until a ring or the timeout.
    futex(&mem_->doorbell, FUTEX_WAIT, seen, &ts);
  }
  mem_->waiting.store(0, std::memory_order_relaxed);
  return published(mem_);
}

void Block::reply(const Reply& r) noexcept {
  if (r.request_id == 0) return;
  ReplySlot& slot = mem_->replies[r.request_id % kReplySlots];
  slot.id.store(0, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);
  Reply copy = r;
  copy.message[sizeof copy.message - 1] = '\0';
  slot.data.store(copy);
  slot.id.store(r.request_id, std::memory_order_release);
}

uint32_t Block::pending() const noexcept {
  const uint64_t t = mem_->tail.load(std::memory_order_relaxed);
  const uint64_t h = mem_->head.load(std::memory_order_relaxed);
  return t > h ? uint32_t(t - h) : 0;
}

uint64_t Block::start_time_ns() const noexcept { return mem_->start_time_ns; }

}  // namespace mg::ctrl
