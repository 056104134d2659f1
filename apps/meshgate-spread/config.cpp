#include "config.h"

#include <algorithm>
#include <toml++/toml.h>

namespace mg::spread {

namespace {

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw InputError("config " + path + ": " + what);
}

template <typename T>
T integer(const std::string& path, const toml::node_view<const toml::node>& v, const std::string& key, T lo, T hi,
          T dflt) {
  if (!v) return dflt;
  const auto x = v.value<int64_t>();
  if (!x || !v.is_integer()) fail(path, key + " must be an integer");
  if (*x < int64_t(lo) || uint64_t(*x) > uint64_t(hi))
    fail(path, key + " = " + std::to_string(*x) + " is out of range [" + std::to_string(lo) + ", " +
                   std::to_string(hi) + "]");
  return T(*x);
}

std::string text(const std::string& path, const toml::node_view<const toml::node>& v, const std::string& key) {
  const auto s = v.value<std::string>();
  if (!s || !v.is_string() || s->empty()) fail(path, key + " must be a non-empty string");
  return *s;
}

std::vector<std::string> names(const std::string& path, const toml::table& root, const char* section) {
  std::vector<std::string> out;
  const toml::array* arr = root[section].as_array();
  if (!arr) return out;
  for (size_t i = 0; i < arr->size(); ++i) {
    const std::string where = std::string("[[") + section + "]] #" + std::to_string(i + 1);
    const toml::table* t = arr->get(i)->as_table();
    if (!t) fail(path, where + " is not a table");
    const std::string n = text(path, (*t)["name"], where + " name");
    if (std::find(out.begin(), out.end(), n) != out.end()) fail(path, where + ": duplicate name '" + n + "'");
    out.push_back(n);
  }
  return out;
}

}  // namespace

SpreadConf load_config(const std::string& path) {
  toml::table root;
  try {
    root = toml::parse_file(path);
  } catch (const toml::parse_error& e) {
    const auto& b = e.source().begin;
    fail(path, "line " + std::to_string(b.line) + ", column " + std::to_string(b.column) + ": " +
                   std::string(e.description()));
  }
  SpreadConf c;
  const toml::node_view<const toml::node> flow = std::as_const(root)["flow"];
  if (flow && !flow.is_table()) fail(path, "[flow] must be a table");
  // Seeds are 64-bit; TOML integers are signed 64-bit, so a negative value stands for its two's complement.
  if (const auto s = flow["seed"]; s) {
    if (!s.is_integer()) fail(path, "[flow] seed must be an integer");
    c.seed = uint64_t(*s.value<int64_t>());
  }
  c.table_size = integer<uint32_t>(path, flow["table_size"], "[flow] table_size", 65537, 1u << 24, 65537);
  if (flow["pin_idle_timeout"])
    fail(path, "[flow] pin_idle_timeout: the key is pin_idle_timeout_ms (milliseconds), as in the gateway config");
  c.pin_idle_timeout_s =
      integer<uint32_t>(path, flow["pin_idle_timeout_ms"], "[flow] pin_idle_timeout_ms", 1, 86400000, 30000) / 1000.0;
  c.pin_capacity = integer<uint32_t>(path, flow["pin_capacity"], "[flow] pin_capacity", 1, 1u << 30, 1u << 20);
  c.instances = names(path, root, "instance");
  c.devices = names(path, root, "device");
  const toml::array* tun = root["tunnel"].as_array();
  if (!tun || tun->empty()) fail(path, "no [[tunnel]]: at least one is needed");
  for (size_t i = 0; i < tun->size(); ++i) {
    const std::string where = "[[tunnel]] #" + std::to_string(i + 1);
    const toml::table* t = tun->get(i)->as_table();
    if (!t) fail(path, where + " is not a table");
    TunnelConf tc;
    tc.instance = text(path, (*t)["instance"], where + " instance");
    tc.device = text(path, (*t)["device"], where + " device");
    if (std::find(c.instances.begin(), c.instances.end(), tc.instance) == c.instances.end())
      fail(path, where + ": instance '" + tc.instance + "' is not a declared [[instance]]");
    if (std::find(c.devices.begin(), c.devices.end(), tc.device) == c.devices.end())
      fail(path, where + ": device '" + tc.device + "' is not a declared [[device]]");
    tc.weight = integer<uint32_t>(path, (*t)["weight"], where + " weight", 0, 1000000, 1);
    tc.name = (*t)["name"] ? text(path, (*t)["name"], where + " name") : tc.instance + "/" + tc.device;
    for (const TunnelConf& o : c.tunnels) {
      if (o.instance == tc.instance && o.device == tc.device)
        fail(path, where + ": a second tunnel between " + tc.instance + " and " + tc.device);
      if (o.name == tc.name) fail(path, where + ": duplicate tunnel name '" + tc.name + "'");
    }
    c.tunnels.push_back(tc);
  }
  if (c.tunnels.size() > 1024) fail(path, "more than 1024 tunnels");
  return c;
}

uint16_t find_tunnel(const SpreadConf& c, const std::string& ref) {
  for (size_t i = 0; i < c.tunnels.size(); ++i)
    if (c.tunnels[i].name == ref || c.tunnels[i].instance + "/" + c.tunnels[i].device == ref) return uint16_t(i);
  if (!ref.empty() && ref.size() <= 4 && std::all_of(ref.begin(), ref.end(), ::isdigit)) {
    const unsigned long i = std::stoul(ref);
    if (i < c.tunnels.size()) return uint16_t(i);
  }
  std::string known;
  for (size_t i = 0; i < c.tunnels.size(); ++i) known += (i ? ", " : "") + std::to_string(i) + " " + c.tunnels[i].name;
  throw InputError("unknown tunnel '" + ref + "' (tunnels: " + known + ")");
}

}  // namespace mg::spread
