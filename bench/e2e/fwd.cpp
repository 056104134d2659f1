// e2e_fwd: plain forwarding (no ESP) through the same vdevs as the meshgate end-to-end benchmark, to give the
// harness limit t_forward (bench/e2e/run.sh, bench/README.md "End-to-end").
//
//   e2e_fwd [EAL args] -- [--duration S] [--warmup S] [--burst N] [--mbufs N] [--json FILE]
//   e2e_fwd --no-huge -m 2048 --no-pci -l 0-1 --file-prefix fwd1
//       --vdev=net_pcap0,rx_pcap=in.pcap,infinite_rx=1 --vdev=net_null0,no-rx=1 -- --duration 10 --warmup 1
//
// Port 0 is the source (net_pcap infinite_rx, as meshgate's inside port), port 1 the sink (net_null, as an
// instance port). One worker lcore (the first non-main lcore) runs rx_burst(port 0) -> tx_burst(port 1) in
// bursts of 32 (meshgate's burst) and frees what TX did not take, like testpmd's "io" mode: the packets are not
// read or written, so this is the cost of the vdevs and the mbuf pool alone. Main sleeps `warmup` seconds,
// snapshots the port statistics, sleeps `duration` seconds, snapshots again, and reports
// (sink opackets delta) / (TSC time between the snapshots).
#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_ethdev.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <unistd.h>

namespace {

std::atomic<bool> g_stop{false};
uint16_t g_burst = 32;

struct Snap {
  uint64_t tsc, src_ipackets, sink_opackets, sink_oerrors, src_imissed, src_nombuf;
};

Snap snap() {
  rte_eth_stats a{}, b{};
  rte_eth_stats_get(0, &a);
  rte_eth_stats_get(1, &b);
  return {rte_get_tsc_cycles(), a.ipackets, b.opackets, b.oerrors, a.imissed, a.rx_nombuf};
}

int worker(void*) {
  rte_mbuf* pkts[256];
  uint64_t dropped = 0;
  while (!g_stop.load(std::memory_order_relaxed)) {
    const uint16_t n = rte_eth_rx_burst(0, 0, pkts, g_burst);
    if (n == 0) continue;
    const uint16_t s = rte_eth_tx_burst(1, 0, pkts, n);
    if (s < n) {
      dropped += n - s;
      rte_pktmbuf_free_bulk(pkts + s, n - s);
    }
  }
  if (dropped) std::fprintf(stderr, "e2e_fwd: %lu packets not taken by TX\n", (unsigned long)dropped);
  return 0;
}

void sleep_s(double s) { usleep(useconds_t(s * 1e6)); }

}  // namespace

int main(int argc, char** argv) {
  const int used = rte_eal_init(argc, argv);
  if (used < 0) {
    std::fprintf(stderr, "e2e_fwd: EAL init failed\n");
    return 3;
  }
  argc -= used;
  argv += used;
  double duration = 10, warmup = 1;
  unsigned mbufs = 65535;
  std::string json;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto val = [&]() -> const char* {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "e2e_fwd: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--duration") duration = std::atof(val());
    else if (a == "--warmup") warmup = std::atof(val());
    else if (a == "--burst") g_burst = uint16_t(std::atoi(val()));
    else if (a == "--mbufs") mbufs = unsigned(std::atoi(val()));
    else if (a == "--json") json = val();
    else {
      std::fprintf(stderr, "e2e_fwd: unknown option %s\n", a.c_str());
      return 2;
    }
  }
  if (g_burst == 0 || g_burst > 256 || duration <= 0 || warmup < 0) {
    std::fprintf(stderr, "e2e_fwd: bad --burst/--duration/--warmup\n");
    return 2;
  }
  if (rte_eth_dev_count_avail() < 2) {
    std::fprintf(stderr, "e2e_fwd: needs two ports (source, sink); got %u\n", rte_eth_dev_count_avail());
    return 4;
  }
  rte_mempool* pool = rte_pktmbuf_pool_create("fwd_pool", mbufs, 256, 0, RTE_MBUF_DEFAULT_BUF_SIZE,
                                              int(rte_socket_id()));
  if (pool == nullptr) {
    std::fprintf(stderr, "e2e_fwd: mbuf pool failed\n");
    return 3;
  }
  for (uint16_t p = 0; p < 2; ++p) {
    rte_eth_conf conf{};
    int rc = rte_eth_dev_configure(p, 1, 1, &conf);
    uint16_t nrxd = 1024, ntxd = 1024;  // as pmd_config/vdev-bench.toml
    if (rc == 0) rc = rte_eth_dev_adjust_nb_rx_tx_desc(p, &nrxd, &ntxd);
    if (rc == 0) rc = rte_eth_rx_queue_setup(p, 0, nrxd, rte_eth_dev_socket_id(p), nullptr, pool);
    if (rc == 0) rc = rte_eth_tx_queue_setup(p, 0, ntxd, rte_eth_dev_socket_id(p), nullptr);
    if (rc == 0) rc = rte_eth_dev_start(p);
    if (rc != 0) {
      std::fprintf(stderr, "e2e_fwd: port %u setup failed: %s\n", p, rte_strerror(-rc));
      return 4;
    }
  }
  const unsigned lc = rte_get_next_lcore(-1, 1, 0);
  if (lc >= RTE_MAX_LCORE) {
    std::fprintf(stderr, "e2e_fwd: needs a worker lcore (-l 0-1)\n");
    return 2;
  }
  rte_eal_remote_launch(worker, nullptr, lc);
  const uint64_t hz = rte_get_tsc_hz();
  sleep_s(warmup);
  const Snap a = snap();
  sleep_s(duration);
  const Snap b = snap();
  g_stop.store(true);
  rte_eal_mp_wait_lcore();
  const double el = double(b.tsc - a.tsc) / double(hz);
  const uint64_t pk = b.sink_opackets - a.sink_opackets;
  const double pps = double(pk) / el;
  std::printf("e2e_fwd: %.3f Mpps over %.3f s (sink opackets %lu, source ipackets %lu, imissed %lu, nombuf %lu,"
              " sink oerrors %lu)\n",
              pps / 1e6, el, (unsigned long)pk, (unsigned long)(b.src_ipackets - a.src_ipackets),
              (unsigned long)b.src_imissed, (unsigned long)b.src_nombuf, (unsigned long)b.sink_oerrors);
  if (!json.empty()) {
    FILE* f = std::fopen(json.c_str(), "w");
    if (f == nullptr) {
      std::fprintf(stderr, "e2e_fwd: cannot write %s\n", json.c_str());
      return 1;
    }
    std::fprintf(f,
                 "{\"pps\": %.1f, \"window_s\": %.6f, \"packets\": %lu, \"src_ipackets\": %lu, \"burst\": %u,"
                 " \"warmup_s\": %.3f}\n",
                 pps, el, (unsigned long)pk, (unsigned long)(b.src_ipackets - a.src_ipackets), g_burst, warmup);
    std::fclose(f);
  }
  for (uint16_t p = 0; p < 2; ++p) {
    rte_eth_dev_stop(p);
    rte_eth_dev_close(p);
  }
  rte_eal_cleanup();
  return 0;
}
