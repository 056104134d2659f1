// mg::ctrl — shared-memory control block. See ctrl.h and DESIGN.md "Control ring".
//
// Memory model notes:
//  - Everything another process may read while it is being written is an address-free, lock-free std::atomic
//    (ring sequences, reply ids, seqlock counters and the words of the records behind them), so a reader never
//    races on plain memory, and the block works the same between threads and between processes.
//  - Ring commands are plain data: a producer writes a cell only while it holds the producer mutex and the cell is
//    free; the consumer reads it only after the acquire load of the published sequence.
//  - The header prefix (magic, layout version, size, owner pid) keeps its offsets in every layout version, so any
//    build can tell a stale block or another version from a live one.
#include "ctrl/ctrl.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <new>
#include <thread>
#include <type_traits>

namespace mg::ctrl {

static_assert(std::atomic<uint64_t>::is_always_lock_free, "the block needs lock-free 64-bit atomics");
static_assert(std::atomic<uint32_t>::is_always_lock_free, "the block needs lock-free 32-bit atomics");
static_assert(sizeof(std::atomic<uint64_t>) == 8 && alignof(std::atomic<uint64_t>) == 8);
static_assert(sizeof(std::atomic<uint32_t>) == 4);
static_assert((kRingSlots & (kRingSlots - 1)) == 0, "kRingSlots must be a power of two");
static_assert(std::is_trivially_copyable_v<Command> && std::is_trivially_copyable_v<Reply>);
static_assert(std::is_trivially_copyable_v<GatewayInfo> && std::is_trivially_copyable_v<InstanceInfo> &&
              std::is_trivially_copyable_v<TunnelInfo> && std::is_trivially_copyable_v<WorkerInfo>);

namespace {

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

uint64_t now_realtime_ns() noexcept {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec);
}

bool pid_alive(int32_t pid) noexcept {
  if (pid <= 0) return false;
  return kill(pid, 0) == 0 || errno == EPERM;
}

// The low 32 bits of a process's start time in clock ticks since boot (/proc/<pid>/stat field 22), 0 if unknown.
// Immutable for the life of the process, so with the pid it tells the owner from a later process that got its pid
// (a restarted container often gets the same pid).
uint32_t process_start_ticks(int32_t pid) noexcept {
  char path[48];
  std::snprintf(path, sizeof path, "/proc/%d/stat", int(pid));
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  char buf[1024];
  const ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return 0;
  buf[n] = '\0';
  const char* p = std::strrchr(buf, ')');  // the command name may hold spaces and parentheses
  if (!p) return 0;
  ++p;
  for (int field = 3; field < 22 && p; ++field) p = std::strchr(p + 1, ' ');  // p: the space before field 3, then 4.. 22
  if (!p) return 0;
  const uint64_t ticks = std::strtoull(p + 1, nullptr, 10);
  return uint32_t(ticks) ? uint32_t(ticks) : 1;
}

// The block's owner is running: its pid is alive and is still the same process (when both start times are known).
bool owner_running(int32_t pid, uint32_t start_ticks) noexcept {
  if (!pid_alive(pid)) return false;
  if (start_ticks == 0) return true;
  const uint32_t now = process_start_ticks(pid);
  return now == 0 || now == start_ticks;
}

std::string shm_name_for(const std::string& name) { return "/meshgate." + name; }

}  // namespace

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

  // ---- ring, replies, mirror ----
  RingCell ring[kRingSlots];
  ReplySlot replies[kReplySlots];
  SeqRecord<GatewayInfo> gateway;
  SeqRecord<InstanceInfo> instances[kMaxInstances];
  SeqRecord<TunnelInfo> tunnels[kMaxTunnels];
  SeqRecord<WorkerInfo> workers[kMaxWorkers];
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
static_assert(offsetof(Block::Layout, ring) == 320);
static_assert(sizeof(RingCell) == 128);
static_assert(sizeof(ReplySlot) == 192);
static_assert(offsetof(Block::Layout, replies) == 320 + kRingSlots * 128);
static_assert(sizeof(Block::Layout) % 64 == 0);

const char* to_string(Status s) noexcept {
  switch (s) {
    case Status::kOk: return "ok";
    case Status::kBadVersion: return "bad-version";
    case Status::kBadLength: return "bad-length";
    case Status::kBadOp: return "bad-op";
    case Status::kBadTarget: return "bad-target";
    case Status::kBadValue: return "bad-value";
    case Status::kRefused: return "refused";
    case Status::kInternal: return "internal";
  }
  return "unknown";
}

void copy_name(char* dst, size_t cap, const std::string& s) noexcept {
  if (cap == 0) return;
  const size_t n = s.size() < cap - 1 ? s.size() : cap - 1;
  std::memcpy(dst, s.data(), n);
  std::memset(dst + n, 0, cap - n);
}

bool valid_name(const std::string& name) noexcept {
  if (name.empty() || name.size() > 32) return false;
  for (char c : name) {
    const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
                    c == '-';
    if (!ok) return false;
  }
  return true;
}

std::string Block::path_for(const std::string& gateway_name) {
  if (!valid_name(gateway_name)) return {};
  return "/dev/shm" + shm_name_for(gateway_name);
}

namespace {

// What a file at that shm name holds, read without trusting it.
struct Peek {
  bool exists = false;
  size_t file_size = 0;
  uint64_t magic = 0;
  uint32_t version = 0;
  uint64_t size = 0;
  int32_t pid = 0;
  uint32_t start_ticks = 0;
  uint64_t start_ns = 0;
};

Peek peek(const std::string& shm_name) {
  Peek p;
  const int fd = shm_open(shm_name.c_str(), O_RDONLY, 0);
  if (fd < 0) return p;
  p.exists = true;
  struct stat st{};
  if (fstat(fd, &st) == 0) p.file_size = size_t(st.st_size);
  if (p.file_size >= 64) {
    void* m = mmap(nullptr, 64, PROT_READ, MAP_SHARED, fd, 0);
    if (m != MAP_FAILED) {
      const auto* b = static_cast<const unsigned char*>(m);
      p.magic = reinterpret_cast<const std::atomic<uint64_t>*>(b)->load(std::memory_order_acquire);
      std::memcpy(&p.version, b + 8, 4);
      std::memcpy(&p.size, b + 16, 8);
      std::memcpy(&p.pid, b + 24, 4);
      std::memcpy(&p.start_ticks, b + 28, 4);
      std::memcpy(&p.start_ns, b + 32, 8);
      munmap(m, 64);
    }
  }
  close(fd);
  return p;
}

void set_err(std::string* err, std::string s) {
  if (err) *err = std::move(s);
}

}  // namespace

std::unique_ptr<Block> Block::create(const std::string& gateway_name, std::string* err) {
  if (!valid_name(gateway_name)) {
    set_err(err, "bad gateway name '" + gateway_name + "': use 1-32 of A-Z a-z 0-9 _ -");
    return nullptr;
  }
  const std::string shm = shm_name_for(gateway_name);
  const std::string path = path_for(gateway_name);
  int fd = -1;
  for (int attempt = 0; attempt < 4 && fd < 0; ++attempt) {
    fd = shm_open(shm.c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
    if (fd >= 0) break;
    if (errno != EEXIST) {
      set_err(err, "cannot create " + path + ": " + std::strerror(errno));
      return nullptr;
    }
    Peek p = peek(shm);
    // A creator between shm_open and writing its pid: give it a moment before calling the block stale.
    for (int i = 0; i < 20 && p.exists && p.pid == 0 && p.magic == 0; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
      p = peek(shm);
    }
    if (p.exists && owner_running(p.pid, p.start_ticks)) {
      set_err(err, path + " belongs to a running gateway (pid " + std::to_string(p.pid) +
                       "); stop it first or use another gateway name");
      return nullptr;
    }
    // Stale (owner dead) or never finished: replace it.
    if (shm_unlink(shm.c_str()) != 0 && errno != ENOENT) {
      set_err(err, "cannot remove stale " + path + ": " + std::strerror(errno));
      return nullptr;
    }
  }
  if (fd < 0) {
    set_err(err, "cannot create " + path + ": it keeps reappearing");
    return nullptr;
  }
  fchmod(fd, 0600);
  const size_t size = sizeof(Layout);
  if (ftruncate(fd, off_t(size)) != 0) {
    set_err(err, "cannot size " + path + ": " + std::strerror(errno));
    close(fd);
    shm_unlink(shm.c_str());
    return nullptr;
  }
  void* m = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  if (m == MAP_FAILED) {
    set_err(err, "cannot map " + path + ": " + std::strerror(errno));
    shm_unlink(shm.c_str());
    return nullptr;
  }
  // The pid first (a concurrent create() reads it), then everything, then the magic.
  auto* raw = static_cast<unsigned char*>(m);
  const int32_t pid = int32_t(getpid());
  const uint32_t ticks = process_start_ticks(pid);
  std::memcpy(raw + 24, &pid, 4);
  std::memcpy(raw + 28, &ticks, 4);
  auto* L = new (m) Layout();
  L->owner_pid = pid;
  L->owner_start_ticks = ticks;
  L->layout_version = kLayoutVersion;
  L->size = size;
  L->start_time_ns = now_realtime_ns();
  L->generation.store(0, std::memory_order_relaxed);
  L->next_request_id.store(0, std::memory_order_relaxed);
  L->ring_slots = kRingSlots;
  L->reply_slots = kReplySlots;
  L->max_tunnels = kMaxTunnels;
  L->max_instances = kMaxInstances;
  L->max_workers = kMaxWorkers;
  L->max_drop_reasons = kMaxDropReasons;
  L->command_size = sizeof(Command);
  L->reply_size = sizeof(Reply);

  pthread_mutexattr_t a;
  pthread_mutexattr_init(&a);
  pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
  pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
  const int rc = pthread_mutex_init(&L->producer_mutex, &a);
  pthread_mutexattr_destroy(&a);
  if (rc != 0) {
    set_err(err, std::string("cannot initialise the producer mutex: ") + std::strerror(rc));
    munmap(m, size);
    shm_unlink(shm.c_str());
    return nullptr;
  }
  L->tail.store(0, std::memory_order_relaxed);
  L->head.store(0, std::memory_order_relaxed);
  for (uint32_t i = 0; i < kRingSlots; ++i) L->ring[i].seq.store(i, std::memory_order_relaxed);
  for (auto& r : L->replies) r.id.store(0, std::memory_order_relaxed);
  L->magic.store(kMagic, std::memory_order_release);

  std::unique_ptr<Block> b(new Block());
  b->mem_ = L;
  b->size_ = size;
  b->owner_ = true;
  b->path_ = path;
  return b;
}

std::unique_ptr<Block> Block::open(const std::string& gateway_name, std::string* err, SubmitError* code) {
  auto fail = [&](SubmitError c, std::string msg) -> std::unique_ptr<Block> {
    set_err(err, std::move(msg));
    if (code) *code = c;
    return nullptr;
  };
  if (!valid_name(gateway_name))
    return fail(SubmitError::kBadBlock, "bad gateway name '" + gateway_name + "': use 1-32 of A-Z a-z 0-9 _ -");
  const std::string shm = shm_name_for(gateway_name);
  const std::string path = path_for(gateway_name);
  const int fd = shm_open(shm.c_str(), O_RDWR, 0);
  if (fd < 0) {
    if (errno == ENOENT) return fail(SubmitError::kNoGateway, "no gateway is running: no " + path);
    return fail(SubmitError::kBadBlock, "cannot open " + path + ": " + std::strerror(errno));
  }
  struct stat st{};
  if (fstat(fd, &st) != 0) {
    const int e = errno;
    close(fd);
    return fail(SubmitError::kBadBlock, "cannot stat " + path + ": " + std::strerror(e));
  }
  const size_t fsize = size_t(st.st_size);
  if (fsize < 64) {
    close(fd);
    if (fsize == 0) return fail(SubmitError::kNoGateway, "no gateway is running: " + path + " is empty (stale)");
    return fail(SubmitError::kBadBlock, path + " is not a meshgate control block (" + std::to_string(fsize) +
                                            " bytes)");
  }
  void* m = mmap(nullptr, fsize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  if (m == MAP_FAILED) return fail(SubmitError::kBadBlock, "cannot map " + path + ": " + std::strerror(errno));
  auto* L = static_cast<Layout*>(m);
  auto unmap_fail = [&](SubmitError c, std::string msg) {
    munmap(m, fsize);
    return fail(c, std::move(msg));
  };
  // A creator may still be initialising: the magic comes last.
  uint64_t magic = L->magic.load(std::memory_order_acquire);
  for (int i = 0; i < 20 && magic == 0 && owner_running(L->owner_pid, L->owner_start_ticks); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    magic = L->magic.load(std::memory_order_acquire);
  }
  const int32_t pid = L->owner_pid;
  if (!owner_running(pid, L->owner_start_ticks))
    return unmap_fail(SubmitError::kNoGateway,
                      "no gateway is running: " + path + " is stale (pid " + std::to_string(pid) + ")");
  if (magic != kMagic) {
    char buf[160];
    std::snprintf(buf, sizeof buf, "%s is not a meshgate control block (magic 0x%016" PRIx64 ")", path.c_str(),
                  magic);
    return unmap_fail(SubmitError::kBadBlock, buf);
  }
  if (L->layout_version != kLayoutVersion)
    return unmap_fail(SubmitError::kBadBlock, path + " has layout version " + std::to_string(L->layout_version) +
                                                  ", this meshgatectl speaks " + std::to_string(kLayoutVersion) +
                                                  " (use the meshgatectl of the running meshgate)");
  if (L->size != sizeof(Layout) || fsize != sizeof(Layout))
    return unmap_fail(SubmitError::kBadBlock, path + " has size " + std::to_string(L->size) + " (file " +
                                                  std::to_string(fsize) + "), expected " +
                                                  std::to_string(sizeof(Layout)));
  std::unique_ptr<Block> b(new Block());
  b->mem_ = L;
  b->size_ = fsize;
  b->owner_ = false;
  b->path_ = path;
  if (code) *code = SubmitError::kOk;
  return b;
}

Block::~Block() {
  if (!mem_) return;
  if (owner_) {
    const int32_t pid = mem_->owner_pid;
    const uint64_t start = mem_->start_time_ns;
    mem_->magic.store(0, std::memory_order_release);  // closed: clients see the gateway gone
    std::string shm(1, '/');
    shm.append(path_, path_.rfind('/') + 1, std::string::npos);
    const Peek p = peek(shm);
    if (p.exists && p.pid == pid && p.start_ns == start) shm_unlink(shm.c_str());
  }
  munmap(mem_, size_);
}

int32_t Block::owner_pid() const noexcept { return mem_->owner_pid; }

bool Block::owner_alive() const noexcept {
  return mem_->magic.load(std::memory_order_acquire) == kMagic &&
         owner_running(mem_->owner_pid, mem_->owner_start_ticks);
}

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

}  // namespace

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
      if (stop == 2) return SubmitError::kOk;  // killed after publishing, before advancing the tail
      L->tail.store(tail + 1, std::memory_order_relaxed);
      pthread_mutex_unlock(&L->producer_mutex);
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
  Command c{};
  c.version = kLayoutVersion;
  c.length = sizeof(Command);
  c.request_id = next_request_id();
  c.op = uint16_t(op);
  c.flags = 0;
  c.target = target;
  c.value = value;
  c.deadline_ms = deadline_ms;
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

void Block::write_gateway(const GatewayInfo& g) noexcept { mem_->gateway.write(g); }
void Block::write_instance(uint32_t i, const InstanceInfo& r) noexcept {
  if (i < kMaxInstances) mem_->instances[i].write(r);
}
void Block::write_tunnel(uint32_t t, const TunnelInfo& r) noexcept {
  if (t < kMaxTunnels) mem_->tunnels[t].write(r);
}
void Block::write_worker(uint32_t w, const WorkerInfo& r) noexcept {
  if (w < kMaxWorkers) mem_->workers[w].write(r);
}
void Block::set_generation(uint64_t g) noexcept { mem_->generation.store(g, std::memory_order_release); }
uint64_t Block::generation() const noexcept { return mem_->generation.load(std::memory_order_acquire); }

bool Block::read_gateway(GatewayInfo* g) const noexcept { return mem_->gateway.read(g); }
bool Block::read_instance(uint32_t i, InstanceInfo* r) const noexcept {
  return i < kMaxInstances && mem_->instances[i].read(r);
}
bool Block::read_tunnel(uint32_t t, TunnelInfo* r) const noexcept {
  return t < kMaxTunnels && mem_->tunnels[t].read(r);
}
bool Block::read_worker(uint32_t w, WorkerInfo* r) const noexcept {
  return w < kMaxWorkers && mem_->workers[w].read(r);
}

}  // namespace mg::ctrl
