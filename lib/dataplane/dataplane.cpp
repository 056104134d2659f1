// The public façade of lib/dataplane, and main's loop. What each part does lives in its own file (internal.h
// lists them); this one only wires them together.
#include "dataplane/dataplane.h"

#include <fmt/core.h>
#include <rte_eal.h>
#include <rte_launch.h>
#include <rte_malloc.h>

#include <chrono>
#include <thread>

#include "dataplane/internal.h"

namespace mg::dp {

std::atomic<bool> g_stop{false};

namespace {

int launch_worker(void* arg) {
  auto* pair = static_cast<std::pair<Dataplane::Impl*, Worker*>*>(arg);
  return pair->first->worker_main(*pair->second);
}

}  // namespace

int Dataplane::create(config::Gateway g, config::PmdConfig p, Options o, std::unique_ptr<Dataplane>* out,
                      std::string* err) {
  std::unique_ptr<Dataplane> dp(new Dataplane());
  dp->impl_ = std::make_unique<Impl>();
  Impl& d = *dp->impl_;
  d.gw = std::move(g);
  d.pmd = std::move(p);
  d.opt = std::move(o);
  d.model = Model(d.gw);
  // The control block first: a second meshgate of the same name must not get as far as the EAL.
  if (d.opt.control) {
    std::string e;
    d.ctrl = ctrl::Block::create(d.opt.control_name.empty() ? d.gw.name : d.opt.control_name, &e);
    if (!d.ctrl) {
      *err = "control block: " + e;
      return kExitRuntime;
    }
  }
  if (const int rc = d.setup(err); rc != kExitOk) return rc;
  if (const int rc = d.setup_mtu(err); rc != kExitOk) return rc;
  if (const int rc = d.tunif_setup(err); rc != kExitOk) return rc;
  if (!d.routes_setup(err)) {
    *err = "[routing] kernel_table: " + *err;
    return kExitPort;
  }
  if (!d.announce_setup(err)) {
    *err = "announce tables: " + *err;
    return kExitPort;
  }
  if (!d.keying_open(err)) return kExitRuntime;
  d.publish();
  d.register_telemetry();
  if (d.ctrl)
    log::info(log::Type::kCtrl, "control block /dev/shm/meshgate.{0}: meshgatectl --gateway {0} reaches this process",
              d.opt.control_name.empty() ? d.gw.name : d.opt.control_name);
  for (size_t t = 0; t < d.gw.tunnels.size(); ++t) {
    if (!d.sa_out[t]) continue;  // keyed by IKE: audited as its daemon installs them
    d.audit_sa(t, true, *d.sa_out[t], "installed from the config (start)");
    d.audit_sa(t, false, *d.sa_in[t], "installed from the config (start)");
  }
  *out = std::move(dp);
  return kExitOk;
}

Dataplane::~Dataplane() {
  if (!impl_) return;
  Impl& d = *impl_;
  d.seq_stop();  // before anything it writes for goes
  d.unregister_telemetry();
  d.close_ports();
  delete d.state.exchange(nullptr);
  d.routes.reset();  // rte_lpm memory: before the EAL goes
  d.kr.watch.reset();
  d.in_tables.clear();
  d.retiring_tables.clear();
  d.keying.reset();  // the socket file goes with it
  d.sa_out.clear();  // wipes keys
  d.sa_in.clear();
  d.ike_out_old.clear();
  d.ike_in.clear();
  if (d.qsbr) rte_free(d.qsbr);
  if (d.eal_up) rte_eal_cleanup();
}

namespace {

bool applied(Applied a) { return a != Applied::kRefused; }

}  // namespace

bool Dataplane::apply_tunnel(uint32_t t, AdminState s, std::optional<uint32_t> deadline_ms, std::string* err) {
  return applied(impl_->apply_tunnel(t, s, deadline_ms, err));
}
bool Dataplane::apply_instance(uint32_t i, AdminState s, std::optional<uint32_t> deadline_ms, std::string* err) {
  return applied(impl_->apply_instance(i, s, deadline_ms, err));
}
bool Dataplane::apply_weight(uint32_t t, uint32_t w, std::string* err) {
  return applied(impl_->apply_weight(t, w, err));
}
void Dataplane::apply_mode(config::Mode m) {
  std::string msg;
  impl_->apply_mode(m, &msg);
}
bool Dataplane::apply_reset(uint32_t i, std::string* err) { return impl_->reset_instance(i, err); }
void Dataplane::clear_counters() { impl_->clear_counters(); }
Stats Dataplane::stats() const { return impl_->stats(); }
uint64_t Dataplane::generation() const noexcept { return impl_->generation; }
const config::Gateway& Dataplane::gateway() const noexcept { return impl_->gw; }
const nlohmann::json& Dataplane::report() const noexcept { return impl_->report; }
void Dataplane::request_stop() noexcept { g_stop.store(true, std::memory_order_relaxed); }

int Dataplane::run() {
  Impl& d = *impl_;
  // g_stop is not cleared here: a SIGTERM that came while create() set up EAL and ports (systemd stopping a unit
  // that is still starting) must stop the run, not be forgotten.
  std::vector<std::pair<Impl*, Worker*>> args;
  args.reserve(d.workers.size());
  for (auto& w : d.workers) args.emplace_back(&d, w.get());
  for (auto& a : args) {
    if (rte_eal_remote_launch(launch_worker, &a, a.second->lcore) != 0) {
      g_stop.store(true);
      rte_eal_mp_wait_lcore();
      log::error(log::Type::kMain, "cannot launch a worker on lcore {}", a.second->lcore);
      return kExitRuntime;
    }
  }
  const uint64_t hz = d.tsc_hz;
  const uint64_t t0 = rte_get_tsc_cycles();
  d.liveness_start();
  d.notify_start();
  uint64_t next_stats = d.opt.stats_interval_s > 0 ? t0 + uint64_t(d.opt.stats_interval_s * double(hz)) : UINT64_MAX;
  uint64_t last_rx = 0, last_change = t0;
  std::vector<bool> fired(d.opt.events.size(), false);
  std::vector<bool> faulted(d.opt.faults.size(), false);
  nlohmann::json events = nlohmann::json::array();
  uint64_t next_mirror = t0;

  // Main sleeps between rounds and a command wakes it at once (the control block's doorbell): the 50 us polling
  // this replaced cost 56-75 % of a core under load. The nap is as long as the other duties allow: 50 us while an
  // --event waits for a packet count (it fires within a burst or two of it), 1 ms while liveness, faults or timed
  // events need the clock, 5 ms otherwise (mirror every 100 ms, drain deadlines, the idle exit).
  bool packet_events = false, clock_duties = d.live_any || !d.opt.faults.empty() || d.keying || d.any_host || d.any_tunif;
  for (const Event& ev : d.opt.events) (ev.at_s >= 0 ? clock_duties : packet_events) = true;
  while (!g_stop.load(std::memory_order_relaxed)) {
    const uint32_t nap_us = packet_events ? 50 : clock_duties ? 1000 : 5000;
    if (d.ctrl) d.ctrl->wait_command(nap_us);
    else std::this_thread::sleep_for(std::chrono::microseconds(nap_us));
    const uint64_t now = rte_get_tsc_cycles();
    const double el = double(now - t0) / double(hz);
    uint64_t inside_rx = 0, outside_rx = 0;
    for (const auto& w : d.workers) {
      inside_rx += w->ctr.inside_rx;
      outside_rx += w->ctr.outside_rx;
    }
    d.seq_poll(el);  // first: workers may be waiting at a limit
    d.run_events(el, inside_rx, fired, faulted, events);
    packet_events = false;
    for (size_t e = 0; e < fired.size(); ++e) packet_events |= !fired[e] && d.opt.events[e].at_s < 0;
    d.expire_drains();
    d.liveness_poll(el);
    if (d.ctrl) d.handle_commands();
    d.keying_poll();
    d.host_poll();
    d.tunif_poll();
    d.routes_poll();
    d.host_tick();
    if (now >= next_mirror) {
      if (d.ctrl) d.refresh_mirror();
      d.sample_ports();
      next_mirror = now + hz / 10;
    }
    d.notify_poll(now);
    if (now >= next_stats) {
      fmt::print("{}", format_table(d.stats()));
      next_stats = now + uint64_t(d.opt.stats_interval_s * double(hz));
    }
    if (d.opt.duration_s > 0 && el >= d.opt.duration_s) break;
    const uint64_t rx = inside_rx + outside_rx;
    if (rx != last_rx) {
      last_rx = rx;
      last_change = now;
    } else if (d.opt.exit_when_idle_ms && rx > 0 && (now - last_change) * 1000 / hz >= d.opt.exit_when_idle_ms) {
      break;
    }
  }
  d.notify_stopping();
  g_stop.store(true);
  rte_eal_mp_wait_lcore();
  d.host_drain();
  d.announce_clear();
  d.tunif_drain();

  nlohmann::json port_stats = d.port_stats();
  // Queues drained: stop and close the ports (their RX rings give their mbufs back, pcap files are flushed).
  d.close_ports();
  const Stats fin = d.stats();
  const unsigned in_use = rte_mempool_in_use_count(d.pool);
  d.report = to_json(fin);
  d.report["events"] = events;
  d.report["liveness_events"] = d.live_events;
  d.report["ports"] = port_stats;
  d.report["mbufs_in_use_at_exit"] = in_use;
  if (!d.opt.quiet) {
    fmt::print("{}", format_table(fin));
    std::fflush(stdout);  // the table before the log line that follows it
  }
  log::info(log::Type::kMain, "stopped; mbufs in use after closing ports: {}", in_use);
  if (in_use != 0) {
    log::error(log::Type::kMain, "{} mbufs were not returned to the pool", in_use);
    return kExitRuntime;
  }
  return kExitOk;
}

}  // namespace mg::dp
