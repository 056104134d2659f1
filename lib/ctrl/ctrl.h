// mg::ctrl — the shared-memory control block between a running meshgate and its operators (meshgatectl, tests,
// later liveness detection). DESIGN.md "Control ring". Knows nothing of packets or DPDK: plain POSIX shm, C++
// atomics, no EAL, no hugepages.
//
// /dev/shm/meshgate.<gateway name>, mode 0600, created by the data plane (Block::create), opened by clients
// (Block::open). Layout (fixed size, versioned by kLayoutVersion):
//   Header    magic, layout version, size, owner pid, start time, state generation, counts
//   Ring      kRingSlots command cells. Producers (clients) serialise on a process-shared robust mutex, write a
//             cell and publish it with a release store of its sequence; a client killed at any point leaves
//             either nothing published or a whole command (the next producer repairs the tail). The single
//             consumer (the data plane's main lcore) never locks: it polls the next cell's sequence.
//   Replies   kReplySlots slots keyed by request id (id % kReplySlots); a reply nobody collects is simply
//             overwritten kReplySlots requests later.
//   Mirror    gateway totals, instance and tunnel records, per-worker counters, each record behind a sequence
//             counter (seqlock): one writer (main), readers copy and retry, never see a torn record.
//
// Thread-safety: any number of client processes/threads may submit and read at once; exactly one consumer
// (the process that created the block) calls poll()/reply()/the mirror writers.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "net/limits.h"

namespace mg::ctrl {

inline constexpr uint64_t kMagic = 0x6d65736867617465ull;  // "meshgate"
inline constexpr uint32_t kLayoutVersion = 1;
inline constexpr uint32_t kRingSlots = 64;      // power of two
inline constexpr uint32_t kReplySlots = 64;
inline constexpr uint32_t kMaxTunnels = mg::kMaxTunnels;      // net/limits.h: the product's limits
inline constexpr uint32_t kMaxInstances = mg::kMaxInstances;
inline constexpr uint32_t kMaxWorkers = mg::kMaxWorkers;
inline constexpr uint32_t kNameLen = 32;
inline constexpr uint32_t kMaxDropReasons = 32;  // data-plane reasons and ESP reasons each fit
inline constexpr uint32_t kMaxDeadlineMs = 24u * 3600 * 1000;
inline constexpr uint32_t kMaxWeight = 1000000;

enum class Op : uint16_t {
  kNop = 0,           // ping: replies with the generation
  kTunnelState = 1,   // target = tunnel, value = State, deadline_ms with kDrain
  kTunnelWeight = 2,  // target = tunnel, value = weight (0..kMaxWeight)
  kInstanceState = 3, // target = instance, value = State (maintenance = kDrain or kDown), deadline_ms with kDrain
  kInstanceReset = 4, // target = instance
  kMode = 5,          // value = Mode
  kClearCounters = 6,
  kCount
};
enum class State : uint32_t { kUp = 0, kDrain = 1, kDown = 2 };
enum class Mode : uint32_t { kActiveActive = 0, kActiveStandby = 1 };

// A command as it sits in the ring: plain data, fixed size. Every field is validated by the consumer.
struct Command {
  uint32_t version;       // kLayoutVersion
  uint32_t length;        // sizeof(Command)
  uint64_t request_id;    // from Block::next_request_id()
  uint16_t op;            // Op
  uint16_t flags;         // 0
  uint32_t target;
  uint32_t value;
  uint32_t deadline_ms;   // 0 = none
  uint8_t reserved[32];   // zero
};
static_assert(sizeof(Command) == 64);

enum class Status : uint32_t {
  kOk = 0,
  kBadVersion,
  kBadLength,
  kBadOp,
  kBadTarget,
  kBadValue,
  kRefused,     // valid but not applicable now (message says why), e.g. a reset that would reuse a key/IV pair
  kInternal,
};
const char* to_string(Status s) noexcept;

struct Reply {
  uint64_t request_id = 0;
  Status status = Status::kOk;
  uint64_t generation = 0;   // state generation after the command (unchanged on error)
  char message[112] = {};    // human-readable, NUL-terminated
};

enum class SubmitError { kOk, kFull, kNoGateway, kBadBlock };

// ---- mirror records (written by main, read by anyone) ----
struct GatewayInfo {
  char name[kNameLen];
  uint32_t mode;                 // Mode
  uint32_t n_tunnels, n_instances, n_workers;
  uint64_t generation;
  uint64_t inside_rx, inside_tx, outside_rx, outside_tx;
  uint64_t drops[kMaxDropReasons];       // data-plane reasons, names in drop_names
  char drop_names[kMaxDropReasons][24];
  uint64_t esp_drops[kMaxDropReasons];   // all SAs and pre-SA tables, names in esp_drop_names
  char esp_drop_names[kMaxDropReasons][24];
  uint64_t flows_new, moved_down, moved_drain, moved_idle, evicted;
  uint64_t commands_ok, commands_rejected, commands_abandoned;
  uint64_t updated_ns;           // CLOCK_REALTIME of the last mirror refresh
};

struct InstanceInfo {
  char name[kNameLen];
  char ip[48];
  uint32_t admin;                // State
  uint32_t standby;              // 1 = standby role
  uint32_t resets;
};

struct TunnelInfo {
  char name[kNameLen];
  char instance[kNameLen];
  char device[kNameLen];
  uint32_t instance_index;
  uint32_t admin;                // State: the tunnel's own
  uint32_t state;                // State: effective (with its instance's)
  uint32_t weight, effective_weight;
  uint32_t out_spi, in_spi;
  uint64_t packets_out, bytes_out, packets_in, bytes_in;
  uint64_t pinned, placed, moved_in;
  uint64_t esp_drops;
  uint64_t last_seq_out;
  // Liveness (appended; all zero when liveness is off for the tunnel).
  uint32_t liveness;             // 0 off, 1 up, 2 down, 3 holding (proof again, in hold-down), 4 suppressed (damped)
  uint32_t liveness_penalty;     // damping figure now
  int64_t last_proof_ms_ago;     // -1: no authenticated inbound packet yet
  uint64_t flaps;                // liveness up -> down verdicts
  uint64_t probes_out, probe_replies_in;  // liveness probes sent, replies to them received
  uint64_t reflected;            // reflector: echo requests answered on the tunnel
};

struct WorkerInfo {
  uint32_t lcore;
  uint64_t inside_rx, outside_rx, outside_tx, inside_tx;
};

class Block {
 public:
  // Data plane side. Refuses (nullptr, *err) when a block of that name exists and its owner pid is alive;
  // replaces a stale one. Mode 0600.
  static std::unique_ptr<Block> create(const std::string& gateway_name, std::string* err);
  // Client side. nullptr with *err and *code = kNoGateway when there is no block or its owner is dead;
  // kBadBlock when magic/version/size do not match.
  static std::unique_ptr<Block> open(const std::string& gateway_name, std::string* err, SubmitError* code);
  ~Block();  // the owner unlinks the file
  Block(const Block&) = delete;
  Block& operator=(const Block&) = delete;

  static std::string path_for(const std::string& gateway_name);  // "/dev/shm/meshgate.<name>"
  bool owner() const noexcept { return owner_; }
  int32_t owner_pid() const noexcept;
  bool owner_alive() const noexcept;

  // ---- client ----
  uint64_t next_request_id() noexcept;
  // Never blocks on the data plane: kFull at once when the ring has no free cell.
  SubmitError submit(const Command& c) noexcept;
  // Waits up to timeout_ms for the reply to request_id (polling); nullopt on timeout.
  std::optional<Reply> wait_reply(uint64_t request_id, uint32_t timeout_ms) const noexcept;
  // Convenience: fills version/length/request id, submits, waits. On a submit error returns nullopt and sets *e.
  // On a reply timeout returns nullopt with *e = kOk (owner alive: still busy) or kNoGateway (owner gone).
  // submit() also gives kFull when another client has held the producer lock for 500 ms (stopped mid-submit).
  std::optional<Reply> call(Op op, uint32_t target, uint32_t value, uint32_t deadline_ms, uint32_t timeout_ms,
                            SubmitError* e);

  // ---- consumer (owner) ----
  // Takes the next published command, if any. Also skips (and counts) nothing: unpublished cells are never seen.
  bool poll(Command* out) noexcept;
  void reply(const Reply& r) noexcept;

  // ---- mirror ----
  void write_gateway(const GatewayInfo& g) noexcept;
  void write_instance(uint32_t i, const InstanceInfo& r) noexcept;
  void write_tunnel(uint32_t t, const TunnelInfo& r) noexcept;
  void write_worker(uint32_t w, const WorkerInfo& r) noexcept;
  void set_generation(uint64_t g) noexcept;
  bool read_gateway(GatewayInfo* g) const noexcept;   // false if the writer kept it busy too long
  bool read_instance(uint32_t i, InstanceInfo* r) const noexcept;
  bool read_tunnel(uint32_t t, TunnelInfo* r) const noexcept;
  bool read_worker(uint32_t w, WorkerInfo* r) const noexcept;
  uint64_t generation() const noexcept;

  // ---- added for meshgatectl and tests ----
  uint32_t pending() const noexcept;         // commands published and not yet polled (approximate)
  uint64_t start_time_ns() const noexcept;   // CLOCK_REALTIME when the owner created the block
  // Fault injection: runs submit(c) up to a point and returns there without finishing (the producer mutex stays
  // held), leaving the block as a client killed at that point would. Only for a process that _exits right after.
  enum class SubmitStop { kLocked = 0, kWritten = 1, kPublished = 2 };
  void submit_partial(const Command& c, SubmitStop stop) noexcept;

  struct Layout;  // defined in ctrl.cpp

 private:
  Block() = default;
  Layout* mem_ = nullptr;
  size_t size_ = 0;
  bool owner_ = false;
  std::string path_;
};

struct Limits {
  uint32_t tunnels = 0, instances = 0;
};
Status validate(const Command& c, const Limits& l, std::string* why);

// Helpers for messages and tables.
void copy_name(char* dst, size_t cap, const std::string& s) noexcept;
// Gateway names are [A-Za-z0-9_-]{1,32}; path_for() returns "" for anything else.
bool valid_name(const std::string& gateway_name) noexcept;

}  // namespace mg::ctrl
