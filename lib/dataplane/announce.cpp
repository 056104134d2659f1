// Announcing (docs/ARCHITECTURE.md "Announcing"): kernel tables where meshgate keeps what a routing daemon (BIRD:
// `protocol kernel { kernel table N; learn; }`) should announce, synced after every publish(), so liveness verdicts,
// operator commands, drains, keying and route changes all reach them the same way. Main only.
//   [routing] announce_table   towards the inside: each prefix of the route table while a tunnel of its set takes
//                              new flows (effectively up, weight above 0) and has an interface, out of that interface
//   [[tunnel]] announce_table  towards that tunnel's device: [routing] device_prefixes while the tunnel is up
// Every route goes out of a tunnel's interface, so that it dies with the process: a gateway killed outright leaves
// no announcement behind (the kernel removes routes through interfaces that go).
#include <fmt/core.h>

#include "dataplane/internal.h"

namespace mg::dp {

namespace {

net::IpAddr addr_of(const Dataplane::Impl::Announce::Key& k) {
  net::IpAddr a;
  a.version = k.family;
  std::memcpy(a.bytes, k.addr.data(), 16);
  return a;
}

Dataplane::Impl::Announce::Key key_of(uint8_t family, const uint8_t* addr, uint8_t len) {
  Dataplane::Impl::Announce::Key k{};
  k.family = family;
  std::memcpy(k.addr.data(), addr, 16);
  k.len = len;
  return k;
}

}  // namespace

bool Dataplane::Impl::announce_setup(std::string* err) {
  ann.tables.clear();
  if (gw.routing.announce_table != 0) ann.tables.push_back({gw.routing.announce_table, UINT32_MAX, {}});
  for (uint32_t t = 0; t < gw.tunnels.size(); ++t)
    if (gw.tunnels[t].announce_table != 0) ann.tables.push_back({gw.tunnels[t].announce_table, t, {}});
  if (ann.tables.empty()) return true;
  if (!nl) {
    nl = hostif::Netlink::open(err);
    if (!nl) return false;
  }
  // What a run that died left there (its interfaces went, but a route of ours out of an interface of the same name
  // made since would not have).
  for (const Announce::Table& tb : ann.tables) {
    std::vector<hostif::KernelRoute> old;
    if (!nl->dump_routes(tb.id, 2000, &old, err)) return false;
    size_t n = 0;
    for (const auto& k : old) {
      if (k.protocol != hostif::kRouteProtocol) continue;
      if (!nl->set_route(tb.id, k.dst, k.len, 0, false, err)) return false;
      ++n;
    }
    log::info(log::Type::kHost, "routes: announcing {} in kernel table {}{}",
              tb.tunnel == UINT32_MAX ? std::string("what this box reaches")
                                      : "[routing] device_prefixes to tunnel " + gw.tunnels[tb.tunnel].name + "'s device",
              tb.id, n ? fmt::format(" ({} left by an earlier run removed)", n) : std::string());
  }
  ann.on = true;
  return true;
}

// Makes table tb hold exactly `want` (prefix -> output interface): deletes first, then adds and moves.
void Dataplane::Impl::announce_apply(Announce::Table& tb, const std::map<Announce::Key, int>& want) {
  std::string err;
  auto failed = [&](const std::string& why) {
    ++ann.failed;
    if (why != ann.last_err) log::warning(log::Type::kHost, "routes: announcing: {}", why);
    ann.last_err = why;
  };
  for (auto it = tb.now.begin(); it != tb.now.end();) {
    if (want.count(it->first)) {
      ++it;
    } else if (nl->set_route(tb.id, addr_of(it->first), it->first.len, 0, false, &err)) {
      ++ann.changes;
      it = tb.now.erase(it);
    } else {
      failed(err);  // kept: tried again at the next sync
      ++it;
    }
  }
  for (const auto& [k, oif] : want) {
    const auto it = tb.now.find(k);
    if (it != tb.now.end() && it->second == oif) continue;
    if (nl->set_route(tb.id, addr_of(k), k.len, oif, true, &err)) {
      ++ann.changes;
      tb.now[k] = oif;
    } else {
      failed(err);
    }
  }
}

void Dataplane::Impl::announce_sync() {
  if (!ann.on || !routes) return;
  auto has_if = [&](uint32_t t) { return t < tunif.size() && tunif[t] != nullptr; };
  route::TunnelSet usable;
  for (uint32_t t = 0; t < gw.tunnels.size(); ++t)
    if (has_if(t) && model.effective(t) == AdminState::kUp && model.effective_weight(t) > 0) usable.set(t);
  for (Announce::Table& tb : ann.tables) {
    std::map<Announce::Key, int> want;
    if (tb.tunnel == UINT32_MAX) {
      for (const route::Route& r : routes->routes()) {
        const route::TunnelSet can = r.tunnels & usable;
        if (can.none()) continue;
        uint32_t t = 0;
        while (!can.test(t)) ++t;
        want[key_of(r.family, r.addr, r.len)] = tunif[t]->ifindex();
      }
    } else if (has_if(tb.tunnel) && model.effective(tb.tunnel) == AdminState::kUp) {
      for (const config::Prefix& p : gw.routing.device_prefixes)
        want[key_of(p.addr.version, p.addr.bytes, p.len)] = tunif[tb.tunnel]->ifindex();
    }
    announce_apply(tb, want);
  }
}

void Dataplane::Impl::announce_clear() noexcept {
  if (!ann.on) return;
  for (Announce::Table& tb : ann.tables) announce_apply(tb, {});
  ann.on = false;
}

}  // namespace mg::dp
