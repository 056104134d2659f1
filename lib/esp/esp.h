// mg::esp — tunnel-mode ESP (RFC 4303) over rte_mbuf bursts: SAs, encapsulation, decapsulation, sequence
// numbers with ESN, and the anti-replay window.
//
// Packets are L3: an outbound burst takes mbufs whose data starts at the inner IPv4/IPv6 header and leaves
// them starting at the outer header; an inbound burst takes the outer header and leaves the inner packet.
// L2 is the caller's. Mbufs must be one segment (chained ones are dropped with a reason).
//
// NAT traversal (RFC 3948) is per SA, fixed when it is created: an SA with Encap::kUdp sends ESP in UDP (ports from
// its config; UDP checksum 0 over IPv4 as 2.1 says, computed over IPv6 where RFC 8200 8.1 requires one) and accepts
// only ESP in UDP to its port; an SA without accepts only raw ESP. Inbound, net::classify_outer decides what a
// datagram is: UDP to 4500 (or another SA's port) is ESP when its first 4 bytes are not zero, a NAT-keepalive
// (one 0xFF byte) is counted and dropped, IKE (UDP 500, the zero non-ESP marker) is for the host. The UDP checksum
// of received ESP is not verified: the ICV covers the ESP packet, and 2.1 tells receivers not to rely on it.
//
// Burst contract (as DPDK's rte_ipsec): f(..., pkts, n) returns k, the number that succeeded; pkts[0..k)
// are those, in their original order, and pkts[k..n) the failed ones, which the caller frees. Every failure
// is counted under one Drop reason in the SA's (or the table's) per-worker counters.
//
// Threads: an outbound SA may be used by any number of workers at once (sequence numbers are reserved per
// burst with one atomic compare-and-swap that saturates at the SA's limit and at the end of its space). So may
// an inbound SA: its replay window is lock-free and exact with several writers (a pre-check before the crypto, an atomic test-and-set commit after the ICV verified), so a number is
// accepted once whichever worker gets its copies, in any port and queue configuration. RSS on the outer header
// still keeps an SA on one worker and its window in one core's cache. Counters are per worker (index `worker` <
// max_workers given at creation), read by anyone.
// An Sa owns its key; destroying it wipes the key and every expanded key schedule.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "crypto/aead.h"
#include "net/local.h"
#include "net/net.h"
#include "net/outer_policy.h"

struct rte_mbuf;

namespace mg::esp {

enum class Drop : uint8_t {
  // outbound
  kOutChained,       // multi-segment mbuf
  kOutBadInner,      // not an IPv4/IPv6 packet, or shorter than its header
  kOutNoHeadroom,    // no room to prepend outer header + ESP header + IV
  kOutNoTailroom,    // no room for padding, trailer and ICV
  kOutTooBig,        // outer datagram would exceed 65535 bytes
  kOutSeqOverflow,   // the sequence number would cycle (32-bit, or 64-bit with ESN): the SA needs a rekey
  kOutSeqUnreserved, // past the numbers control has durably reserved (set_seq_limit): it has not caught up yet
  // inbound, before an SA is known
  kInChained,
  kInTruncated,      // shorter than an IP header
  kInBadOuter,       // bad version, IHL, length or extension header chain; UDP header cut or length wrong
  kInFragment,       // outer fragment (reassembly is not done here)
  kInNotEsp,         // neither protocol 50 nor ESP in UDP to a NAT-T port (net::OuterKind::kOther)
  kInNatKeepalive,   // RFC 3948 2.3 NAT-keepalive (one 0xFF byte in UDP to a NAT-T port): counted, not an error
  kInIke,            // IKE (UDP 500, or the zero non-ESP marker on a NAT-T port): the host's, not ESP; a caller
                     // that takes host packets (decap_burst's HostList) gets them instead of this count
  kInZeroSpi,
  kInUnknownSpi,
  // inbound, SA known
  kInEncapMismatch,  // raw ESP for an SA that expects ESP in UDP, or ESP in UDP for one that expects raw ESP
  kInUdpPort,        // ESP in UDP to another port than the SA's
  kInRunt,           // shorter than ESP header + IV + trailer + ICV: dropped before any crypto
  kInSeqZero,        // sequence number 0 is never sent
  kInReplay,         // already seen
  kInTooOld,         // left of the replay window
  kInAuth,           // ICV did not verify
  kInBadPadLen,      // pad length runs beyond the payload
  kInBadPadding,     // padding bytes are not 1, 2, 3, ...
  kInDummy,          // next header 59: dummy packet (RFC 4303 2.6), dropped silently
  kInBadNextHeader,  // next header other than 4 (IPv4) or 41 (IPv6)
  kInBadInner,       // inner header invalid, of the other IP version, or longer than the payload
  kInCeNotEct,       // outer marked CE over an inner Not-ECT packet: RFC 6040 4.2 says drop (the mark cannot pass)
  kCount
};
inline constexpr size_t kDropCount = size_t(Drop::kCount);
const char* to_string(Drop d) noexcept;

enum class Direction : uint8_t { kOutbound, kInbound };
// Declared in lib/net so that lib/config can name them without this header (and DPDK).
using DfPolicy = net::DfPolicy;      // outer IPv4 DF bit
using DscpPolicy = net::DscpPolicy;  // outer TOS / traffic class

struct SaConfig {
  uint32_t spi = 0;
  crypto::Cipher cipher = crypto::Cipher::kAesGcm128;
  crypto::Engine engine = crypto::Engine::kIpsecMb;
  std::vector<uint8_t> keymat;  // key || 4-byte salt; wiped by Sa::create
  bool esn = false;
  uint32_t replay_window = 1024;  // inbound: power of two in [64, 65536]
  // Outbound tunnel endpoints (both the same IP version). Inbound SAs keep them for reporting only.
  net::IpAddr outer_src, outer_dst;
  uint8_t ttl = 64;
  DscpPolicy dscp_policy = DscpPolicy::kCopy;
  uint8_t tos = 0;  // used with DscpPolicy::kSet
  DfPolicy df = DfPolicy::kCopy;
  uint32_t user_id = 0;  // caller's tag (tunnel id), stored in mbuf->hash.usr by inbound bursts
  // ESP in UDP (RFC 3948), with the ports of this SA's packets as they are on the wire: outbound ours -> the
  // peer's, inbound the peer's -> ours. Inbound checks only the destination (ours): a NAT may change the source.
  net::Encap encap = net::Encap::kNone;
  uint16_t udp_sport = net::kNatTPort;
  uint16_t udp_dport = net::kNatTPort;
};

// Where a spec may take its key from besides its own text, and what it did.
struct SpecInputs {
  int stdin_fd = -1;          // key=- reads one key from here to its end; -1: key=- is refused
  bool stdin_taken = false;   // set by the spec that read it (a second key=- is refused)
  bool key_in_spec = false;   // set when a key was written in the spec itself (on a command line: visible to all)
};

// Validates and normalises an SA spec string, the syntax of the gateway config and meshgate-esp:
//   spi=0x1001,cipher=aes-gcm-128,key=<hex key+salt>|key=-|key_file=PATH,src=192.0.2.1,dst=198.51.100.1[,esn=1]
//   [,window=1024][,engine=ipsecmb|sodium][,ttl=64][,df=copy|set|clear][,dscp=copy|<0-63>]
//   [,encap=none|udp][,sport=4500][,dport=4500]   (ports only with encap=udp; 1..65535, not 500)
// key_file and key=- hold hex text or the raw bytes, read with crypto::read_key_file / read_key_stream (the
// gateway's checks: regular file, owner, mode 0600/0400, size). Returns false with a message naming the field on
// any error.
bool parse_sa_spec(const std::string& spec, SaConfig* out, std::string* err, SpecInputs* in = nullptr);

struct alignas(64) SaCounters {
  uint64_t packets;
  uint64_t bytes;  // inner bytes
  uint64_t drops[kDropCount];
};

struct SaStats {
  uint64_t packets = 0, bytes = 0;
  uint64_t drops[kDropCount] = {};
  uint64_t total_drops() const noexcept;
};

// The anti-replay window of RFC 4303 3.4.3 with the ESN inference of Appendix A2, exact and lock-free with any
// number of concurrent writers. A ring of atomic 64-bit words, each {generation tag, 32-bit bitmap} of one block of
// 32 numbers; `top` (the highest authenticated number) is an atomic max. check() is the pre-check before the
// crypto; check_and_update() is the authoritative test-and-set, one CAS on the number's word (plus one on `top`
// when it moves): of several copies of a number, however they race, exactly one gets kOk. One or two atomics per
// packet. Limit (ESN only): a slot left without any packet for 2^40 or more numbers reads as too old.
class ReplayWindow {
 public:
  enum class Result : uint8_t { kOk, kZero, kReplay, kTooOld };
  explicit ReplayWindow(uint32_t size);  // power of two in [64, 65536]; checked by the caller
  ReplayWindow(const ReplayWindow&) = delete;
  ReplayWindow& operator=(const ReplayWindow&) = delete;
  // Full 64-bit number for a received low half, from one reading of `top`. False when it lies before sequence
  // number 1. A guess made stale by a concurrent move is caught by the ICV (the high half is in the AAD) or by
  // check_and_update().
  bool infer_esn(uint32_t seq_lo, uint64_t* seq) const noexcept;
  Result check(uint64_t seq) const noexcept;
  // Check again and record; the caller does this only after the ICV verified.
  Result check_and_update(uint64_t seq) noexcept;
  uint64_t top() const noexcept { return top_.load(std::memory_order_relaxed); }
  uint32_t size() const noexcept { return size_; }
  // Becomes a copy of `o` (same size, else false). Neither window may be in use by a worker meanwhile.
  bool assign(const ReplayWindow& o) noexcept;

 private:
  std::atomic<uint64_t> top_{0};
  uint32_t size_;
  uint32_t mask_;   // ring words - 1
  uint32_t shift_;  // log2(ring words): block >> shift_ is the generation
  std::unique_ptr<std::atomic<uint64_t>[]> words_;
};

// The hot, read-only part of an SA: what a burst needs, in one cache line.
struct alignas(64) SaRuntime {
  static constexpr uint8_t kOuterV6 = 1, kDscpCopy = 2, kDfCopy = 4;  // flags
  const crypto::AeadCtx* aead;
  uint32_t spi;  // host order
  uint8_t esn;
  uint8_t encap;    // net::Encap
  uint8_t hdr_len;  // outbound: outer IP header + UDP header if any: 20, 28, 40 or 48
  uint8_t flags;    // outbound
  union {
    // Outbound: outer IP header, then the UDP header (checksum 0) with ESP in UDP; lengths, IPv4 id and checksum
    // and the IPv6 UDP checksum are filled per packet. The IPv4 checksum field holds the folded sum of the rest of
    // the template, so per packet only the changes are added; keeping it there rather than in a field of its own
    // is what lets the UDP header fit the cache line.
    uint8_t tmpl[48];
    struct {
      uint32_t user_id;
      uint16_t udp_port;  // ESP in UDP: the destination port this SA's packets must arrive on (host order)
    } in;  // inbound
  };
};
static_assert(sizeof(SaRuntime) == 64);  // one cache line per SA on the hot path
static_assert(std::is_trivially_copyable_v<SaRuntime>);

class Sa {
 public:
  // Null with *err set on an invalid config. cfg.keymat is wiped either way.
  static std::unique_ptr<Sa> create(SaConfig& cfg, Direction dir, uint16_t max_workers, std::string* err);
  ~Sa();
  Sa(const Sa&) = delete;
  Sa& operator=(const Sa&) = delete;

  uint32_t spi() const noexcept { return rt_.spi; }
  Direction direction() const noexcept { return dir_; }
  const SaConfig& config() const noexcept { return cfg_; }  // keymat is empty here
  uint16_t max_workers() const noexcept { return max_workers_; }

  // Outbound: the last sequence number handed out (0 before the first packet).
  uint64_t last_seq() const noexcept { return seq_.load(std::memory_order_relaxed); }
  // Outbound: continue after `seq` (for a reset that keeps the key; never lower it).
  bool resume_after(uint64_t seq) noexcept;
  // Outbound: a packet was refused because the sequence number would cycle (2^32 - 1 without ESN, 2^64 - 1
  // with it, are the last numbers sent).
  bool needs_rekey() const noexcept { return needs_rekey_.load(std::memory_order_relaxed); }
  // Outbound: no number above `limit` is handed out (such packets drop as kOutSeqUnreserved) until it is raised.
  // Control raises it only once the new limit is durable, so a restart never reuses a number (lib/seqstate).
  // Without a call there is no limit.
  void set_seq_limit(uint64_t limit) noexcept { limit_.store(limit, std::memory_order_release); }
  uint64_t seq_limit() const noexcept { return limit_.load(std::memory_order_relaxed); }
  // Outbound: the last number this SA may ever use, below the end of its space (a hard packet lifetime from the
  // keying daemon): past it, packets drop as kOutSeqOverflow and needs_rekey() is set, exactly as at 2^32 - 1.
  // It can only come down.
  void set_seq_end(uint64_t last) noexcept;
  uint64_t seq_end() const noexcept { return end_.load(std::memory_order_relaxed); }
  // Inbound: the replay window (any number of workers may decap this SA at once).
  const ReplayWindow& replay() const noexcept { return replay_; }
  // Inbound, control side, while no worker can reach either SA: carry the window of the SA this one replaces
  // (same key), so packets accepted before a reset cannot be replayed after it. False if the sizes differ.
  bool adopt_replay(const Sa& old);

  SaStats stats() const noexcept;
  const SaCounters& counters(uint16_t worker) const noexcept { return counters_[worker]; }
  void clear_counters() noexcept;

 private:
  Sa(const SaConfig& cfg, Direction dir, uint16_t max_workers);
  friend uint16_t encap_burst(Sa&, uint16_t, rte_mbuf**, uint16_t) noexcept;
  friend struct DecapAccess;

  SaRuntime rt_;
  alignas(64) std::atomic<uint64_t> seq_{0};
  std::atomic<uint64_t> limit_{UINT64_MAX};
  std::atomic<uint64_t> end_{UINT64_MAX};  // set from the ESN flag at creation
  std::atomic<bool> needs_rekey_{false};
  alignas(64) ReplayWindow replay_;
  SaCounters* counters_ = nullptr;
  uint16_t max_workers_;
  Direction dir_;
  SaConfig cfg_;
  crypto::AeadPtr aead_;
};

// Inbound SAs by SPI: an immutable open-addressing table (a few to a few thousand SAs, looked up once per
// packet; a flat array beats a general hash here). Holds non-owning pointers; the SAs must outlive it.
// Counts the drops that happen before an SA is known, per worker.
class SaTable {
 public:
  // Null with *err on a duplicate or zero SPI, or an outbound SA.
  static std::unique_ptr<SaTable> build(std::span<Sa* const> sas, uint16_t max_workers, std::string* err);
  ~SaTable();
  Sa* find(uint32_t spi) const noexcept {
    for (uint32_t i = hash(spi) & mask_;; i = (i + 1) & mask_) {
      const Slot& s = slots_[i];
      if (s.spi == spi) return s.sa;
      if (s.sa == nullptr) return nullptr;
    }
  }
  SaStats stats() const noexcept;  // pre-SA drops only
  uint64_t* drops(uint16_t worker) noexcept { return counters_[worker].drops; }
  uint16_t max_workers() const noexcept { return max_workers_; }
  // Whether UDP to `port` may carry ESP: 4500, and the port of each of its SAs with ESP in UDP.
  bool nat_t_port(uint16_t port) const noexcept {
    return port == net::kNatTPort || (ports_ && (ports_[port >> 6] >> (port & 63) & 1));
  }

 private:
  struct Slot {
    uint32_t spi;
    Sa* sa;
  };
  static uint32_t hash(uint32_t spi) noexcept { return (spi * 0x9e3779b1u) >> 8; }
  SaTable() = default;
  std::vector<Slot> slots_;
  uint32_t mask_ = 0;
  SaCounters* counters_ = nullptr;
  uint16_t max_workers_ = 0;
  std::unique_ptr<uint64_t[]> ports_;  // bitmap of NAT-T ports other than 4500; null when there is none
};

// Outbound: encrypts pkts[0..n) with `sa` (ESP tunnel mode). Sequence numbers from 1; IV = the 64-bit
// sequence number; padding 1, 2, 3, ... to 4-byte alignment; next header 4 or 41.
uint16_t encap_burst(Sa& sa, uint16_t worker, rte_mbuf* pkts[], uint16_t n) noexcept;

// Where an inbound burst puts the packets that are the host's instead of counting them as drops: IKE
// (net::OuterKind::kIke, else kInIke) and, with `local`, what net::host_bound says is the host's (ICMP to the
// instance, ND, UDP fragments; else kInNotEsp / kInFragment). pkts must have room for the burst's n; n is set to
// how many were put there, in arrival order.
struct HostList {
  rte_mbuf** pkts;
  uint16_t n = 0;
  const net::LocalAddrs* local = nullptr;
};

// Inbound through a table: outer checks, SPI lookup, replay, ICV, trailer and inner checks.
// On success mbuf->hash.usr holds the SA's user_id. With `host`, host packets leave pkts: pkts[0..k) are the
// decapsulated ones and pkts[k..n - host->n) the failed ones.
uint16_t decap_burst(SaTable& table, uint16_t worker, rte_mbuf* pkts[], uint16_t n,
                     HostList* host = nullptr) noexcept;

// Inbound for one SA (packets with another SPI are dropped as unknown SPI and counted on `sa`).
uint16_t decap_burst(Sa& sa, uint16_t worker, rte_mbuf* pkts[], uint16_t n) noexcept;

// Largest ESP overhead: outer IPv6 + UDP + ESP header + IV + at most 3 pad + 2 trailer + ICV.
inline constexpr uint32_t kMaxOverhead = 40 + 8 + 8 + 8 + 3 + 2 + 16;

}  // namespace mg::esp
