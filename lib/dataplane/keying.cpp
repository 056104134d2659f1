// The keying interface on main (lib/keying, docs/ARCHITECTURE.md "Keying"): a keying daemon installs, replaces, queries and
// deletes the SAs of tunnels keyed by IKE. Each change is made like every other one: new SA objects and tables
// built first, then one publish (RCU); an SA leaves memory (and its key is wiped) only after no worker can reach it.
//
//   inbound   several SAs per tunnel (old and new during a rekey), each in its port's inbound table
//   outbound  one in use (sa_out[t]); a new one replaces it at once (make-before-break: the daemon installs the new
//             outbound before deleting the old), starting after everything its key was ever used for (lib/seqstate,
//             so a key installed again after a restart never repeats an IV); the old one stays, unused, until deleted
//   deleted   the tunnel's last outbound SA gone: the tunnel is effectively down (Model::keyed), its flows move
#include <fmt/core.h>
#include <sodium.h>

#include <algorithm>

#include "dataplane/internal.h"

namespace mg::dp {

namespace {

crypto::Cipher to_cipher(uint8_t c) noexcept {
  switch (c) {
    case MG_KEY_AES_GCM_256: return crypto::Cipher::kAesGcm256;
    case MG_KEY_CHACHA20_POLY1305: return crypto::Cipher::kChacha20Poly1305;
    default: return crypto::Cipher::kAesGcm128;
  }
}

// The tunnel a selector names: by if_id, else by (local, remote) = (its instance's, its device's) address of the
// family. -1 when none or not keyed by IKE.
int tunnel_of(const config::Gateway& g, const mg_keying_sel& s) {
  for (size_t t = 0; t < g.tunnels.size(); ++t) {
    const config::Tunnel& ct = g.tunnels[t];
    if (s.if_id != 0) {
      if (ct.if_id == s.if_id) return ct.ike ? int(t) : -1;
      continue;
    }
    const config::Instance& in = g.instances[ct.instance];
    const config::Device& d = g.devices[ct.device];
    const net::IpAddr& l = s.family == 4 ? in.ipv4 : in.ipv6;
    const net::IpAddr& r = s.family == 4 ? d.ipv4 : d.ipv6;
    const size_t n = s.family == 4 ? 4 : 16;
    if (l.version == s.family && r.version == s.family && std::memcmp(l.bytes, s.local, n) == 0 &&
        std::memcmp(r.bytes, s.remote, n) == 0)
      return ct.ike ? int(t) : -1;
  }
  return -1;
}

}  // namespace

bool Dataplane::Impl::keying_open(std::string* err) {
  ike_in.resize(gw.tunnels.size());
  ike_out_old.resize(gw.tunnels.size());
  const bool any = std::any_of(gw.tunnels.begin(), gw.tunnels.end(), [](const config::Tunnel& t) { return t.ike; });
  if (!any && gw.keying_socket.empty()) return true;
  // The default is the plugin's default (ike/kernel-meshgate): one gateway per host needs no setting on either side.
  const std::string path = !gw.keying_socket.empty() ? gw.keying_socket : std::string("/run/meshgate/keying.sock");
  keying = std::make_unique<keying::Server>();
  if (!keying->open(path, err)) return false;
  log::info(log::Type::kKeying, "keying socket {}", path);
  return true;
}

void Dataplane::Impl::keying_poll() {
  if (!keying) return;
  keying->poll([this](const keying::Request& r, const keying::Server::Peer& p) {
    keying_conn = p.conn;
    return keying_handle(r);
  });
  keying_orphans();
  // Last use and lifetimes, from the SAs' own counters (no per-packet clock on the workers).
  const uint32_t now = now_ms();
  for (size_t t = 0; t < gw.tunnels.size(); ++t) {
    if (!gw.tunnels[t].ike) continue;
    for_each_sa(t, [&](const esp::Sa& sa, bool out) {
      auto it = ike_info.find(&sa);
      if (it == ike_info.end()) return;
      IkeSaInfo& info = it->second;
      const esp::SaStats st = sa.stats();
      if (st.packets != info.last_packets) {
        info.last_packets = st.packets;
        info.last_change_ms = now;
        info.used = true;
      }
      if (!out || &sa != sa_out[t].get()) return;
      const bool hard = sa.needs_rekey() || (info.hard_bytes && st.bytes >= info.hard_bytes) ||
                        (info.hard_packets && st.packets >= info.hard_packets);
      const bool soft = (info.soft_bytes && st.bytes >= info.soft_bytes) ||
                        (info.soft_packets && st.packets >= info.soft_packets);
      if (hard && !info.hard_sent) {
        // Stopped (a byte limit within one poll of main, ~1 ms): the tunnel is down until the daemon installs the
        // next outbound SA, so its flows move rather than drop.
        sa_out[t]->set_seq_end(sa.last_seq());  // the current outbound SA (checked above)
        {
          std::lock_guard lk(snap_mu);
          model.set_keyed(uint32_t(t), false);
        }
        publish();
      }
      if ((hard && !info.hard_sent) || (soft && !info.soft_sent)) {
        mg_keying_expire e{};
        e.spi = sa.spi();
        e.reqid = info.reqid;
        e.hard = hard ? 1 : 0;
        keying->broadcast_expire(e);
        (hard ? info.hard_sent : info.soft_sent) = true;
        if (hard) info.soft_sent = true;
        log::info(log::Type::kKeying, "tunnel {} outbound SPI {:#x} {} (expire sent)", gw.tunnels[t].name, sa.spi(),
                  hard ? "must be rekeyed now" : "reached its soft lifetime");
      }
    });
  }
}

mg_keying_reply Dataplane::Impl::keying_handle(const keying::Request& r) {
  auto refuse = [&](int32_t status, const std::string& why) {
    log::warning(log::Type::kKeying, "{} refused: {}", keying::type_name(r.type), why);
    return keying::reply(status, 0, why);
  };
  const uint16_t nw = uint16_t(workers.size());
  switch (r.type) {
    case MG_KEY_HELLO: {
      mg_keying_reply rep = keying::reply(MG_KEY_OK, 0, "");
      rep.tunnels = uint32_t(gw.tunnels.size());
      std::snprintf(rep.gateway, sizeof rep.gateway, "%s", gw.name.c_str());
      return rep;
    }
    case MG_KEY_GET_SPI: {
      const int t = tunnel_of(gw, r.spi.sel);
      if (t < 0) return refuse(MG_KEY_E_NO_TUNNEL, "no tunnel keyed by IKE matches the selector");
      // Random, >= 256 (1..255 are reserved by IANA), unused by any SA or offer on this tunnel's port.
      const uint16_t port = instance_port[gw.tunnels[size_t(t)].instance];
      for (int tries = 0; tries < 64; ++tries) {
        const uint32_t spi = randombytes_uniform(0xffffff00u) + 0x100u;
        bool used = spi_offered.count(spi) != 0;
        for (size_t u = 0; u < gw.tunnels.size() && !used; ++u)
          if (instance_port[gw.tunnels[u].instance] == port)
            for_each_sa(u, [&](const esp::Sa& sa, bool out) { used |= !out && sa.spi() == spi; });
        if (used) continue;
        spi_offered[spi] = {uint32_t(t), now_ms()};
        return keying::reply(MG_KEY_OK, spi, "");
      }
      return refuse(MG_KEY_E_BUSY, "no free SPI found");
    }
    case MG_KEY_ADD_SA: {
      const mg_keying_sa& m = r.sa;
      const int ti = tunnel_of(gw, m.sel);
      if (ti < 0) return refuse(MG_KEY_E_NO_TUNNEL, "no tunnel keyed by IKE matches the selector");
      const size_t t = size_t(ti);
      const config::Tunnel& ct = gw.tunnels[t];
      const bool out = m.dir == MG_KEY_DIR_OUT;
      bool dup = false;
      const uint16_t port = instance_port[ct.instance];
      // Inbound: unique on the port (what decap looks up). Outbound: unique over the gateway, because DEL_SA and
      // QUERY_SA name an SA by (direction, SPI) only; two devices choosing the same SPI is refused (the daemon
      // negotiates again) rather than left ambiguous.
      for (size_t u = 0; u < gw.tunnels.size(); ++u) {
        if (!out && instance_port[gw.tunnels[u].instance] != port) continue;
        for_each_sa(u, [&](const esp::Sa& sa, bool o) { dup |= o == out && sa.spi() == m.spi; });
      }
      if (dup) return refuse(MG_KEY_E_EXISTS, fmt::format("SPI {:#x} is already installed", m.spi));
      std::string e_mtu;
      esp::SaConfig c = out ? outbound_sa(gw, ct) : inbound_sa(gw, ct);  // endpoints, ttl, df, dscp from the tunnel
      c.spi = m.spi;
      c.cipher = to_cipher(m.cipher);
      c.engine = crypto::Engine::kIpsecMb;  // every cipher (the config's default too)
      c.keymat.assign(m.key, m.key + m.keylen);
      c.esn = m.esn != 0;
      if (!out) c.replay_window = m.replay_window ? std::max<uint32_t>(m.replay_window, 64) : 1024;
      c.user_id = uint32_t(t);
      // NAT-T (RFC 3948): the ports of this SA's packets as they are on the wire (inbound: the device's source
      // port, ours as destination), as the daemon negotiated them.
      c.encap = m.encap == MG_KEY_ENCAP_UDP ? net::Encap::kUdp : net::Encap::kNone;
      if (c.encap == net::Encap::kUdp) {
        c.udp_sport = m.sport;
        c.udp_dport = m.dport;
      }
      // The tunnel's path MTU and MSS clamps follow its outbound SA's encapsulation (8 bytes less in UDP).
      config::TunnelMtu new_mtu{};
      if (out) {
        int rc;
        {
          std::lock_guard lk(snap_mu);  // readers of gw (telemetry) never see the trial value
          const net::Encap was = gw.tunnels[t].out.encap;
          gw.tunnels[t].out.encap = c.encap;
          rc = mtu_of(gw, t, &new_mtu, &e_mtu);
          gw.tunnels[t].out.encap = was;
        }
        if (rc != kExitOk) return refuse(MG_KEY_E_REFUSED, e_mtu);
      }
      std::vector<uint8_t> fp_key;
      if (out && seq_store) fp_key = c.keymat;  // the sequence record is keyed by a fingerprint of the key
      std::string e;
      auto sa = esp::Sa::create(c, out ? esp::Direction::kOutbound : esp::Direction::kInbound, nw, &e);  // wipes c
      if (!sa) {
        sodium_memzero(fp_key.data(), fp_key.size());
        return refuse(MG_KEY_E_REFUSED, e);
      }
      std::unique_ptr<seqstate::Reservation> res;
      if (out && seq_store) {
        const bool ok = seq_begin_key(fp_key, c.esn, m.spi, *sa, &res, &e);
        sodium_memzero(fp_key.data(), fp_key.size());
        if (!ok) return refuse(MG_KEY_E_REFUSED, e);
      }
      // A hard packet lifetime is exact: the SA's last sequence number (the workers stop there themselves).
      if (out && m.hard_packets) sa->set_seq_end(sa->last_seq() + std::min<uint64_t>(m.hard_packets, UINT64_MAX - sa->last_seq()));
      IkeSaInfo info;
      info.reqid = m.reqid;
      info.soft_bytes = m.soft_bytes;
      info.hard_bytes = m.hard_bytes;
      info.soft_packets = m.soft_packets;
      info.hard_packets = m.hard_packets;
      info.installed_ms = info.last_change_ms = now_ms();
      info.conn = keying_conn;
      const esp::Sa* key = sa.get();
      std::string msg;
      const uint32_t replaced = out && sa_out[t] ? sa_out[t]->spi() : 0;
      if (out) {
        {
          std::lock_guard lk(snap_mu);
          gw.tunnels[t].out.encap = c.encap;
          tunnel_mtu[t] = new_mtu;
          if (sa_out[t]) ike_out_old[t].push_back(std::move(sa_out[t]));
          sa_out[t] = std::move(sa);
          seq_res[t] = std::move(res);
          ++seq_gen[t];  // a write still in flight belongs to the old reservation
          model.set_keyed(uint32_t(t), true);
          ike_info[key] = info;
        }
        publish();  // from here on every worker encrypts this tunnel's packets with the new SA only
      } else {
        {
          std::lock_guard lk(snap_mu);
          ike_in[t].push_back(std::move(sa));
          ike_info[key] = info;
        }
        spi_offered.erase(m.spi);
        if (!build_tables(&e)) return refuse(MG_KEY_E_REFUSED, e);
        publish();
        retire_tables();
      }
      audit_sa(t, out, *key, replaced ? fmt::format("installed by the keying daemon (replaces SPI {:#x}, kept until "
                                                    "deleted)", replaced)
                                      : std::string("installed by the keying daemon"));
      return keying::reply(MG_KEY_OK, m.spi, "");
    }
    case MG_KEY_DEL_SA:
    case MG_KEY_QUERY_SA: {
      const bool out = r.ref.dir == MG_KEY_DIR_OUT;
      for (size_t t = 0; t < gw.tunnels.size(); ++t) {
        if (!gw.tunnels[t].ike) continue;
        std::vector<std::unique_ptr<esp::Sa>>* list = out ? &ike_out_old[t] : &ike_in[t];
        const bool current = out && sa_out[t] && sa_out[t]->spi() == r.ref.spi;
        auto it = std::find_if(list->begin(), list->end(), [&](const auto& s) { return s->spi() == r.ref.spi; });
        if (!current && it == list->end()) continue;
        const esp::Sa& sa = current ? *sa_out[t] : **it;
        if (r.type == MG_KEY_QUERY_SA) {
          const esp::SaStats st = sa.stats();
          mg_keying_reply rep = keying::reply(MG_KEY_OK, sa.spi(), "");
          rep.packets = st.packets;
          rep.bytes = st.bytes;
          const auto info = ike_info.find(&sa);
          if (info != ike_info.end() && info->second.used) rep.last_use_ms_ago = now_ms() - info->second.last_change_ms;
          rep.seq = out ? sa.last_seq() : sa.replay().top();
          return rep;
        }
        keying_delete(t, out, r.ref.spi, "");
        return keying::reply(MG_KEY_OK, r.ref.spi, "");
      }
      return refuse(MG_KEY_E_NOT_FOUND, fmt::format("no {} SA with SPI {:#x}", out ? "outbound" : "inbound", r.ref.spi));
    }
    case MG_KEY_UPDATE_SA:
      // The ports and addresses are in each SA's precomputed header and its key is gone once the SA is made, so
      // a NAT that changes its mapping is followed by a rekey, not an update (charon rekeys on refusal).
      return refuse(MG_KEY_E_REFUSED, "changing an installed SA's addresses or ports is not supported: rekey it");
    default:
      return refuse(MG_KEY_E_MALFORMED, "not a request");
  }
}

bool Dataplane::Impl::keying_delete(size_t t, bool out, uint32_t spi, const char* why) {
  std::vector<std::unique_ptr<esp::Sa>>* list = out ? &ike_out_old[t] : &ike_in[t];
  const bool current = out && sa_out[t] && sa_out[t]->spi() == spi;
  auto it = std::find_if(list->begin(), list->end(), [&](const auto& s) { return s->spi() == spi; });
  if (!current && it == list->end()) return false;
  std::unique_ptr<esp::Sa> gone;
  std::string e;
  {
    std::lock_guard lk(snap_mu);
    if (current) {
      ike_info.erase(sa_out[t].get());
      gone = std::move(sa_out[t]);
      seq_res[t].reset();
      ++seq_gen[t];
      model.set_keyed(uint32_t(t), false);  // no outbound SA left: its flows move to the other tunnels
    } else {
      ike_info.erase(it->get());
      gone = std::move(*it);
      list->erase(it);
    }
    const esp::SaStats st = gone->stats();
    esp::SaStats& ret = out ? retired_out[t] : retired_in[t];
    ret.packets += st.packets;
    ret.bytes += st.bytes;
    for (size_t k = 0; k < esp::kDropCount; ++k) ret.drops[k] += st.drops[k];
  }
  if (!out && !build_tables(&e)) log::error(log::Type::kKeying, "{}", e);
  publish();  // after it no worker holds `gone`
  retire_tables();
  audit_sa(t, out, *gone, fmt::format("deleted{}{}", *why ? why : " by the keying daemon",
                                      current ? "; the tunnel has no outbound SA now" : ""));
  gone.reset();  // wipes its key
  return true;
}

// A keying daemon that dies (charon killed) cannot delete what it installed, and its successor does not know those
// SAs. They keep the tunnel running meanwhile. Once the tunnel's outbound SA comes from a daemon still connected,
// the dead one's replaced outbound SAs are unused and go at once; its inbound ones go 10 s later (the device may
// still send on its old SA for a moment, as after any rekey). A tunnel whose current outbound SA is the dead
// daemon's keeps everything: it still carries traffic.
void Dataplane::Impl::keying_orphans() {
  const uint32_t now = now_ms();
  if (int32_t(now - orphans_next_ms) < 0) return;
  orphans_next_ms = now + 100;
  constexpr uint32_t kInboundGraceMs = 10000;
  for (size_t t = 0; t < gw.tunnels.size(); ++t) {
    if (!gw.tunnels[t].ike || !sa_out[t]) continue;
    const auto cur = ike_info.find(sa_out[t].get());
    if (cur == ike_info.end() || !keying->connected(cur->second.conn)) continue;
    std::vector<std::pair<bool, uint32_t>> doomed;
    for (const auto& s : ike_out_old[t]) {
      const auto it = ike_info.find(s.get());
      if (it != ike_info.end() && !keying->connected(it->second.conn)) doomed.emplace_back(true, s->spi());
    }
    for (const auto& s : ike_in[t]) {
      const auto it = ike_info.find(s.get());
      if (it == ike_info.end() || keying->connected(it->second.conn)) continue;
      if (it->second.orphan_ms == 0) it->second.orphan_ms = now | 1;
      else if (now - it->second.orphan_ms >= kInboundGraceMs) doomed.emplace_back(false, s->spi());
    }
    for (const auto& [out, spi] : doomed)
      keying_delete(t, out, spi, " (its keying daemon is gone and the tunnel has newer SAs)");
  }
}

}  // namespace mg::dp
