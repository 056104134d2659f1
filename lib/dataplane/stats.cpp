// Counters: gathered from their owners (workers, SAs, pin tables, the liveness detector) by the tables that
// dataplane.h declares, and written out as JSON and a text table. Any thread may call collect(): worker
// counters are read racily (each a monotonic 64-bit word), the rest under snap_mu.
#include <fmt/core.h>

#include "dataplane/internal.h"

namespace mg::dp {

const char* to_string(Drop d) noexcept { return size_t(d) < kDropCount ? kDropNames[size_t(d)] : "?"; }

Stats Dataplane::Impl::collect() const {
  Stats s;
  s.generation = generation;
  s.elapsed_s = tsc_hz ? double(rte_get_tsc_cycles() - start_tsc) / double(tsc_hz) : 0;
  s.commands_ok = cmds_ok;
  s.commands_rejected = cmds_rejected;
  s.route_updates = kr.updates;
  s.route_updates_failed = kr.failed;
  s.routes_learned = kr.learned;
  s.routes_refused = kr.refused;
  s.routes_announced = ann.inside_routes();
  s.announce_changes = ann.changes;
  s.announce_failed = ann.failed;
  s.tunnels.resize(gw.tunnels.size());
  {
    std::lock_guard lk(snap_mu);
    const uint32_t now = now_ms();
    for (uint32_t t = 0; t < gw.tunnels.size(); ++t) {
      TunnelStats& ts = s.tunnels[t];
      const auto& ct = gw.tunnels[t];
      ts.name = ct.name;
      ts.instance = gw.instances[ct.instance].name;
      ts.device = gw.devices[ct.device].name;
      ts.admin = model.tunnel_admin(t);
      ts.effective = model.effective(t);
      ts.weight = model.weight(t);
      ts.effective_weight = model.effective_weight(t);
      ts.ike = ct.ike;
      for_each_sa(t, [&](const esp::Sa& sa, bool out) {
        const esp::SaStats st = sa.stats();
        TunnelStats::SaView v;
        v.outbound = out;
        v.spi = sa.spi();
        v.packets = st.packets;
        v.bytes = st.bytes;
        v.seq = out ? sa.last_seq() : sa.replay().top();
        v.esn = sa.config().esn;
        v.udp = sa.config().encap == net::Encap::kUdp;
        v.cipher = crypto::to_string(sa.config().cipher);
        v.window = out ? 0 : sa.replay().size();
        v.needs_rekey = out && sa.needs_rekey();
        if (const auto it = ike_info.find(&sa); it != ike_info.end()) v.age_ms = int64_t(now_ms() - it->second.installed_ms);
        if (out && &sa != sa_out[t].get()) v.state = "replaced";
        else if (out && sa.needs_rekey()) v.state = "ended";
        ts.sas.push_back(v);
      });
      if (t < tunif_ctr.size()) {
        ts.kernel_refused = tunif_ctr[t].refused;
        ts.kernel_unwritten = tunif_ctr[t].unwritten;
      }
      if (t < tunnel_mtu.size()) {
        ts.mtu = tunnel_mtu[t].link;
        ts.path_mtu = tunnel_mtu[t].path;
        ts.mss_clamp_v4 = tunnel_mtu[t].mss4;
        ts.mss_clamp_v6 = tunnel_mtu[t].mss6;
      }
      if (t < live.tunnels() && live.enabled(t)) {
        ts.live_enabled = true;
        ts.live_interval_ms = ct.liveness.interval_ms;
        ts.live_multiplier = ct.liveness.multiplier;
        ts.live = live.state(t);
        ts.last_proof_ms_ago = live.ever_proof(t) ? std::max<int32_t>(0, int32_t(now - live.last_proof(t))) : -1;
        ts.flaps = live.flaps(t);
        ts.suppressions = live.suppressions(t);
        ts.penalty = live.penalty(t, now);
      }
    }
  }
  for (const auto& wp : workers) {
    const Worker& w = *wp;
    WorkerCounters& sw = s;
    for (const auto& c : kWorkerCounters) sw.*c.member += w.ctr.*c.member;
    for (size_t r = 0; r < kDropCount; ++r) s.drops[r] += w.ctr.drops[r];
    const flow::SpreadCounters& pc = w.pins->counters();
    s.flows_new += pc.new_flows;
    s.moved_down += pc.moved_down;
    s.moved_drain += pc.moved_drain;
    s.moved_route += pc.moved_route;
    s.moved_idle += pc.moved_idle;
    s.evicted += pc.evicted;
    s.expired += pc.expired;
    for (size_t t = 0; t < s.tunnels.size(); ++t) {
      TunnelWorkerCounters& dst = s.tunnels[t];
      const TunnelWorkerCounters& src = w.tctr[t];
      for (const auto& c : kTunnelWorkerCounters)
        dst.*c.member = c.kind == CounterKind::kMax ? std::max(dst.*c.member, src.*c.member)
                                                    : dst.*c.member + src.*c.member;
      const flow::TunnelCounters& tc = w.pins->tunnel_counters(flow::TunnelId(t));
      s.tunnels[t].pinned += tc.pinned;
      s.tunnels[t].placed += tc.placed;
      s.tunnels[t].moved_in += tc.moved_in;
    }
  }
  // Raw (not yet less the clear-counters baseline) sums here, as moved_at_publish was taken.
  const uint64_t moved = s.moved_down + s.moved_drain + s.moved_route, at = moved_at_publish.load(std::memory_order_relaxed);
  s.moved_last_change = moved >= at ? moved - at : 0;
  std::lock_guard lk(snap_mu);  // resets swap SAs and tables under it
  for (size_t t = 0; t < s.tunnels.size(); ++t) {
    TunnelStats& ts = s.tunnels[t];
    esp::SaStats o{}, i{};
    for_each_sa(t, [&](const esp::Sa& sa, bool out) {
      const esp::SaStats x = sa.stats();
      esp::SaStats& d = out ? o : i;
      d.packets += x.packets;
      d.bytes += x.bytes;
      for (size_t r = 0; r < esp::kDropCount; ++r) d.drops[r] += x.drops[r];
    });
    const esp::SaStats& ro = retired_out[t];
    const esp::SaStats& ri = retired_in[t];
    ts.bytes_out = o.bytes + ro.bytes;  // inner bytes encrypted (tx_full ones included)
    // Keyed by IKE: the newest inbound SA (none before the first is installed).
    const esp::Sa* in_sa = sa_in[t] ? sa_in[t].get() : !ike_in[t].empty() ? ike_in[t].back().get() : nullptr;
    for (auto [sa, e] : {std::pair{static_cast<const esp::Sa*>(sa_out[t].get()), &ts.encap_out},
                         std::pair{in_sa, &ts.encap_in}}) {
      if (sa == nullptr) continue;
      const esp::SaConfig& c = sa->config();
      *e = TunnelStats::Encap{c.encap, c.udp_sport, c.udp_dport, c.esn};
    }
    for (size_t r = 0; r < esp::kDropCount; ++r) {
      const uint64_t out = o.drops[r] + ro.drops[r], in = i.drops[r] + ri.drops[r];
      ts.esp_drop_reasons[r] = out + in;
      ts.esp_drops += out + in;
      s.esp_out_drops += out;
      s.esp_in_drops += in;
    }
  }
  // Drops before an SA was known: the live tables', the replaced ones not yet retired and, once,
  // those retired.
  for (size_t r = 0; r < esp::kDropCount; ++r) s.esp_table_drops[r] = retired_tables.drops[r];
  for (const auto* list : {&in_tables, &retiring_tables}) {
    for (const auto& tb : *list) {
      const esp::SaStats ts = tb->stats();
      for (size_t r = 0; r < esp::kDropCount; ++r) s.esp_table_drops[r] += ts.drops[r];
    }
  }
  for (size_t r = 0; r < esp::kDropCount; ++r) s.esp_in_drops += s.esp_table_drops[r];
  return s;
}

namespace {

// `clear counters`: counters restart from the baseline; gauges, lifetime figures and maxima are kept.
void subtract(Stats& s, const Stats& b) {
  for (const auto& c : kGatewayCounters)
    if (c.kind == CounterKind::kCounter) s.*c.member -= b.*c.member;
  for (size_t r = 0; r < kDropCount; ++r) s.drops[r] -= b.drops[r];
  for (size_t r = 0; r < esp::kDropCount; ++r) s.esp_table_drops[r] -= b.esp_table_drops[r];
  for (size_t t = 0; t < s.tunnels.size() && t < b.tunnels.size(); ++t) {
    for (const auto& c : kTunnelCounters)
      if (c.kind == CounterKind::kCounter) s.tunnels[t].*c.member -= b.tunnels[t].*c.member;
    for (size_t r = 0; r < esp::kDropCount; ++r) s.tunnels[t].esp_drop_reasons[r] -= b.tunnels[t].esp_drop_reasons[r];
  }
}

}  // namespace

Stats Dataplane::Impl::stats() const {
  Stats s = collect();
  std::lock_guard lk(snap_mu);
  subtract(s, baseline);
  return s;
}

void Dataplane::Impl::clear_counters() {
  Stats now = collect();
  std::lock_guard lk(snap_mu);
  baseline = std::move(now);
}

nlohmann::json to_json(const Stats& s) {
  nlohmann::json j;
  j["generation"] = s.generation;
  j["elapsed_s"] = s.elapsed_s;
  for (const auto& c : kGatewayCounters) j[c.name] = s.*c.member;
  nlohmann::json drops = nlohmann::json::object();
  for (size_t r = 0; r < kDropCount; ++r) drops[kDropNames[r]] = s.drops[r];
  j["drops"] = drops;
  nlohmann::json tdrops = nlohmann::json::object();
  for (size_t r = 0; r < esp::kDropCount; ++r)
    if (s.esp_table_drops[r]) tdrops[esp::to_string(esp::Drop(r))] = s.esp_table_drops[r];
  j["esp_unknown_sa_drops"] = tdrops;
  // The flow counters again, grouped as scripts have read them since the first release.
  j["flows"] = {{"new", s.flows_new}, {"moved_down", s.moved_down}, {"moved_drain", s.moved_drain}, {"moved_route", s.moved_route},
                {"moved_idle", s.moved_idle}, {"evicted", s.evicted}, {"expired", s.expired}};
  nlohmann::json ts = nlohmann::json::array();
  for (const auto& t : s.tunnels) {
    nlohmann::json e;
    e["name"] = t.name;
    e["instance"] = t.instance;
    e["device"] = t.device;
    e["admin"] = to_string(t.admin);
    e["state"] = to_string(t.effective);
    e["weight"] = t.weight;
    e["effective_weight"] = t.effective_weight;
    for (const auto& c : kTunnelCounters) e[c.name] = t.*c.member;
    nlohmann::json ed = nlohmann::json::object();
    for (size_t r = 0; r < esp::kDropCount; ++r)
      if (t.esp_drop_reasons[r]) ed[esp::to_string(esp::Drop(r))] = t.esp_drop_reasons[r];
    e["esp_drops"] = ed;  // the table's esp_drops, by reason (scripts read it so): its values sum to it
    e["mtu"] = {{"link", t.mtu}, {"path", t.path_mtu}, {"mss_clamp_v4", t.mss_clamp_v4},
                {"mss_clamp_v6", t.mss_clamp_v6}};
    e["keying"] = t.ike ? "ike" : "static";
    nlohmann::json sas = nlohmann::json::array();
    for (const auto& v : t.sas)
      sas.push_back({{"direction", v.outbound ? "out" : "in"}, {"spi", v.spi}, {"state", v.state},
                     {"packets", v.packets}, {"bytes", v.bytes}, {"seq", v.seq}, {"esn", v.esn},
                     {"encap", v.udp ? "udp" : "none"}, {"age_ms", v.age_ms}});
    e["sas"] = sas;
    auto encap = [](const TunnelStats::Encap& x) {
      if (x.mode != net::Encap::kUdp) return nlohmann::json{{"mode", "none"}};
      return nlohmann::json{{"mode", "udp"}, {"sport", x.sport}, {"dport", x.dport}};
    };
    e["encap"] = {{"out", encap(t.encap_out)}, {"in", encap(t.encap_in)}};
    e["esn"] = {{"out", t.encap_out.esn}, {"in", t.encap_in.esn}};
    if (t.live_enabled) {
      e["liveness"] = {{"state", to_string(t.live)}, {"last_proof_ms_ago", t.last_proof_ms_ago},
                       {"flaps", t.flaps}, {"suppressions", t.suppressions}, {"penalty", t.penalty},
                       {"interval_ms", t.live_interval_ms}, {"multiplier", t.live_multiplier},
                       {"probe_rtt_avg_us", t.probe_replies_in ? t.probe_rtt_sum_us / t.probe_replies_in : 0},
                       {"probe_rtt_max_us", t.probe_rtt_max_us}};
    }
    ts.push_back(e);
  }
  j["tunnels"] = ts;
  return j;
}

std::string format_table(const Stats& s) {
  uint64_t total_out = 0;
  for (const auto& t : s.tunnels) total_out += t.packets_out;
  std::string o = fmt::format("gen {}  {:.1f}s  inside rx {} tx {}  outside rx {} tx {}\n", s.generation,
                              s.elapsed_s, s.inside_rx, s.inside_tx, s.outside_rx, s.outside_tx);
  o += fmt::format("{:<12} {:<10} {:<10} {:>6} {:>12} {:>7} {:>10} {:>10} {:>12} {:>8}\n", "tunnel", "instance",
                   "state", "weight", "pkts out", "share", "flows", "placed", "pkts in", "esp drop");
  for (const auto& t : s.tunnels) {
    o += fmt::format("{:<12} {:<10} {:<10} {:>6} {:>12} {:>6.1f}% {:>10} {:>10} {:>12} {:>8}\n", t.name, t.instance,
                     to_string(t.effective), t.effective_weight, t.packets_out,
                     total_out ? 100.0 * double(t.packets_out) / double(total_out) : 0.0, t.pinned, t.placed,
                     t.packets_in, t.esp_drops);
  }
  std::string drops;
  for (size_t r = 0; r < kDropCount; ++r)
    if (s.drops[r]) drops += fmt::format(" {}={}", kDropNames[r], s.drops[r]);
  for (size_t r = 0; r < esp::kDropCount; ++r)
    if (s.esp_table_drops[r]) drops += fmt::format(" {}={}", esp::to_string(esp::Drop(r)), s.esp_table_drops[r]);
  o += fmt::format("drops:{} esp_out={} esp_in={}  flows new={} moved_down={} moved_drain={} moved_route={} evicted={}\n",
                   drops.empty() ? " none" : drops, s.esp_out_drops, s.esp_in_drops, s.flows_new, s.moved_down,
                   s.moved_drain, s.moved_route, s.evicted);
  return o;
}

void Dataplane::Impl::sample_ports() noexcept {
  pmd_seen.resize(ports.size());
  for (size_t i = 0; i < ports.size(); ++i) {
    rte_eth_stats es{};
    if (rte_eth_stats_get(ports[i].id, &es) != 0) continue;
    rte_eth_stats& m = pmd_seen[i];
    m.ipackets = std::max(m.ipackets, es.ipackets);
    m.opackets = std::max(m.opackets, es.opackets);
    m.ibytes = std::max(m.ibytes, es.ibytes);
    m.obytes = std::max(m.obytes, es.obytes);
    m.imissed = std::max(m.imissed, es.imissed);
    m.ierrors = std::max(m.ierrors, es.ierrors);
    m.oerrors = std::max(m.oerrors, es.oerrors);
    m.rx_nombuf = std::max(m.rx_nombuf, es.rx_nombuf);
  }
}

PortWorkerCounters Dataplane::Impl::port_worker_totals(size_t i) const noexcept {
  PortWorkerCounters sum;
  for (const auto& c : kPortCounters) {
    uint64_t v = 0;
    for (const auto& w : workers) v += w->pctr[i].*c.member;
    if (i < main_pctr.size()) v += main_pctr[i].*c.member;  // a kernel twin's traffic is main's
    sum.*c.member = v;
  }
  return sum;
}

// Every port's counters at the end of run(): the driver's (the largest values sampled) and the workers' own.
nlohmann::json Dataplane::Impl::port_stats() {
  sample_ports();
  nlohmann::json out = nlohmann::json::object();
  for (size_t i = 0; i < ports.size(); ++i) {
    const auto& p = ports[i];
    const rte_eth_stats& es = pmd_seen[i];
    nlohmann::json j = {{"ipackets", es.ipackets}, {"opackets", es.opackets}, {"imissed", es.imissed},
                        {"ierrors", es.ierrors}, {"oerrors", es.oerrors}, {"rx_nombuf", es.rx_nombuf}};
    const PortWorkerCounters pw = port_worker_totals(i);
    for (const auto& c : kPortCounters) j[c.name] = pw.*c.member;
    for (size_t o = 0; o < host.size(); ++o)
      if (host[o].port == i && host[o].twin != UINT16_MAX) {
        j["host"] = ports[host[o].twin].name;
        j["host_ring_full"] = host_ring_full[o];  // kernel frames lost between main and worker 0
      }
    out[p.name] = std::move(j);
    if (es.imissed || es.ierrors || es.oerrors || es.rx_nombuf)
      log::notice(log::Type::kPort, "port {}: imissed {} ierrors {} oerrors {} rx_nombuf {}", p.name, es.imissed,
                  es.ierrors, es.oerrors, es.rx_nombuf);
  }
  return out;
}

}  // namespace mg::dp
