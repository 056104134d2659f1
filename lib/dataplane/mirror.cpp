// The operators' view in the control block: the mirror read by meshgatectl, written from the counter tables of
// dataplane.h (DPDK telemetry, the other view, is telemetry.cpp).
#include <rte_mempool.h>

#include <algorithm>
#include <chrono>
#include <utility>

#include "dataplane/internal.h"
#include "net/net.h"

namespace mg::dp {

// Every counter of the tables travels by name, so meshgatectl shows each one without knowing it.
static_assert(std::size(kGatewayCounters) <= ctrl::kMaxCounters && std::size(kTunnelCounters) <= ctrl::kMaxCounters &&
              std::size(kWorkerCounters) <= ctrl::kMaxCounters, "the mirror carries every counter");
static_assert(kDropCount <= ctrl::kMaxDropReasons && esp::kDropCount <= ctrl::kMaxDropReasons,
              "the mirror carries every drop reason");

namespace {

// The driver's port counters (rte_eth_stats), ahead of the workers' own in the port records.
struct DriverCounter {
  const char* name;
  uint64_t rte_eth_stats::*member;
  const char* description;
};
constexpr DriverCounter kDriver[] = {
    {"ipackets", &rte_eth_stats::ipackets, "packets the port received (driver)"},
    {"opackets", &rte_eth_stats::opackets, "packets the port sent (driver)"},
    {"ibytes", &rte_eth_stats::ibytes, "bytes the port received (driver; some vdevs count none)"},
    {"obytes", &rte_eth_stats::obytes, "bytes the port sent (driver; some vdevs count none)"},
    {"imissed", &rte_eth_stats::imissed, "packets the NIC dropped because the RX queues were full (driver)"},
    {"ierrors", &rte_eth_stats::ierrors, "erroneous packets received (driver)"},
    {"oerrors", &rte_eth_stats::oerrors, "packets the port failed to send (driver)"},
    {"rx_nombuf", &rte_eth_stats::rx_nombuf, "RX failures for want of an mbuf (driver)"}};
static_assert(std::size(kDriver) + std::size(kPortCounters) <= ctrl::kMaxCounters, "the mirror carries every port counter");

// Row for row with the name lists refresh_mirror builds: the same tables in the same order.
ctrl::CounterHelp counter_help() {
  ctrl::CounterHelp h{};
  auto rows = [](char (*dst)[ctrl::kCounterHelpLen], const auto& table, size_t at = 0) {
    for (const auto& c : table) ctrl::copy_name(dst[at++], ctrl::kCounterHelpLen, c.description);
    return at;
  };
  rows(h.gateway, kGatewayCounters);
  rows(h.tunnel, kTunnelCounters);
  rows(h.worker, kWorkerCounters);
  rows(h.port, kPortCounters, rows(h.port, kDriver));
  return h;
}

}  // namespace

void Dataplane::Impl::refresh_mirror() {
  if (!ctrl->has_counter_help()) ctrl->write_counter_help(counter_help());
  const Stats s = stats();
  ctrl::GatewayInfo g{};
  ctrl::copy_name(g.name, sizeof(g.name), gw.name);
  g.mode = uint32_t(model.mode() == config::Mode::kActiveActive ? ctrl::Mode::kActiveActive
                                                                 : ctrl::Mode::kActiveStandby);
  g.n_tunnels = uint32_t(gw.tunnels.size());
  g.n_instances = uint32_t(gw.instances.size());
  g.n_workers = uint32_t(workers.size());
  g.generation = generation;
  for (size_t r = 0; r < kDropCount; ++r) {
    g.drops[r] = s.drops[r];
    ctrl::copy_name(g.drop_names[r], sizeof(g.drop_names[r]), kDropNames[r]);
  }
  for (size_t r = 0; r < esp::kDropCount; ++r) {
    uint64_t v = s.esp_table_drops[r];
    for (const auto& t : s.tunnels) v += t.esp_drop_reasons[r];
    g.esp_drops[r] = v;
    ctrl::copy_name(g.esp_drop_names[r], sizeof(g.esp_drop_names[r]), esp::to_string(esp::Drop(r)));
  }
  auto kind = [](CounterKind k) { return k == CounterKind::kCounter ? ctrl::kCounterMonotonic : ctrl::kCounterGauge; };
  for (const auto& c : kGatewayCounters) {
    const uint32_t i = *ctrl::add_counter_name(g.counter_names, &g.n_counters, c.name);
    g.counters[i] = s.*c.member;
    g.counter_kinds[i] = kind(c.kind);
  }
  for (const auto& c : kTunnelCounters)
    g.tunnel_counter_kinds[*ctrl::add_counter_name(g.tunnel_counter_names, &g.n_tunnel_counters, c.name)] = kind(c.kind);
  for (const auto& c : kWorkerCounters)
    g.worker_counter_kinds[*ctrl::add_counter_name(g.worker_counter_names, &g.n_worker_counters, c.name)] = kind(c.kind);
  // Ports: the driver's counters (largest sampled, see sample_ports) then the workers' own, all by name.
  for (const auto& d : kDriver) ctrl::add_counter_name(g.port_counter_names, &g.n_port_counters, d.name);
  for (const auto& c : kPortCounters)
    g.port_counter_kinds[*ctrl::add_counter_name(g.port_counter_names, &g.n_port_counters, c.name)] = kind(c.kind);
  g.n_ports = uint32_t(std::min<size_t>(ports.size(), ctrl::kMaxPorts));
  if (pool != nullptr) g.mbufs_in_use = rte_mempool_in_use_count(pool);
  g.updated_ns = uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(
                              std::chrono::system_clock::now().time_since_epoch()).count());
  ctrl->write_gateway(g);
  for (uint32_t i = 0; i < gw.instances.size() && i < ctrl::kMaxInstances; ++i) {
    ctrl::InstanceInfo r{};
    const auto& in = gw.instances[i];
    ctrl::copy_name(r.name, sizeof(r.name), in.name);
    char buf[64];
    std::string ips = in.ipv4.version ? net::format_ip(in.ipv4, buf, sizeof(buf)) : "";
    if (in.ipv6.version) ips += std::string(ips.empty() ? "" : " ") + net::format_ip(in.ipv6, buf, sizeof(buf));
    ctrl::copy_name(r.ip, sizeof(r.ip), ips);
    r.admin = uint32_t(to_wire(model.instance_admin(i)));
    r.standby = model.standby(i) ? 1 : 0;
    r.resets = resets[i];
    ctrl->write_instance(i, r);
  }
  for (uint32_t t = 0; t < gw.tunnels.size() && t < ctrl::kMaxTunnels; ++t) {
    ctrl::TunnelInfo r{};
    const TunnelStats& ts = s.tunnels[t];
    ctrl::copy_name(r.name, sizeof(r.name), ts.name);
    ctrl::copy_name(r.instance, sizeof(r.instance), ts.instance);
    ctrl::copy_name(r.device, sizeof(r.device), ts.device);
    r.instance_index = gw.tunnels[t].instance;
    r.admin = uint32_t(to_wire(ts.admin));
    r.state = uint32_t(to_wire(ts.effective));
    r.weight = ts.weight;
    r.effective_weight = ts.effective_weight;
    {
      std::lock_guard lk(snap_mu);  // keying replaces SAs under it
      r.out_spi = sa_out[t] ? sa_out[t]->spi() : 0;
      r.in_spi = sa_in[t] ? sa_in[t]->spi() : !ike_in[t].empty() ? ike_in[t].back()->spi() : 0;
      r.last_seq_out = sa_out[t] ? sa_out[t]->last_seq() : 0;
    }
    for (size_t k = 0; k < std::size(kTunnelCounters); ++k) r.counters[k] = ts.*kTunnelCounters[k].member;
    r.keying = ts.ike ? 1 : 0;
    for (const auto& v : ts.sas) {
      if (r.n_sas == ctrl::kMaxSaRows) break;
      ctrl::SaRow& row = r.sas[r.n_sas++];
      row.spi = v.spi;
      const uint32_t st = std::string_view(v.state) == "replaced" ? 1 : std::string_view(v.state) == "ended" ? 2 : 0;
      row.flags = (v.outbound ? 1u : 0u) | (v.esn ? 2u : 0u) | (v.udp ? 4u : 0u) | st << 8;
      row.age_ms = v.age_ms;
      row.packets = v.packets;
      row.bytes = v.bytes;
      row.seq = v.seq;
      row.flags |= v.needs_rekey ? 8u : 0u;
      ctrl::copy_name(row.cipher, sizeof(row.cipher), v.cipher);
      row.window = v.window;
    }
    r.liveness = liveness_wire(ts.live_enabled, ts.live);
    if (ts.live_enabled) {
      r.liveness_penalty = ts.penalty;
      r.last_proof_ms_ago = ts.last_proof_ms_ago;
    }
    ctrl->write_tunnel(t, r);
  }
  for (uint32_t w = 0; w < workers.size() && w < ctrl::kMaxWorkers; ++w) {
    ctrl::WorkerInfo r{};
    r.lcore = workers[w]->lcore;
    for (size_t k = 0; k < std::size(kWorkerCounters); ++k) r.counters[k] = workers[w]->ctr.*kWorkerCounters[k].member;
    ctrl->write_worker(w, r);
  }
  for (uint32_t i = 0; i < g.n_ports; ++i) {
    ctrl::PortInfo r{};
    ctrl::copy_name(r.name, sizeof(r.name), ports[i].name);
    for (size_t o = 0; o < host.size(); ++o)
      if (host[o].port == i && host[o].twin != UINT16_MAX) ctrl::copy_name(r.host, sizeof(r.host), ports[host[o].twin].name);
    r.port_id = ports[i].id;
    size_t k = 0;
    const rte_eth_stats es = i < pmd_seen.size() ? pmd_seen[i] : rte_eth_stats{};
    for (const auto& d : kDriver) r.counters[k++] = es.*d.member;
    const PortWorkerCounters pw = port_worker_totals(i);
    for (const auto& c : kPortCounters) r.counters[k++] = pw.*c.member;
    ctrl->write_port(i, r);
  }
  ctrl->set_generation(generation);
}

}  // namespace mg::dp
