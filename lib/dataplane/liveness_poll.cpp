// Liveness on main (docs/ARCHITECTURE.md "Liveness"): the workers' watchdog ticks feed the detector (liveness.cpp), whose
// verdicts change the model and are published the way an operator command is.
#include <fmt/core.h>

#include "dataplane/internal.h"

namespace mg::dp {

void Dataplane::Impl::liveness_start() {
  std::lock_guard lk(snap_mu);
  const uint32_t now = now_ms();
  live = Liveness(uint32_t(gw.tunnels.size()));
  live_any = false;
  for (uint32_t t = 0; t < gw.tunnels.size(); ++t) {
    const config::LivenessSettings& ls = gw.tunnels[t].liveness;
    LivenessConfig c;
    c.enabled = ls.enabled;
    c.interval_ms = ls.interval_ms;
    c.multiplier = ls.multiplier;
    c.hold_down_ms = ls.hold_down_ms;
    if (!gw.liveness.damping) c.penalty = 0;
    live.configure(t, c, now);
    live_any |= ls.enabled;
  }
  proof_seen.assign(workers.size(), std::vector<uint32_t>(gw.tunnels.size(), 0));
  for (size_t w = 0; w < workers.size(); ++w)
    for (size_t t = 0; t < gw.tunnels.size(); ++t)
      proof_seen[w][t] = workers[w]->proof(uint32_t(t)).load(std::memory_order_relaxed);
}

// Reads the workers' watchdog ticks, runs the detector, and publishes its verdicts the way an operator command
// is published (model change, new State, RCU synchronise). Main lcore, every loop.
void Dataplane::Impl::liveness_poll(double el) {
  if (!live_any) return;
  static thread_local std::vector<Liveness::Change> changes;  // main only; keeps its capacity between calls
  changes.clear();
  {
    std::lock_guard lk(snap_mu);
    for (size_t w = 0; w < workers.size(); ++w) {
      for (uint32_t t = 0; t < gw.tunnels.size(); ++t) {
        const uint32_t v = workers[w]->proof(t).load(std::memory_order_relaxed);
        if (v == proof_seen[w][t]) continue;
        proof_seen[w][t] = v;
        live.proof(t, v);
      }
    }
    const uint32_t now = now_ms();
    // A tunnel the operator holds down, or without an outbound SA, sends no probes (control.cpp): its silence is
    // no verdict.
    for (uint32_t t = 0; t < gw.tunnels.size(); ++t)
      live.set_paused(t, model.tunnel_admin(t) == AdminState::kDown ||
                             model.instance_admin(gw.tunnels[t].instance) == AdminState::kDown || !model.keyed(t),
                      now);
    live.tick(now, &changes);
    // Monitor mode: verdicts are reported, the tunnels keep their traffic (operators trying timers out).
    if (!gw.liveness.monitor)
      for (const auto& c : changes) model.set_live(c.tunnel, c.up);
  }
  if (changes.empty()) return;
  const uint64_t pub0 = rte_get_tsc_cycles();
  if (!gw.liveness.monitor) publish();
  const uint64_t pub_us = (rte_get_tsc_cycles() - pub0) * 1000000 / tsc_hz;
  const uint32_t done = now_ms();
  uint64_t inside_rx = 0, outside_rx = 0;
  for (const auto& w : workers) {
    inside_rx += w->ctr.inside_rx;
    outside_rx += w->ctr.outside_rx;
  }
  for (const auto& c : changes) {
    const std::string& name = gw.tunnels[c.tunnel].name;
    const std::string text = fmt::format("liveness:{}:{}", name, c.up ? "up" : "down");
    live_events.push_back({{"event", text},
                           {"tunnel", name},
                           {"up", c.up},
                           {"at_s", el},
                           {"at_ms", c.at},
                           {"last_proof_ms", c.last_proof},
                           {"silence_ms", int32_t(c.at - c.last_proof)},   // last proof -> verdict
                           {"publish_ms", int32_t(done - c.at)},           // verdict -> every worker on it
                           {"publish_us", pub_us},                          // build + store + RCU synchronise
                           {"generation", generation},
                           {"inside_rx", inside_rx},
                           {"outside_rx", outside_rx},
                           {"applied", !gw.liveness.monitor}});
    audit_verdict(c.tunnel, c.up, int32_t(c.at - c.last_proof), c.damped);
  }
}

}  // namespace mg::dp
