// mg::ctrl — shared-memory control block. See ctrl.h and docs/ARCHITECTURE.md "The control block".
//
// Block lifecycle: create (the data plane), open (clients), stale-owner detection, names. The layout is in
// layout.h, the ring in ring.cpp, the mirror in mirror.cpp.
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

#include "ctrl/layout.h"
#include "ctrl/owner.h"

namespace mg::ctrl {

using namespace detail;

namespace {

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

const char* to_string(Status s) noexcept {
  switch (s) {
    case Status::kOk: return "ok";
    case Status::kBadVersion: return "bad-version";
    case Status::kBadLength: return "bad-length";
    case Status::kBadOp: return "bad-op";
    case Status::kBadTarget: return "bad-target";
    case Status::kBadValue: return "bad-value";
    case Status::kRefused: return "refused";
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
    fd = shm_open(shm.c_str(), O_RDWR | O_CREAT | O_EXCL, kBlockMode);
    if (fd >= 0) break;
    if (errno != EEXIST) {
      set_err(err, "cannot create " + path + ": " + std::strerror(errno));
      return nullptr;
    }
    const int efd = shm_open(shm.c_str(), O_RDONLY, 0);
    if (efd < 0) {
      if (errno == ENOENT) continue;  // gone meanwhile: try again
      set_err(err, "cannot open the existing " + path + ": " + std::strerror(errno));
      return nullptr;
    }
    struct stat st{};
    const bool stat_ok = fstat(efd, &st) == 0;
    close(efd);
    if (const std::string why = stat_ok ? foreign_block(st, path) : path + " cannot be examined"; !why.empty()) {
      set_err(err, why);
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
  fchmod(fd, kBlockMode);  // whatever the umask
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
  L->doorbell.store(0, std::memory_order_relaxed);
  L->waiting.store(0, std::memory_order_relaxed);
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
  if (const std::string why = untrusted_block(st, path); !why.empty()) {
    close(fd);
    return fail(SubmitError::kBadBlock, why);
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

}  // namespace mg::ctrl
