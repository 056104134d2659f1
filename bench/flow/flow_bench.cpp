// Flow spreading micro benchmarks (bench/README.md, "Flow spreading"). Everything the README compares is in this
// one binary so that the figures come from one run on the same (shared, noisy) machine.
//
//   BM_Fill            writing 32 packets' addresses/ports into rx-like buffers: the harness's own cost
//   BM_Extract+Hash    Fill + flow-key extraction + XXH3 (hash_burst)
//   BM_Spread          Fill + hash_burst + pin lookup (+ selection on a miss) = the worker's whole flow step
//   BM_SpreadNewFlows  as BM_Spread, every packet a new flow in a full table (selection + eviction each time)
//   BM_Rebuild         SelectionTable::build for 4 / 64 / 1024 tunnels
//   BM_PinMemory       bytes per pin
//   BM_Hash            the hash candidates on flow keys, bursts of 32
#include <benchmark/benchmark.h>

#include <memory>
#include <random>
#include <vector>

#include "flow/flow.h"
#include "hash_candidates.h"

namespace {

using namespace mg;
using flow::TunnelId;

constexpr uint16_t kBurst = 32;
constexpr size_t kSeq = 1 << 20;  // length of the random flow sequence replayed

// 32 rx buffers holding IPv4/UDP (or IPv6/UDP) headers; fill() writes one flow's fields into slot i as a NIC's
// DMA would, so packet bytes are fresh in L1 as in a worker right after rx and key extraction is real work.
struct RxBurst {
  alignas(64) uint8_t buf[kBurst][64];
  const uint8_t* ptr[kBurst];
  uint32_t len[kBurst];
  bool v6;

  explicit RxBurst(bool ipv6) : buf{}, v6(ipv6) {
    for (uint16_t i = 0; i < kBurst; ++i) {
      uint8_t* p = buf[i];
      if (v6) {
        p[0] = 0x60;
        net::store_be16(p + 4, 8);
        p[6] = net::kProtoUdp;
        p[7] = 64;
        p[8] = 0x20, p[9] = 0x01, p[24] = 0x20, p[25] = 0x01;
        len[i] = 48;
      } else {
        p[0] = 0x45;
        net::store_be16(p + 2, 28);
        p[8] = 64;
        p[9] = net::kProtoUdp;
        net::store_be32(p + 16, 0xc0000201);
        len[i] = 28;
      }
      ptr[i] = p;
    }
  }
  void fill(const uint32_t* ids) noexcept {
    for (uint16_t i = 0; i < kBurst; ++i) {
      uint8_t* p = buf[i];
      const uint32_t id = ids[i];
      if (v6) {
        std::memcpy(p + 20, &id, 4);
        std::memcpy(p + 40, &id, 2);
      } else {
        net::store_be32(p + 12, 0x0a000000u + (id >> 6));  // 64 ports per source address
        net::store_be16(p + 20, uint16_t(1024 + (id & 63)));
        net::store_be16(p + 22, 443);
      }
    }
  }
};

std::vector<uint32_t> random_ids(uint32_t flows) {
  std::mt19937 rng(7);
  std::vector<uint32_t> ids(kSeq + kBurst);
  for (auto& x : ids) x = rng() % flows;
  return ids;
}

std::unique_ptr<const flow::SelectionTable> four_tunnels() {
  std::vector<flow::TunnelSpec> t(4);
  return flow::SelectionTable::build(t, 0x5eed);
}

void per_packet(benchmark::State& s) {
  s.SetItemsProcessed(int64_t(s.iterations()) * kBurst);
  s.counters["ns/pkt"] = benchmark::Counter(double(kBurst), benchmark::Counter::kIsIterationInvariantRate |
                                                                benchmark::Counter::kInvert);
}

void BM_Fill(benchmark::State& s) {
  RxBurst rx(false);
  const auto ids = random_ids(uint32_t(s.range(0)));
  size_t pos = 0;
  for (auto _ : s) {
    rx.fill(&ids[pos]);
    benchmark::DoNotOptimize(rx.buf);
    pos = (pos + kBurst) & (kSeq - 1);
  }
  per_packet(s);
}

void BM_ExtractHash(benchmark::State& s) {
  RxBurst rx(s.range(1) == 6);
  const auto ids = random_ids(uint32_t(s.range(0)));
  uint64_t h[kBurst];
  size_t pos = 0;
  for (auto _ : s) {
    rx.fill(&ids[pos]);
    flow::hash_burst(rx.ptr, rx.len, kBurst, 0x5eed, h);
    benchmark::DoNotOptimize(h);
    pos = (pos + kBurst) & (kSeq - 1);
  }
  per_packet(s);
}

// range(0) resident flows, range(1) pin capacity, range(2) IP version.
void BM_Spread(benchmark::State& s) {
  const uint32_t flows = uint32_t(s.range(0));
  RxBurst rx(s.range(2) == 6);
  const auto sel = four_tunnels();
  flow::PinTable pins(uint32_t(s.range(1)), 1u << 30);
  uint64_t h[kBurst];
  TunnelId out[kBurst];
  // Make every flow resident first.
  std::vector<uint32_t> all(flows + kBurst);
  for (uint32_t i = 0; i < flows; ++i) all[i] = i;
  for (uint32_t i = 0; i < flows; i += kBurst) {
    rx.fill(&all[i]);
    flow::spread_burst(pins, *sel, rx.ptr, rx.len, uint16_t(std::min<uint32_t>(kBurst, flows - i)), 0, h, out);
  }
  const auto ids = random_ids(flows);
  const flow::SpreadCounters c0 = pins.counters();
  size_t pos = 0;
  uint32_t now = 1;
  for (auto _ : s) {
    rx.fill(&ids[pos]);
    flow::spread_burst(pins, *sel, rx.ptr, rx.len, kBurst, now, h, out);
    benchmark::DoNotOptimize(out);
    pos = (pos + kBurst) & (kSeq - 1);
    now += (pos == 0);
  }
  per_packet(s);
  const auto& c = pins.counters();
  s.counters["hit%"] = 100.0 * double(c.hits - c0.hits) / double(c.hits - c0.hits + c.new_flows - c0.new_flows);
  s.counters["evicted_before"] = double(c0.evicted);  // while making the flows resident
  s.counters["evicted"] = double(c.evicted - c0.evicted);
  s.counters["table_MiB"] = double(pins.memory_bytes()) / (1 << 20);
}

void BM_SpreadNewFlows(benchmark::State& s) {
  RxBurst rx(false);
  const auto sel = four_tunnels();
  flow::PinTable pins(uint32_t(s.range(0)), 1u << 30);
  uint64_t h[kBurst];
  TunnelId out[kBurst];
  uint32_t ids[kBurst];
  uint32_t next = 0;
  for (auto _ : s) {
    for (auto& x : ids) x = next++;
    rx.fill(ids);
    flow::spread_burst(pins, *sel, rx.ptr, rx.len, kBurst, next >> 20, h, out);
    benchmark::DoNotOptimize(out);
  }
  per_packet(s);
  s.counters["evicted"] = double(pins.counters().evicted);
}

// range(0) tunnels; range(1) 0 = equal weights, 1 = weights 1..4.
void BM_Rebuild(benchmark::State& s) {
  std::vector<flow::TunnelSpec> t(size_t(s.range(0)));
  for (size_t i = 0; i < t.size(); ++i) t[i].weight = s.range(1) ? uint32_t(1 + i % 4) : 1;
  for (auto _ : s) benchmark::DoNotOptimize(flow::SelectionTable::build(t, 0x5eed));
}

void BM_PinMemory(benchmark::State& s) {
  size_t bytes = 0;
  uint32_t cap = 0;
  for (auto _ : s) {
    flow::PinTable pins(uint32_t(s.range(0)), 1000);
    bytes = pins.memory_bytes();
    cap = pins.capacity();
    benchmark::DoNotOptimize(bytes);
  }
  s.counters["bytes/pin"] = double(bytes) / cap;
  s.counters["MiB/1M_pins"] = double(bytes) / cap * 1e6 / (1 << 20);
}

enum Cand { kXxh3, kCrc32c, kToeplitzSoft, kToeplitzGfni };

// range(0) candidate, range(1) IP version of the keys.
void BM_Hash(benchmark::State& s) {
  std::vector<net::FlowKey> keys(4096);
  std::mt19937_64 rng(3);
  for (auto& k : keys) {
    k.version = uint8_t(s.range(1));
    k.proto = net::kProtoUdp;
    k.ports = 1;
    for (auto& b : k.addr) b = uint8_t(rng());
    if (k.version == 4) std::fill(k.addr + 8, k.addr + 32, 0);
    k.sport = uint16_t(rng());
  }
  const flow::candidates::Toeplitz tz(0x5eed);
  if (s.range(0) == kToeplitzGfni && !tz.has_gfni()) {
    s.SkipWithError("no GFNI/AVX-512 in this build");
    return;
  }
  uint64_t h[kBurst];
  size_t pos = 0;
  for (auto _ : s) {
    const net::FlowKey* k = &keys[pos];
    switch (s.range(0)) {
      case kXxh3: for (int i = 0; i < kBurst; ++i) h[i] = flow::candidates::xxh3(k[i], 0x5eed); break;
      case kCrc32c: for (int i = 0; i < kBurst; ++i) h[i] = flow::candidates::crc32c(k[i], 0x5eed); break;
      case kToeplitzSoft: for (int i = 0; i < kBurst; ++i) h[i] = tz.soft(k[i]); break;
      default: for (int i = 0; i < kBurst; ++i) h[i] = tz.gfni(k[i]); break;
    }
    benchmark::DoNotOptimize(h);
    pos = (pos + kBurst) & 4095;
  }
  per_packet(s);
}

BENCHMARK(BM_Fill)->Arg(100000);
BENCHMARK(BM_ExtractHash)->Args({100000, 4})->Args({100000, 6});
BENCHMARK(BM_Spread)
    ->ArgNames({"flows", "pins", "ip"})
    ->Args({1000, 2048, 4})
    ->Args({100000, 1 << 18, 4})
    ->Args({100000, 1 << 18, 6})
    ->Args({100000, 1 << 21, 4})
    ->Args({1000000, 1 << 21, 4});
BENCHMARK(BM_SpreadNewFlows)->Arg(1 << 20);
BENCHMARK(BM_Rebuild)->ArgNames({"tunnels", "weighted"})->Args({4, 0})->Args({4, 1})->Args({64, 0})->Args({1024, 0})
    ->Args({1024, 1})->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_PinMemory)->Arg(1 << 20)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Hash)->ArgNames({"cand", "ip"})->ArgsProduct({{kXxh3, kCrc32c, kToeplitzSoft, kToeplitzGfni}, {4, 6}});

}  // namespace

BENCHMARK_MAIN();
