// meshgatectl — operator CLI for a running meshgate, through its shared-memory control block (lib/ctrl only: no
// DPDK, no EAL). Reads the mirror for `show`, sends commands through the ring and waits for the reply.
//
// Exit codes: 0 ok; 1 refused by the data plane (status and message printed); 2 usage (CLI errors, unknown tunnel
// or instance, bad value); 3 no gateway running (no block, stale block, owner died before replying, or a block this
// meshgatectl cannot read); 4 ring full, reply timeout or mirror busy while the owner is alive.
#include <dirent.h>

#include <CLI/CLI.hpp>
#include <fmt/core.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <initializer_list>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "ctrl/ctrl.h"

using nlohmann::json;
namespace c = mg::ctrl;

namespace {

enum Exit : int { kExitOk = 0, kExitRefused = 1, kExitUsage = 2, kExitNoGateway = 3, kExitBusy = 4 };

// Thrown to end the program with an exit code and a message.
struct Fail {
  int code;
  std::string message;
};

struct Options {
  std::string gateway;
  bool json = false;
  uint32_t timeout_ms = 2000;
};

const char* state_name(uint32_t s) {
  switch (c::State(s)) {
    case c::State::kUp: return "up";
    case c::State::kDrain: return "draining";  // DESIGN.md's word for the state
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

std::string str(const char* field, size_t cap) { return std::string(field, strnlen(field, cap)); }
#define FIELD(x) str((x), sizeof(x))

// ---- gateway discovery and connection ----

std::vector<std::string> gateways_in_dev_shm() {
  std::vector<std::string> out;
  DIR* d = opendir("/dev/shm");
  if (!d) return out;
  const std::string prefix = "meshgate.";
  while (dirent* e = readdir(d)) {
    const std::string n = e->d_name;
    if (n.rfind(prefix, 0) == 0 && c::valid_name(n.substr(prefix.size()))) out.push_back(n.substr(prefix.size()));
  }
  closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

std::unique_ptr<c::Block> connect(Options& o) {
  if (o.gateway.empty()) {
    const auto all = gateways_in_dev_shm();
    if (all.empty()) throw Fail{kExitNoGateway, "no gateway is running: no /dev/shm/meshgate.* block"};
    if (all.size() > 1) {
      std::string names;
      for (const auto& n : all) names += (names.empty() ? "" : ", ") + n;
      throw Fail{kExitUsage, "several gateways (" + names + "): pick one with --gateway NAME"};
    }
    o.gateway = all.front();
  }
  if (!c::valid_name(o.gateway))
    throw Fail{kExitUsage, "bad gateway name '" + o.gateway + "': use 1-32 of A-Z a-z 0-9 _ -"};
  std::string err;
  c::SubmitError code = c::SubmitError::kOk;
  auto b = c::Block::open(o.gateway, &err, &code);
  if (!b) throw Fail{kExitNoGateway, err};
  return b;
}

// ---- mirror snapshot ----

struct Snapshot {
  c::GatewayInfo gw{};
  std::vector<c::InstanceInfo> instances;
  std::vector<c::TunnelInfo> tunnels;
  std::vector<c::WorkerInfo> workers;
};

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
  return s;
}

// ---- human tables ----

class Table {
 public:
  explicit Table(std::vector<std::string> head) : head_(std::move(head)) {}
  void row(std::vector<std::string> r) { rows_.push_back(std::move(r)); }
  void print() const {
    std::vector<size_t> w(head_.size());
    std::vector<bool> numeric(head_.size(), !rows_.empty());
    for (size_t i = 0; i < head_.size(); ++i) w[i] = head_[i].size();
    for (const auto& r : rows_)
      for (size_t i = 0; i < r.size() && i < w.size(); ++i) {
        w[i] = std::max(w[i], r[i].size());
        if (r[i].empty() || r[i].find_first_not_of("0123456789") != std::string::npos) numeric[i] = false;
      }
    auto line = [&](const std::vector<std::string>& r) {
      std::string out;
      for (size_t i = 0; i < w.size(); ++i) {
        const std::string& cell = i < r.size() ? r[i] : std::string();
        const std::string pad(w[i] - cell.size(), ' ');
        out += numeric[i] ? pad + cell : (i + 1 < w.size() ? cell + pad : cell);
        if (i + 1 < w.size()) out += "  ";
      }
      fmt::print("{}\n", out);
    };
    line(head_);
    for (const auto& r : rows_) line(r);
  }

 private:
  std::vector<std::string> head_;
  std::vector<std::vector<std::string>> rows_;
};

std::string num(uint64_t v) { return std::to_string(v); }
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

void show(const c::Block& b, const Options& o, const std::string& what) {
  const Snapshot s = read_mirror(b);
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
                {"moved_idle", gc("moved_idle")},  {"evicted", gc("evicted")},
                {"commands_ok", gc("commands_ok")}, {"commands_rejected", gc("commands_rejected")},
                {"updated_ns", g.updated_ns},      {"pending_commands", b.pending()}};
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
    t.row({"flows", fmt::format("new {}  moved: down {} drain {} idle {}  evicted {}", gc("flows_new"),
                                gc("moved_down"), gc("moved_drain"), gc("moved_idle"), gc("evicted"))});
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
  } else if (what == "flows") {
    if (o.json) {
      json tj = json::array();
      for (uint32_t i = 0; i < s.tunnels.size(); ++i) {
        const auto& r = s.tunnels[i];
        tj.push_back({{"index", i}, {"name", FIELD(r.name)}, {"pinned", tc(r, "pinned")},
                      {"placed", tc(r, "placed")}, {"moved_in", tc(r, "moved_in")}});
      }
      json j = {{"tunnels", tj},          {"flows_new", gc("flows_new")},     {"moved_down", gc("moved_down")},
                {"moved_drain", gc("moved_drain")}, {"moved_idle", gc("moved_idle")}, {"evicted", gc("evicted")}};
      fmt::print("{}\n", j.dump(2));
      return;
    }
    Table t({"#", "TUNNEL", "PINNED", "PLACED", "MOVED_IN"});
    for (uint32_t i = 0; i < s.tunnels.size(); ++i) {
      const auto& r = s.tunnels[i];
      t.row({num(i), FIELD(r.name), num(tc(r, "pinned")), num(tc(r, "placed")), num(tc(r, "moved_in"))});
    }
    t.print();
    fmt::print("\nnew flows {}  moved: down {}  drain {}  idle {}  evicted {}\n", gc("flows_new"), gc("moved_down"),
               gc("moved_drain"), gc("moved_idle"), gc("evicted"));
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

// ---- commands ----

bool parse_u32(const std::string& s, uint32_t* out) {
  if (s.empty() || s.size() > 10 || s.find_first_not_of("0123456789") != std::string::npos) return false;
  const uint64_t v = std::stoull(s);
  if (v > UINT32_MAX) return false;
  *out = uint32_t(v);
  return true;
}

// A tunnel or instance by its name in the mirror, or by index (its range is validate()'s to check).
template <class Rec>
uint32_t resolve(const std::vector<Rec>& recs, const std::string& what, const std::string& key) {
  for (uint32_t i = 0; i < recs.size(); ++i)
    if (FIELD(recs[i].name) == key) return i;
  uint32_t idx = 0;
  if (parse_u32(key, &idx)) return idx;
  std::string names;
  for (const auto& r : recs) names += (names.empty() ? "" : ", ") + FIELD(r.name);
  throw Fail{kExitUsage, fmt::format("unknown {} '{}' (known: {})", what, key, names.empty() ? "none" : names)};
}

// Seconds to the command's milliseconds. Only what does not fit the field is caught here; the upper bound is a rule
// of the command (validate()).
uint32_t deadline_ms(double seconds) {
  if (!(seconds > 0) || seconds * 1000 > double(UINT32_MAX))
    throw Fail{kExitUsage, fmt::format("bad --deadline {}: seconds in (0, {}]", seconds, c::kMaxDeadlineMs / 1000)};
  return std::max<uint32_t>(1, uint32_t(std::llround(seconds * 1000)));
}

// Checks the command with the data plane's own rules (limits from the mirror) and sends it only if they hold: a bad
// one is a usage error here, not a refusal there.
int run_command(c::Block& b, const Options& o, const c::Limits& limits, c::Op op, uint32_t target, uint32_t value,
                uint32_t deadline) {
  std::string why;
  if (c::validate(c::make_command(op, target, value, deadline), limits, &why) != c::Status::kOk)
    throw Fail{kExitUsage, why + " (nothing was sent)"};
  c::SubmitError e = c::SubmitError::kOk;
  const auto t0 = std::chrono::steady_clock::now();
  const auto r = b.call(op, target, value, deadline, o.timeout_ms, &e);
  const auto us = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0);
  if (!r) {
    switch (e) {
      case c::SubmitError::kFull:
        if (b.pending() < c::kRingSlots)
          throw Fail{kExitBusy, "ring busy: another client holds the ring lock (stopped mid-command?); nothing was "
                                "sent, retry later"};
        throw Fail{kExitBusy, fmt::format("ring full: gateway pid {} has {} commands pending; nothing was sent, "
                                          "retry later",
                                          b.owner_pid(), b.pending())};
      case c::SubmitError::kNoGateway:
        throw Fail{kExitNoGateway, fmt::format("no gateway is running: pid {} is gone (no reply)", b.owner_pid())};
      case c::SubmitError::kBadBlock:
        throw Fail{kExitNoGateway, "the control block is unusable (producer lock not recoverable)"};
      case c::SubmitError::kOk:
        if (!b.owner_alive())
          throw Fail{kExitNoGateway,
                     fmt::format("no gateway is running: pid {} exited before replying", b.owner_pid())};
        throw Fail{kExitBusy, fmt::format("timeout: no reply within {} ms; gateway pid {} is alive (the command "
                                          "may still be applied)",
                                          o.timeout_ms, b.owner_pid())};
    }
  }
  std::string msg = str(r->message, sizeof r->message);
  if (msg == "ok") msg.clear();  // nothing beyond the status
  const bool ok = r->status == c::Status::kOk;
  if (o.json) {
    fmt::print("{}\n", json{{"ok", ok},
                            {"status", c::to_string(r->status)},
                            {"generation", r->generation},
                            {"message", msg},
                            {"request_id", r->request_id},
                            {"round_trip_us", us.count()}}
                           .dump());
  } else if (ok) {
    fmt::print("ok (generation {}){}{}\n", r->generation, msg.empty() ? "" : ": ", msg);
    if (op == c::Op::kNop) fmt::print("round trip {} us\n", us.count());
  } else {
    fmt::print(stderr, "refused ({}): {}\n", c::to_string(r->status), msg.empty() ? "(no message)" : msg);
  }
  return ok ? kExitOk : kExitRefused;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"meshgatectl: show and change a running meshgate through its control block"};
  app.require_subcommand(1);
  app.fallthrough();
  app.add_option("--gateway", o.gateway, "gateway name (default: the only /dev/shm/meshgate.* block)");
  app.add_flag("--json", o.json, "JSON output for scripts");
  app.add_option("--timeout-ms", o.timeout_ms, "how long to wait for the data plane's reply")
      ->check(CLI::Range(1u, 3600000u));

  std::string show_what;
  auto* show_cmd = app.add_subcommand("show", "show gateway|instances|tunnels|flows|counters|errors");
  show_cmd->add_option("what", show_what)
      ->required()
      ->check(CLI::IsMember({"gateway", "instances", "tunnels", "flows", "counters", "errors"}));

  std::string tun, tun_action, tun_value;
  double tun_deadline = 0;
  auto* tun_cmd = app.add_subcommand("tunnel", "tunnel T down|up|drain [--deadline S] | tunnel T weight W");
  tun_cmd->add_option("tunnel", tun, "tunnel name or index")->required();
  tun_cmd->add_option("action", tun_action)->required()->check(CLI::IsMember({"down", "up", "drain", "weight"}));
  tun_cmd->add_option("value", tun_value, "weight for 'weight'");
  auto* tun_dl = tun_cmd->add_option("--deadline", tun_deadline, "drain: move the remaining flows after S seconds");

  std::string inst, inst_action;
  bool inst_drain = false;
  double inst_deadline = 0;
  auto* inst_cmd = app.add_subcommand("instance", "instance I maintenance [--drain [--deadline S]] | up | reset");
  inst_cmd->add_option("instance", inst, "instance name or index")->required();
  inst_cmd->add_option("action", inst_action)->required()->check(CLI::IsMember({"maintenance", "up", "reset"}));
  auto* inst_drain_opt = inst_cmd->add_flag("--drain", inst_drain, "maintenance: drain instead of down");
  auto* inst_dl = inst_cmd->add_option("--deadline", inst_deadline, "drain: move the remaining flows after S s");

  std::string mode;
  auto* mode_cmd = app.add_subcommand("mode", "mode active-standby|active-active");
  mode_cmd->add_option("mode", mode)->required()->check(CLI::IsMember({"active-standby", "active-active"}));

  std::string clear_what;
  auto* clear_cmd = app.add_subcommand("clear", "clear counters");
  clear_cmd->add_option("what", clear_what)->required()->check(CLI::IsMember({"counters"}));

  auto* ping_cmd = app.add_subcommand("ping", "round trip through the ring (no change)");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : kExitUsage;
  }

  try {
    // Usage checks that need no gateway first.
    if (tun_cmd->parsed()) {
      if (tun_action == "weight" && tun_value.empty()) throw Fail{kExitUsage, "tunnel T weight W: W is missing"};
      if (tun_action != "weight" && !tun_value.empty())
        throw Fail{kExitUsage, fmt::format("unexpected '{}' after 'tunnel {} {}'", tun_value, tun, tun_action)};
    }
    if (inst_cmd->parsed() && inst_drain_opt->count() && inst_action != "maintenance")
      throw Fail{kExitUsage, "--drain goes with maintenance"};
    // Only what cannot become a command field is checked here; the rules (weight and deadline bounds, a deadline
    // only with a drain, target ranges) are validate()'s, in run_command.
    uint32_t weight = 0;
    if (tun_cmd->parsed() && tun_action == "weight" && !parse_u32(tun_value, &weight))
      throw Fail{kExitUsage, fmt::format("bad weight '{}': 0..{}", tun_value, c::kMaxWeight)};
    const uint32_t tun_dl_ms = tun_dl->count() ? deadline_ms(tun_deadline) : 0;
    const uint32_t inst_dl_ms = inst_dl->count() ? deadline_ms(inst_deadline) : 0;

    auto b = connect(o);
    if (show_cmd->parsed()) {
      show(*b, o, show_what);
      return kExitOk;
    }
    // Commands without a target need no mirror read (limits zero: no tunnel or instance is addressed).
    const c::Limits none{};
    if (ping_cmd->parsed()) return run_command(*b, o, none, c::Op::kNop, 0, 0, 0);
    if (clear_cmd->parsed()) return run_command(*b, o, none, c::Op::kClearCounters, 0, 0, 0);
    if (mode_cmd->parsed())
      return run_command(*b, o, none, c::Op::kMode, 0,
                         uint32_t(mode == "active-standby" ? c::Mode::kActiveStandby : c::Mode::kActiveActive), 0);
    const Snapshot s = read_mirror(*b);
    const c::Limits limits{s.gw.n_tunnels, s.gw.n_instances};
    if (tun_cmd->parsed()) {
      const uint32_t t = resolve(s.tunnels, "tunnel", tun);
      // A --deadline given with another action goes into the command, where validate() names the rule.
      if (tun_action == "weight") return run_command(*b, o, limits, c::Op::kTunnelWeight, t, weight, tun_dl_ms);
      const c::State st = tun_action == "up" ? c::State::kUp : tun_action == "down" ? c::State::kDown : c::State::kDrain;
      return run_command(*b, o, limits, c::Op::kTunnelState, t, uint32_t(st), tun_dl_ms);
    }
    if (inst_cmd->parsed()) {
      const uint32_t i = resolve(s.instances, "instance", inst);
      if (inst_action == "reset") return run_command(*b, o, limits, c::Op::kInstanceReset, i, 0, inst_dl_ms);
      if (inst_action == "up")
        return run_command(*b, o, limits, c::Op::kInstanceState, i, uint32_t(c::State::kUp), inst_dl_ms);
      return run_command(*b, o, limits, c::Op::kInstanceState, i,
                         uint32_t(inst_drain ? c::State::kDrain : c::State::kDown), inst_dl_ms);
    }
    return kExitUsage;
  } catch (const Fail& f) {
    if (o.json)
      fmt::print("{}\n", json{{"ok", false}, {"exit", f.code}, {"error", f.message}}.dump());
    else
      fmt::print(stderr, "meshgatectl: {}\n", f.message);
    return f.code;
  }
}
