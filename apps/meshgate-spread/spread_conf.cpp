#include "spread_conf.h"

#include <algorithm>
#include <cctype>
#include <cstdio>

#include "config/config.h"

namespace mg::spread {

namespace {

// The tool's messages quote names with single quotes (unknown tunnel '9', event 'down 2'); lib/config's quote
// them with double ones. Its messages are shown in the tool's style.
std::string single_quoted(std::string s) {
  std::replace(s.begin(), s.end(), '"', '\'');
  return s;
}

}  // namespace

SpreadConf load_config(const std::string& path) {
  std::vector<config::Error> errors;
  const std::optional<config::Gateway> g =
      config::load_gateway(path, &errors, config::LoadOptions{.sas = false, .ports = false});
  if (!g) {
    std::string msg = "config " + path + ": " + std::to_string(errors.size()) +
                      (errors.size() == 1 ? " problem" : " problems");
    for (const config::Error& e : errors)
      msg += "\n  " + (e.line > 0 ? "line " + std::to_string(e.line) + ": " : std::string()) +
             single_quoted(e.message) + " [" + e.rule + "]";
    throw InputError(msg);
  }
  SpreadConf c;
  c.seed = g->flow.seed;
  c.table_size = g->flow.table_size;
  c.pin_idle_timeout_s = g->flow.pin_idle_timeout_ms / 1000.0;
  c.pin_capacity = g->flow.pin_capacity;
  for (const config::Tunnel& t : g->tunnels)
    c.tunnels.push_back({t.name, g->instances[t.instance].name, g->devices[t.device].name, t.weight});
  // The tool models one selection table over every tunnel (no route lookup: it links no DPDK, and rte_lpm lives in
  // DPDK); a file whose [[route]] tables restrict some prefixes would be predicted wrongly for their flows.
  if (!g->routes.empty())
    std::fprintf(stderr,
                 "meshgate-spread: note: %s has %zu [[route]] table(s), which this tool does not model: every flow is "
                 "placed over all tunnels, as for the [inside] prefixes\n",
                 path.c_str(), g->routes.size());
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
