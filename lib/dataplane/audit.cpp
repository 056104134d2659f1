// The audit trail (README "Logs and audit"): one NOTICE line on meshgate.audit for every operator command, liveness
// verdict and SA change, written where the change is made, once. Main lcore only. Keys never: an SA is named by
// tunnel, direction, SPI and cipher.
#include <fcntl.h>
#include <unistd.h>

#include <cctype>

#include "dataplane/internal.h"

namespace mg::dp {

namespace {

// The claimed client's command name, when that pid is alive: one small read of procfs. Only printable
// [A-Za-z0-9._-] survive (a comm is whatever the process set), so the line stays one parseable line.
std::string comm_of(int32_t pid) {
  if (pid <= 0) return "?";
  char path[32], buf[32];
  std::snprintf(path, sizeof path, "/proc/%d/comm", int(pid));
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return "?";
  const ssize_t n = ::read(fd, buf, sizeof buf - 1);
  ::close(fd);
  if (n <= 0) return "?";
  std::string s(buf, size_t(n));
  while (!s.empty() && s.back() == '\n') s.pop_back();
  for (char& ch : s)
    if (!std::isalnum(static_cast<unsigned char>(ch)) && ch != '.' && ch != '_' && ch != '-') ch = '?';
  return s.empty() ? "?" : s;
}

std::string deadline_text(uint32_t ms) { return ms ? fmt::format(" --deadline {:g}", ms / 1000.0) : ""; }

}  // namespace

// The command as meshgatectl spells it; a command that failed validation is shown field by field.
std::string Dataplane::Impl::command_text(const ctrl::Command& c, bool valid) const {
  if (!valid)
    return fmt::format("op={} target={} value={} deadline_ms={}", c.op, c.target, c.value, c.deadline_ms);
  const auto tunnel = [&] { return gw.tunnels[c.target].name; };
  const auto instance = [&] { return gw.instances[c.target].name; };
  switch (ctrl::Op(c.op)) {
    case ctrl::Op::kNop: return "ping";
    case ctrl::Op::kTunnelState: {
      const auto s = ctrl::State(c.value);
      return fmt::format("tunnel {} {}{}", tunnel(),
                         s == ctrl::State::kUp ? "up" : s == ctrl::State::kDrain ? "drain" : "down",
                         deadline_text(c.deadline_ms));
    }
    case ctrl::Op::kTunnelWeight: return fmt::format("tunnel {} weight {}", tunnel(), c.value);
    case ctrl::Op::kInstanceState: {
      const auto s = ctrl::State(c.value);
      return fmt::format("instance {} {}{}", instance(),
                         s == ctrl::State::kUp ? "up" : s == ctrl::State::kDrain ? "maintenance --drain" : "maintenance",
                         deadline_text(c.deadline_ms));
    }
    case ctrl::Op::kInstanceReset: return fmt::format("instance {} reset", instance());
    case ctrl::Op::kMode:
      return ctrl::Mode(c.value) == ctrl::Mode::kActiveStandby ? "mode active-standby" : "mode active-active";
    case ctrl::Op::kClearCounters: return "clear counters";
    case ctrl::Op::kCount: break;
  }
  return fmt::format("op={}", c.op);
}

void Dataplane::Impl::audit_command(const ctrl::Command& c, bool valid, const ctrl::Reply& r,
                                    const std::string& msg) {
  if (!log::enabled(log::Type::kAudit, log::Level::kNotice)) return;
  const char* result = ctrl::to_string(r.status);
  log::audit("uid={} pid={} comm={} cmd=\"{}\" result={} generation={}{}", c.client_uid, c.client_pid,
             comm_of(c.client_pid), command_text(c, valid), result, r.generation,
             msg.empty() || msg == result ? std::string() : " (" + msg + ")");
}

void Dataplane::Impl::audit_event(const Event& ev, double el, bool ok, const std::string& err) {
  log::audit("source=event cmd=\"{}\" at={:.3f}s result={} generation={}{}", ev.text, el, ok ? "ok" : "refused",
             generation, ok ? std::string() : " (" + err + ")");
}

void Dataplane::Impl::audit_verdict(uint32_t t, bool up, int32_t silence_ms, bool damped) {
  const config::LivenessSettings& ls = gw.tunnels[t].liveness;
  // Down: no proof for interval x multiplier; whose silence it was depends on whether the tunnel is probed.
  std::string why;
  if (!up) {
    why = fmt::format("no proof of life for {} ms: {}", silence_ms,
                      probing && ls.probes ? "probe loss" : "inbound watchdog");
    if (damped) why += "; damped: suppressed until its flap penalty decays";
  } else {
    why = fmt::format("proof again for the {} ms hold-down{}", ls.hold_down_ms, damped ? " after damping" : "");
  }
  log::audit("liveness: tunnel {} {} -> {} ({}){} generation={}", gw.tunnels[t].name, up ? "down" : "up",
             up ? "up" : "down", why, gw.liveness.monitor ? " [monitor: not applied]" : "", generation);
}

void Dataplane::Impl::audit_sa(size_t t, bool out, const esp::Sa& sa, std::string_view what) {
  const esp::SaConfig& c = sa.config();
  log::audit("sa: tunnel {} {} SPI {:#x} {}{}{} {}", gw.tunnels[t].name, out ? "outbound" : "inbound", sa.spi(),
             crypto::to_string(c.cipher), c.esn ? " ESN" : "", c.encap == net::Encap::kUdp ? " UDP-encap" : "", what);
}

}  // namespace mg::dp
