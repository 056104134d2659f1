// meshgate: the gateway data plane process.
//
//   meshgate --config configs/gateway-dual.toml                 run until SIGINT/SIGTERM
//   meshgate --config FILE --check                              validate both files, print the model, no EAL
//   meshgate --config FILE --duration 10 --stats-interval 1 --event '5:instance gw-a maintenance'
//   meshgate --config FILE --liveness 20x3                    tunnels without proof of life for 60 ms go down
//                                                             (liveness is configured in the file's [liveness]
//                                                             and [tunnel.liveness]; these flags override it)
//
// Exit codes (README "Exit codes", shared by every tool): 0 ok, 1 runtime failure, 2 bad config or usage, 3 EAL
// failure (the environment), 4 port failure (a resource).
#include <CLI/CLI.hpp>
#include <fmt/core.h>

#include <dlfcn.h>
#include <ucontext.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <optional>
#include <nlohmann/json.hpp>

#include "config/config.h"
#include "config/hugepages.h"
#include "config/liveness_overrides.h"
#include "ctrl/ctrl.h"
#include "dataplane/dataplane.h"
#include "events.h"
#include "log/log.h"
#include "mg_version.h"

namespace {

void on_signal(int) { mg::dp::Dataplane::request_stop(); }

// Async-signal-safe pieces of the crash report: no allocation, no stdio.
void put(const char* s) { (void)!write(STDERR_FILENO, s, std::strlen(s)); }
void put_hex(uintptr_t v) {
  char b[2 + 16 + 1];
  int n = 0;
  b[n++] = '0';
  b[n++] = 'x';
  bool lead = true;
  for (int sh = 60; sh >= 0; sh -= 4) {
    const unsigned d = (v >> sh) & 0xf;
    if (d == 0 && lead && sh) continue;
    lead = false;
    b[n++] = char(d < 10 ? '0' + d : 'a' + d - 10);
  }
  b[n] = 0;
  put(b);
}

// A fatal signal leaves one line naming where it happened (module + offset, for addr2line or gdb) before the
// default action (core dump): a crash inside a DPDK driver and one in meshgate's code are told apart without a
// debugger. dladdr is not on the async-signal-safe list, but glibc's reads only loaded-module tables.
void on_fatal(int sig, siginfo_t* si, void* uc) {
  uintptr_t pc = 0;
#if defined(__x86_64__)
  pc = uintptr_t(static_cast<ucontext_t*>(uc)->uc_mcontext.gregs[REG_RIP]);
#else
  (void)uc;
#endif
  put("meshgate: fatal signal ");
  put(sig == SIGSEGV ? "SIGSEGV" : sig == SIGBUS ? "SIGBUS" : sig == SIGFPE ? "SIGFPE" : sig == SIGILL ? "SIGILL" : "SIGABRT");
  put(" at pc ");
  put_hex(pc);
  Dl_info di{};
  if (pc && dladdr(reinterpret_cast<void*>(pc), &di) && di.dli_fname) {
    put(" in ");
    put(di.dli_fname);
    put("+");
    put_hex(pc - uintptr_t(di.dli_fbase));
  }
  put(", fault address ");
  put_hex(uintptr_t(si->si_addr));
  put("\n");
  signal(sig, SIG_DFL);
  raise(sig);
}

void print_errors(const std::vector<mg::config::Error>& errs) {
  for (const auto& e : errs) fmt::print(stderr, "{}\n", e.format());
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"meshgate: active-active IPsec VPN gateway data plane (DPDK)"};
  std::string config_path, pmd_path, stats_json;
  std::vector<std::string> events, eal_extra;
  bool check = false;
  mg::dp::Options opt;
  app.add_option("-c,--config", config_path, "gateway TOML file")->required();
  app.add_option("--pmd", pmd_path, "pmd_config TOML file (default: the gateway file's [gateway] pmd_config)");
  app.add_flag("--check", check, "validate the configuration, print the model and exit (no EAL)");
  // Numbers in range or a usage error: a negative duration or rate must not mean "forever" or "unlimited".
  constexpr double kYear = 365.0 * 24 * 3600;
  constexpr uint64_t kMaxPps = 1000000000;
  app.add_option("--stats-interval", opt.stats_interval_s, "print the counters table every S seconds")
      ->check(CLI::Range(0.001, kYear));
  app.add_option("--duration", opt.duration_s, "stop after S seconds")->check(CLI::Range(0.001, kYear));
  app.add_option("--exit-when-idle-ms", opt.exit_when_idle_ms,
                 "stop once no packet has arrived for this many ms (after the first)")
      ->check(CLI::Range(1u, 24u * 3600 * 1000));
  app.add_option("--pace-pps", opt.pace_pps, "limit inside RX per worker to this many packets/s (demos)")
      ->check(CLI::Range(uint64_t(1), kMaxPps));
  app.add_option("--pace-outside-pps", opt.pace_outside_pps,
                 "limit RX of each outside port per worker to this many packets/s (tests feeding ESP pcaps)")
      ->check(CLI::Range(uint64_t(1), kMaxPps));
  std::string liveness;
  app.add_option("--liveness", liveness,
                 "liveness detection for every tunnel: INTERVAL_MSxMULTIPLIER, e.g. 20x3, or off (default: the "
                 "gateway file's [liveness] / [tunnel.liveness]; without them off)");
  std::optional<uint32_t> hold_down;
  app.add_option("--liveness-hold-down-ms", hold_down,
                 "continuous proof of life before a tunnel that came back is used again (file default 1000)")
      ->check(CLI::Range(0u, 3600000u));
  bool no_probes = false, no_damping = false, monitor = false, reflect = false;
  app.add_flag("--liveness-no-probes", no_probes, "no probes: only authenticated inbound traffic proves life");
  app.add_flag("--liveness-no-damping", no_damping, "do not suppress flapping tunnels");
  app.add_flag("--liveness-monitor", monitor,
               "detect and report only: liveness verdicts never take a tunnel out (trying timers out)");
  std::vector<std::string> faults;
  app.add_option("--fault", faults,
                 "fault injection: SECONDS:TUNNEL:blackhole|heal (drop the tunnel's traffic both ways here)")
      ->allow_extra_args(false);
  std::string probe_src, probe_dst;
  app.add_option("--probe-source,--probe-src", probe_src,
                 "inner source (IPv4 or IPv6) of every tunnel's probes, our address inside the tunnels (default: "
                 "[tunnel.liveness] probe_source, else the instance's address)");
  app.add_option("--probe-address,--probe-dst", probe_dst,
                 "inner address (IPv4 or IPv6) every tunnel's probes go to (default: [tunnel.liveness] or "
                 "[[device]] probe_address, else the device's address)");
  app.add_flag("--reflect", reflect,
               "answer ICMP/ICMPv6 echo requests that arrive inside a tunnel for its probe source on the same "
               "tunnel (meshgate as the far device of another; [liveness] reflect)");
  app.add_option("--event", events,
                 "state change during the run: WHEN:WORDS, WHEN = SECONDS or pPACKETS, WORDS = meshgatectl's "
                 "'tunnel T down|up|drain' or 'instance I maintenance [--drain]|up' (or the older "
                 "tunnel|instance:NAME:up|down|drain)")
      ->allow_extra_args(false);
  app.add_option("--stats-json", stats_json, "write the final counters and event snapshots as JSON here");
  app.add_flag("-q,--quiet", opt.quiet, "print nothing but errors");
  bool no_control = false;
  app.add_flag("--no-control", no_control, "do not create the control block (meshgatectl cannot reach this process)");
  // --gateway NAME, as meshgatectl spells it. --control-name, the older spelling, still works: it is rewritten to
  // --gateway before parsing (a hidden CLI11 option would have no name in its error messages).
  app.add_option("--gateway", opt.control_name,
                 "gateway name for meshgatectl: the control block /dev/shm/meshgate.NAME (default: [gateway] name)")
      ->check(CLI::Validator(
          [](std::string& n) {
            return mg::ctrl::valid_name(n) ? std::string() : "'" + n + "': use 1-32 of A-Z a-z 0-9 _ -";
          },
          "NAME"));
  app.set_version_flag("--version", std::string("meshgate ") + MG_VERSION, "print the version and exit");
  std::string state_dir;
  bool unsafe_seq = false;
  app.add_option("--state-dir", state_dir,
                 "directory recording the outbound sequence numbers of every key across restarts (default: [gateway] "
                 "state_dir, else $STATE_DIRECTORY, else /var/lib/meshgate, created if /var/lib exists)");
  app.add_flag("--unsafe-no-seq-state", unsafe_seq,
               "UNSAFE, labs only: no state directory; sequence numbers restart at 1 in every run, so static keys "
               "repeat (key, IV) pairs");
  app.add_option("--eal", eal_extra, "extra EAL argument (repeatable), e.g. --eal=--log-level=7")
      ->allow_extra_args(false);
  std::vector<std::string> args(argv + 1, argv + argc);
  bool old_name = false;
  for (auto& a : args)
    if (a == "--control-name" || a.rfind("--control-name=", 0) == 0) {
      a = "--gateway" + a.substr(std::string("--control-name").size());
      old_name = true;
    }
  std::reverse(args.begin(), args.end());  // CLI11 takes them last first
  try {
    app.parse(args);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    if (rc != 0 && old_name) fmt::print(stderr, "(--control-name is the older name of --gateway)\n");
    return rc == 0 ? 0 : mg::dp::kExitConfig;
  }

  std::vector<mg::config::Error> errs;
  auto gw = mg::config::load_gateway(config_path, &errs);
  if (!gw) {
    print_errors(errs);
    return mg::dp::kExitConfig;
  }
  {
    mg::config::LivenessOverrides lo;
    if (!liveness.empty()) {
      mg::dp::LivenessConfig lc;
      std::string err;
      if (!mg::dp::parse_liveness(liveness, &lc, &err)) {
        fmt::print(stderr, "meshgate: {}\n", err);
        return mg::dp::kExitConfig;
      }
      lo.enabled = lc.enabled;
      if (lc.enabled) {
        lo.interval_ms = lc.interval_ms;
        lo.multiplier = lc.multiplier;
      }
    }
    lo.hold_down_ms = hold_down;
    if (no_probes) lo.probes = false;
    if (no_damping) lo.damping = false;
    if (monitor) lo.monitor = true;
    if (reflect) lo.reflect = true;
    for (auto [text, addr] : {std::pair{&probe_src, &lo.probe_source}, std::pair{&probe_dst, &lo.probe_address}}) {
      if (!text->empty() && !mg::net::parse_ip(text->c_str(), addr)) {
        fmt::print(stderr, "meshgate: probe address '{}' is not an IPv4 or IPv6 address\n", *text);
        return mg::dp::kExitConfig;
      }
    }
    std::string err;
    if (!mg::config::apply_liveness_overrides(&*gw, lo, &err)) {
      fmt::print(stderr, "meshgate: {}\n", err);
      return mg::dp::kExitConfig;
    }
  }
  if (pmd_path.empty()) pmd_path = gw->pmd_config;
  std::vector<std::string> eal_args;
  auto pmd = mg::config::load_pmd(pmd_path, &errs, &eal_args);
  // The host, not the files: without hugepages the EAL would fail later with a message that names no fix.
  const auto check_host = [&]() {
    const auto need = mg::config::hugepage_need(eal_args);
    const auto host = mg::config::read_huge_host();
    fmt::print("{}systemd: {}\n", mg::config::describe_hugepages(need, host), mg::dp::notify_support());
    const auto huge_err = mg::config::check_hugepages(need, host);
    if (huge_err) fmt::print(stderr, "{}: {}\n", pmd_path, *huge_err);
    return !huge_err;
  };
  if (check && !pmd) {
    // --check validates the files as written: ${VAR}s the run will need are a note, not an error, here.
    bool only_env = !errs.empty();
    for (const auto& e : errs) only_env &= e.rule == "env-unset";
    if (only_env) {
      for (const auto& e : errs) fmt::print(stderr, "note: {} (must be set when meshgate runs)\n", e.format());
      fmt::print("{}", mg::config::describe(*gw));
      if (!check_host()) return mg::dp::kExitConfig;
      fmt::print("meshgate: {} is valid; {} needs its environment variables at run time\n", config_path, pmd_path);
      return mg::dp::kExitOk;
    }
  }
  if (!pmd || !mg::config::cross_check(*gw, *pmd, &errs)) {
    print_errors(errs);
    return mg::dp::kExitConfig;
  }
  for (const auto& e : events) {
    mg::dp::Event ev;
    std::string err;
    if (!mg::app::parse_event(e, *gw, &ev, &err)) {
      fmt::print(stderr, "meshgate: {}\n", err);
      return mg::dp::kExitConfig;
    }
    opt.events.push_back(ev);
  }
  for (const auto& f : faults) {
    mg::dp::Fault ft;
    std::string err;
    if (!mg::app::parse_fault(f, *gw, &ft, &err)) {
      fmt::print(stderr, "meshgate: {}\n", err);
      return mg::dp::kExitConfig;
    }
    opt.faults.push_back(ft);
  }
  if (check) {
    fmt::print("{}\n{}", mg::config::describe(*gw, &*pmd), mg::config::describe(*pmd));
    if (!check_host()) return mg::dp::kExitConfig;
    fmt::print("meshgate: {} is valid\n", config_path);
    return mg::dp::kExitOk;
  }
  opt.eal_extra = eal_extra;
  opt.control = !no_control;
  // The state directory: an explicit one must exist (a missing mount must not look like a fresh start); the
  // systemd-given or default one is made when missing.
  opt.unsafe_volatile_seq = unsafe_seq || gw->unsafe_volatile_sequence;
  if (!state_dir.empty()) {
    opt.state_dir = state_dir;
  } else if (!gw->state_dir.empty()) {
    opt.state_dir = gw->state_dir;
  } else if (const char* sd = std::getenv("STATE_DIRECTORY"); sd != nullptr && *sd != '\0') {
    opt.state_dir = std::string(sd).substr(0, std::string(sd).find(':'));  // systemd: the first of a list
    opt.state_dir_create = true;
  } else {
    opt.state_dir = "/var/lib/meshgate";
    opt.state_dir_create = true;
  }

  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  {
    struct sigaction sa {};
    sa.sa_sigaction = on_fatal;
    sa.sa_flags = SA_SIGINFO | SA_RESETHAND;
    sigemptyset(&sa.sa_mask);
    for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT}) sigaction(sig, &sa, nullptr);
  }
  std::unique_ptr<mg::dp::Dataplane> dp;
  std::string err;
  const int rc = mg::dp::Dataplane::create(std::move(*gw), std::move(*pmd), opt, &dp, &err);
  if (rc != mg::dp::kExitOk) {
    mg::log::exit_reason(err);
    return rc;
  }
  const int run_rc = dp->run();
  if (!stats_json.empty()) {
    std::ofstream f(stats_json);
    f << dp->report().dump(2) << "\n";
    if (!f) {
      mg::log::exit_reason("cannot write " + stats_json);
      return mg::dp::kExitRuntime;
    }
  }
  return run_rc;
}
