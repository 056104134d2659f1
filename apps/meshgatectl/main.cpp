// meshgatectl — operator CLI for a running meshgate, through its shared-memory control block (lib/ctrl only: no
// DPDK, no EAL). Reads the mirror for `show`, sends commands through the ring and waits for the reply.
//
// Exit codes (README "Exit codes", the same kinds in every tool): 0 ok; 1 refused by the data plane (status and
// message printed) or a --output file not written; 2 usage (CLI errors, unknown tunnel or instance, bad value);
// 3 no gateway running (no block, stale block, owner died before replying, or a block this meshgatectl cannot read);
// 4 ring full, reply timeout or mirror busy while the owner is alive.
#include <dirent.h>

#include <CLI/CLI.hpp>
#include <fmt/core.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli.h"
#include "mg_version.h"

using nlohmann::json;
using namespace mgctl;

namespace {

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

// An unknown verb or view gets the list and the nearest name, before CLI11 (whose message for a stray word is
// "The following arguments were not expected"). Returns an empty string when the words are known.
std::string check_words(int argc, char** argv) {
  static const std::vector<std::string> with_value = {"--gateway", "--timeout-ms", "--watch", "--count", "--format",
                                                      "--output", "--deadline"};
  std::vector<std::string> words;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a.size() > 1 && a[0] == '-') {
      if (a.find('=') == std::string::npos &&
          std::find(with_value.begin(), with_value.end(), a) != with_value.end())
        ++i;
      continue;
    }
    words.push_back(a);
    if (words.size() == 2) break;
  }
  auto list = [](const auto& names) {
    std::vector<std::string> v(std::begin(names), std::end(names));
    std::string s;
    for (const auto& n : v) s += (s.empty() ? "" : ", ") + n;
    return std::pair{v, s};
  };
  auto unknown = [&](const std::string& what, const std::string& w, const auto& names) {
    const auto [v, s] = list(names);
    const std::string near = suggest(w, v);
    return fmt::format("unknown {} '{}'{}; {}s: {} (meshgatectl --help)", what, w,
                       near.empty() ? "" : fmt::format(" (did you mean '{}'?)", near), what, s);
  };
  if (words.empty()) return {};
  if (std::find(std::begin(kVerbs), std::end(kVerbs), words[0]) == std::end(kVerbs))
    return unknown("command", words[0], kVerbs);
  if (words[0] == "show" && words.size() > 1 &&
      std::find(std::begin(kShowViews), std::end(kShowViews), words[1]) == std::end(kShowViews))
    return unknown("view", words[1], kShowViews);
  return {};
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"meshgatectl: show and change a running meshgate through its control block.\n"
               "Exit codes: 0 ok, 1 refused by the gateway (or a file not written), 2 usage, 3 no gateway or an "
               "untrusted block, 4 ring full or no reply"};
  app.require_subcommand(1);
  app.fallthrough();
  app.add_option("--gateway", o.gateway, "gateway name (default: the only /dev/shm/meshgate.* block)");
  app.add_flag("-j,--json", o.json, "JSON output for scripts");
  app.add_option("--timeout-ms", o.timeout_ms, "how long to wait for the data plane's reply")
      ->check(CLI::Range(1u, 3600000u));
  app.add_option("--watch", o.watch_s, "show: again every S seconds (rates: over each S), until interrupted")
      ->check(CLI::Range(0.05, 86400.0));
  app.add_option("--count", o.count, "with --watch: stop after N frames")->check(CLI::Range(1u, 1000000000u));
  app.set_version_flag("--version", std::string("meshgatectl ") + MG_VERSION, "print the version and exit");

  std::string show_what;
  auto* show_cmd = app.add_subcommand(
      "show", "show gateway|instances|tunnels|sa|flows|counters|errors|ports|rates|metrics");
  show_cmd->add_option("what", show_what)
      ->required()
      ->check(CLI::IsMember(std::vector<std::string>(std::begin(kShowViews), std::end(kShowViews))));
  show_cmd->add_option("--format", o.format, "metrics: prometheus (text 0.0.4, default) or openmetrics")
      ->check(CLI::IsMember({"prometheus", "openmetrics"}));
  show_cmd->add_option("--output", o.output,
                       "metrics: write this file atomically (temporary file + rename), e.g. for node-exporter's "
                       "textfile collector");

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
  // systemctl reload (meshgate@.service's ExecReload): nothing but `instance I reset` for each instance in turn.
  auto* reload_cmd = app.add_subcommand("reload", "instance I reset for every instance in turn (stops at a refusal)");
  auto* help_cmd = app.add_subcommand("help", "this help");

  if (const std::string bad = check_words(argc, argv); !bad.empty()) {
    fmt::print(stderr, "meshgatectl: {}\n", bad);
    return kExitUsage;
  }
  try {
    app.parse(argc, argv);
    if (help_cmd->parsed()) {
      // app.help() would show the parsed subcommand's (help's own); this is the whole program's.
      fmt::print("{}", app.get_formatter()->make_help(&app, app.get_name(), CLI::AppFormatMode::Normal));
      return kExitOk;
    }
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
    if (show_cmd->parsed() && show_what != "metrics" && (!o.output.empty() || o.format != "prometheus"))
      throw Fail{kExitUsage, "--format and --output go with show metrics"};
    if ((o.watch_s > 0 || o.count) && !show_cmd->parsed()) throw Fail{kExitUsage, "--watch and --count go with show"};
    if (o.count && o.watch_s <= 0) throw Fail{kExitUsage, "--count goes with --watch"};
    // Only what cannot become a command field is checked here; the rules (weight and deadline bounds, a deadline
    // only with a drain, target ranges) are validate()'s, below.
    uint32_t weight = 0;
    if (tun_cmd->parsed() && tun_action == "weight" && !parse_u32(tun_value, &weight))
      throw Fail{kExitUsage, fmt::format("bad weight '{}': 0..{}", tun_value, c::kMaxWeight)};
    const uint32_t tun_dl_ms = tun_dl->count() ? deadline_ms(tun_deadline) : 0;
    const uint32_t inst_dl_ms = inst_dl->count() ? deadline_ms(inst_deadline) : 0;

    // The command, but for its target (tunnels and instances are named in the mirror). A --deadline given with
    // another action goes into the command, where validate() names the rule.
    struct Planned {
      c::Op op = c::Op::kNop;
      uint32_t value = 0, deadline = 0;
      const char* kind = nullptr;  // "tunnel" or "instance": a target to resolve in the mirror
      std::string key;
    } cmd;
    if (tun_cmd->parsed()) {
      const c::State st = tun_action == "up" ? c::State::kUp : tun_action == "down" ? c::State::kDown : c::State::kDrain;
      cmd = tun_action == "weight" ? Planned{c::Op::kTunnelWeight, weight, tun_dl_ms, "tunnel", tun}
                                   : Planned{c::Op::kTunnelState, uint32_t(st), tun_dl_ms, "tunnel", tun};
    } else if (inst_cmd->parsed()) {
      const c::State st = inst_action == "up" ? c::State::kUp : inst_drain ? c::State::kDrain : c::State::kDown;
      cmd = inst_action == "reset" ? Planned{c::Op::kInstanceReset, 0, inst_dl_ms, "instance", inst}
                                   : Planned{c::Op::kInstanceState, uint32_t(st), inst_dl_ms, "instance", inst};
    } else if (mode_cmd->parsed()) {
      cmd.op = c::Op::kMode;
      cmd.value = uint32_t(mode == "active-standby" ? c::Mode::kActiveStandby : c::Mode::kActiveActive);
    } else if (clear_cmd->parsed()) {
      cmd.op = c::Op::kClearCounters;
    } else if (reload_cmd->parsed()) {
      cmd.op = c::Op::kInstanceReset;
      cmd.kind = "instance";
    } else if (!ping_cmd->parsed() && !show_cmd->parsed()) {
      return kExitUsage;
    }
    // Every rule but the target's range holds or not whatever the gateway: a usage error even with none running.
    if (!show_cmd->parsed()) {
      std::string why;
      const c::Limits one{cmd.kind ? 1u : 0u, cmd.kind ? 1u : 0u};
      if (c::validate(c::make_command(cmd.op, 0, cmd.value, cmd.deadline), one, &why) != c::Status::kOk)
        throw Fail{kExitUsage, why + " (nothing was sent)"};
    }

    auto b = connect(o);
    if (show_cmd->parsed()) return run_show(*b, o, show_what);
    // Commands without a target need no mirror read (limits zero: no tunnel or instance is addressed).
    if (!cmd.kind) return run_command(*b, o, c::Limits{}, cmd.op, 0, cmd.value, cmd.deadline);
    const Snapshot s = read_mirror(*b);
    const c::Limits limits{s.gw.n_tunnels, s.gw.n_instances};
    if (reload_cmd->parsed()) {
      for (uint32_t i = 0; i < s.instances.size(); ++i) {
        if (!o.json) fmt::print("instance {}: ", FIELD(s.instances[i].name));
        std::fflush(stdout);
        if (const int rc = run_command(*b, o, limits, cmd.op, i, 0, 0); rc != kExitOk) return rc;
      }
      return kExitOk;
    }
    const uint32_t target = std::string_view(cmd.kind) == "tunnel" ? resolve(s.tunnels, "tunnel", cmd.key)
                                                                    : resolve(s.instances, "instance", cmd.key);
    return run_command(*b, o, limits, cmd.op, target, cmd.value, cmd.deadline);
  } catch (const Fail& f) {
    if (o.json)
      fmt::print("{}\n", json{{"ok", false}, {"exit", f.code}, {"error", f.message}}.dump());
    else
      fmt::print(stderr, "meshgatectl: {}\n", f.message);
    return f.code;
  }
}
