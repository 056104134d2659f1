// DPDK telemetry (/meshgate/...): the gateway's totals, tunnels, SAs and workers, for dpdk-telemetry.py and any
// client of the v2 socket. The callbacks run on DPDK's telemetry thread, concurrently with main and the workers, so
// they read only what collect() may read from any thread: worker counters racily (monotonic 64-bit words, in
// objects that live as long as the process), everything main replaces (SAs, the model, liveness) under snap_mu,
// which keying, resets and verdicts hold while they swap or free it.
#include <rte_mempool.h>
#include <rte_telemetry.h>

#include <charconv>
#include <cstdio>
#include <mutex>

#include "dataplane/internal.h"
#include "net/net.h"

namespace mg::dp {

namespace {

// unregister_telemetry() takes g_mu before clearing g_impl, so once it returns no callback still uses the Impl
// that is about to be destroyed (the telemetry thread outlives it until rte_eal_cleanup).
std::mutex g_mu;
const Dataplane::Impl* g_impl = nullptr;

int tel_stats(const char*, const char*, rte_tel_data* d) {
  std::lock_guard g(g_mu);
  if (g_impl == nullptr) return -1;
  const Stats s = g_impl->stats();  // counters read racily (monotonic), model under its own mutex
  rte_tel_data_start_dict(d);
  rte_tel_data_add_dict_u64(d, "generation", s.generation);
  for (const auto& c : kGatewayCounters) rte_tel_data_add_dict_u64(d, c.name, s.*c.member);
  for (size_t r = 0; r < kDropCount; ++r) rte_tel_data_add_dict_u64(d, kDropNames[r], s.drops[r]);
  // DPDK 22.11's /mempool/info has no counts: mbufs in use (held by rings, queues and workers) for leak watching.
  if (g_impl->pool != nullptr) rte_tel_data_add_dict_u64(d, "mbufs_in_use", rte_mempool_in_use_count(g_impl->pool));
  return 0;
}

// DPDK 22.11's telemetry nests no dict in a dict and takes dict keys of [A-Za-z0-9_/.] only (a tunnel named
// "a-1" is refused), so as with /ethdev/list and /ethdev/stats,ID: /meshgate/tunnels lists the tunnel names,
// /meshgate/tunnel,NAME (or index) gives one in full. SAs and workers follow the same pattern.
int tel_tunnels(const char*, const char*, rte_tel_data* d) {
  std::lock_guard g(g_mu);
  if (g_impl == nullptr) return -1;
  rte_tel_data_start_array(d, RTE_TEL_STRING_VAL);
  for (const auto& t : g_impl->gw.tunnels) rte_tel_data_add_array_string(d, t.name.c_str());
  return 0;
}

int tel_tunnel(const char*, const char* params, rte_tel_data* d) {
  std::lock_guard g(g_mu);
  if (g_impl == nullptr || params == nullptr) return -1;
  const Stats s = g_impl->stats();
  const std::string p(params);
  const TunnelStats* t = nullptr;
  for (size_t i = 0; i < s.tunnels.size() && !t; ++i)
    if (s.tunnels[i].name == p || std::to_string(i) == p) t = &s.tunnels[i];
  if (t == nullptr) return -1;
  rte_tel_data_start_dict(d);
  rte_tel_data_add_dict_string(d, "name", t->name.c_str());
  rte_tel_data_add_dict_string(d, "instance", t->instance.c_str());
  rte_tel_data_add_dict_string(d, "device", t->device.c_str());
  rte_tel_data_add_dict_string(d, "admin", to_string(t->admin));
  rte_tel_data_add_dict_string(d, "state", to_string(t->effective));
  rte_tel_data_add_dict_u64(d, "weight", t->weight);
  rte_tel_data_add_dict_u64(d, "effective_weight", t->effective_weight);
  for (const auto& k : kTunnelCounters) rte_tel_data_add_dict_u64(d, k.name, t->*k.member);
  rte_tel_data_add_dict_string(d, "liveness", t->live_enabled ? to_string(t->live) : "off");
  if (t->live_enabled)
    rte_tel_data_add_dict_int(d, "last_proof_ms_ago", int(std::min<int64_t>(t->last_proof_ms_ago, INT32_MAX)));
  return 0;
}

// An SA's name in /meshgate/sas and the parameter of /meshgate/sa: TUNNEL,DIRECTION,SPI. The SPI alone does not
// name an SA: each device picks the SPIs of our outbound SAs, so two tunnels' may be equal, and an outbound SPI may
// equal an inbound one.
std::string sa_id(const std::string& tunnel, bool out, uint32_t spi) {
  char buf[16];
  std::snprintf(buf, sizeof(buf), "0x%08x", spi);
  return tunnel + (out ? ",out," : ",in,") + buf;
}

bool parse_spi(std::string_view s, uint32_t* spi) {
  int base = 10;
  if (s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
    s.remove_prefix(2);
    base = 16;
  }
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), *spi, base);
  return ec == std::errc() && end == s.data() + s.size() && *spi != 0;
}

int tel_sas(const char*, const char*, rte_tel_data* d) {
  std::lock_guard g(g_mu);
  if (g_impl == nullptr) return -1;
  const Dataplane::Impl& m = *g_impl;
  rte_tel_data_start_array(d, RTE_TEL_STRING_VAL);
  std::lock_guard lk(m.snap_mu);  // keying and resets replace SAs under it
  for (size_t t = 0; t < m.gw.tunnels.size(); ++t)
    m.for_each_sa(t, [&](const esp::Sa& sa, bool out) {
      // Past RTE_TEL_MAX_ARRAY_ENTRIES the array refuses more: the list is cut there (256 tunnels mid-rekey).
      rte_tel_data_add_array_string(d, sa_id(m.gw.tunnels[t].name, out, sa.spi()).c_str());
    });
  return 0;
}

// One SA, named as /meshgate/sas lists it, or by its SPI alone (decimal or 0x hex) when no other SA has that SPI.
// Lifetime figures of the SA (as `meshgatectl show sa`): `clear counters` does not reset them. No key material:
// the SA keeps none outside its cipher engine.
int tel_sa(const char*, const char* params, rte_tel_data* d) {
  std::lock_guard g(g_mu);
  if (g_impl == nullptr || params == nullptr) return -1;
  const Dataplane::Impl& m = *g_impl;
  const std::string_view p(params);
  std::string_view want_tunnel, want_dir, spi_text = p;
  if (const size_t c2 = p.rfind(','); c2 != std::string_view::npos) {
    const size_t c1 = c2 == 0 ? std::string_view::npos : p.rfind(',', c2 - 1);
    if (c1 == std::string_view::npos) return -1;
    want_tunnel = p.substr(0, c1);
    want_dir = p.substr(c1 + 1, c2 - c1 - 1);
    spi_text = p.substr(c2 + 1);
    if (want_dir != "in" && want_dir != "out") return -1;
  }
  uint32_t spi = 0;
  if (!parse_spi(spi_text, &spi)) return -1;

  std::lock_guard lk(m.snap_mu);
  const esp::Sa* found = nullptr;
  size_t tunnel = 0, matches = 0;
  bool outbound = false;
  for (size_t t = 0; t < m.gw.tunnels.size(); ++t) {
    if (!want_tunnel.empty() && m.gw.tunnels[t].name != want_tunnel) continue;
    m.for_each_sa(t, [&](const esp::Sa& sa, bool out) {
      if (sa.spi() != spi || (!want_dir.empty() && (want_dir == "out") != out)) return;
      if (matches++ == 0) found = &sa, tunnel = t, outbound = out;
    });
  }
  if (matches != 1) return -1;  // none, or an SPI that names several: ask by the full name
  const esp::Sa& sa = *found;
  const esp::SaConfig& c = sa.config();
  const esp::SaStats st = sa.stats();
  rte_tel_data_start_dict(d);
  rte_tel_data_add_dict_string(d, "tunnel", m.gw.tunnels[tunnel].name.c_str());
  rte_tel_data_add_dict_string(d, "direction", outbound ? "out" : "in");
  rte_tel_data_add_dict_u64(d, "spi", sa.spi());
  rte_tel_data_add_dict_string(d, "keying", m.gw.tunnels[tunnel].ike ? "ike" : "static");
  const char* state = "active";
  if (outbound && &sa != m.sa_out[tunnel].get()) state = "replaced";
  else if (outbound && sa.needs_rekey()) state = "ended";
  rte_tel_data_add_dict_string(d, "state", state);
  rte_tel_data_add_dict_string(d, "cipher", crypto::to_string(c.cipher));
  rte_tel_data_add_dict_string(d, "engine", crypto::to_string(c.engine));
  char ip[64];
  rte_tel_data_add_dict_string(d, "src", c.outer_src.version ? net::format_ip(c.outer_src, ip, sizeof(ip)) : "");
  rte_tel_data_add_dict_string(d, "dst", c.outer_dst.version ? net::format_ip(c.outer_dst, ip, sizeof(ip)) : "");
  rte_tel_data_add_dict_u64(d, "packets", st.packets);
  rte_tel_data_add_dict_u64(d, "bytes", st.bytes);
  if (outbound) {
    rte_tel_data_add_dict_u64(d, "seq", sa.last_seq());
    rte_tel_data_add_dict_u64(d, "seq_reserved", sa.seq_limit());  // durable limit (README "Sequence numbers")
  } else {
    rte_tel_data_add_dict_u64(d, "seq", sa.replay().top());  // the highest number authenticated
    rte_tel_data_add_dict_u64(d, "replay_window", c.replay_window);
  }
  rte_tel_data_add_dict_u64(d, "esn", c.esn ? 1 : 0);
  rte_tel_data_add_dict_string(d, "encap", c.encap == net::Encap::kUdp ? "udp" : "none");
  if (c.encap == net::Encap::kUdp) {
    rte_tel_data_add_dict_u64(d, "udp_sport", c.udp_sport);
    rte_tel_data_add_dict_u64(d, "udp_dport", c.udp_dport);
  }
  int64_t age = -1;  // a static SA is as old as the run
  if (const auto it = m.ike_info.find(&sa); it != m.ike_info.end()) age = int64_t(m.now_ms() - it->second.installed_ms);
  rte_tel_data_add_dict_int(d, "age_ms", int(std::min<int64_t>(age, INT32_MAX)));
  uint64_t drops = 0;
  for (size_t r = 0; r < esp::kDropCount; ++r) {
    const char* name = esp::to_string(esp::Drop(r));
    // Each direction's own reasons, every one of them (0 included) so that scripts need not guess which exist.
    if ((std::string_view(name).substr(0, 4) == "out_") != outbound) continue;
    rte_tel_data_add_dict_u64(d, name, st.drops[r]);
    drops += st.drops[r];
  }
  rte_tel_data_add_dict_u64(d, "drops", drops);
  return 0;
}

int tel_workers(const char*, const char*, rte_tel_data* d) {
  std::lock_guard g(g_mu);
  if (g_impl == nullptr) return -1;
  rte_tel_data_start_array(d, RTE_TEL_U64_VAL);
  for (const auto& w : g_impl->workers) rte_tel_data_add_array_u64(d, w->id);
  return 0;
}

// One worker: its lcore, its counters and drops by name (lifetime: `clear counters` does not reset them), and per
// port, in the order of "ports", what it received and sent there.
int tel_worker(const char*, const char* params, rte_tel_data* d) {
  std::lock_guard g(g_mu);
  if (g_impl == nullptr || params == nullptr) return -1;
  const Dataplane::Impl& m = *g_impl;
  const std::string_view p(params);
  size_t id = 0;
  const auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), id);
  if (ec != std::errc() || end != p.data() + p.size() || id >= m.workers.size()) return -1;
  const Worker& w = *m.workers[id];
  rte_tel_data_start_dict(d);
  rte_tel_data_add_dict_u64(d, "worker", w.id);
  rte_tel_data_add_dict_u64(d, "lcore", w.lcore);
  for (const auto& c : kWorkerCounters) rte_tel_data_add_dict_u64(d, c.name, w.ctr.*c.member);
  for (size_t r = 0; r < kDropCount; ++r) rte_tel_data_add_dict_u64(d, kDropNames[r], w.ctr.drops[r]);
  rte_tel_data* names = rte_tel_data_alloc();
  if (names == nullptr) return -ENOMEM;
  rte_tel_data_start_array(names, RTE_TEL_STRING_VAL);
  for (const auto& port : m.ports) rte_tel_data_add_array_string(names, port.name.c_str());
  rte_tel_data_add_dict_container(d, "ports", names, 0);
  for (const auto& c : kPortCounters) {
    rte_tel_data* a = rte_tel_data_alloc();
    if (a == nullptr) return -ENOMEM;
    rte_tel_data_start_array(a, RTE_TEL_U64_VAL);
    for (size_t i = 0; i < m.ports.size(); ++i) rte_tel_data_add_array_u64(a, w.pctr[i].*c.member);
    rte_tel_data_add_dict_container(d, c.name, a, 0);
  }
  return 0;
}

}  // namespace

void Dataplane::Impl::register_telemetry() {
  {
    std::lock_guard g(g_mu);
    g_impl = this;
  }
  rte_telemetry_register_cmd("/meshgate/stats", tel_stats, "Gateway totals and drops by reason. No parameters");
  rte_telemetry_register_cmd("/meshgate/tunnels", tel_tunnels, "Tunnel names. No parameters");
  rte_telemetry_register_cmd("/meshgate/tunnel", tel_tunnel, "One tunnel's state and counters. Parameters: name or index");
  rte_telemetry_register_cmd("/meshgate/sas", tel_sas, "Every SA as TUNNEL,DIRECTION,SPI. No parameters");
  rte_telemetry_register_cmd("/meshgate/sa", tel_sa,
                             "One SA's state and counters. Parameters: TUNNEL,DIRECTION,SPI, or an SPI no other SA has");
  rte_telemetry_register_cmd("/meshgate/workers", tel_workers, "Worker indexes. No parameters");
  rte_telemetry_register_cmd("/meshgate/worker", tel_worker, "One worker's lcore and counters. Parameters: index");
}

void Dataplane::Impl::unregister_telemetry() noexcept {
  std::lock_guard g(g_mu);
  g_impl = nullptr;
}

}  // namespace mg::dp
