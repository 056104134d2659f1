// meshgatectl `show metrics`: the mirror as Prometheus text (0.0.4) or OpenMetrics 1.0, for node-exporter's
// textfile collector or any scraper. Every named counter of the mirror becomes a family of its own (kind from the
// mirror: monotonic -> counter, else gauge), so a counter the data plane adds to its tables is exported without a
// change here; the families that are not plain counters (states, shares, SAs) are built below.
//
// Names: meshgate_<counter> for gateway totals, meshgate_tunnel_/worker_/port_<counter> per record; counters end
// in _total; a counter named *_us is exported in seconds (*_seconds), Prometheus' base unit.
#include <fmt/core.h>

#include <algorithm>
#include <cctype>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "cli.h"

namespace mgctl {

namespace {

using Labels = std::vector<std::pair<std::string, std::string>>;

std::string escape(const std::string& v) {
  std::string o;
  for (char ch : v) {
    if (ch == '\\') o += "\\\\";
    else if (ch == '"') o += "\\\"";
    else if (ch == '\n') o += "\\n";
    else o += ch;
  }
  return o;
}

std::string metric_name(const std::string& n) {
  std::string o;
  for (char ch : n) o += (std::isalnum(static_cast<unsigned char>(ch)) || ch == '_') ? ch : '_';
  return o;
}

// Families in the order first seen; their samples together, as both formats require.
class Exposition {
 public:
  explicit Exposition(bool om) : om_(om) {}

  void add(const std::string& family, bool counter, const std::string& help, const Labels& labels, double v) {
    add_text(family, counter, help, labels, fmt::format("{}", v));
  }
  // Integers as written: a double would round counters above 2^53.
  void add(const std::string& family, bool counter, const std::string& help, const Labels& labels, uint64_t v) {
    add_text(family, counter, help, labels, std::to_string(v));
  }

  void add_text(const std::string& family, bool counter, const std::string& help, const Labels& labels,
                const std::string& v) {
    auto [it, fresh] = index_.try_emplace(family, fams_.size());
    if (fresh) fams_.push_back({family, counter, help, {}});
    Family& f = fams_[it->second];
    std::string line = f.counter ? family + "_total" : family;
    if (!labels.empty()) {
      line += '{';
      for (size_t i = 0; i < labels.size(); ++i)
        line += fmt::format("{}{}=\"{}\"", i ? "," : "", labels[i].first, escape(labels[i].second));
      line += '}';
    }
    f.samples.push_back(line + ' ' + v);
  }

  // HELP text: '\\' and newlines escaped in both formats, '"' too in OpenMetrics.
  std::string escape_help(const std::string& h) const {
    std::string o;
    for (char ch : h) {
      if (ch == '\\') o += "\\\\";
      else if (ch == '\n') o += "\\n";
      else if (ch == '"' && om_) o += "\\\"";
      else o += ch;
    }
    return o;
  }

  std::string text() const {
    std::string o;
    for (const auto& f : fams_) {
      // Prometheus 0.0.4 names a counter's family with its _total; OpenMetrics names it without.
      const std::string name = f.counter && !om_ ? f.name + "_total" : f.name;
      o += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, escape_help(f.help), name, f.counter ? "counter" : "gauge");
      for (const auto& s : f.samples) o += s + '\n';
    }
    if (om_) o += "# EOF\n";
    return o;
  }

 private:
  struct Family {
    std::string name;
    bool counter;
    std::string help;
    std::vector<std::string> samples;
  };
  bool om_;
  std::vector<Family> fams_;
  std::map<std::string, size_t> index_;
};

const char* kStates[] = {"up", "draining", "down"};  // ctrl::State 0..2
const char* kLiveness[] = {"off", "up", "down", "holding", "suppressed"};

// Every counter of one named list, one family per name. prefix: "meshgate_" + record kind. help: the data plane's
// words for each row (CounterHelp), when it wrote them.
void named(Exposition& x, const std::string& prefix, const std::string& what, const c::CounterNames& names,
           uint32_t n, const uint8_t* kinds, const uint64_t* values, const Labels& labels,
           const char (*help_rows)[c::kCounterHelpLen]) {
  for (uint32_t i = 0; i < std::min(n, c::kMaxCounters); ++i) {
    std::string name = c::counter_name(names, n, i);
    if (name.empty()) continue;
    const bool counter = kinds[i] == c::kCounterMonotonic;
    std::string help = FIELD(help_rows[i]);
    if (help.empty()) help = fmt::format("{} counter {}", what, name);
    if (name.size() > 3 && name.compare(name.size() - 3, 3, "_us") == 0)
      x.add(prefix + metric_name(name.substr(0, name.size() - 3) + "_seconds"), counter, help, labels,
            double(values[i]) / 1e6);
    else
      x.add(prefix + metric_name(name), counter, help, labels, values[i]);
  }
}

}  // namespace

std::string metrics_text(const Snapshot& s, const c::CounterHelp& help, bool om, const std::string& gateway) {
  Exposition x(om);
  const auto& g = s.gw;
  const Labels base{{"gateway", gateway}};
  auto with = [&](Labels more) {
    Labels l = base;
    l.insert(l.end(), more.begin(), more.end());
    return l;
  };
  x.add("meshgate_gateway_info", false, "the gateway's configured name and mode (value always 1)",
        with({{"name", FIELD(g.name)}, {"mode", g.mode == 0 ? "active-active" : "active-standby"}}), uint64_t(1));
  x.add("meshgate_generation", false, "state generation: each published change adds one", base, g.generation);
  x.add("meshgate_mirror_updated_timestamp_seconds", false, "when the data plane last refreshed these figures",
        base, double(g.updated_ns) / 1e9);
  x.add("meshgate_mbufs_in_use", false, "packet buffers out of the pool (queues, rings, workers)", base,
        g.mbufs_in_use);
  named(x, "meshgate_", "gateway", g.counter_names, g.n_counters, g.counter_kinds, g.counters, base, help.gateway);
  for (uint32_t r = 0; r < c::kMaxDropReasons; ++r) {
    const std::string dn = FIELD(g.drop_names[r]);
    if (!dn.empty())
      x.add("meshgate_drops", true, "packets dropped, by layer and reason (README: drop reasons)",
            with({{"layer", "dataplane"}, {"reason", dn}}), g.drops[r]);
  }
  for (uint32_t r = 0; r < c::kMaxDropReasons; ++r) {
    const std::string en = FIELD(g.esp_drop_names[r]);
    if (!en.empty())
      x.add("meshgate_drops", true, "", with({{"layer", "esp"}, {"reason", en}}), g.esp_drops[r]);
  }

  for (const auto& in : s.instances) {
    const Labels l = with({{"instance", FIELD(in.name)}});
    for (uint32_t st = 0; st < 3; ++st) {
      Labels ls = l;
      ls.emplace_back("state", kStates[st]);
      x.add("meshgate_instance_state", false, "the instance's admin state (1 for the state it is in)", ls,
            uint64_t(in.admin == st));
    }
    x.add("meshgate_instance_standby", false, "1: the instance is the standby (active-standby mode)", l,
          uint64_t(in.standby != 0));
    x.add("meshgate_instance_resets", true, "instance resets since start", l, uint64_t(in.resets));
  }

  // Distribution: each tunnel's share of the pinned flows, and max/mean over the tunnels that are up.
  uint64_t pinned_sum = 0, pinned_max_up = 0, pinned_sum_up = 0, n_up = 0;
  for (const auto& t : s.tunnels) {
    const uint64_t p = c::counter(g, t, "pinned");
    pinned_sum += p;
    if (t.state == 0) {
      ++n_up;
      pinned_sum_up += p;
      pinned_max_up = std::max(pinned_max_up, p);
    }
  }
  for (const auto& t : s.tunnels) {
    const Labels l = with({{"tunnel", FIELD(t.name)}, {"instance", FIELD(t.instance)}, {"device", FIELD(t.device)}});
    named(x, "meshgate_tunnel_", "tunnel", g.tunnel_counter_names, g.n_tunnel_counters, g.tunnel_counter_kinds,
          t.counters, l, help.tunnel);
    for (const auto& [kind, v] : {std::pair{"admin", t.admin}, std::pair{"effective", t.state}})
      for (uint32_t st = 0; st < 3; ++st) {
        Labels ls = l;
        ls.emplace_back("kind", kind);
        ls.emplace_back("state", kStates[st]);
        x.add("meshgate_tunnel_state", false,
              "1 for the state the tunnel is in: admin (its own) and effective (with its instance's)", ls,
              uint64_t(v == st));
      }
    for (uint32_t st = 0; st < 5; ++st) {
      Labels ls = l;
      ls.emplace_back("state", kLiveness[st]);
      x.add("meshgate_tunnel_liveness", false, "1 for the liveness detector's state (off: not monitored)", ls,
            uint64_t(t.liveness == st));
    }
    if (t.liveness != 0 && t.last_proof_ms_ago >= 0)
      x.add("meshgate_tunnel_last_proof_age_seconds", false, "since the last authenticated inbound packet", l,
            double(t.last_proof_ms_ago) / 1000);
    x.add("meshgate_tunnel_weight", false, "operator weight (0: no new flows)", l, uint64_t(t.weight));
    x.add("meshgate_tunnel_effective_weight", false, "weight the selection table uses now (0 unless up)", l,
          uint64_t(t.effective_weight));
    x.add("meshgate_tunnel_pinned_share", false, "the tunnel's share of all pinned flows (0 when none)", l,
          pinned_sum ? double(c::counter(g, t, "pinned")) / double(pinned_sum) : 0.0);
  }
  x.add("meshgate_tunnels_up", false, "tunnels whose effective state is up", base, n_up);
  x.add("meshgate_pinned_imbalance_ratio", false,
        "pinned flows: the largest over the mean of the tunnels that are up (1 is perfect; 0: no flows)", base,
        pinned_sum_up ? double(pinned_max_up) * double(n_up) / double(pinned_sum_up) : 0.0);

  for (const auto& t : s.tunnels)
    for (uint32_t k = 0; k < std::min(t.n_sas, c::kMaxSaRows); ++k) {
      const c::SaRow& a = t.sas[k];
      const Labels l = with({{"tunnel", FIELD(t.name)},
                             {"spi", fmt::format("0x{:08x}", a.spi)},
                             {"direction", a.flags & 1 ? "out" : "in"},
                             {"cipher", FIELD(a.cipher)}});
      x.add("meshgate_sa_packets", true, "packets through the SA", l, a.packets);
      x.add("meshgate_sa_bytes", true, "inner bytes through the SA", l, a.bytes);
      x.add("meshgate_sa_sequence_number", false, "outbound: last sequence number used; inbound: replay window top", l,
            a.seq);
      x.add("meshgate_sa_needs_rekey", false, "1: the SA's sequence numbers or hard lifetime are used up", l,
            uint64_t((a.flags & 8) != 0));
      if (!(a.flags & 1))
        x.add("meshgate_sa_replay_window_packets", false, "inbound replay window size", l, uint64_t(a.window));
    }

  for (uint32_t w = 0; w < s.workers.size(); ++w)
    named(x, "meshgate_worker_", "worker", g.worker_counter_names, g.n_worker_counters, g.worker_counter_kinds,
          s.workers[w].counters, with({{"worker", std::to_string(w)}, {"lcore", std::to_string(s.workers[w].lcore)}}),
          help.worker);
  for (const auto& p : s.ports)
    named(x, "meshgate_port_", "port", g.port_counter_names, g.n_port_counters, g.port_counter_kinds, p.counters,
          with({{"port", FIELD(p.name)}}), help.port);
  return x.text();
}

}  // namespace mgctl
