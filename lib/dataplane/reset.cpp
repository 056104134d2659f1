// Instance reset and the inbound SA tables: new SAs for one instance's tunnels while the other instance carries
// their flows; a key that did not change continues its sequence numbers and replay window. The tunnels' `mtu` and
// `mss_clamp` are read again too; other tunnel settings need a restart.
#include <fmt/core.h>

#include "dataplane/internal.h"

namespace mg::dp {

// The replaced tables wait in retiring_tables, still counted by stats(), until retire_tables() after the next
// publish(): a worker may drop packets on them until then, and those drops must neither be lost nor counted twice.
bool Dataplane::Impl::build_tables(std::string* err) {
  std::vector<std::unique_ptr<esp::SaTable>> next;
  for (uint16_t pi : outside) {
    std::vector<esp::Sa*> list;
    for (size_t t = 0; t < gw.tunnels.size(); ++t)
      if (instance_port[gw.tunnels[t].instance] == pi && !suspended[t]) {
        if (sa_in[t]) list.push_back(sa_in[t].get());
        if (t < ike_in.size())
          for (const auto& sa : ike_in[t]) list.push_back(sa.get());
      }
    std::string e;
    auto tb = esp::SaTable::build(list, uint16_t(workers.size()), &e);
    if (!tb) {
      *err = fmt::format("inbound SA table of port '{}': {}", ports[pi].name, e);
      return false;
    }
    next.push_back(std::move(tb));
  }
  std::lock_guard lk(snap_mu);
  in_tables.swap(next);
  for (auto& tb : next) retiring_tables.push_back(std::move(tb));
  return true;
}

void Dataplane::Impl::retire_tables() {
  std::vector<std::unique_ptr<esp::SaTable>> gone;
  {
    std::lock_guard lk(snap_mu);
    for (const auto& tb : retiring_tables) {
      const esp::SaStats ts = tb->stats();
      for (size_t r = 0; r < esp::kDropCount; ++r) retired_tables.drops[r] += ts.drops[r];
    }
    gone.swap(retiring_tables);
  }
}

bool Dataplane::Impl::reset_instance(uint32_t inst, std::string* err) {
  if (inst >= gw.instances.size()) {
    *err = fmt::format("instance {} does not exist", inst);
    return false;
  }
  std::vector<config::Error> errs;
  auto fresh = config::load_gateway(gw.source, &errs);
  if (!fresh) {
    *err = fmt::format("{} does not load: {}", gw.source, errs.empty() ? "?" : errs.front().format());
    return false;
  }
  if (fresh->tunnels.size() != gw.tunnels.size() || fresh->instances.size() != gw.instances.size()) {
    *err = "the config's tunnels or instances differ from the running ones; restart meshgate to change them";
    return false;
  }
  std::vector<uint32_t> mine;
  for (uint32_t t = 0; t < gw.tunnels.size(); ++t) {
    const auto& a = gw.tunnels[t];
    const auto& b = fresh->tunnels[t];
    if (a.name != b.name || a.instance != b.instance || a.device != b.device) {
      *err = fmt::format("tunnel {} changed in the config; restart meshgate to change tunnels", a.name);
      return false;
    }
    if (a.ike != b.ike) {
      *err = fmt::format("tunnel {} changed its keying; restart meshgate to change it", a.name);
      return false;
    }
    if (a.instance == inst && !a.ike) mine.push_back(t);  // IKE SAs are the keying daemon's to replace
  }
  // New SAs first, so nothing changes when one cannot be made.
  const uint16_t nw = uint16_t(workers.size());
  std::vector<std::unique_ptr<esp::Sa>> nout(mine.size()), nin(mine.size());
  std::vector<std::unique_ptr<seqstate::Reservation>> nres(mine.size());
  std::vector<config::TunnelMtu> nmtu(mine.size());
  for (size_t k = 0; k < mine.size(); ++k) {
    const uint32_t t = mine[k];
    auto& ft = fresh->tunnels[t];
    auto& ct = gw.tunnels[t];
    const bool same_in = ft.in.keymat.bytes() == ct.in.keymat.bytes();
    if (same_in && ft.in.replay_window != sa_in[t]->replay().size()) {
      *err = fmt::format("tunnel {}: the inbound replay window changed but the key did not; change the key too",
                         ct.name);
      return false;
    }
    if (mtu_of(*fresh, t, &nmtu[k], err) != kExitOk) return false;
    esp::SaConfig oc = outbound_sa(*fresh, ft);
    esp::SaConfig ic = inbound_sa(*fresh, ft);
    oc.user_id = ic.user_id = t;
    std::string e;
    nout[k] = esp::Sa::create(oc, esp::Direction::kOutbound, nw, &e);
    if (nout[k]) nin[k] = esp::Sa::create(ic, esp::Direction::kInbound, nw, &e);
    if (!nout[k] || !nin[k]) {
      *err = fmt::format("tunnel {}: {}", ct.name, e);
      return false;
    }
    // A key that changed starts where the state directory says, as at startup: a key that comes back (A, B,
    // then A again) continues after everything it was ever used for. An unchanged key continues below.
    if (seq_store && ft.out.keymat.bytes() != ct.out.keymat.bytes()) {
      const seqstate::Fingerprint fp = seqstate::fingerprint(ft.out.keymat.bytes());
      for (size_t u = 0; u < seq_res.size(); ++u) {
        if (u != t && seq_res[u] && seq_res[u]->key() == fp && gw.tunnels[u].instance != inst) {
          *err = fmt::format("tunnel {}: its new outbound key is the running key of tunnel {}: two SAs with one key "
                             "would repeat its IVs", ct.name, gw.tunnels[u].name);
          return false;
        }
      }
      if (!seq_begin(ft.out, *nout[k], &nres[k], &e)) {
        *err = fmt::format("tunnel {}: {}", ct.name, e);
        return false;
      }
    }
  }
  // Phase 1: the instance goes down (its flows move to the other instance), its inbound SAs leave the tables and
  // its tunnels are held (deferred probes and replies are dropped, not sent); after the synchronise in publish()
  // no worker can reach the old SAs, so their last sequence numbers are final.
  const AdminState was = model.instance_admin(inst);
  {
    std::lock_guard lk(snap_mu);
    model.set_instance(inst, AdminState::kDown, std::nullopt, err);
    for (uint32_t t : mine) suspended[t] = true;
  }
  if (!build_tables(err)) return false;
  publish();
  retire_tables();
  // Phase 2: swap in the new SAs. A key that did not change continues its sequence number and replay window:
  // never the same (key, IV) pair twice, never a replay accepted twice.
  std::vector<std::unique_ptr<esp::Sa>> retired;
  struct Swapped {
    uint32_t t, old_out, old_in;
    bool same_out, same_in;
  };
  std::vector<Swapped> swapped;
  {
    std::lock_guard lk(snap_mu);
    for (size_t k = 0; k < mine.size(); ++k) {
      const uint32_t t = mine[k];
      auto& ft = fresh->tunnels[t];
      auto& ct = gw.tunnels[t];
      if (ft.out.keymat.bytes() == ct.out.keymat.bytes()) {
        nout[k]->resume_after(sa_out[t]->last_seq());
        nout[k]->set_seq_limit(sa_out[t]->seq_limit());  // the same reservation goes on
      } else if (nres[k]) {
        seq_res[t] = std::move(nres[k]);
        ++seq_gen[t];  // a write still in flight belongs to the old reservation
      }
      if (ft.in.keymat.bytes() == ct.in.keymat.bytes()) nin[k]->adopt_replay(*sa_in[t]);
      swapped.push_back({t, sa_out[t]->spi(), sa_in[t]->spi(), ft.out.keymat.bytes() == ct.out.keymat.bytes(),
                         ft.in.keymat.bytes() == ct.in.keymat.bytes()});
      const esp::SaStats so = sa_out[t]->stats(), si = sa_in[t]->stats();
      retired_out[t].packets += so.packets;
      retired_in[t].packets += si.packets;
      retired_out[t].bytes += so.bytes;
      retired_in[t].bytes += si.bytes;
      for (size_t r = 0; r < esp::kDropCount; ++r) {
        retired_out[t].drops[r] += so.drops[r];
        retired_in[t].drops[r] += si.drops[r];
      }
      retired.push_back(std::move(sa_out[t]));
      retired.push_back(std::move(sa_in[t]));
      sa_out[t] = std::move(nout[k]);
      sa_in[t] = std::move(nin[k]);
      ct.out = std::move(ft.out);
      ct.in = std::move(ft.in);
      ct.mtu = ft.mtu;
      ct.mss_clamp = ft.mss_clamp;
      tunnel_mtu[t] = nmtu[k];  // publish() below puts the new figures into the tunnel's runtime part
      suspended[t] = false;
    }
    model.set_instance(inst, was, std::nullopt, err);
    ++resets[inst];
  }
  if (!build_tables(err)) return false;
  publish();
  retire_tables();
  retired.clear();  // wipes the old keys
  for (const Swapped& s : swapped) {
    audit_sa(s.t, true, *sa_out[s.t], fmt::format("replaces SPI {:#x} (instance {} reset; {})", s.old_out,
                                                  gw.instances[inst].name,
                                                  s.same_out ? "same key: its sequence numbers continue" : "new key"));
    audit_sa(s.t, false, *sa_in[s.t], fmt::format("replaces SPI {:#x} (instance {} reset; {})", s.old_in,
                                                  gw.instances[inst].name,
                                                  s.same_in ? "same key: its replay window continues" : "new key"));
  }
  return true;
}

}  // namespace mg::dp
