// Route lookup cost per packet (bench/README.md "Routes"): lib/route's burst lookups of 32 destinations at 100,
// 1 k, 10 k and 100 k routes, IPv4 (rte_lpm) and IPv6 (rte_lpm6), against the linear [inside] prefix check the
// workers use today (a loop over (net, mask) pairs) at the same counts where that is still sane.
#include <arpa/inet.h>
#include <benchmark/benchmark.h>
#include <rte_eal.h>
#include <rte_errno.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <vector>

#include "route/route.h"

namespace r = mg::route;

namespace {

void eal() {
  static bool done = [] {
    const char* argv[] = {"route_bench", "--no-huge", "-m", "1024", "--no-pci", "--no-shconf",
                          "--log-level=lib.eal:error", "--no-telemetry"};
    if (rte_eal_init(int(sizeof(argv) / sizeof(argv[0])), const_cast<char**>(argv)) < 0) {
      std::fprintf(stderr, "rte_eal_init failed: %s\n", rte_strerror(rte_errno));
      std::exit(1);
    }
    return true;
  }();
  (void)done;
}

// n routes of lengths /16../28 (a BGP-like mix), each to one of 4 tunnels; 4096 destinations, 90 % inside a route.
struct Fixture4 {
  std::unique_ptr<const r::Table> table;
  std::vector<std::pair<uint32_t, uint32_t>> linear;  // (net, mask), host order
  std::vector<uint32_t> dst;
  explicit Fixture4(uint32_t n) {
    eal();
    std::mt19937 rng(n);
    std::vector<r::Route> routes;
    for (uint32_t i = 0; i < n; ++i) {
      r::Route x;
      x.family = 4;
      x.len = uint8_t(16 + rng() % 13);
      const uint32_t mask = ~0u << (32 - x.len);
      const uint32_t net = uint32_t(rng()) & mask;
      const uint32_t be = htonl(net);
      std::memcpy(x.addr, &be, 4);
      x.tunnels.set(rng() % 4);
      routes.push_back(x);
      linear.emplace_back(net, mask);
    }
    std::string err;
    table = r::Table::build(routes, 4, &err);
    if (!table) {
      std::fprintf(stderr, "%s\n", err.c_str());
      std::exit(1);
    }
    for (int i = 0; i < 4096; ++i) {
      const auto& [net, mask] = linear[rng() % n];
      dst.push_back(rng() % 10 ? net | (uint32_t(rng()) & ~mask) : uint32_t(rng()));
    }
  }
};

void BM_Lpm4(benchmark::State& st) {
  const Fixture4 f(uint32_t(st.range(0)));
  r::SetId out[32];
  size_t off = 0;
  for (auto _ : st) {
    f.table->lookup4_burst(f.dst.data() + off, 32, out);
    benchmark::DoNotOptimize(out);
    off = (off + 32) % f.dst.size();
  }
  st.SetItemsProcessed(int64_t(st.iterations()) * 32);
}
BENCHMARK(BM_Lpm4)->Arg(100)->Arg(1000)->Arg(10000)->Arg(100000);

// What the workers do today: the first (net, mask) that matches, a scan per packet.
void BM_Linear4(benchmark::State& st) {
  const Fixture4 f(uint32_t(st.range(0)));
  size_t off = 0;
  for (auto _ : st) {
    uint32_t hits = 0;
    for (int i = 0; i < 32; ++i) {
      const uint32_t d = f.dst[off + size_t(i)];
      for (const auto& [net, mask] : f.linear)
        if ((d & mask) == net) {
          ++hits;
          break;
        }
    }
    benchmark::DoNotOptimize(hits);
    off = (off + 32) % f.dst.size();
  }
  st.SetItemsProcessed(int64_t(st.iterations()) * 32);
}
BENCHMARK(BM_Linear4)->Arg(3)->Arg(100)->Arg(1000);

void BM_Lpm6(benchmark::State& st) {
  eal();
  const uint32_t n = uint32_t(st.range(0));
  std::mt19937 rng(n);
  std::vector<r::Route> routes;
  for (uint32_t i = 0; i < n; ++i) {
    r::Route x;
    x.family = 6;
    x.len = uint8_t(32 + rng() % 33);  // /32../64
    x.addr[0] = 0x20;
    x.addr[1] = 0x01;
    for (int b = 2; b < 8; ++b) x.addr[b] = uint8_t(rng());
    for (uint32_t b = x.len; b < 128; ++b) x.addr[b / 8] &= uint8_t(~(0x80u >> (b % 8)));
    x.tunnels.set(rng() % 4);
    routes.push_back(x);
  }
  std::string err;
  const auto table = r::Table::build(routes, 4, &err);
  if (!table) {
    st.SkipWithError(err.c_str());
    return;
  }
  std::vector<std::array<uint8_t, 16>> dst(4096);
  for (auto& d : dst) {
    std::memcpy(d.data(), routes[rng() % n].addr, 16);
    for (int b = 8; b < 16; ++b) d[size_t(b)] = uint8_t(rng());
  }
  r::SetId out[32];
  size_t off = 0;
  for (auto _ : st) {
    table->lookup6_burst(reinterpret_cast<const uint8_t(*)[16]>(dst[off].data()), 32, out);
    benchmark::DoNotOptimize(out);
    off = (off + 32) % dst.size();
  }
  st.SetItemsProcessed(int64_t(st.iterations()) * 32);
}
BENCHMARK(BM_Lpm6)->Arg(100)->Arg(10000);

}  // namespace

BENCHMARK_MAIN();
