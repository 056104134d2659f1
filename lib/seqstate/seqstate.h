// mg::seqstate — outbound ESP sequence numbers that survive restarts, so that a static key never meets the same
// IV twice (AES-GCM and ChaCha20-Poly1305 give away the plaintext XOR and the authentication key when it does).
//
// Per key, a directory holds the highest sequence number that may have been used ("high-water mark"). Numbers
// are reserved ahead in blocks, and a block is written durably (temp file, fsync, rename, fsync of the directory)
// before any of it is used; the next run starts after the recorded mark. Keys are named by a fingerprint (keyed
// BLAKE2b of the key material), never by the key itself. No DPDK here: control code calls it, workers never do.
//
// Threads: not thread-safe; one control thread owns a Store and its Reservations.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>

namespace mg::seqstate {

struct Fingerprint {
  uint8_t bytes[32] = {};
  std::string hex() const;
  auto operator<=>(const Fingerprint&) const = default;
};
// Key material (key || salt) -> fingerprint. Domain-separated so that it matches no other hash of the key.
Fingerprint fingerprint(std::span<const uint8_t> keymat) noexcept;

// The last usable number of a sequence space: 2^32 - 1 without ESN, 2^64 - 1 with it.
inline constexpr uint64_t space_end(bool esn) noexcept { return esn ? UINT64_MAX : 0xffffffffull; }

// A state directory: one file per key, `<fingerprint hex>.seq`, plus a `.lock` that one process holds while it
// uses the key (two processes sending with one key would repeat IVs between them).
class Store {
 public:
  // `dir` must be an existing, readable and writable directory; with create_missing a missing one is made
  // (mode 0700) when its parent exists. Null with *err naming the directory and what is wrong.
  static std::unique_ptr<Store> open(const std::string& dir, bool create_missing, std::string* err);
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  // Claims the key for this process (kept until the Store dies; claiming again is a no-op) and reads its mark:
  // 0 for a key never seen. False with *err when another process holds the key, or the file cannot be read or
  // is corrupt: the numbers used before are then unknown and nothing is started lower than they may have been.
  bool load(const Fingerprint& fp, uint64_t* high, std::string* err);
  // Durably records `high` as the key's mark. Returns only once it is on disk. load() and save() are thread-safe.
  bool save(const Fingerprint& fp, uint64_t high, std::string* err);
  const std::string& dir() const noexcept { return dir_; }
  std::string path(const Fingerprint& fp) const;

 private:
  Store() = default;
  std::string dir_;
  int dir_fd_ = -1;
  std::mutex mu_;  // load() and save() may run on two threads (control and a writer)
  std::map<Fingerprint, int> locks_;  // claimed keys -> their lock file descriptors
};

// How far ahead numbers are reserved: about ahead_s of traffic at the observed rate, at least min_block, and at
// most max_block (without ESN a restart wastes up to one block of the 2^32 space: 4 Mi leaves room for > 1000).
struct Policy {
  uint64_t min_block = 64 * 1024;
  double ahead_s = 10;
  uint64_t max_block_32 = 4ull << 20;
  uint64_t max_block_64 = 1ull << 32;
};
uint64_t block_size(const Policy& p, double rate_per_s, bool esn) noexcept;

// One outbound SA's reservation, kept by control: begin() before the SA is used, poll() while it runs.
class Reservation {
 public:
  Reservation(Store& store, const Fingerprint& fp, bool esn, Policy p = {});
  // Reads the key's mark (*start: the SA continues after it) and durably reserves the first block (*limit: the
  // highest number the SA may use). With a space already used up, *limit == *start and nothing is written.
  bool begin(uint64_t* start, uint64_t* limit, std::string* err);
  enum class Poll : uint8_t { kNothing, kExtended, kError };
  // `used`: the SA's last number handed out, at time `now_s` (monotonic seconds). When fewer than half a block
  // remain below the limit, writes a new limit durably and returns kExtended with *limit set; the caller
  // publishes it to the workers only then. Found at the limit, the block is at least twice the last one.
  Poll poll(uint64_t used, double now_s, uint64_t* limit, std::string* err);
  // poll() in two steps, for a caller that writes on another thread (a slow disk must not stall its loop): plan()
  // says whether to extend and to what (no write); once store.save(key(), next) returned true, commit(next) makes
  // it the limit. plan() again before commit() plans the same extension anew.
  bool plan(uint64_t used, double now_s, uint64_t* next);
  void commit(uint64_t next) noexcept;
  uint64_t limit() const noexcept { return limit_; }
  double rate() const noexcept { return rate_; }
  const Fingerprint& key() const noexcept { return fp_; }

 private:
  Store& store_;
  Fingerprint fp_;
  bool esn_;
  Policy policy_;
  uint64_t limit_ = 0;
  uint64_t last_block_ = 0;
  uint64_t planned_block_ = 0;
  uint64_t sample_used_ = 0;
  double sample_t_ = -1;
  double rate_ = 0;  // numbers per second, decaying slowly, rising at once
};

}  // namespace mg::seqstate
