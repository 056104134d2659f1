// mg::ctrl — the shared-memory control block between a running meshgate and its operators (meshgatectl, tests,
// later liveness detection). docs/ARCHITECTURE.md "The control block". Knows nothing of packets or DPDK: plain POSIX shm, C++
// atomics, no EAL, no hugepages.
//
// /dev/shm/meshgate.<gateway name>, mode 0600, created by the data plane (Block::create), opened by clients
// (Block::open). Layout (fixed size, versioned by kLayoutVersion):
//   Header    magic, layout version, size, owner pid, start time, state generation, counts
//   Doorbell  a futex word beside the ring: the consumer may sleep on it (wait_command) instead of polling.
//   Ring      kRingSlots command cells. Producers (clients) serialise on a process-shared robust mutex, write a
//             cell and publish it with a release store of its sequence; a client killed at any point leaves
//             either nothing published or a whole command (the next producer repairs the tail). The single
//             consumer (the data plane's main lcore) never locks: it polls the next cell's sequence.
//   Replies   kReplySlots slots keyed by request id (id % kReplySlots); a reply nobody collects is simply
//             overwritten kReplySlots requests later.
//   Mirror    gateway totals, instance and tunnel records, per-worker counters, each record behind a sequence
//             counter (seqlock): one writer (main), readers copy and retry, never see a torn record. Counters
//             travel by name (GatewayInfo's name lists), so a counter the data plane adds reaches every reader
//             without a layout change or a new meshgatectl.
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
#include <string_view>
#include <vector>

#include "net/limits.h"

namespace mg::ctrl {

inline constexpr uint64_t kMagic = 0x6d65736867617465ull;  // "meshgate"
// 2: counters by name, doorbell; 3: SAs per tunnel; 4: SA age, ESN, encap; 5: port records (PortInfo, driver and
// worker counters by name), mbufs in use, SA cipher / replay window size / needs-rekey flag, and
// Command.client_pid/client_uid (the audit trail) out of reserved; 6: CounterHelp (what each named counter counts)
inline constexpr uint32_t kLayoutVersion = 6;
inline constexpr uint32_t kRingSlots = 64;      // power of two
inline constexpr uint32_t kReplySlots = 64;
inline constexpr uint32_t kMaxTunnels = mg::kMaxTunnels;      // net/limits.h: the product's limits
inline constexpr uint32_t kMaxInstances = mg::kMaxInstances;
inline constexpr uint32_t kMaxWorkers = mg::kMaxWorkers;
inline constexpr uint32_t kMaxPorts = 16;       // DPDK ports of one gateway in the mirror (more: the first ones)
inline constexpr uint32_t kNameLen = 32;
inline constexpr uint32_t kMaxDropReasons = 32;  // data-plane reasons and ESP reasons each fit
inline constexpr uint32_t kMaxDeadlineMs = 24u * 3600 * 1000;
inline constexpr uint32_t kMaxWeight = 1000000;
// Named counters per record kind (gateway, tunnel, worker). Room to grow: the data plane declares its counters in
// one table and may add some without a layout change, as long as they fit.
inline constexpr uint32_t kMaxCounters = 48;
inline constexpr uint32_t kCounterNameLen = 24;  // NUL-padded; a name of 24 characters has no NUL
inline constexpr uint32_t kCounterHelpLen = 112; // NUL-padded, truncated to fit

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

// A command as it sits in the ring: plain data, fixed size. Every field is validated by the consumer (validate()).
struct Command {
  uint32_t version;       // kLayoutVersion
  uint32_t length;        // sizeof(Command)
  uint64_t request_id;    // from Block::next_request_id()
  uint16_t op;            // Op
  uint16_t flags;         // 0
  uint32_t target;
  uint32_t value;
  uint32_t deadline_ms;   // 0 = none
  // Who sent it, for the audit line: claimed by the client (make_command fills in its getpid()/geteuid()), not
  // proven; only a process that may write the 0600 block (root or the gateway's user) can claim anything. Data,
  // not rules: validate() accepts any value.
  int32_t client_pid;
  uint32_t client_uid;
  uint8_t reserved[24];   // zero
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
};
const char* to_string(Status s) noexcept;

// A command for the ring: version and length filled, request_id 0 (Block::call sets it), flags/reserved zero,
// client_pid/client_uid this process's getpid()/geteuid().
Command make_command(Op op, uint32_t target, uint32_t value, uint32_t deadline_ms) noexcept;

// How many tunnels and instances the gateway has: the target range of a command.
struct Limits {
  uint32_t tunnels = 0, instances = 0;
};
// Every rule a command must satisfy before anything acts on it, in one place so that the data plane (which must
// reject anything a client could put in the ring) and meshgatectl (which checks before sending, so the operator
// gets a usage error rather than a refusal) cannot disagree. Rules, in order, with the Status of the first broken
// one: version (kBadVersion), length (kBadLength), opcode (kBadOp), flags and reserved bytes zero (kBadValue),
// target in range for tunnel and instance ops (kBadTarget), state 0..2, deadline only with a drain and at most
// kMaxDeadlineMs, weight at most kMaxWeight, mode 0..1 (kBadValue). On an error *why (if given) says what is
// wrong in words an operator can act on; on kOk it is cleared. Whether a valid command can be applied now (kRefused)
// is the data plane's call, not a rule of the command.
Status validate(const Command& c, const Limits& l, std::string* why);

struct Reply {
  uint64_t request_id = 0;
  Status status = Status::kOk;
  uint64_t generation = 0;   // state generation after the command (unchanged on error)
  char message[112] = {};    // human-readable, NUL-terminated
};

enum class SubmitError { kOk, kFull, kNoGateway, kBadBlock };

// ---- mirror records (written by main, read by anyone) ----
// Counter names are NUL-padded char[kCounterNameLen] rows; a record's counters[i] is the counter named by row i of
// the matching list in GatewayInfo. Only the first n_* rows are meaningful. No padding anywhere (layout.h checks),
// so a record read back compares equal byte for byte.
using CounterNames = char[kMaxCounters][kCounterNameLen];
// kCounterMonotonic: only goes up (but restarts from 0 at `clear counters` or a restart); kCounterGauge: may go down
// (pinned flows) or is a largest-seen figure.
inline constexpr uint8_t kCounterMonotonic = 0, kCounterGauge = 1;

struct GatewayInfo {
  char name[kNameLen];
  uint32_t mode;                 // Mode
  uint32_t n_tunnels, n_instances, n_workers;
  uint64_t generation;
  uint64_t updated_ns;           // CLOCK_REALTIME of the last mirror refresh
  uint64_t drops[kMaxDropReasons];       // data-plane reasons, names in drop_names
  char drop_names[kMaxDropReasons][24];
  uint64_t esp_drops[kMaxDropReasons];   // all SAs and pre-SA tables, names in esp_drop_names
  char esp_drop_names[kMaxDropReasons][24];
  // Gateway totals by name (inside_rx, flows_new, commands_ok, ...), and the names of the tunnel and worker
  // records' counters.
  uint32_t n_counters, n_tunnel_counters, n_worker_counters;
  uint32_t counters_reserved;    // 0
  uint64_t counters[kMaxCounters];
  CounterNames counter_names;
  CounterNames tunnel_counter_names;
  CounterNames worker_counter_names;
  // Ports (layout 5): how many PortInfo records, the names of their counters (the driver's, then the workers').
  uint32_t n_ports, n_port_counters;
  uint64_t mbufs_in_use;         // the packet pool's mbufs not in it now (rings, queues, workers)
  CounterNames port_counter_names;
  // The kind of each named counter, row for row (kCounterKind*): what a metrics exporter declares it as.
  uint8_t counter_kinds[kMaxCounters], tunnel_counter_kinds[kMaxCounters], worker_counter_kinds[kMaxCounters],
      port_counter_kinds[kMaxCounters];
};

// What each named counter counts, in words, row for row with GatewayInfo's name lists (a metrics exporter's HELP).
// Static: the data plane writes it once, with its first mirror refresh; a reader finds it empty before that.
struct CounterHelp {
  char gateway[kMaxCounters][kCounterHelpLen];
  char tunnel[kMaxCounters][kCounterHelpLen];
  char worker[kMaxCounters][kCounterHelpLen];
  char port[kMaxCounters][kCounterHelpLen];
};

struct InstanceInfo {
  char name[kNameLen];
  char ip[48];
  uint32_t admin;                // State
  uint32_t standby;              // 1 = standby role
  uint32_t resets;
};

// One SA of a tunnel (meshgatectl show sa). flags: bit 0 outbound, bit 1 extended sequence numbers, bit 2 ESP in
// UDP (NAT-T); bit 3 needs rekey (outbound: a packet found its sequence numbers or hard lifetime used up); bits
// 8..15 state (0 active, 1 replaced by a newer outbound SA and not yet deleted, 2 ended: its sequence numbers or
// hard lifetime ran out).
inline constexpr uint32_t kMaxSaRows = 4;
struct SaRow {
  uint32_t spi;
  uint32_t flags;
  uint64_t packets, bytes;
  uint64_t seq;                  // outbound: last number used; inbound: highest accepted
  int64_t age_ms;                // since its keying daemon installed it; -1: a static SA (from the file)
  char cipher[24];               // "aes-gcm-128", ... (NUL-padded)
  uint32_t window;               // inbound: replay window size in packets (its top is seq); outbound 0
  uint32_t reserved;             // 0
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
  // Liveness (all zero when liveness is off for the tunnel).
  uint32_t liveness;             // 0 off, 1 up, 2 down, 3 holding (proof again, in hold-down), 4 suppressed (damped)
  uint32_t liveness_penalty;     // damping figure now
  uint32_t reserved;             // 0
  int64_t last_proof_ms_ago;     // -1: no authenticated inbound packet yet
  uint64_t last_seq_out;
  uint32_t keying;               // 0 static keys (the file), 1 IKE (the keying interface)
  uint32_t n_sas;                // rows used in sas; more SAs than kMaxSaRows: the first ones
  SaRow sas[kMaxSaRows];
  uint64_t counters[kMaxCounters];  // names in GatewayInfo::tunnel_counter_names
};

// One DPDK port (meshgatectl show ports): counters[i] is named by GatewayInfo::port_counter_names row i: the
// driver's (ipackets, imissed, rx_nombuf, oerrors, ...: the largest values sampled, as a driver may zero them) and
// the workers' own per-port counts (rx_packets, tx_packets, tx_refused, to_host, from_host).
struct PortInfo {
  char name[kNameLen];
  char host[kNameLen];           // the port's kernel twin ("" none)
  uint32_t port_id;
  uint32_t reserved;             // 0
  uint64_t counters[kMaxCounters];
};

struct WorkerInfo {
  uint32_t lcore;
  uint32_t reserved;             // 0
  uint64_t counters[kMaxCounters];  // names in GatewayInfo::worker_counter_names
};

// Counter lookup by name in a name list of n rows (n is clamped to kMaxCounters: the mirror is another process's
// data). The index, or nullopt when the list has no such name.
std::optional<uint32_t> counter_index(const CounterNames& names, uint32_t n, std::string_view name) noexcept;
// The value of a named counter, 0 when the list does not carry it (an older or newer data plane).
uint64_t counter(const CounterNames& names, uint32_t n, const uint64_t* values, std::string_view name) noexcept;
uint64_t counter(const GatewayInfo& g, std::string_view name) noexcept;
uint64_t counter(const GatewayInfo& g, const TunnelInfo& t, std::string_view name) noexcept;
uint64_t counter(const GatewayInfo& g, const WorkerInfo& w, std::string_view name) noexcept;
uint64_t counter(const GatewayInfo& g, const PortInfo& p, std::string_view name) noexcept;
// A name of row i as a string (without the NUL padding); "" past n.
std::string counter_name(const CounterNames& names, uint32_t n, uint32_t i);
// Writer side: appends a name to a list (truncated to kCounterNameLen); its index, or nullopt when the list is full.
std::optional<uint32_t> add_counter_name(CounterNames& names, uint32_t* n, std::string_view name) noexcept;

class Block {
 public:
  // Data plane side. Refuses (nullptr, *err) when a block of that name exists and its owner pid is alive, or when
  // the file there is not one it could have made (another uid, a mode other than 0600: someone else's, named with
  // owner and mode in *err); replaces a stale one of its own. Mode 0600.
  static std::unique_ptr<Block> create(const std::string& gateway_name, std::string* err);
  // Client side. nullptr with *err and *code = kNoGateway when there is no block or its owner is dead;
  // kBadBlock when magic/version/size do not match, or when the block is not to be trusted: owned by neither root
  // nor the caller, or writable by group or others (anyone could have written its mirror and replies).
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
  // Sleeps until a command is there to poll, so an idle consumer costs no CPU (rather than polling every few
  // microseconds). True at once when a published command is waiting; otherwise sleeps on the doorbell (a futex in
  // the block, rung by submit() after publishing) for up to timeout_us; returns whether a command is pending.
  // Producers make the wake syscall only while the consumer sleeps. A producer killed between publishing and
  // ringing leaves its command to be seen at the timeout, so callers keep a bounded timeout.
  bool wait_command(uint32_t timeout_us) noexcept;
  void reply(const Reply& r) noexcept;

  // ---- mirror ----
  void write_gateway(const GatewayInfo& g) noexcept;
  void write_instance(uint32_t i, const InstanceInfo& r) noexcept;
  void write_tunnel(uint32_t t, const TunnelInfo& r) noexcept;
  void write_worker(uint32_t w, const WorkerInfo& r) noexcept;
  void write_port(uint32_t p, const PortInfo& r) noexcept;
  void write_counter_help(const CounterHelp& h) noexcept;
  bool has_counter_help() const noexcept;  // written once
  void set_generation(uint64_t g) noexcept;
  bool read_gateway(GatewayInfo* g) const noexcept;   // false if the writer kept it busy too long
  bool read_instance(uint32_t i, InstanceInfo* r) const noexcept;
  bool read_tunnel(uint32_t t, TunnelInfo* r) const noexcept;
  bool read_worker(uint32_t w, WorkerInfo* r) const noexcept;
  bool read_port(uint32_t p, PortInfo* r) const noexcept;
  bool read_counter_help(CounterHelp* h) const noexcept;  // all empty rows until the data plane wrote it
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

// Helpers for messages and tables.
void copy_name(char* dst, size_t cap, const std::string& s) noexcept;
// Gateway names are [A-Za-z0-9_-]{1,32}; path_for() returns "" for anything else.
bool valid_name(const std::string& gateway_name) noexcept;

}  // namespace mg::ctrl
