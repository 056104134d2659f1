// The route table workers look destinations up in (docs/ARCHITECTURE.md "Routes"): the static routes of the
// config and, with [routing] kernel_table, the routes a routing daemon put into that kernel table through tunnels'
// interfaces ("Routes from the kernel"). A change of that table is read whole (a dump: no incremental state to
// drift), at most once per update_interval_ms however many notifications came, built into a new route::Table and
// published with the rest of the state (RCU). A table that cannot be read or built leaves the previous one in
// use, counted and said once.
#include <fmt/core.h>
#include <linux/rtnetlink.h>

#include "dataplane/internal.h"

namespace mg::dp {

namespace {

constexpr int kDumpTimeoutMs = 2000;  // a dump of 100 k routes takes a fraction of that

route::Route make_route(const net::IpAddr& a, uint8_t len, const route::TunnelSet& set) {
  route::Route r;
  r.family = a.version;
  std::memcpy(r.addr, a.bytes, 16);
  r.len = len;
  r.tunnels = set;
  return r;
}

}  // namespace

// The [inside] prefixes through every tunnel, each [[route]] through its tunnels, then `learned` (lib/route, in EAL
// memory). The config loader checked each static prefix and the number of sets; a refusal is still reported.
bool Dataplane::Impl::build_routes(const std::vector<route::Route>& learned, std::string* err) {
  std::vector<route::Route> rs;
  auto add = [&](const config::Prefix& p, const route::TunnelSet& set) { rs.push_back(make_route(p.addr, p.len, set)); };
  route::TunnelSet all;
  for (size_t t = 0; t < gw.tunnels.size(); ++t) all.set(t);
  for (const auto& p : gw.inside_prefixes) add(p, all);
  for (const auto& rc : gw.routes) {
    route::TunnelSet set;
    for (uint32_t t : rc.tunnels) set.set(t);
    for (const auto& p : rc.prefixes) add(p, set);
  }
  rs.insert(rs.end(), learned.begin(), learned.end());
  std::string why;
  auto table = route::Table::build(rs, uint32_t(gw.tunnels.size()), &why);
  if (!table) {
    *err = "routes: " + why;
    return false;
  }
  routes = std::move(table);
  return true;
}

bool Dataplane::Impl::routes_setup(std::string* err) {
  if (gw.routing.kernel_table == 0) return true;
  if (!nl) {
    nl = hostif::Netlink::open(err);
    if (!nl) return false;
  }
  kr.watch = hostif::RouteWatch::open(gw.routing.kernel_table, err);
  if (!kr.watch) return false;
  learn_routes();  // what is there already (a daemon that ran before us)
  log::info(log::Type::kHost, "routes: learning from kernel table {} ({} routes now, {} not usable)",
            gw.routing.kernel_table, kr.learned, kr.refused);
  return true;
}

void Dataplane::Impl::routes_poll() {
  if (!kr.watch) return;
  if (kr.watch->changed()) kr.dirty = true;
  const uint64_t now = rte_get_tsc_cycles();
  if (!kr.dirty || now < kr.next_tsc) return;
  kr.dirty = false;
  kr.next_tsc = now + tsc_hz * gw.routing.update_interval_ms / 1000;
  learn_routes();
}

void Dataplane::Impl::learn_routes() {
  std::vector<hostif::KernelRoute> got;
  std::string err;
  auto fail = [&](const std::string& why) {
    ++kr.failed;
    if (why != kr.last_err)
      log::warning(log::Type::kHost, "routes from kernel table {}: {}; the previous route table stays in use",
                   gw.routing.kernel_table, why);
    kr.last_err = why;
  };
  if (!nl->dump_routes(gw.routing.kernel_table, kDumpTimeoutMs, &got, &err)) {
    kr.dirty = true;  // read again at the next interval
    fail(err);
    return;
  }
  std::map<int, uint32_t> tunnel_of;  // ifindex -> tunnel
  for (size_t t = 0; t < tunif.size(); ++t)
    if (tunif[t]) tunnel_of[tunif[t]->ifindex()] = uint32_t(t);
  std::vector<route::Route> learned;
  uint64_t refused = 0;
  std::string first_refused;
  for (const hostif::KernelRoute& k : got) {
    route::TunnelSet set;
    // A multipath route partly out of other interfaces reaches the destination through the tunnels among them.
    for (const int oif : k.oifs)
      if (const auto it = tunnel_of.find(oif); it != tunnel_of.end()) set.set(it->second);
    if (k.type != RTN_UNICAST || k.nh_object || set.none()) {
      if (refused++ == 0)
        first_refused = route::format_prefix(make_route(k.dst, k.len, set)) + (k.type != RTN_UNICAST ? " (not unicast)"
                                          : k.nh_object         ? " (a nexthop object)"
                                                                : " (not through a tunnel's interface)");
      continue;
    }
    learned.push_back(make_route(k.dst, k.len, set));
  }
  if (!build_routes(learned, &err)) {
    fail(err);
    return;
  }
  kr.last_err.clear();
  const bool said = kr.learned != learned.size() || kr.refused != refused;
  kr.learned = learned.size();
  kr.refused = refused;
  ++kr.updates;
  if (said && state.load(std::memory_order_relaxed) != nullptr)
    log::info(log::Type::kHost, "routes from kernel table {}: {} in use, {} not usable{}{}", gw.routing.kernel_table,
              kr.learned, kr.refused, refused ? ", e.g. " : "", first_refused);
  if (state.load(std::memory_order_relaxed) != nullptr) publish();
}

}  // namespace mg::dp
