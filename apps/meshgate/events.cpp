// The command-line grammar of --event and --fault: the data plane takes them already parsed (dp::Event,
// dp::Fault in its Options).
#include "events.h"

#include <algorithm>

namespace mg::app {

namespace {

// WHEN: SECONDS after start, or pPACKETS of inside RX.
bool parse_when(const std::string& s, const std::string& when, dp::Event* e, std::string* err) {
  auto fail = [&](const std::string& m) {
    if (err) *err = "event '" + s + "': " + m + " (WHEN: SECONDS or pPACKETS)";
    return false;
  };
  try {
    size_t used = 0;
    if (!when.empty() && when[0] == 'p') {
      if (when.size() < 2 || when[1] == '-') return fail("bad packet count");
      e->at_packets = std::stoull(when.substr(1), &used);
      if (used != when.size() - 1) return fail("bad packet count");
    } else {
      e->at_s = std::stod(when, &used);
      if (used != when.size() || !(e->at_s >= 0)) return fail("bad time");
    }
  } catch (...) {
    return fail("bad time or packet count");
  }
  return true;
}

// meshgatectl's words after "WHEN:": "tunnel T down|up|drain", "instance I maintenance [--drain]", "instance I up"
// (one grammar for operators and scripted runs; meshgatectl's --deadline has no counterpart in a scripted event).
bool parse_words(const std::string& s, const std::string& words, const config::Gateway& g, dp::Event* e,
                 std::string* err) {
  std::vector<std::string> w;
  for (size_t a = 0, b; a < words.size(); a = b) {
    a = words.find_first_not_of(' ', a);
    if (a == std::string::npos) break;
    b = std::min(words.find(' ', a), words.size());
    w.push_back(words.substr(a, b - a));
  }
  auto fail = [&](const std::string& m) {
    if (err)
      *err = "event '" + s + "': " + m +
             " (form: SECONDS|pPACKETS:tunnel T down|up|drain, or :instance I maintenance [--drain] | up)";
    return false;
  };
  if (w.size() < 3) return fail("needs a kind, a name and an action");
  if (w[0] == "tunnel") {
    if (w.size() != 3) return fail("unexpected '" + w[3] + "'");
    auto it = std::find_if(g.tunnels.begin(), g.tunnels.end(), [&](auto& t) { return t.name == w[1]; });
    if (it == g.tunnels.end()) return fail("no tunnel named '" + w[1] + "'");
    e->index = uint32_t(it - g.tunnels.begin());
    e->instance = false;
    if (w[2] == "drain") e->state = dp::AdminState::kDraining;
    else if (w[2] == "down") e->state = dp::AdminState::kDown;
    else if (w[2] == "up") e->state = dp::AdminState::kUp;
    else return fail("tunnel action '" + w[2] + "' is not down, up or drain");
    return true;
  }
  if (w[0] == "instance") {
    auto it = std::find_if(g.instances.begin(), g.instances.end(), [&](auto& i) { return i.name == w[1]; });
    if (it == g.instances.end()) return fail("no instance named '" + w[1] + "'");
    e->index = uint32_t(it - g.instances.begin());
    e->instance = true;
    if (w[2] == "maintenance" && w.size() == 3) e->state = dp::AdminState::kDown;
    else if (w[2] == "maintenance" && w.size() == 4 && w[3] == "--drain") e->state = dp::AdminState::kDraining;
    else if (w[2] == "up" && w.size() == 3) e->state = dp::AdminState::kUp;
    else return fail("instance action '" + words.substr(words.find(w[2])) + "' is not maintenance [--drain] or up");
    return true;
  }
  return fail("'" + w[0] + "' is neither tunnel nor instance");
}

}  // namespace

bool parse_event(const std::string& s, const config::Gateway& g, dp::Event* out, std::string* err) {
  const size_t colon = s.find(':');
  if (colon != std::string::npos && s.find(' ', colon) != std::string::npos) {
    dp::Event e;
    e.text = s;
    if (!parse_when(s, s.substr(0, colon), &e, err) || !parse_words(s, s.substr(colon + 1), g, &e, err)) return false;
    *out = e;
    return true;
  }
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
  if (!parse_when(s, f[0], &e, err)) return false;
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
