// meshgatectl `show`: the mirror as aligned tables or JSON. Counters are read by name; every counter the block
// carries is shown (show counters, show tunnels --json), so a counter the data plane adds needs no change here.
#include <fmt/core.h>

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <initializer_list>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli.h"
#include "table.h"

using nlohmann::json;

namespace mgctl {

namespace {

const char* state_name(uint32_t s) {
  switch (c::State(s)) {
    case c::State::kUp: return "up";
    case c::State::kDrain: return "draining";  // docs/ARCHITECTURE.md's word for the state
    case c::State::kDown: return "down";
  }
  return "?";
}

const char* liveness_name(uint32_t s) {
  static const char* names[] = {"off", "up", "down", "holding", "suppressed"};
  return s < 5 ? names[s] : "?";
}

const char* mode_name(uint32_t m) {
  switch (c::Mode(m)) {
    case c::Mode::kActiveActive: return "active-active";
    case c::Mode::kActiveStandby: return "active-standby";
  }
  return "?";
}

}  // namespace

// ---- mirror snapshot ----

Snapshot read_mirror(const c::Block& b) {
  Snapshot s;
  auto busy = [&](const char* what) {
    return Fail{kExitBusy, fmt::format("mirror busy: the {} record kept changing (gateway pid {} is alive)", what,
                                       b.owner_pid())};
  };
  if (!b.read_gateway(&s.gw)) throw busy("gateway");
  s.instances.resize(std::min(s.gw.n_instances, c::kMaxInstances));
  for (uint32_t i = 0; i < s.instances.size(); ++i)
    if (!b.read_instance(i, &s.instances[i])) throw busy("instance");
  s.tunnels.resize(std::min(s.gw.n_tunnels, c::kMaxTunnels));
  for (uint32_t i = 0; i < s.tunnels.size(); ++i)
    if (!b.read_tunnel(i, &s.tunnels[i])) throw busy("tunnel");
  s.workers.resize(std::min(s.gw.n_workers, c::kMaxWorkers));
  for (uint32_t i = 0; i < s.workers.size(); ++i)
    if (!b.read_worker(i, &s.workers[i])) throw busy("worker");
  s.ports.resize(std::min(s.gw.n_ports, c::kMaxPorts));
  for (uint32_t i = 0; i < s.ports.size(); ++i)
    if (!b.read_port(i, &s.ports[i])) throw busy("port");
  return s;
}

namespace {

std::string hex32(uint32_t v) { return fmt::format("0x{:08x}", v); }

std::string ago(uint64_t then_ns) {
  if (then_ns == 0) return "never";
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  const int64_t now = int64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec;
  return fmt::format("{:.1f} s ago", double(now - int64_t(then_ns)) / 1e9);
}

// ---- show ----

// Every counter of a list by name: a counter the data plane adds shows up here without a change to meshgatectl.
// Rows without a name are shown as counter-<row>.
void all_counters(json& j, const c::CounterNames& names, uint32_t n, const uint64_t* values) {
  for (uint32_t i = 0; i < std::min(n, c::kMaxCounters); ++i) {
    const std::string name = c::counter_name(names, n, i);
    j[name.empty() ? "counter-" + std::to_string(i) : name] = values[i];
  }
}

// A counter list's entries that are not among `shown` (already in a fixed column), in list order.
std::vector<uint32_t> others(const c::CounterNames& names, uint32_t n, std::initializer_list<const char*> shown) {
  std::vector<uint32_t> out;
  for (uint32_t i = 0; i < std::min(n, c::kMaxCounters); ++i) {
    const std::string name = c::counter_name(names, n, i);
    if (std::find_if(shown.begin(), shown.end(), [&](const char* s) { return name == s; }) == shown.end())
      out.push_back(i);
  }
  return out;
}

std::string row_name(const c::CounterNames& names, uint32_t n, uint32_t i) {
  const std::string name = c::counter_name(names, n, i);
  return name.empty() ? "counter-" + std::to_string(i) : name;
}

json tunnel_json(const c::GatewayInfo& g, uint32_t i, const c::TunnelInfo& t) {
  auto ctr = [&](const char* name) { return c::counter(g, t, name); };
  // Every counter first, then the fixed keys (which win over a counter of the same name).
  json j = json::object();
  all_counters(j, g.tunnel_counter_names, g.n_tunnel_counters, t.counters);
  j.update({{"index", i},
            {"name", FIELD(t.name)},
            {"instance", FIELD(t.instance)},
            {"device", FIELD(t.device)},
            {"instance_index", t.instance_index},
            {"admin", state_name(t.admin)},
            {"state", state_name(t.state)},
            {"weight", t.weight},
            {"effective_weight", t.effective_weight},
            {"out_spi", t.out_spi},
            {"in_spi", t.in_spi},
            {"packets_out", ctr("packets_out")},
            {"bytes_out", ctr("bytes_out")},
            {"packets_in", ctr("packets_in")},
            {"bytes_in", ctr("bytes_in")},
            {"pinned", ctr("pinned")},
            {"placed", ctr("placed")},
            {"moved_in", ctr("moved_in")},
            {"esp_drops", ctr("esp_drops")},
            {"last_seq_out", t.last_seq_out}});
  // Only where liveness runs: a gateway without it shows what it always did.
  if (t.liveness != 0)
    j["liveness"] = {{"state", liveness_name(t.liveness)}, {"last_proof_ms_ago", t.last_proof_ms_ago},
                     {"flaps", ctr("flaps")}, {"penalty", t.liveness_penalty}, {"probes_out", ctr("probes_out")},
                     {"probe_replies_in", ctr("probe_replies_in")}};
  if (ctr("reflected") != 0) j["reflected"] = ctr("reflected");
  return j;
}

json drops_json(const uint64_t* counts, const char (*names)[24]) {
  json j = json::object();
  for (uint32_t r = 0; r < c::kMaxDropReasons; ++r)
    if (counts[r]) {
      std::string n = FIELD(names[r]);
      j[n.empty() ? "reason-" + std::to_string(r) : n] = counts[r];
    }
  return j;
}

// `show counters` after its fixed tables: every other counter the block carries, one row per counter, one column
// per gateway / tunnel / worker, so nothing the data plane counts is left out.
void show_other_counters(const Snapshot& s) {
  const auto& g = s.gw;
  const auto gx = others(g.counter_names, g.n_counters, {"inside_rx", "inside_tx", "outside_rx", "outside_tx"});
  if (!gx.empty()) {
    Table t({"GATEWAY_COUNTER", "VALUE"});
    for (uint32_t i : gx) t.row({row_name(g.counter_names, g.n_counters, i), num(g.counters[i])});
    fmt::print("\n");
    t.print();
  }
  const auto tx = others(g.tunnel_counter_names, g.n_tunnel_counters,
                         {"packets_out", "bytes_out", "packets_in", "bytes_in", "esp_drops"});
  if (!tx.empty() && !s.tunnels.empty()) {
    std::vector<std::string> head{"TUNNEL_COUNTER"};
    for (const auto& r : s.tunnels) head.push_back(FIELD(r.name));
    Table t(head);
    for (uint32_t i : tx) {
      std::vector<std::string> row{row_name(g.tunnel_counter_names, g.n_tunnel_counters, i)};
      for (const auto& r : s.tunnels) row.push_back(num(r.counters[i]));
      t.row(row);
    }
    fmt::print("\n");
    t.print();
  }
  const auto wx = others(g.worker_counter_names, g.n_worker_counters,
                         {"inside_rx", "outside_tx", "outside_rx", "inside_tx"});
  if (!wx.empty() && !s.workers.empty()) {
    std::vector<std::string> head{"WORKER_COUNTER"};
    for (uint32_t w = 0; w < s.workers.size(); ++w) head.push_back("worker " + num(w));
    Table t(head);
    for (uint32_t i : wx) {
      std::vector<std::string> row{row_name(g.worker_counter_names, g.n_worker_counters, i)};
      for (const auto& r : s.workers) row.push_back(num(r.counters[i]));
      t.row(row);
    }
    fmt::print("\n");
    t.print();
  }
}

}  // namespace

void show(const c::Block& b, const Options& o, const std::string& what, const Snapshot& s) {
  const auto& g = s.gw;
  auto gc = [&](const char* name) { return c::counter(g, name); };
  auto tc = [&](const c::TunnelInfo& t, const char* name) { return c::counter(g, t, name); };
  auto wc = [&](const c::WorkerInfo& w, const char* name) { return c::counter(g, w, name); };
  if (what == "gateway") {
    if (o.json) {
      json j = {{"name", FIELD(g.name)},       {"block", c::Block::path_for(o.gateway)},
                {"pid", b.owner_pid()},        {"start_time_ns", b.start_time_ns()},
                {"mode", mode_name(g.mode)},   {"generation", b.generation()},
                {"mirror_generation", g.generation},
                {"tunnels", g.n_tunnels},      {"instances", g.n_instances},
                {"workers", g.n_workers},      {"inside_rx", gc("inside_rx")},
                {"inside_tx", gc("inside_tx")},    {"outside_rx", gc("outside_rx")},
                {"outside_tx", gc("outside_tx")},  {"flows_new", gc("flows_new")},
                {"moved_down", gc("moved_down")},  {"moved_drain", gc("moved_drain")},
                {"moved_idle", gc("moved_idle")},  {"moved_route", gc("moved_route")},
                {"evicted", gc("evicted")},
                {"commands_ok", gc("commands_ok")}, {"commands_rejected", gc("commands_rejected")},
                {"updated_ns", g.updated_ns},      {"pending_commands", b.pending()},
                {"mbufs_in_use", g.mbufs_in_use}};
      fmt::print("{}\n", j.dump(2));
      return;
    }
    Table t({"gateway", FIELD(g.name)});
    t.row({"block", fmt::format("{} (pid {})", c::Block::path_for(o.gateway), b.owner_pid())});
    t.row({"mode", mode_name(g.mode)});
    t.row({"generation", num(b.generation())});
    t.row({"size", fmt::format("{} tunnels, {} instances, {} workers", g.n_tunnels, g.n_instances, g.n_workers)});
    t.row({"inside", fmt::format("rx {}  tx {}", gc("inside_rx"), gc("inside_tx"))});
    t.row({"outside", fmt::format("rx {}  tx {}", gc("outside_rx"), gc("outside_tx"))});
    t.row({"flows", fmt::format("new {}  moved: down {} drain {} idle {} route {}  evicted {}", gc("flows_new"),
                                gc("moved_down"), gc("moved_drain"), gc("moved_idle"), gc("moved_route"),
                                gc("evicted"))});
    t.row({"commands", fmt::format("ok {}  rejected {}  pending {}", gc("commands_ok"), gc("commands_rejected"),
                                   b.pending())});
    t.row({"mirror", "updated " + ago(g.updated_ns)});
    t.print();
  } else if (what == "instances") {
    if (o.json) {
      json j = json::array();
      for (uint32_t i = 0; i < s.instances.size(); ++i) {
        const auto& r = s.instances[i];
        j.push_back({{"index", i}, {"name", FIELD(r.name)}, {"ip", FIELD(r.ip)}, {"admin", state_name(r.admin)},
                     {"standby", r.standby != 0}, {"resets", r.resets}});
      }
      fmt::print("{}\n", j.dump(2));
      return;
    }
    Table t({"#", "INSTANCE", "IP", "ADMIN", "ROLE", "RESETS"});
    for (uint32_t i = 0; i < s.instances.size(); ++i) {
      const auto& r = s.instances[i];
      t.row({num(i), FIELD(r.name), FIELD(r.ip), state_name(r.admin), r.standby ? "standby" : "active",
             num(r.resets)});
    }
    t.print();
  } else if (what == "tunnels") {
    if (o.json) {
      json j = json::array();
      for (uint32_t i = 0; i < s.tunnels.size(); ++i) j.push_back(tunnel_json(g, i, s.tunnels[i]));
      fmt::print("{}\n", j.dump(2));
      return;
    }
    bool live = false;
    for (const auto& r : s.tunnels) live |= r.liveness != 0;
    std::vector<std::string> head{"#", "TUNNEL", "INSTANCE", "DEVICE", "ADMIN", "STATE", "WEIGHT", "EFFECTIVE",
                                  "OUT_SPI", "IN_SPI"};
    if (live) head.insert(head.end(), {"LIVENESS", "LAST_PROOF", "FLAPS"});
    Table t(head);
    for (uint32_t i = 0; i < s.tunnels.size(); ++i) {
      const auto& r = s.tunnels[i];
      std::vector<std::string> row{num(i), FIELD(r.name), FIELD(r.instance), FIELD(r.device), state_name(r.admin),
                                   state_name(r.state), num(r.weight), num(r.effective_weight), hex32(r.out_spi),
                                   hex32(r.in_spi)};
      if (live)
        row.insert(row.end(), {liveness_name(r.liveness),
                               r.liveness == 0              ? "-"
                               : r.last_proof_ms_ago < 0    ? "never"
                                                            : fmt::format("{} ms ago", r.last_proof_ms_ago),
                               r.liveness == 0 ? "-" : num(tc(r, "flaps"))});
      t.row(row);
    }
    t.print();
  } else if (what == "sa") {
    static const char* states[] = {"active", "replaced", "ended"};
    auto state = [](uint32_t f) { return (f >> 8) < 3 ? states[f >> 8] : "?"; };
    if (o.json) {
      json j = json::array();
      for (uint32_t i = 0; i < s.tunnels.size(); ++i) {
        const auto& r = s.tunnels[i];
        for (uint32_t k = 0; k < std::min(r.n_sas, c::kMaxSaRows); ++k) {
          const c::SaRow& a = r.sas[k];
          j.push_back({{"tunnel", FIELD(r.name)}, {"keying", r.keying ? "ike" : "static"},
                       {"direction", a.flags & 1 ? "out" : "in"}, {"spi", a.spi}, {"state", state(a.flags)},
                       {"packets", a.packets}, {"bytes", a.bytes}, {"seq", a.seq}, {"esn", (a.flags & 2) != 0},
                       {"encap", a.flags & 4 ? "udp" : "none"}, {"age_ms", a.age_ms},
                       {"cipher", FIELD(a.cipher)}, {"needs_rekey", (a.flags & 8) != 0}});
          if (!(a.flags & 1)) j.back()["window"] = {{"size", a.window}, {"top", a.seq}};
        }
      }
      fmt::print("{}\n", j.dump(2));
      return;
    }
    // SEQ: outbound the last number used, inbound the replay window's top; WINDOW its size; REKEY: the SA's
    // numbers or hard lifetime are used up.
    Table t({"TUNNEL", "KEYING", "DIR", "SPI", "CIPHER", "STATE", "AGE", "ESN", "ENCAP", "PACKETS", "BYTES", "SEQ",
             "WINDOW", "REKEY"});
    for (uint32_t i = 0; i < s.tunnels.size(); ++i) {
      const auto& r = s.tunnels[i];
      if (r.n_sas == 0)
        t.row({FIELD(r.name), r.keying ? "ike" : "static", "-", "-", "-", "no SA", "-", "-", "-", "-", "-", "-", "-",
               "-"});
      for (uint32_t k = 0; k < std::min(r.n_sas, c::kMaxSaRows); ++k) {
        const c::SaRow& a = r.sas[k];
        t.row({FIELD(r.name), r.keying ? "ike" : "static", a.flags & 1 ? "out" : "in", fmt::format("{:#010x}", a.spi),
               FIELD(a.cipher), state(a.flags),
               a.age_ms < 0 ? std::string("-") : fmt::format("{:.1f}s", double(a.age_ms) / 1000),
               a.flags & 2 ? "yes" : "no", a.flags & 4 ? "udp" : "none", num(a.packets), num(a.bytes), num(a.seq),
               a.flags & 1 ? std::string("-") : num(a.window), a.flags & 8 ? "yes" : "no"});
      }
    }
    t.print();
  } else if (what == "flows") {
    if (o.json) {
      json tj = json::array();
      for (uint32_t i = 0; i < s.tunnels.size(); ++i) {
        const auto& r = s.tunnels[i];
        tj.push_back({{"index", i}, {"name", FIELD(r.name)}, {"pinned", tc(r, "pinned")},
                      {"placed", tc(r, "placed")}, {"moved_in", tc(r, "moved_in")}});
      }
      json j = {{"tunnels", tj},          {"flows_new", gc("flows_new")},     {"moved_down", gc("moved_down")},
                {"moved_drain", gc("moved_drain")}, {"moved_idle", gc("moved_idle")},
                {"moved_route", gc("moved_route")}, {"evicted", gc("evicted")}};
      fmt::print("{}\n", j.dump(2));
      return;
    }
    Table t({"#", "TUNNEL", "PINNED", "PLACED", "MOVED_IN"});
    for (uint32_t i = 0; i < s.tunnels.size(); ++i) {
      const auto& r = s.tunnels[i];
      t.row({num(i), FIELD(r.name), num(tc(r, "pinned")), num(tc(r, "placed")), num(tc(r, "moved_in"))});
    }
    t.print();
    fmt::print("\nnew flows {}  moved: down {}  drain {}  idle {}  route {}  evicted {}\n", gc("flows_new"),
               gc("moved_down"), gc("moved_drain"), gc("moved_idle"), gc("moved_route"), gc("evicted"));
  } else if (what == "counters") {
    // The fixed keys and columns of earlier versions, then every counter the block carries, by its name.
    if (o.json) {
      json tj = json::array(), wj = json::array();
      for (uint32_t i = 0; i < s.tunnels.size(); ++i) {
        const auto& r = s.tunnels[i];
        json e = json::object();
        all_counters(e, g.tunnel_counter_names, g.n_tunnel_counters, r.counters);
        e.update({{"index", i}, {"name", FIELD(r.name)}, {"packets_out", tc(r, "packets_out")},
                  {"bytes_out", tc(r, "bytes_out")}, {"packets_in", tc(r, "packets_in")},
                  {"bytes_in", tc(r, "bytes_in")}, {"esp_drops", tc(r, "esp_drops")}});
        tj.push_back(e);
      }
      for (uint32_t i = 0; i < s.workers.size(); ++i) {
        const auto& w = s.workers[i];
        json e = json::object();
        all_counters(e, g.worker_counter_names, g.n_worker_counters, w.counters);
        e.update({{"index", i}, {"lcore", w.lcore}, {"inside_rx", wc(w, "inside_rx")},
                  {"outside_tx", wc(w, "outside_tx")}, {"outside_rx", wc(w, "outside_rx")},
                  {"inside_tx", wc(w, "inside_tx")}});
        wj.push_back(e);
      }
      json gj = json::object();
      all_counters(gj, g.counter_names, g.n_counters, g.counters);
      gj.update({{"inside_rx", gc("inside_rx")}, {"inside_tx", gc("inside_tx")}, {"outside_rx", gc("outside_rx")},
                 {"outside_tx", gc("outside_tx")}});
      json j = {{"gateway", gj}, {"tunnels", tj}, {"workers", wj}};
      fmt::print("{}\n", j.dump(2));
      return;
    }
    Table t({"#", "TUNNEL", "PKTS_OUT", "BYTES_OUT", "PKTS_IN", "BYTES_IN", "ESP_DROPS"});
    for (uint32_t i = 0; i < s.tunnels.size(); ++i) {
      const auto& r = s.tunnels[i];
      t.row({num(i), FIELD(r.name), num(tc(r, "packets_out")), num(tc(r, "bytes_out")), num(tc(r, "packets_in")),
             num(tc(r, "bytes_in")), num(tc(r, "esp_drops"))});
    }
    t.print();
    fmt::print("\n");
    Table w({"WORKER", "LCORE", "INSIDE_RX", "OUTSIDE_TX", "OUTSIDE_RX", "INSIDE_TX"});
    for (uint32_t i = 0; i < s.workers.size(); ++i) {
      const auto& r = s.workers[i];
      w.row({num(i), num(r.lcore), num(wc(r, "inside_rx")), num(wc(r, "outside_tx")), num(wc(r, "outside_rx")),
             num(wc(r, "inside_tx"))});
    }
    w.print();
    fmt::print("\ngateway inside rx {} tx {}  outside rx {} tx {}\n", gc("inside_rx"), gc("inside_tx"),
               gc("outside_rx"), gc("outside_tx"));
    show_other_counters(s);
  } else if (what == "errors") {
    const json dp = drops_json(g.drops, g.drop_names), esp = drops_json(g.esp_drops, g.esp_drop_names);
    if (o.json) {
      fmt::print("{}\n", json{{"dataplane", dp}, {"esp", esp}}.dump(2));
      return;
    }
    Table t({"LAYER", "REASON", "COUNT"});
    for (const auto& [k, v] : dp.items()) t.row({"dataplane", k, num(v.get<uint64_t>())});
    for (const auto& [k, v] : esp.items()) t.row({"esp", k, num(v.get<uint64_t>())});
    if (dp.empty() && esp.empty()) {
      fmt::print("no drops\n");
      return;
    }
    t.print();
  }
}

}  // namespace mgctl
