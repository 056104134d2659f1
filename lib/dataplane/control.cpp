// Main's changes to what workers see (docs/ARCHITECTURE.md "The control block"): the model changes, a new immutable State is
// published with one atomic store, every worker passes a quiescent state, the old State is freed. Operator
// commands from the control block, drain deadlines, --event and --fault all go through here.
#include <fmt/core.h>

#include "dataplane/internal.h"

namespace mg::dp {

void Dataplane::Impl::publish() {
  auto st = std::make_unique<State>();
  st->generation = ++generation;
  uint64_t moved = 0;
  for (const auto& w : workers) {
    const flow::SpreadCounters& c = w->pins->counters();
    moved += c.moved_down + c.moved_drain + c.moved_route;
  }
  moved_at_publish.store(moved, std::memory_order_relaxed);
  st->sel = flow::SelectionTable::build(model.specs(), gw.flow.seed, gw.flow.table_size);
  // A selection table per route set (docs/ARCHITECTURE.md "Routes"); the set of every tunnel uses the one above.
  st->routes = routes;
  for (route::SetId s = 0; s < routes->sets(); ++s) {
    const route::TunnelSet& members = routes->set(s);
    if (members.count() == gw.tunnels.size()) {
      st->by_set[s] = st->sel.get();
      continue;
    }
    st->set_sel.push_back(flow::SelectionTable::build(model.specs(), gw.flow.seed, gw.flow.table_size, &members));
    st->by_set[s] = st->set_sel.back().get();
  }
  st->tunnels.resize(gw.tunnels.size());
  for (size_t t = 0; t < gw.tunnels.size(); ++t) {
    const auto& ct = gw.tunnels[t];
    RtTunnel& r = st->tunnels[t];
    r.out = sa_out[t].get();
    // Without an outbound SA the tunnel is effectively down (Model::keyed): no flow is placed on it, no pin holds.
    if (r.out == nullptr && model.effective(uint32_t(t)) != AdminState::kDown) std::abort();
    r.port = instance_port[ct.instance];
    const bool learned = t < nh.size() && nh[t].learn;
    std::memcpy(r.l2, learned ? nh[t].mac : gw.devices[ct.device].mac, 6);
    r.no_next_hop = learned && !nh[t].known;
    std::memcpy(r.l2 + 6, ports[r.port].mac.addr_bytes, 6);
    const bool v6 = config::tunnel_ip_version(gw, ct) == 6;
    r.l2[12] = v6 ? 0x86 : 0x08;
    r.l2[13] = v6 ? 0xdd : 0x00;
    // Probe addresses come resolved from the config (tunnel, device, outer addresses; command-line overrides).
    const config::LivenessSettings& ls = ct.liveness;
    const bool admin_down = model.tunnel_admin(uint32_t(t)) == AdminState::kDown ||
                            model.instance_admin(ct.instance) == AdminState::kDown;
    r.blackhole = t < blackhole.size() ? blackhole[t] : 0;
    r.held = suspended[t] ? 1 : 0;
    const bool addrs = ls.probe_source.version != 0 && ls.probe_source.version == ls.probe_address.version;
    r.probe = probing && ls.enabled && ls.probes && addrs && !admin_down && !r.blackhole && r.out != nullptr;
    r.probe_v6 = ls.probe_source.version == 6;
    std::memcpy(r.probe_src, ls.probe_source.bytes, 16);
    std::memcpy(r.probe_dst, ls.probe_address.bytes, 16);
    r.local_set = ls.probe_source.version != 0;
    std::memcpy(r.local, ls.probe_source.bytes, 16);
    fill_mtu(r, uint32_t(t));
    r.tunif = t < tunif.size() && tunif[t] != nullptr;
  }
  st->reflect = gw.liveness.reflect;
  st->intercept = gw.liveness.reflect || probing;
  for (auto& t : in_tables) st->in_table.push_back(t.get());
  State* old = state.exchange(st.release(), std::memory_order_acq_rel);
  // What the routing daemon announces follows at once: the workers already use the new state.
  announce_sync();
  if (old != nullptr) {
    // Returns once every online worker has passed a quiescent state after the store above.
    if (qsbr != nullptr) rte_rcu_qsbr_synchronize(qsbr, RTE_QSBR_THRID_INVALID);
    delete old;
  }
}

namespace {

// A reply carries 111 characters. A longer message (a reset's config error with its paths) keeps its start and its
// end, where the reason is, around "..."; the command's audit line has it whole.
std::string fit_reply(const std::string& m) {
  constexpr size_t cap = sizeof(ctrl::Reply::message) - 1;
  if (m.size() <= cap) return m;
  constexpr size_t head = 32;
  return m.substr(0, head) + "..." + m.substr(m.size() - (cap - head - 3));
}

// The model change was made (or refused) under the snapshot lock; publish only a real change.
template <class F>
Applied change(Dataplane::Impl& d, std::string* msg, const std::string& noop, F&& f) {
  bool changed = true;
  {
    std::lock_guard lk(d.snap_mu);
    if (!f(&changed)) return Applied::kRefused;
  }
  if (!changed) {
    *msg = noop;
    return Applied::kNoChange;
  }
  d.publish();
  return Applied::kChanged;
}

}  // namespace

Applied Dataplane::Impl::apply_tunnel(uint32_t t, AdminState s, std::optional<uint32_t> deadline_ms,
                                      std::string* msg) {
  std::optional<uint32_t> dl;
  if (deadline_ms) dl = now_ms() + *deadline_ms;
  const std::string noop = t < gw.tunnels.size()
      ? fmt::format("tunnel {} is already {}: nothing changed", gw.tunnels[t].name, to_string(s)) : "";
  return change(*this, msg, noop, [&](bool* c) { return model.set_tunnel(t, s, dl, msg, c); });
}

Applied Dataplane::Impl::apply_instance(uint32_t i, AdminState s, std::optional<uint32_t> deadline_ms,
                                        std::string* msg) {
  std::optional<uint32_t> dl;
  if (deadline_ms) dl = now_ms() + *deadline_ms;
  const std::string noop = i < gw.instances.size()
      ? fmt::format("instance {} is already {}: nothing changed", gw.instances[i].name, to_string(s)) : "";
  return change(*this, msg, noop, [&](bool* c) { return model.set_instance(i, s, dl, msg, c); });
}

Applied Dataplane::Impl::apply_weight(uint32_t t, uint32_t w, std::string* msg) {
  const std::string noop = t < gw.tunnels.size()
      ? fmt::format("tunnel {} already has weight {}: nothing changed", gw.tunnels[t].name, w) : "";
  return change(*this, msg, noop, [&](bool* c) { return model.set_weight(t, w, msg, c); });
}

Applied Dataplane::Impl::apply_mode(config::Mode m, std::string* msg) {
  const std::string noop = fmt::format("the mode is already {}: nothing changed",
                                       m == config::Mode::kActiveActive ? "active-active" : "active-standby");
  return change(*this, msg, noop, [&](bool* c) {
    *c = model.mode() != m;
    model.set_mode(m);
    return true;
  });
}

void Dataplane::Impl::handle_commands() {
  ctrl::Command c;
  const ctrl::Limits lim{uint32_t(gw.tunnels.size()), uint32_t(gw.instances.size())};
  for (int budget = 16; budget > 0 && ctrl->poll(&c); --budget) {
    ctrl::Reply r;
    r.request_id = c.request_id;
    std::string msg;
    ctrl::Status st = ctrl::validate(c, lim, &msg);
    const bool valid = st == ctrl::Status::kOk;
    if (valid) {
      const AdminState as = from_wire(ctrl::State(c.value));
      const std::optional<uint32_t> dl = c.deadline_ms ? std::optional<uint32_t>(c.deadline_ms) : std::nullopt;
      Applied a = Applied::kChanged;
      switch (ctrl::Op(c.op)) {
        case ctrl::Op::kNop: break;
        case ctrl::Op::kTunnelState: a = apply_tunnel(c.target, as, dl, &msg); break;
        case ctrl::Op::kTunnelWeight: a = apply_weight(c.target, c.value, &msg); break;
        case ctrl::Op::kInstanceState: a = apply_instance(c.target, as, dl, &msg); break;
        case ctrl::Op::kInstanceReset: a = reset_instance(c.target, &msg) ? Applied::kChanged : Applied::kRefused; break;
        case ctrl::Op::kMode:
          a = apply_mode(ctrl::Mode(c.value) == ctrl::Mode::kActiveActive ? config::Mode::kActiveActive
                                                                           : config::Mode::kActiveStandby, &msg);
          break;
        case ctrl::Op::kClearCounters: clear_counters(); break;
        case ctrl::Op::kCount: break;
      }
      if (a == Applied::kRefused) st = ctrl::Status::kRefused;
    }
    if (st == ctrl::Status::kOk) ++cmds_ok;
    else ++cmds_rejected;
    r.status = st;
    r.generation = generation;
    if (msg.empty()) msg = st == ctrl::Status::kOk ? "ok" : ctrl::to_string(st);
    ctrl::copy_name(r.message, sizeof(r.message), fit_reply(msg));
    refresh_mirror();  // a client that saw the reply reads the new state from the mirror
    audit_command(c, valid, r, msg);  // before the reply: a client that saw it finds its line
    ctrl->reply(r);
  }
}

void Dataplane::Impl::expire_drains() {
  bool changed;
  {
    std::lock_guard lk(snap_mu);
    changed = model.expire_drains(now_ms());
  }
  if (changed) publish();
}

void Dataplane::Impl::run_events(double el, uint64_t inside_rx, std::vector<bool>& fired,
                                 std::vector<bool>& faulted, nlohmann::json& events) {
  for (size_t e = 0; e < opt.events.size(); ++e) {
    const Event& ev = opt.events[e];
    if (fired[e]) continue;
    const bool due = ev.at_s >= 0 ? el >= ev.at_s : inside_rx >= ev.at_packets;
    if (!due) continue;
    fired[e] = true;
    const Stats s = stats();
    std::string err;
    const bool ok = (ev.instance ? apply_instance(ev.index, ev.state, std::nullopt, &err)
                                 : apply_tunnel(ev.index, ev.state, std::nullopt, &err)) != Applied::kRefused;
    audit_event(ev, el, ok, err);
    events.push_back({{"event", ev.text}, {"at_s", el}, {"ok", ok}, {"before", to_json(s)}});
  }
  for (size_t f = 0; f < opt.faults.size(); ++f) {
    const Fault& ft = opt.faults[f];
    if (faulted[f] || el < ft.at_s) continue;
    faulted[f] = true;
    blackhole[ft.tunnel] = ft.blackhole ? 1 : 0;
    publish();
    log::audit("source=fault cmd=\"{}\" at={:.3f}s result=ok generation={}", ft.text, el, generation);
    events.push_back({{"event", "fault:" + ft.text}, {"at_s", el}, {"at_ms", now_ms()}, {"ok", true}});
  }
}

}  // namespace mg::dp
