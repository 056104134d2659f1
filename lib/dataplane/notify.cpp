// systemd's notify protocol through libsystemd (meshgate@.service is Type=notify with a watchdog). Everything here
// runs on main; without $NOTIFY_SOCKET, or in a build without libsystemd, every call is a no-op.
//   READY=1     once the ports are started (create()) and every worker has entered its polling loop: a unit ordered
//               after meshgate@X then finds a gateway that forwards, not one still setting up.
//   STATUS=     the tunnels up out of all, sent when a publish changed the state (not every loop).
//   WATCHDOG=1  from main's loop at half the unit's WatchdogSec: a main lcore that stops (a deadlock, a stuck
//               command) stops the pings and systemd restarts the gateway. Workers are not watched this way.
//   STOPPING=1  when the loop ends.
#include <cstdlib>

#include <fmt/core.h>

#include "dataplane/internal.h"

#ifdef MG_HAVE_SD_NOTIFY
#include <systemd/sd-daemon.h>
#endif

namespace mg::dp {

const char* notify_support() noexcept {
#ifdef MG_HAVE_SD_NOTIFY
  return "sd_notify through libsystemd (READY, STATUS, WATCHDOG, STOPPING)";
#else
  return "built without libsystemd: no sd_notify (a Type=notify unit would never become ready; use Type=simple)";
#endif
}

namespace {

void send(const std::string& msg) noexcept {
#ifdef MG_HAVE_SD_NOTIFY
  sd_notify(0, msg.c_str());
#else
  (void)msg;
#endif
}

}  // namespace

void Dataplane::Impl::notify_start() noexcept {
  const char* sock = std::getenv("NOTIFY_SOCKET");
  notify.on = sock != nullptr && *sock != '\0';
#ifdef MG_HAVE_SD_NOTIFY
  uint64_t usec = 0;
  // > 0 only when WATCHDOG_USEC is set and WATCHDOG_PID, if set, is this process.
  if (notify.on && sd_watchdog_enabled(0, &usec) > 0 && usec > 0) {
    notify.wd_period = std::max<uint64_t>(1, uint64_t(double(usec) / 2e6 * double(tsc_hz)));  // half, in TSC
    notify.wd_next = rte_get_tsc_cycles();
  }
#endif
}

void Dataplane::Impl::notify_poll(uint64_t now) {
  if (!notify.on) return;
  if (notify.wd_period && now >= notify.wd_next) {
    send("WATCHDOG=1");
    notify.wd_next = now + notify.wd_period;
  }
  if (!notify.ready) {
    for (const auto& w : workers)
      if (!w->polling.load(std::memory_order_acquire)) return;
  }
  if (notify.ready && notify.status_gen == generation) return;
  notify.status_gen = generation;
  uint32_t up = 0, draining = 0;
  for (uint32_t t = 0; t < model.tunnels(); ++t) {
    const AdminState s = model.effective(t);
    up += s == AdminState::kUp;
    draining += s == AdminState::kDraining;
  }
  std::string status = fmt::format("tunnels up {}/{}", up, model.tunnels());
  if (draining) status += fmt::format(", draining {}", draining);
  if (status == notify.status && notify.ready) return;
  notify.status = status;
  send((notify.ready ? "" : "READY=1\n") + ("STATUS=" + status));
  notify.ready = true;
}

void Dataplane::Impl::notify_stopping() noexcept {
  if (notify.on) send("STOPPING=1\nSTATUS=stopping");
}

}  // namespace mg::dp
