// The command-line grammar of --event and --fault: the data plane takes them already parsed (dp::Event,
// dp::Fault in its Options).
#include "events.h"

#include <algorithm>

namespace mg::app {

bool parse_event(const std::string& s, const config::Gateway& g, dp::Event* out, std::string* err) {
  std::vector<std::string> f;
  size_t a = 0;
  for (size_t b; (b = s.find(':', a)) != std::string::npos; a = b + 1) f.push_back(s.substr(a, b - a));
  f.push_back(s.substr(a));
  auto fail = [&](const std::string& m) {
    if (err) *err = "event '" + s + "': " + m + " (form: SECONDS|pPACKETS:tunnel|instance:NAME:up|down|drain)";
    return false;
  };
  if (f.size() != 4) return fail("needs four fields");
  dp::Event e;
  e.text = s;
  try {
    if (!f[0].empty() && f[0][0] == 'p') {
      size_t used = 0;
      e.at_packets = std::stoull(f[0].substr(1), &used);
      if (used != f[0].size() - 1) return fail("bad packet count");
    } else {
      size_t used = 0;
      e.at_s = std::stod(f[0], &used);
      if (used != f[0].size() || e.at_s < 0) return fail("bad time");
    }
  } catch (...) {
    return fail("bad time or packet count");
  }
  if (f[1] == "tunnel") {
    e.instance = false;
    auto it = std::find_if(g.tunnels.begin(), g.tunnels.end(), [&](auto& t) { return t.name == f[2]; });
    if (it == g.tunnels.end()) return fail("no tunnel named '" + f[2] + "'");
    e.index = uint32_t(it - g.tunnels.begin());
  } else if (f[1] == "instance") {
    e.instance = true;
    auto it = std::find_if(g.instances.begin(), g.instances.end(), [&](auto& i) { return i.name == f[2]; });
    if (it == g.instances.end()) return fail("no instance named '" + f[2] + "'");
    e.index = uint32_t(it - g.instances.begin());
  } else {
    return fail("'" + f[1] + "' is neither tunnel nor instance");
  }
  if (!dp::parse_admin_state(f[3], &e.state)) return fail("state '" + f[3] + "' is not up, down or drain");
  *out = e;
  return true;
}

bool parse_fault(const std::string& s, const config::Gateway& g, dp::Fault* out, std::string* err) {
  const size_t a = s.find(':'), b = a == std::string::npos ? a : s.find(':', a + 1);
  auto fail = [&](const std::string& m) {
    if (err) *err = "fault '" + s + "': " + m + " (form: SECONDS:TUNNEL:blackhole|heal)";
    return false;
  };
  if (b == std::string::npos) return fail("needs three fields");
  dp::Fault f;
  f.text = s;
  try {
    size_t used = 0;
    f.at_s = std::stod(s.substr(0, a), &used);
    if (used != a || f.at_s < 0) return fail("bad time");
  } catch (...) {
    return fail("bad time");
  }
  const std::string name = s.substr(a + 1, b - a - 1), what = s.substr(b + 1);
  auto it = std::find_if(g.tunnels.begin(), g.tunnels.end(), [&](auto& t) { return t.name == name; });
  if (it == g.tunnels.end()) return fail("no tunnel named '" + name + "'");
  f.tunnel = uint32_t(it - g.tunnels.begin());
  if (what != "blackhole" && what != "heal") return fail("'" + what + "' is neither blackhole nor heal");
  f.blackhole = what == "blackhole";
  *out = f;
  return true;
}

}  // namespace mg::app
