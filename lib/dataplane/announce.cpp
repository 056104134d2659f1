// Announcing (docs/ARCHITECTURE.md "Announcing"): with [routing] announce_table, meshgate keeps in that kernel table
// the prefixes this box can reach now, for the routing daemon (BIRD: `protocol kernel { kernel table N; learn; }`)
// to announce towards the inside. A prefix of the route table is there while a tunnel of its set takes new flows
// (effectively up, weight above 0) and has an interface; the route goes out of that interface, so that it dies
// with the process: a gateway killed outright leaves no announcement behind (the kernel removes routes through
// interfaces that go). Synced after every publish(), so liveness verdicts, operator commands, drains, keying and
// route changes all reach it the same way. Main only.
#include <fmt/core.h>

#include "dataplane/internal.h"

namespace mg::dp {

namespace {

net::IpAddr addr_of(const route::Route& r) {
  net::IpAddr a;
  a.version = r.family;
  std::memcpy(a.bytes, r.addr, 16);
  return a;
}

}  // namespace

bool Dataplane::Impl::announce_setup(std::string* err) {
  if (gw.routing.announce_table == 0) return true;
  if (!nl) {
    nl = hostif::Netlink::open(err);
    if (!nl) return false;
  }
  // What a run that died left there (its interfaces went, but a route of ours out of an interface of the same name
  // made since would not have).
  std::vector<hostif::KernelRoute> old;
  if (!nl->dump_routes(gw.routing.announce_table, 2000, &old, err)) return false;
  size_t n = 0;
  for (const auto& k : old) {
    if (k.protocol != hostif::kRouteProtocol) continue;
    if (!nl->set_route(gw.routing.announce_table, k.dst, k.len, 0, false, err)) return false;
    ++n;
  }
  ann.on = true;
  log::info(log::Type::kHost, "routes: announcing in kernel table {}{}", gw.routing.announce_table,
            n ? fmt::format(" ({} left by an earlier run removed)", n) : std::string());
  return true;
}

void Dataplane::Impl::announce_sync() {
  if (!ann.on || !routes) return;
  route::TunnelSet usable;
  for (uint32_t t = 0; t < gw.tunnels.size(); ++t)
    if (t < tunif.size() && tunif[t] && model.effective(t) == AdminState::kUp && model.effective_weight(t) > 0)
      usable.set(t);
  std::map<Announce::Key, int> want;
  for (const route::Route& r : routes->routes()) {
    const route::TunnelSet can = r.tunnels & usable;
    if (can.none()) continue;
    uint32_t t = 0;
    while (!can.test(t)) ++t;
    Announce::Key k{};
    k.family = r.family;
    std::memcpy(k.addr.data(), r.addr, 16);
    k.len = r.len;
    want[k] = tunif[t]->ifindex();
  }
  std::string err;
  auto failed = [&](const std::string& why) {
    ++ann.failed;
    if (why != ann.last_err) log::warning(log::Type::kHost, "routes: announcing: {}", why);
    ann.last_err = why;
  };
  route::Route r{};
  for (auto it = ann.now.begin(); it != ann.now.end();) {
    if (want.count(it->first)) {
      ++it;
      continue;
    }
    r.family = it->first.family;
    std::memcpy(r.addr, it->first.addr.data(), 16);
    if (nl->set_route(gw.routing.announce_table, addr_of(r), it->first.len, 0, false, &err)) {
      ++ann.changes;
      it = ann.now.erase(it);
    } else {
      failed(err);  // kept: tried again at the next sync
      ++it;
    }
  }
  for (const auto& [k, oif] : want) {
    const auto it = ann.now.find(k);
    if (it != ann.now.end() && it->second == oif) continue;
    r.family = k.family;
    std::memcpy(r.addr, k.addr.data(), 16);
    if (nl->set_route(gw.routing.announce_table, addr_of(r), k.len, oif, true, &err)) {
      ++ann.changes;
      ann.now[k] = oif;
    } else {
      failed(err);
    }
  }
}

void Dataplane::Impl::announce_clear() noexcept {
  if (!ann.on) return;
  std::string err;
  route::Route r{};
  for (const auto& [k, oif] : ann.now) {
    r.family = k.family;
    std::memcpy(r.addr, k.addr.data(), 16);
    if (nl->set_route(gw.routing.announce_table, addr_of(r), k.len, 0, false, &err)) ++ann.changes;
  }
  ann.now.clear();
  ann.on = false;
}

}  // namespace mg::dp
