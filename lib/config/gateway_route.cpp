// [[route]] tables: prefixes that only some tunnels reach (config.h RouteCfg).
#include <algorithm>
#include <set>
#include <string>
#include <vector>

#include "config/gateway_internal.h"

namespace mg::config::detail {

void check_tunnel_announce(const Gateway& g, Sink& sink);

void read_routes(Reader& top, Sink& sink, Gateway* g) {
  const auto tables = array_of_tables(top, sink, "route");
  std::vector<std::pair<Prefix, int>> seen;  // every prefix of every route, with its line
  for (size_t i = 0; i < tables.size(); ++i) {
    Reader r(sink, *tables[i], nth("route", i, *tables[i]));
    RouteCfg rc;
    rc.line = r.line();
    bool ok = true;
    if (const auto prefixes = r.str_array("prefixes", true)) {
      if (prefixes->empty()) {
        sink.add(r.line("prefixes"), "route-prefix", r.where() + ": `prefixes` is empty");
        ok = false;
      }
      for (const std::string& s : *prefixes) {
        Prefix p;
        std::string why;
        if (!parse_prefix(s, &p, &why)) {
          sink.add(r.line("prefixes"), "route-prefix", r.where() + ": prefix \"" + s + "\" " + why);
          ok = false;
          continue;
        }
        const auto dup = std::find_if(seen.begin(), seen.end(), [&](const auto& q) {
          return q.first.len == p.len && q.first.addr == p.addr;
        });
        if (dup != seen.end()) {
          sink.add(r.line("prefixes"), "route-prefix",
                   r.where() + ": prefix \"" + s + "\" is also routed on line " + std::to_string(dup->second) +
                       " (one [[route]] per prefix: list all its devices or tunnels there)");
          ok = false;
          continue;
        }
        seen.emplace_back(p, r.line("prefixes"));
        rc.prefixes.push_back(p);
      }
    } else {
      ok = false;
    }
    const auto devices = r.str_array("devices");
    const auto tunnels = r.str_array("tunnels");
    std::set<uint32_t> set;
    if (devices.has_value() == tunnels.has_value()) {
      sink.add(rc.line, "route-reference",
               r.where() + ": name the tunnels that reach these prefixes with either `devices` (every tunnel to "
                           "those devices) or `tunnels`, not " + (devices ? "both" : "neither"));
      ok = false;
    } else if (devices) {
      for (const std::string& d : *devices) {
        const auto it = std::find_if(g->devices.begin(), g->devices.end(), [&](const Device& x) { return x.name == d; });
        if (it == g->devices.end()) {
          sink.add(r.line("devices"), "route-reference", r.where() + ": no [[device]] named \"" + d + "\"");
          ok = false;
          continue;
        }
        const uint32_t di = uint32_t(it - g->devices.begin());
        size_t before = set.size();
        for (uint32_t t = 0; t < g->tunnels.size(); ++t)
          if (g->tunnels[t].device == di) set.insert(t);
        if (set.size() == before) {
          sink.add(r.line("devices"), "route-reference",
                   r.where() + ": device \"" + d + "\" has no [[tunnel]] (or its tunnels are listed twice)");
          ok = false;
        }
      }
    } else {
      for (const std::string& n : *tunnels) {
        const auto it = std::find_if(g->tunnels.begin(), g->tunnels.end(), [&](const Tunnel& x) { return x.name == n; });
        if (it == g->tunnels.end()) {
          sink.add(r.line("tunnels"), "route-reference", r.where() + ": no [[tunnel]] named \"" + n + "\"");
          ok = false;
        } else if (!set.insert(uint32_t(it - g->tunnels.begin())).second) {
          sink.add(r.line("tunnels"), "route-reference", r.where() + ": tunnel \"" + n + "\" is listed twice");
          ok = false;
        }
      }
    }
    if (ok && set.empty()) {
      sink.add(rc.line, "route-reference", r.where() + ": no tunnel reaches these prefixes");
      ok = false;
    }
    r.finish();
    if (!ok) continue;
    rc.tunnels.assign(set.begin(), set.end());
    g->routes.push_back(std::move(rc));
  }
  // Each distinct set of tunnels costs the data plane a selection table: the [inside] prefixes' (every tunnel) and
  // one per other set.
  std::set<std::vector<uint32_t>> sets;
  std::vector<uint32_t> all(g->tunnels.size());
  for (uint32_t t = 0; t < all.size(); ++t) all[t] = t;
  sets.insert(all);
  for (const RouteCfg& rc : g->routes) {
    sets.insert(rc.tunnels);
    if (sets.size() > kMaxRouteSets) {
      sink.add(rc.line, "route-sets",
               "[[route]] tables name more than " + std::to_string(kMaxRouteSets) +
                   " distinct sets of tunnels (counting every tunnel, the [inside] prefixes' set); the first one too "
                   "many is here");
      break;
    }
  }
}

void read_routing(Reader& top, Sink& sink, Gateway* g) {
  const toml::table* t = top.subtable("routing");
  if (t == nullptr) {
    check_tunnel_announce(*g, sink);
    return;
  }
  Reader r(sink, *t, "[routing]");
  RoutingSettings& s = g->routing;
  s.line = r.line();
  if (const auto v = r.ranged("kernel_table", 1, 0xffffffffll, "routing")) {
    if (*v == 255)
      sink.add(r.line("kernel_table"), "routing",
               "[routing] `kernel_table` = 255 is the kernel's local table (its own addresses): choose a table of "
               "its own for the routes meshgate learns, e.g. 100");
    else
      s.kernel_table = uint32_t(*v);
  }
  if (const auto v = r.ranged("update_interval_ms", 1, 10000, "routing")) s.update_interval_ms = uint32_t(*v);
  if (const auto prefixes = r.str_array("device_prefixes")) {
    for (const std::string& text : *prefixes) {
      Prefix p;
      std::string why;
      if (parse_prefix(text, &p, &why)) s.device_prefixes.push_back(p);
      else sink.add(r.line("device_prefixes"), "route-prefix", "[routing] `device_prefixes`: \"" + text + "\" " + why);
    }
  }
  if (const auto v = r.ranged("announce_table", 1, 0xffffffffll, "routing")) {
    if (*v >= 253 && *v <= 255)
      sink.add(r.line("announce_table"), "routing",
               "[routing] `announce_table` = " + std::to_string(*v) + " is one of the kernel's own tables (default, "
               "main, local): choose a table of its own for what meshgate announces, e.g. 101");
    else if (s.kernel_table != 0 && uint32_t(*v) == s.kernel_table)
      sink.add(r.line("announce_table"), "routing",
               "[routing] `announce_table` is also `kernel_table`: meshgate would learn its own announcements");
    else
      s.announce_table = uint32_t(*v);
  }
  r.finish();
  const bool any_if = std::any_of(g->tunnels.begin(), g->tunnels.end(), [](const Tunnel& x) {
    return !x.interface.empty();
  });
  if (s.kernel_table != 0 && !any_if)
    sink.add(r.line("kernel_table"), "routing",
             "[routing] `kernel_table`: a learned route reaches the tunnels whose `interface` it goes out of, and no "
             "[[tunnel]] has an `interface`");
  check_tunnel_announce(*g, sink);
  if (s.announce_table != 0 && !any_if)
    sink.add(r.line("announce_table"), "routing",
             "[routing] `announce_table`: an announced route goes out of a tunnel's `interface` (so that it dies with "
             "meshgate), and no [[tunnel]] has an `interface`");
}

// Each tunnel's own announce table: distinct, none of [routing]'s, and something to put there.
void check_tunnel_announce(const Gateway& g, Sink& sink) {
  const RoutingSettings& s = g.routing;
  for (size_t i = 0; i < g.tunnels.size(); ++i) {
    const Tunnel& t = g.tunnels[i];
    if (t.announce_table == 0) continue;
    bool clash = t.announce_table == s.kernel_table || t.announce_table == s.announce_table;
    for (size_t j = 0; j < i; ++j) clash |= g.tunnels[j].announce_table == t.announce_table;
    if (clash)
      sink.add(t.announce_line, "routing",
               "tunnel \"" + t.name + "\" `announce_table` " + std::to_string(t.announce_table) +
                   " is also another tunnel's or [routing]'s table: one table per purpose");
    if (s.device_prefixes.empty())
      sink.add(t.announce_line, "routing",
               "tunnel \"" + t.name + "\" `announce_table`: [routing] `device_prefixes` (what the devices should send "
               "into the tunnels) is empty or missing");
  }
}

}  // namespace mg::config::detail
