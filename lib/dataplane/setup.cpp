// Start-up: EAL, mbuf pool, ports and queues from the pmd_config, workers and their queues, SAs and the inbound
// SA tables. Every failure is an exit code and a message, never an exception.
#include <fmt/core.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_malloc.h>
#include <rte_pdump.h>

#include <map>

#include "dataplane/internal.h"
#include "net/net.h"

namespace mg::dp {

namespace {

std::string eal_port_name(const std::string& devargs) { return devargs.substr(0, devargs.find(',')); }

}  // namespace

int Dataplane::Impl::setup(std::string* err) {
  if (!seq_open(err)) return kExitConfig;
  // EAL: the pmd_config's arguments, one --vdev / -a per port, then the caller's extras.
  std::vector<std::string> args{"meshgate"};
  for (const auto& a : pmd.eal_args) args.push_back(a);
  for (const auto& port : pmd.ports) {
    if (port.vdev) args.push_back("--vdev=" + port.devargs);
    else args.push_back("-a" + port.devargs);
  }
  for (const auto& a : opt.eal_extra) args.push_back(a);
  // From here on every message has a level, a type and a time (lib/log), EAL's own start-up lines too; EAL's
  // --log-level patterns still apply to the types registered here. Under journald, stderr already reaches the
  // journal: syslog too only when asked for (--syslog), or each line would be there twice.
  log::StartOptions lo;
  lo.default_level = opt.quiet ? log::Level::kWarning : log::Level::kInfo;
  lo.journald = log::journal_stream_is_stderr();
  lo.syslog = !lo.journald || std::any_of(args.begin(), args.end(), [](const std::string& a) {
    return a.rfind("--syslog", 0) == 0;
  });
  if (!log::start(lo)) fmt::print(stderr, "meshgate: rte_log types could not be registered; plain messages\n");
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  rte_errno = 0;
  if (rte_eal_init(int(argv.size()), argv.data()) < 0) {
    // Some EAL failures leave rte_errno unset (e.g. "Cannot init config": another primary process with the same
    // --file-prefix), which rte_strerror calls "Success".
    *err = fmt::format("EAL init failed: {}", rte_errno ? rte_strerror(rte_errno)
                                                        : "DPDK gave no reason (see the EAL lines above; is another "
                                                          "DPDK process using the same --file-prefix?)");
    return kExitEal;
  }
  eal_up = true;
  tsc_hz = rte_get_tsc_hz();
  if (!build_routes({}, err)) return kExitConfig;
  if (rte_pdump_init() != 0)
    log::warning(log::Type::kMain, "pdump unavailable ({}); dpdk-dumpcap will not attach", rte_strerror(rte_errno));

  // Workers on the configured lcores; main stays on the main lcore.
  const unsigned main_lcore = rte_get_main_lcore();
  for (unsigned lc : pmd.worker_lcores) {
    if (lc == main_lcore || !rte_lcore_is_enabled(lc)) {
      *err = fmt::format("worker lcore {} is not an enabled non-main lcore (main is {}); check [eal] args -l",
                         lc, main_lcore);
      return kExitConfig;
    }
    auto w = std::make_unique<Worker>();
    w->id = uint16_t(workers.size());
    w->lcore = lc;
    workers.push_back(std::move(w));
  }
  const uint16_t nw = uint16_t(workers.size());
  if (nw == 0) {
    *err = "no worker lcores in the pmd_config";
    return kExitConfig;
  }

  pool = rte_pktmbuf_pool_create("mg_pool", pmd.mbufs, 256, 0, RTE_MBUF_DEFAULT_BUF_SIZE, int(rte_socket_id()));
  if (pool == nullptr) {
    *err = fmt::format("mbuf pool of {} failed: {}", pmd.mbufs, rte_strerror(rte_errno));
    return kExitEal;
  }

  std::map<std::string, uint16_t> by_name;
  if (const int rc = setup_ports(&by_name, err); rc != kExitOk) return rc;
  inside = by_name.at(gw.inside_port);
  std::memcpy(inside_l2, gw.inside_mac, 6);
  std::memcpy(inside_l2 + 6, ports[inside].mac.addr_bytes, 6);
  for (const auto& inst : gw.instances) {
    const uint16_t pi = by_name.at(inst.port);
    instance_port.push_back(pi);
    if (std::find(outside.begin(), outside.end(), pi) == outside.end()) outside.push_back(pi);
  }

  if (const int rc = host_setup(err); rc != kExitOk) return rc;

  // Queues to workers: queue q of a port goes to worker q % workers.
  for (auto& w : workers) {
    for (uint16_t q = w->id; q < ports[inside].nrx; q += nw) w->inside_rxq.push_back(q);
    w->outside_rxq.resize(outside.size());
    for (size_t o = 0; o < outside.size(); ++o)
      for (uint16_t q = w->id; q < ports[outside[o]].nrx; q += nw) w->outside_rxq[o].push_back(q);
    w->pins = std::make_unique<flow::PinTable>(gw.flow.pin_capacity, gw.flow.pin_idle_timeout_ms);
    w->tctr = std::make_unique<TunnelCtr[]>(gw.tunnels.size());
    w->pctr = std::make_unique<PortCtr[]>(ports.size());
    w->proof_lines = std::make_unique<Worker::ProofLine[]>((gw.tunnels.size() + 15) / 16);
    for (uint32_t t = 0; t < gw.tunnels.size(); ++t) w->proof(t).store(0, std::memory_order_relaxed);
    w->opace.resize(outside.size());
    w->probe_due.assign(gw.tunnels.size(), 0);
    w->busy.assign(gw.tunnels.size(), 0);
    for (uint32_t t = w->id; t < gw.tunnels.size(); t += nw) w->probe_tunnels.push_back(t);
  }

  // SAs: one outbound and one inbound per tunnel; an inbound table per outside port holds the SAs of the
  // tunnels whose instance uses that port (only those may be decrypted there).
  for (size_t t = 0; t < gw.tunnels.size(); ++t) {
    const auto& ct = gw.tunnels[t];
    if (ct.ike) {  // keyed at run time (keying.cpp): no SA, effectively down until an outbound one is installed
      sa_out.emplace_back();
      sa_in.emplace_back();
      model.set_keyed(uint32_t(t), false);
      continue;
    }
    esp::SaConfig oc = outbound_sa(gw, ct);
    esp::SaConfig ic = inbound_sa(gw, ct);
    oc.user_id = ic.user_id = uint32_t(t);
    std::string e;
    auto so = esp::Sa::create(oc, esp::Direction::kOutbound, nw, &e);
    if (!so) {
      *err = fmt::format("tunnel '{}' outbound SA: {}", ct.name, e);
      return kExitConfig;
    }
    auto si = esp::Sa::create(ic, esp::Direction::kInbound, nw, &e);
    if (!si) {
      *err = fmt::format("tunnel '{}' inbound SA: {}", ct.name, e);
      return kExitConfig;
    }
    sa_out.push_back(std::move(so));
    sa_in.push_back(std::move(si));
  }
  // Before any worker runs: every outbound SA starts after what earlier runs may have used.
  if (!seq_setup(err)) return kExitConfig;
  retired_out.resize(gw.tunnels.size());
  retired_in.resize(gw.tunnels.size());
  suspended.assign(gw.tunnels.size(), false);
  resets.assign(gw.instances.size(), 0);
  if (!build_tables(err)) return kExitConfig;

  const size_t qsz = rte_rcu_qsbr_get_memsize(nw);
  qsbr = static_cast<rte_rcu_qsbr*>(rte_zmalloc("mg_qsbr", qsz, RTE_CACHE_LINE_SIZE));
  if (qsbr == nullptr || rte_rcu_qsbr_init(qsbr, nw) != 0) {
    *err = "RCU QSBR init failed";
    return kExitEal;
  }
  probe_iv_ms.resize(gw.tunnels.size());
  for (size_t t = 0; t < gw.tunnels.size(); ++t) {
    const config::LivenessSettings& ls = gw.tunnels[t].liveness;
    probe_iv_ms[t] = std::max<uint32_t>(1, ls.interval_ms);
    probing |= ls.enabled && ls.probes;
  }
  blackhole.assign(gw.tunnels.size(), 0);
  start_tsc = rte_get_tsc_cycles();
  return kExitOk;
}

// Probes every port of the pmd_config, one TX queue per worker, RX queues up to what the device has; starts them.
int Dataplane::Impl::setup_ports(std::map<std::string, uint16_t>* by_name, std::string* err) {
  const uint16_t nw = uint16_t(workers.size());
  for (const auto& ps : pmd.ports) {
    PortRt pr;
    pr.name = ps.name;
    const std::string dev = ps.vdev ? eal_port_name(ps.devargs) : ps.devargs;
    if (rte_eth_dev_get_port_by_name(dev.c_str(), &pr.id) != 0) {
      *err = fmt::format("port '{}': device '{}' was not probed (check devargs and drivers)", ps.name, dev);
      return kExitPort;
    }
    rte_eth_dev_info info;
    if (rte_eth_dev_info_get(pr.id, &info) != 0) {
      *err = fmt::format("port '{}': no device info", ps.name);
      return kExitPort;
    }
    // A kernel twin (exception path) is main's alone: one queue each way.
    pr.nrx = ps.is_host ? 1 : std::min<uint16_t>(ps.rx_queues ? ps.rx_queues : nw, info.max_rx_queues);
    pr.ntx = ps.is_host ? 1 : ps.tx_queues ? ps.tx_queues : nw;
    if ((pr.ntx < nw && !ps.is_host) || pr.ntx > info.max_tx_queues) {
      *err = fmt::format("port '{}' has {} TX queues (device max {}); {} workers need one each", ps.name, pr.ntx,
                         info.max_tx_queues, nw);
      return kExitPort;
    }
    rte_eth_conf conf{};
    if (pr.nrx > 1 && ps.rss && info.flow_type_rss_offloads) {
      conf.rxmode.mq_mode = RTE_ETH_MQ_RX_RSS;
      conf.rx_adv_conf.rss_conf.rss_hf =
          (RTE_ETH_RSS_IP | RTE_ETH_RSS_TCP | RTE_ETH_RSS_UDP) & info.flow_type_rss_offloads;
    }
    if (ps.ipv4_cksum_offload && (info.tx_offload_capa & RTE_ETH_TX_OFFLOAD_IPV4_CKSUM))
      conf.txmode.offloads |= RTE_ETH_TX_OFFLOAD_IPV4_CKSUM;
    if (ps.mtu) conf.rxmode.mtu = ps.mtu;
    int rc = rte_eth_dev_configure(pr.id, pr.nrx, pr.ntx, &conf);
    uint16_t nrxd = ps.rx_desc, ntxd = ps.tx_desc;
    if (rc == 0) rc = rte_eth_dev_adjust_nb_rx_tx_desc(pr.id, &nrxd, &ntxd);
    for (uint16_t q = 0; rc == 0 && q < pr.nrx; ++q)
      rc = rte_eth_rx_queue_setup(pr.id, q, nrxd, rte_eth_dev_socket_id(pr.id), nullptr, pool);
    for (uint16_t q = 0; rc == 0 && q < pr.ntx; ++q)
      rc = rte_eth_tx_queue_setup(pr.id, q, ntxd, rte_eth_dev_socket_id(pr.id), nullptr);
    if (rc != 0) {
      *err = fmt::format("port '{}': configure/queue setup failed: {}", ps.name, rte_strerror(-rc));
      return kExitPort;
    }
    rte_eth_macaddr_get(pr.id, &pr.mac);
    (*by_name)[ps.name] = uint16_t(ports.size());
    ports.push_back(pr);
  }
  for (size_t i = 0; i < ports.size(); ++i) {
    if (const int rc = start_port(ports[i], pmd.ports[i], err); rc != kExitOk) return rc;
    rte_eth_promiscuous_enable(ports[i].id);  // best effort: vdevs may not have it
  }
  ports_up = true;
  for (const auto& pr : ports)
    log::info(log::Type::kPort, "port {} (id {}): {} RX / {} TX queues, MAC {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
              pr.name, pr.id, pr.nrx, pr.ntx, pr.mac.addr_bytes[0], pr.mac.addr_bytes[1], pr.mac.addr_bytes[2],
              pr.mac.addr_bytes[3], pr.mac.addr_bytes[4], pr.mac.addr_bytes[5]);

  return kExitOk;
}

// A net_memif client cannot start before its server listens, and once started its link comes up only after the
// handshake; which of two processes starts first is not ours to choose. So a port that does not start is tried
// again every 100 ms until start_wait_s, and a memif client whose link is not up 500 ms after its start is
// restarted (its connection attempt may have met a server not yet ready).
int Dataplane::Impl::start_port(const PortRt& pr, const config::PortSpec& ps, std::string* err) {
  rte_eth_dev_info info{};
  rte_eth_dev_info_get(pr.id, &info);
  const bool memif_client = info.driver_name && std::string_view(info.driver_name) == "net_memif" &&
                            (ps.devargs.find("role=client") != std::string::npos ||
                             ps.devargs.find("role=slave") != std::string::npos);
  const uint64_t hz = rte_get_tsc_hz();
  const uint64_t deadline = rte_get_tsc_cycles() + uint64_t(ps.start_wait_s) * hz;
  bool said = false;
  for (;;) {
    int rc = rte_eth_dev_start(pr.id);
    if (rc == 0 && !memif_client) return kExitOk;
    if (rc == 0) {
      const uint64_t link_by = rte_get_tsc_cycles() + hz / 2;
      do {
        rte_eth_link link{};
        if (rte_eth_link_get_nowait(pr.id, &link) == 0 && link.link_status == RTE_ETH_LINK_UP) {
          if (said) log::info(log::Type::kPort, "port {}: memif link up", pr.name);
          return kExitOk;
        }
        rte_delay_us_sleep(10000);
      } while (rte_get_tsc_cycles() < link_by);
      rte_eth_dev_stop(pr.id);
      rc = -ENOTCONN;
    }
    if (g_stop.load(std::memory_order_relaxed) || rte_get_tsc_cycles() >= deadline) {
      *err = fmt::format("port '{}': start failed: {}{}", pr.name, rte_strerror(-rc),
                         memif_client ? fmt::format(" (no memif server answered within start_wait_s = {} s)",
                                                    ps.start_wait_s)
                                      : "");
      return kExitPort;
    }
    if (!said) {
      log::info(log::Type::kPort, "port {}: {}; trying again for up to {} s", pr.name,
                memif_client ? "waiting for the memif server" : fmt::format("start failed ({})", rte_strerror(-rc)),
                ps.start_wait_s);
      said = true;
    }
    rte_delay_us_sleep(100000);
  }
}

void Dataplane::Impl::close_ports() noexcept {
  if (!ports_up) return;
  for (auto& p : ports) {
    rte_eth_dev_stop(p.id);
    rte_eth_dev_close(p.id);  // net_pcap flushes its output files here; RX rings give their mbufs back
  }
  ports_up = false;
}

}  // namespace mg::dp
