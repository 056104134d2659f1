// load_gateway: the gateway file -> Gateway, every rule of docs/ARCHITECTURE.md "Configuration" checked with a rule id.
#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstring>
#include <map>
#include <string>

#include "config/config.h"
#include "config/gateway_internal.h"
#include "config/reader.h"
#include "crypto/aead.h"
#include "net/limits.h"

namespace mg::config {

using detail::ip_text;
using detail::line_of;
using detail::LivenessKeys;
using detail::Reader;
using detail::Sink;
using detail::TunnelLiveness;
using detail::is_prime;
using detail::parse_prefix;
using detail::read_mac;
using detail::unusable_endpoint;

namespace {

constexpr size_t kGatewayNameMax = 32;
constexpr int64_t kWeightMax = 1000000;

}  // namespace

std::optional<Gateway> load_gateway(const std::string& path, std::vector<Error>* errors, const LoadOptions& opt) {
  Sink sink(path, errors);
  std::optional<toml::table> doc = detail::parse_toml(path, sink);
  if (!doc) return std::nullopt;
  const toml::table& root = *doc;
  const std::string base_dir = detail::dir_of(path);

  Gateway g;
  g.source = path;
  Reader top(sink, root, detail::kTopLevel);

  // [gateway]
  int mode_line = 0;
  if (const toml::table* gt = top.subtable("gateway", true)) {
    Reader r(sink, *gt, "[gateway]");
    mode_line = r.line();
    if (const auto name = r.str("name", true)) {
      if (!detail::valid_name(*name, kGatewayNameMax)) {
        sink.add(r.line("name"), "gateway-name",
                 "[gateway] `name` = \"" + *name + "\" must be 1..32 of A-Z a-z 0-9 _ - (it names /dev/shm/meshgate.<name>)");
      } else {
        g.name = *name;
      }
    }
    if (const auto mode = r.str("mode")) {
      mode_line = r.line("mode");
      if (*mode == "active-active") g.mode = Mode::kActiveActive;
      else if (*mode == "active-standby") g.mode = Mode::kActiveStandby;
      else
        sink.add(r.line("mode"), "mode", "[gateway] `mode` = \"" + *mode + "\" is not active-active or active-standby");
    }
    if (const auto pmd = r.str("pmd_config")) {
      if (pmd->empty()) sink.add(r.line("pmd_config"), "pmd-config", "[gateway] `pmd_config` is empty");
      else g.pmd_config = detail::resolve(base_dir, *pmd);
    }
    if (const auto sd = r.str("state_dir")) {
      if (sd->empty()) sink.add(r.line("state_dir"), "state-dir", "[gateway] `state_dir` is empty");
      else g.state_dir = detail::resolve(base_dir, *sd);
    }
    if (const auto v = r.boolean("unsafe_volatile_sequence")) g.unsafe_volatile_sequence = *v;
    r.finish();
  }

  // [keying]
  if (const toml::table* kt = top.subtable("keying")) {
    Reader r(sink, *kt, "[keying]");
    if (const auto sock = r.str("socket")) {
      if (sock->empty() || sock->size() > 100)
        sink.add(r.line("socket"), "keying-socket", "[keying] `socket` must be a path of 1..100 characters");
      else
        g.keying_socket = detail::resolve(base_dir, *sock);
    }
    r.finish();
  }

  // [inside]
  if (const toml::table* it = top.subtable("inside", true)) {
    Reader r(sink, *it, "[inside]");
    g.inside_line = r.line();
    if (const auto port = r.name("port", opt.ports)) g.inside_port = *port;
    if (r.str_array("prefixes", true)) {
      // Each element's own line, for prefix lists written over several lines.
      const toml::array& arr = *r.table().get("prefixes")->as_array();
      if (arr.empty())
        sink.add(r.line("prefixes"), "inside-prefixes",
                 "[inside] `prefixes` is empty: list at least one inner destination prefix to route into the tunnels");
      for (const toml::node& e : arr) {
        const std::string& s = e.as_string()->get();
        Prefix p;
        std::string why;
        if (!parse_prefix(s, &p, &why)) {
          sink.add(line_of(e), "prefix", "[inside] prefix \"" + s + "\" " + why);
          continue;
        }
        const bool dup = std::any_of(g.inside_prefixes.begin(), g.inside_prefixes.end(), [&](const Prefix& q) {
          return q.len == p.len && q.addr == p.addr;
        });
        if (dup) sink.add(line_of(e), "prefix", "[inside] prefix \"" + s + "\" is listed twice");
        else g.inside_prefixes.push_back(p);
      }
    }
    read_mac(r, sink, "next_hop_mac", g.inside_mac, nullptr);
    detail::read_inside_addresses(r, sink, &g);
    r.finish();
  }

  // [flow]
  if (const toml::table* ft = top.subtable("flow")) {
    Reader r(sink, *ft, "[flow]");
    // Seeds are 64-bit; TOML integers are signed 64-bit, so a negative value stands for its two's complement
    // (as in meshgate-spread).
    if (const auto seed = r.integer("seed")) g.flow.seed = uint64_t(*seed);
    if (const auto ts = r.integer("table_size")) {
      if (*ts < 65537 || *ts > 16777216 || !is_prime(uint64_t(*ts)))
        sink.add(r.line("table_size"), "flow-table-size",
                 "[flow] `table_size` = " + std::to_string(*ts) + " must be a prime in 65537..16777216");
      else
        g.flow.table_size = uint32_t(*ts);
    }
    if (const auto v = r.ranged("pin_idle_timeout_ms", 1, 0xffffffffll, "flow-range"))
      g.flow.pin_idle_timeout_ms = uint32_t(*v);
    if (const auto v = r.ranged("pin_capacity", 1, int64_t(1) << 30, "flow-range")) g.flow.pin_capacity = uint32_t(*v);
    r.finish();
  }

  detail::read_mtu_global(top, sink, &g.mtu);

  // [liveness]: resolved into every tunnel once all tunnels are read.
  LivenessKeys live_global;
  std::vector<TunnelLiveness> live_tunnels;
  std::vector<detail::TunnelMtuKeys> mtu_keys;
  std::vector<bool> device_bad_probe;  // per device: probe_address written but unusable
  if (const toml::table* lt = top.subtable("liveness")) {
    Reader r(sink, *lt, "[liveness]");
    detail::read_liveness_global(r, sink, &live_global, &g.liveness);
    r.finish();
  }

  // [[instance]]
  std::vector<bool> role_given;
  {
    const auto tables = detail::array_of_tables(top, sink, "instance");
    for (size_t i = 0; i < tables.size(); ++i) {
      Reader r(sink, *tables[i], detail::nth("instance", i, *tables[i]));
      Instance in;
      in.line = r.line();
      if (const auto name = r.name("name", true)) in.name = *name;
      detail::read_ips(r, sink, &in.ipv4, &in.ipv6, "ip-address", "a tunnel endpoint");
      if (!r.table().get("ipv4") && !r.table().get("ipv6"))
        sink.add(r.line(), "instance-ip", r.where() + " needs a static public `ipv4` and/or `ipv6`");
      if (const auto port = r.name("port", opt.ports)) in.port = *port;
      if (const auto v = r.ranged("ipv4_prefix_len", 1, 32, "prefix")) in.ipv4_prefix_len = uint8_t(*v);
      if (const auto v = r.ranged("ipv6_prefix_len", 1, 128, "prefix")) in.ipv6_prefix_len = uint8_t(*v);
      bool given = false;
      if (const auto role = r.str("role")) {
        given = true;
        if (*role == "active") in.standby = false;
        else if (*role == "standby") in.standby = true;
        else sink.add(r.line("role"), "instance-role", r.where() + " `role` = \"" + *role + "\" is not active or standby");
      }
      r.finish();
      for (const Instance& o : g.instances)
        if (!in.name.empty() && o.name == in.name)
          sink.add(in.line, "name-unique",
                   r.where() + ": instance name \"" + in.name + "\" is already used on line " + std::to_string(o.line));
      role_given.push_back(given);
      g.instances.push_back(std::move(in));
    }
    // Default roles: the first instance active, the others standby.
    for (size_t i = 0; i < g.instances.size(); ++i)
      if (!role_given[i]) g.instances[i].standby = i != 0;
  }

  // [[device]]
  {
    const auto tables = detail::array_of_tables(top, sink, "device");
    for (size_t i = 0; i < tables.size(); ++i) {
      Reader r(sink, *tables[i], detail::nth("device", i, *tables[i]));
      Device d;
      d.line = r.line();
      if (const auto name = r.name("name", true)) d.name = *name;
      detail::read_ips(r, sink, &d.ipv4, &d.ipv6, "ip-address", "a tunnel endpoint");
      if (!r.table().get("ipv4") && !r.table().get("ipv6"))
        sink.add(r.line(), "device-ip", r.where() + " needs an `ipv4` and/or `ipv6` address");
      d.next_hop_mac = detail::format_mac(d.mac);
      read_mac(r, sink, "next_hop_mac", d.mac, &d.next_hop_mac);
      d.mac_static = r.table().get("next_hop_mac") != nullptr;
      bool bad_probe = false;
      if (const auto a = detail::read_probe_ip(r, sink, "probe_address", &bad_probe)) d.probe_address = *a;
      device_bad_probe.push_back(bad_probe);
      r.finish();
      for (const Device& o : g.devices)
        if (!d.name.empty() && o.name == d.name)
          sink.add(d.line, "name-unique",
                   r.where() + ": device name \"" + d.name + "\" is already used on line " + std::to_string(o.line));
      g.devices.push_back(std::move(d));
    }
  }

  // [[tunnel]]
  {
    const auto tables = detail::array_of_tables(top, sink, "tunnel");
    for (size_t i = 0; i < tables.size(); ++i) {
      Reader r(sink, *tables[i], detail::nth("tunnel", i, *tables[i]));
      Tunnel t;
      t.line = r.line();
      bool inst_ok = false, dev_ok = false;
      std::string inst_name, dev_name;
      if (const auto s = r.str("instance", true)) {
        inst_name = *s;
        for (size_t k = 0; k < g.instances.size(); ++k)
          if (g.instances[k].name == *s) t.instance = uint32_t(k), inst_ok = true;
        if (!inst_ok)
          sink.add(r.line("instance"), "tunnel-reference", r.where() + " names instance \"" + *s + "\", which is not defined");
      }
      if (const auto s = r.str("device", true)) {
        dev_name = *s;
        for (size_t k = 0; k < g.devices.size(); ++k)
          if (g.devices[k].name == *s) t.device = uint32_t(k), dev_ok = true;
        if (!dev_ok)
          sink.add(r.line("device"), "tunnel-reference", r.where() + " names device \"" + *s + "\", which is not defined");
      }
      if (r.table().get("name")) {
        if (const auto name = r.name("name")) t.name = *name;
      } else {
        t.name = inst_name + "-" + dev_name;
      }
      if (const auto w = r.integer("weight")) {
        if (*w < 0 || *w > kWeightMax)
          sink.add(r.line("weight"), "weight",
                   r.where() + " `weight` = " + std::to_string(*w) + " must be an integer in 0..1000000 (0 = no new flows)");
        else
          t.weight = uint32_t(*w);
      }
      if (const auto ttl = r.ranged("ttl", 1, 255, "ttl")) t.ttl = uint8_t(*ttl);
      if (const auto df = r.str("df")) {
        if (*df == "copy") t.df = net::DfPolicy::kCopy;
        else if (*df == "set") t.df = net::DfPolicy::kSet;
        else if (*df == "clear") t.df = net::DfPolicy::kClear;
        else sink.add(r.line("df"), "df", r.where() + " `df` = \"" + *df + "\" is not copy, set or clear");
      }
      if (const toml::node* dn = r.get("dscp")) {
        if (dn->is_string() && dn->as_string()->get() == "copy") {
          t.dscp_policy = net::DscpPolicy::kCopy;
        } else if (dn->is_integer() && dn->as_integer()->get() >= 0 && dn->as_integer()->get() <= 63) {
          t.dscp_policy = net::DscpPolicy::kSet;
          t.tos = uint8_t(dn->as_integer()->get() << 2);
        } else {
          sink.add(line_of(*dn), "dscp", r.where() + " `dscp` must be \"copy\" or an integer 0..63");
        }
      }
      if (const auto k = r.str("keying")) {
        if (*k == "ike") t.ike = true;
        else if (*k != "static")
          sink.add(r.line("keying"), "keying", r.where() + " `keying` = \"" + *k + "\" is not \"static\" or \"ike\"");
      }
      if (const auto id = r.ranged("if_id", 1, 0xffffffffll, "if-id")) {
        t.if_id = uint32_t(*id);
        if (!t.ike) sink.add(r.line("if_id"), "if-id", r.where() + " `if_id` names a tunnel to its keying daemon: "
                                                                  "only with keying = \"ike\"");
      }
      const detail::EncapKeys tunnel_encap = detail::read_encap(r, sink);
      detail::EncapKeys out_encap, in_encap;
      if (!opt.sas) {
        r.get("out"), r.get("in");  // present or not, not looked at
      } else if (t.ike) {
        for (const char* dir : {"out", "in"})
          if (r.get(dir))
            sink.add(r.line(dir), "keying", r.where() + " is keyed by IKE: its SAs come from the keying daemon, so "
                                                        "it has no [tunnel." + std::string(dir) + "]");
      } else {
        if (const toml::table* o = r.subtable("out", true)) {
          Reader sr(sink, *o, r.where() + " [tunnel.out]");
          detail::read_sa(sr, sink, base_dir, false, &t.out, &out_encap);
          sr.finish();
        }
        if (const toml::table* in = r.subtable("in", true)) {
          Reader sr(sink, *in, r.where() + " [tunnel.in]");
          detail::read_sa(sr, sink, base_dir, true, &t.in, &in_encap);
          sr.finish();
        }
      }
      detail::resolve_encap(tunnel_encap, out_encap, in_encap, opt.sas, &t, sink);
      TunnelLiveness tl;
      tl.refs_ok = inst_ok && dev_ok;
      if (const toml::table* lt = r.subtable("liveness")) {
        Reader lr(sink, *lt, r.where() + " [tunnel.liveness]");
        detail::read_liveness_tunnel(lr, sink, &tl.keys);
        lr.finish();
      }
      live_tunnels.push_back(std::move(tl));
      mtu_keys.push_back(detail::read_tunnel_mtu(r, sink, &t));
      detail::read_tunnel_interface(r, sink, &t);
      r.finish();

      for (const Tunnel& o : g.tunnels) {
        if (!t.name.empty() && o.name == t.name)
          sink.add(t.line, "name-unique",
                   r.where() + ": tunnel name \"" + t.name + "\" is already used on line " + std::to_string(o.line));
        if (t.if_id != 0 && o.if_id == t.if_id)
          sink.add(r.line("if_id"), "if-id",
                   r.where() + " `if_id` " + std::to_string(t.if_id) + " is already tunnel \"" + o.name + "\"'s");
        if (inst_ok && dev_ok && o.instance == t.instance && o.device == t.device)
          sink.add(t.line, "tunnel-pair-unique",
                   r.where() + ": instance \"" + inst_name + "\" and device \"" + dev_name +
                       "\" already have a tunnel (line " + std::to_string(o.line) + "); at most one per pair");
      }
      if (inst_ok && dev_ok && tunnel_ip_version(g, t) == 0)
        sink.add(t.line, "tunnel-ip-version",
                 r.where() + ": instance \"" + inst_name + "\" and device \"" + dev_name +
                     "\" have no IP version in common (both need ipv4, or both ipv6)");
      g.tunnels.push_back(std::move(t));
    }
  }

  detail::resolve_liveness(g, live_global, live_tunnels, device_bad_probe, sink);
  detail::check_interfaces(g, live_tunnels, sink);
  detail::resolve_mtu(g, mtu_keys, sink);
  detail::read_routes(top, sink, &g);
  detail::read_routing(top, sink, &g);

  // Anything else at the top level (policy lists included) is an error.
  top.finish();

  // The product's limits (net/limits.h): every table sized by them relies on the loader refusing more.
  if (g.instances.size() > kMaxInstances)
    sink.add(g.instances[kMaxInstances].line, "limits",
             std::to_string(g.instances.size()) + " instances: this build carries at most " +
                 std::to_string(kMaxInstances) + " (the first one too many is here)");
  if (g.tunnels.size() > kMaxTunnels)
    sink.add(g.tunnels[kMaxTunnels].line, "limits",
             std::to_string(g.tunnels.size()) + " tunnels: this build carries at most " +
                 std::to_string(kMaxTunnels) + " (the first one too many is here)");

  // Rules across sections.
  if (g.mode == Mode::kActiveActive) {
    if (g.instances.size() < 2) {
      sink.add(mode_line, "active-active-two-instances",
               "active-active needs at least two [[instance]] entries with distinct static public IPs; found " +
                   std::to_string(g.instances.size()));
    }
    for (size_t i = 0; i < g.instances.size(); ++i)
      for (size_t j = 0; j < i; ++j) {
        const Instance &a = g.instances[i], &b = g.instances[j];
        for (const net::IpAddr* ip : {&a.ipv4, &a.ipv6}) {
          if (ip->version == 0) continue;
          if (*ip == b.ipv4 || *ip == b.ipv6)
            sink.add(a.line, "active-active-distinct-ips",
                     "instance \"" + a.name + "\" shares " + ip_text(*ip) + " with instance \"" + b.name + "\" (line " +
                         std::to_string(b.line) + "); active-active instances need their own static public IPs");
        }
      }
  } else {
    const size_t standby = size_t(std::count_if(g.instances.begin(), g.instances.end(),
                                                [](const Instance& in) { return in.standby; }));
    const size_t active = g.instances.size() - standby;
    if (g.instances.size() < 2 || active == 0 || standby == 0)
      sink.add(mode_line, "active-standby-roles",
               "active-standby needs at least two instances, at least one active and one standby; found " +
                   std::to_string(active) + " active and " + std::to_string(standby) + " standby");
  }
  for (size_t i = 0; opt.ports && i < g.instances.size(); ++i) {
    const Instance& a = g.instances[i];
    if (a.port.empty()) continue;
    if (a.port == g.inside_port)
      sink.add(a.line, "port-shared",
               "instance \"" + a.name + "\" uses port \"" + a.port + "\", which is the inside port; each instance needs its own outside port");
    for (size_t j = 0; j < i; ++j)
      if (g.instances[j].port == a.port)
        sink.add(a.line, "port-shared",
                 "instance \"" + a.name + "\" uses port \"" + a.port + "\", as does instance \"" + g.instances[j].name +
                     "\" (line " + std::to_string(g.instances[j].line) + "); each instance needs its own port");
  }
  if (g.tunnels.empty() && !root.get("tunnel"))
    sink.add(0, "tunnels-required", "no [[tunnel]]: define at least one instance <-> device tunnel");

  if (opt.sas) detail::check_sas(g, sink);

  detail::wipe_document_keys(*doc);
  if (sink.count() != 0) return std::nullopt;
  return g;
}

}  // namespace mg::config
