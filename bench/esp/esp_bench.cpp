// esp_bench — ESP encap/decap per packet next to the raw AEAD call, per cipher, engine and inner size.
//
// What is measured (all on one lcore, bursts of 32, one SA, IPv4 outer, no ESN, worker 0):
//   sbs/<cipher>/<engine>/<size>     all four steps below in the same iterations, each timed on its own:
//                                    the figures for the ratios (see bm_side_by_side)
//   encap/<cipher>/<engine>/<size>   esp::encap_burst on 32 inner IPv4/UDP packets of <size> bytes
//   decap/<cipher>/<engine>/<size>   esp::decap_burst (through an SaTable) on the 32 ESP packets
//   seal/<cipher>/<engine>/<size>    crypto::seal_burst alone, on the same 32 mbuf buffers, with the payload
//                                    length, AAD length and IV that encap gives the AEAD (inner + pad + 2)
//   open/<cipher>/<engine>/<size>    crypto::open_burst alone, likewise (every ICV verifies)
//   encap_loop/...                   cross-check of encap with ordinary (not manual) timing, see below
//   baseline/clock                   the cost of the timer itself: an empty timed region per burst
//
// How every iteration gets valid input without copies or PauseTiming: the operations undo each other.
// Encap turns the 32 inner packets into ESP packets with fresh sequence numbers; decap turns them back into
// the very same inner packets (same data_off, same length). Seal turns plaintext into valid
// ciphertext + ICV; open turns it back. So each benchmark runs a two-step cycle on the same 32 mbufs,
// times only its own step with steady_clock (UseManualTime) and runs the partner step untimed:
//   encap: [encap] decap     decap: encap [decap]     seal: [seal] open     open: seal [open]
// The partner also checks the work: decap fails on any wrong byte, open on any wrong ICV, and the replay
// window sees strictly new sequence numbers every time. Data is hot in L1/L2 for both steps alike, as it
// is for a worker that encrypts what it has just received. The timed region costs one clock read more
// than the work; baseline/clock shows how much (per burst; divide by 32 per packet). It is the same for
// every benchmark, so it cancels in "encap - seal" and in the ratios.
//
// Counters: ns_per_pkt and Mpps of the timed step (also items_per_second and bytes_per_second of inner
// bytes). bench/esp/ratios.py reads --benchmark_format=json and prints the ratios.
#include <benchmark/benchmark.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <sched.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "crypto/aead.h"
#include "esp/esp.h"
#include "net/net.h"

namespace {

using namespace mg;
using Clock = std::chrono::steady_clock;

constexpr uint16_t kBurst = 32;
constexpr uint32_t kSpi = 0x1001;
constexpr uint32_t kSizes[] = {64, 512, 1420};

struct Variant {
  crypto::Cipher cipher;
  crypto::Engine engine;
};
constexpr Variant kVariants[] = {
    {crypto::Cipher::kAesGcm128, crypto::Engine::kIpsecMb},
    {crypto::Cipher::kAesGcm256, crypto::Engine::kIpsecMb},
    {crypto::Cipher::kChacha20Poly1305, crypto::Engine::kIpsecMb},
    {crypto::Cipher::kChacha20Poly1305, crypto::Engine::kSodium},
};

rte_mempool* g_pool = nullptr;

void init_eal() {
  const char* argv[] = {"esp_bench", "--no-huge", "-m", "512", "--no-pci", "--no-shconf",
                        "--log-level=lib.eal:error", "--no-telemetry"};
  int argc = int(sizeof(argv) / sizeof(argv[0]));
  if (rte_eal_init(argc, const_cast<char**>(argv)) < 0) {
    std::fprintf(stderr, "rte_eal_init failed: %s\n", rte_strerror(rte_errno));
    std::exit(1);
  }
  g_pool = rte_pktmbuf_pool_create("esp_bench_pool", 1023, 0, 0, RTE_MBUF_DEFAULT_BUF_SIZE, SOCKET_ID_ANY);
  if (g_pool == nullptr) {
    std::fprintf(stderr, "mempool: %s\n", rte_strerror(rte_errno));
    std::exit(1);
  }
}

// A full IPv4/UDP packet of `size` bytes (header checksum valid, DF set, payload pattern by `salt`).
std::vector<uint8_t> inner_packet(uint32_t size, uint32_t salt) {
  std::vector<uint8_t> p(size);
  p[0] = 0x45;
  net::store_be16(&p[2], uint16_t(size));
  net::store_be16(&p[4], uint16_t(salt));
  p[6] = 0x40;  // DF
  p[8] = 64;
  p[9] = net::kProtoUdp;
  net::store_be32(&p[12], 0x0a000001 + salt);
  net::store_be32(&p[16], 0x0a800001);
  net::store_be16(&p[10], net::ipv4_header_checksum(p.data(), 20));
  uint8_t* u = p.data() + 20;
  net::store_be16(u, uint16_t(10000 + salt));
  net::store_be16(u + 2, 5001);
  net::store_be16(u + 4, uint16_t(size - 20));
  for (uint32_t i = 28; i < size; ++i) p[i] = uint8_t(i * 7 + salt);
  return p;
}

std::vector<uint8_t> keymat(crypto::Cipher c) {
  std::vector<uint8_t> k(crypto::key_len(c) + crypto::kSaltLen);
  for (size_t i = 0; i < k.size(); ++i) k[i] = uint8_t(0x40 + i * 3);
  return k;
}

// ESP payload length that encap hands to the AEAD for an inner packet of `ilen` bytes.
constexpr uint32_t esp_payload_len(uint32_t ilen) { return ilen + ((4 - ((ilen + 2) & 3)) & 3) + 2; }

// 32 mbufs holding inner packets, a matched outbound/inbound SA pair, and raw AEAD ops on the same buffers.
struct Fixture {
  Variant v;
  uint32_t size;
  std::array<rte_mbuf*, kBurst> m{};
  std::unique_ptr<esp::Sa> out, in;
  std::unique_ptr<esp::SaTable> table;
  crypto::AeadPtr aead;  // a context of its own for the raw calls (same cipher, engine, key)
  std::array<crypto::AeadOp, kBurst> ops{};
  uint8_t aad[kBurst][8];
  std::vector<std::vector<uint8_t>> inner;
  std::string err;

  Fixture(Variant var, uint32_t sz) : v(var), size(sz) {
    for (uint16_t i = 0; i < kBurst; ++i) {
      m[i] = rte_pktmbuf_alloc(g_pool);
      if (m[i] == nullptr) {
        err = "mbuf alloc";
        return;
      }
      inner.push_back(inner_packet(size, i));
      std::memcpy(rte_pktmbuf_append(m[i], uint16_t(size)), inner[i].data(), size);
    }
    for (esp::Direction d : {esp::Direction::kOutbound, esp::Direction::kInbound}) {
      esp::SaConfig c;
      c.spi = kSpi;
      c.cipher = v.cipher;
      c.engine = v.engine;
      c.keymat = keymat(v.cipher);
      c.replay_window = 1024;
      net::parse_ip("192.0.2.1", &c.outer_src);
      net::parse_ip("198.51.100.7", &c.outer_dst);
      c.user_id = 7;
      auto sa = esp::Sa::create(c, d, 1, &err);
      if (!sa) return;
      (d == esp::Direction::kOutbound ? out : in) = std::move(sa);
    }
    esp::Sa* ins[] = {in.get()};
    table = esp::SaTable::build(ins, 1, &err);
    if (!table) return;
    const std::vector<uint8_t> k = keymat(v.cipher);
    aead = crypto::make_aead(v.cipher, v.engine, k, &err);
    if (!aead) return;
    // Raw ops: the layout encap produces (ciphertext right after ESP header + IV, ICV behind it).
    const uint32_t plen = esp_payload_len(size);
    const uint32_t head = 20 + 8 + crypto::kIvLen;
    for (uint16_t i = 0; i < kBurst; ++i) {
      if (rte_pktmbuf_headroom(m[i]) < head || rte_pktmbuf_tailroom(m[i]) < plen - size + crypto::kIcvLen) {
        err = "mbuf too small";
        return;
      }
      crypto::AeadOp& o = ops[i];
      net::store_be32(aad[i], kSpi);
      net::store_be32(aad[i] + 4, i + 1);
      o.aad = aad[i];
      o.aad_len = 8;
      net::store_be64(o.iv, i + 1);
      o.data = rte_pktmbuf_mtod(m[i], uint8_t*);  // encap moves the start back by `head`; same lines
      o.len = plen;
      o.icv = o.data + plen;
    }
    // One round trip to prove the pair works and leaves the inner bytes as they were.
    if (esp::encap_burst(*out, 0, m.data(), kBurst) != kBurst ||
        esp::decap_burst(*table, 0, m.data(), kBurst) != kBurst) {
      err = "encap/decap round trip failed";
      return;
    }
    for (uint16_t i = 0; i < kBurst; ++i) {
      if (rte_pktmbuf_pkt_len(m[i]) != size ||
          std::memcmp(rte_pktmbuf_mtod(m[i], uint8_t*), inner[i].data(), size) != 0) {
        err = "round trip changed the inner packet";
        return;
      }
    }
    crypto::seal_burst(*aead, ops.data(), kBurst);
    if (crypto::open_burst(*aead, ops.data(), kBurst) != kBurst) {
      err = "raw seal/open round trip failed";
      return;
    }
  }
  ~Fixture() {
    for (rte_mbuf* p : m)
      if (p != nullptr) rte_pktmbuf_free(p);
  }
  bool ok() const { return err.empty(); }

  // The steps of the cycles. Each returns false when a packet failed.
  bool encap() { return esp::encap_burst(*out, 0, m.data(), kBurst) == kBurst; }
  bool decap() { return esp::decap_burst(*table, 0, m.data(), kBurst) == kBurst; }
  bool seal() {
    crypto::seal_burst(*aead, ops.data(), kBurst);
    return true;
  }
  bool open() { return crypto::open_burst(*aead, ops.data(), kBurst) == kBurst; }
};

enum class Op { kEncap, kDecap, kSeal, kOpen };
const char* op_name(Op op) {
  switch (op) {
    case Op::kEncap: return "encap";
    case Op::kDecap: return "decap";
    case Op::kSeal: return "seal";
    case Op::kOpen: return "open";
  }
  return "?";
}

void set_counters(benchmark::State& state, uint32_t size, double timed_ns) {
  const double pkts = double(state.iterations()) * kBurst;
  state.SetItemsProcessed(int64_t(pkts));
  state.SetBytesProcessed(int64_t(pkts * size));
  if (pkts > 0 && timed_ns > 0) {
    state.counters["ns_per_pkt"] = timed_ns / pkts;
    state.counters["Mpps"] = pkts * 1e3 / timed_ns;
  }
}

// Timed step + untimed partner step that restores the input (see the top of the file).
void bm_cycle(benchmark::State& state, Variant v, uint32_t size, Op op) {
  Fixture f(v, size);
  if (!f.ok()) {
    state.SkipWithError(f.err.c_str());
    return;
  }
  using Step = bool (Fixture::*)();
  Step timed, partner;
  bool timed_first;
  switch (op) {
    case Op::kEncap: timed = &Fixture::encap, partner = &Fixture::decap, timed_first = true; break;
    case Op::kDecap: timed = &Fixture::decap, partner = &Fixture::encap, timed_first = false; break;
    case Op::kSeal: timed = &Fixture::seal, partner = &Fixture::open, timed_first = true; break;
    default: timed = &Fixture::open, partner = &Fixture::seal, timed_first = false; break;
  }
  double timed_ns = 0;
  for (auto _ : state) {
    if (!timed_first && !(f.*partner)()) {
      state.SkipWithError("untimed step failed");
      break;
    }
    const auto t0 = Clock::now();
    const bool ok = (f.*timed)();
    const auto t1 = Clock::now();
    benchmark::ClobberMemory();
    const double ns = double(std::chrono::duration_cast<std::chrono::nanoseconds>(t1 - t0).count());
    timed_ns += ns;
    state.SetIterationTime(ns * 1e-9);
    if (!ok) {
      state.SkipWithError("timed step failed");
      break;
    }
    if (timed_first && !(f.*partner)()) {
      state.SkipWithError("untimed step failed");
      break;
    }
  }
  set_counters(state, size, timed_ns);
}

// Side by side: every iteration runs the whole cycle encap -> decap -> seal -> open on the same 32 mbufs
// and times each step on its own, so all four see the same moment of a shared, noisy machine. The
// manual time is the whole cycle; the counters give each step per packet: <op>_ns from the median burst
// (robust against a preempted iteration), <op>_mean_ns from the mean, and <op>_Mpps = 1e3 / <op>_ns.
// These are the figures bench/esp/ratios.py prefers.
void bm_side_by_side(benchmark::State& state, Variant v, uint32_t size) {
  Fixture f(v, size);
  if (!f.ok()) {
    state.SkipWithError(f.err.c_str());
    return;
  }
  constexpr const char* kNames[4] = {"encap", "decap", "seal", "open"};
  std::array<std::vector<float>, 4> t;
  for (auto& x : t) x.reserve(1 << 20);
  std::array<double, 4> sum{};
  auto ns = [](Clock::time_point a, Clock::time_point b) {
    return double(std::chrono::duration_cast<std::chrono::nanoseconds>(b - a).count());
  };
  for (auto _ : state) {
    const auto t0 = Clock::now();
    const bool e = f.encap();
    const auto t1 = Clock::now();
    const bool d = f.decap();
    const auto t2 = Clock::now();
    f.seal();
    const auto t3 = Clock::now();
    const bool o = f.open();
    const auto t4 = Clock::now();
    benchmark::ClobberMemory();
    const double dt[4] = {ns(t0, t1), ns(t1, t2), ns(t2, t3), ns(t3, t4)};
    for (int i = 0; i < 4; ++i) {
      t[i].push_back(float(dt[i]));
      sum[i] += dt[i];
    }
    state.SetIterationTime(ns(t0, t4) * 1e-9);
    if (!(e && d && o)) {
      state.SkipWithError(!e ? "encap failed" : !d ? "decap failed" : "open failed");
      break;
    }
  }
  const double pkts = double(state.iterations()) * kBurst;
  state.SetItemsProcessed(int64_t(pkts));
  state.SetBytesProcessed(int64_t(pkts * size));
  for (int i = 0; i < 4; ++i) {
    if (t[i].empty()) continue;
    auto mid = t[i].begin() + t[i].size() / 2;
    std::nth_element(t[i].begin(), mid, t[i].end());
    const double med = double(*mid) / kBurst;
    state.counters[std::string(kNames[i]) + "_ns"] = med;
    state.counters[std::string(kNames[i]) + "_Mpps"] = 1e3 / med;
    state.counters[std::string(kNames[i]) + "_mean_ns"] = sum[i] / double(t[i].size()) / kBurst;
  }
}

// Encap with ordinary timing, no decap: per iteration the mbufs are put back to the inner packet by
// resetting data_off and the lengths and rewriting the 28 header bytes (timed, a few ns per packet); the
// payload stays ciphertext of earlier rounds, which costs the AEAD the same.
void bm_encap_loop(benchmark::State& state, Variant v, uint32_t size) {
  Fixture f(v, size);
  if (!f.ok()) {
    state.SkipWithError(f.err.c_str());
    return;
  }
  const uint16_t off = f.m[0]->data_off;
  for (auto _ : state) {
    for (uint16_t i = 0; i < kBurst; ++i) {
      rte_mbuf* m = f.m[i];
      m->data_off = off;
      m->data_len = uint16_t(size);
      m->pkt_len = size;
      std::memcpy(rte_pktmbuf_mtod(m, uint8_t*), f.inner[i].data(), 28);
    }
    if (!f.encap()) {
      state.SkipWithError("encap failed");
      break;
    }
    benchmark::ClobberMemory();
  }
  const double pkts = double(state.iterations()) * kBurst;
  state.SetItemsProcessed(int64_t(pkts));
  state.SetBytesProcessed(int64_t(pkts * size));
}

// The timer's own cost: what an empty timed region adds per burst.
void bm_clock(benchmark::State& state) {
  double timed_ns = 0;
  for (auto _ : state) {
    const auto t0 = Clock::now();
    benchmark::ClobberMemory();
    const auto t1 = Clock::now();
    const double ns = double(std::chrono::duration_cast<std::chrono::nanoseconds>(t1 - t0).count());
    timed_ns += ns;
    state.SetIterationTime(ns * 1e-9);
  }
  state.counters["ns_per_burst"] = state.iterations() ? timed_ns / double(state.iterations()) : 0;
}

std::string variant_name(Variant v) {
  return std::string(crypto::to_string(v.cipher)) + "/" + crypto::to_string(v.engine);
}

void register_all() {
  benchmark::RegisterBenchmark("baseline/clock", bm_clock)->UseManualTime()->Unit(benchmark::kNanosecond);
  for (Variant v : kVariants) {
    for (uint32_t size : kSizes) {
      const std::string name = "sbs/" + variant_name(v) + "/" + std::to_string(size);
      benchmark::RegisterBenchmark(name.c_str(), bm_side_by_side, v, size)
          ->UseManualTime()
          ->Unit(benchmark::kMicrosecond);
    }
  }
  for (Variant v : kVariants) {
    for (uint32_t size : kSizes) {
      for (Op op : {Op::kEncap, Op::kDecap, Op::kSeal, Op::kOpen}) {
        const std::string name = std::string(op_name(op)) + "/" + variant_name(v) + "/" + std::to_string(size);
        benchmark::RegisterBenchmark(name.c_str(), bm_cycle, v, size, op)
            ->UseManualTime()
            ->Unit(benchmark::kNanosecond);
      }
    }
  }
  for (Variant v : kVariants) {
    for (uint32_t size : kSizes) {
      const std::string name = "encap_loop/" + variant_name(v) + "/" + std::to_string(size);
      benchmark::RegisterBenchmark(name.c_str(), bm_encap_loop, v, size)->Unit(benchmark::kNanosecond);
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  init_eal();  // fixed EAL arguments (no hugepages, no PCI); the command line is Google Benchmark's
  benchmark::AddCustomContext("eal", "--no-huge -m 512 --no-pci --no-shconf");
  benchmark::AddCustomContext("lcore_cpu", std::to_string(sched_getcpu()));
  benchmark::AddCustomContext("burst", std::to_string(kBurst));
  register_all();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  rte_eal_cleanup();
  return 0;
}
