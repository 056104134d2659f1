// Drives one mg::hostif::Netlink for test_hostif.py, the way main would hold it: one object for the whole run.
// Reads one command per line on stdin, answers one JSON line on stdout:
//   addr IFINDEX ADDR PREFIX_LEN          -> {"ok":bool,"err":"..."}
//   link IFINDEX up|down MTU              -> {"ok":bool,"err":"..."}
//   nh IFINDEX SRC|- DST                  -> {"status":"known|resolving|no_route|other_interface|error",
//                                             "via":"...","mac":"aa:bb:cc:dd:ee:ff","err":"..."}
//   refresh IFINDEX VIA                   -> {"ok":bool,"err":"..."}
// An address that does not parse is passed on unset, so the library's own check answers it. Every answer also has
// "us": how long the library call took (for figures; the test asserts nothing on it).
#include <chrono>
#include <cstdio>
#include <iostream>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

#include "hostif/hostif.h"

namespace {

mg::net::IpAddr ip(const std::string& text) {
  mg::net::IpAddr a;
  if (text == "-" || !mg::net::parse_ip(text.c_str(), &a)) a = {};
  return a;
}

std::string ip_text(const mg::net::IpAddr& a) {
  if (a.version == 0) return "";
  char buf[64];
  return mg::net::format_ip(a, buf, sizeof buf);
}

}  // namespace

int main() {
  std::string err;
  auto nl = mg::hostif::Netlink::open(&err);
  if (!nl) {
    std::cout << nlohmann::json{{"fatal", err}}.dump() << std::endl;
    return 1;
  }
  std::string line;
  while (std::getline(std::cin, line)) {
    std::istringstream in(line);
    std::string cmd, a, b, c;
    int ifindex = 0;
    in >> cmd >> ifindex >> a >> b >> c;
    nlohmann::json out;
    err.clear();
    const auto t0 = std::chrono::steady_clock::now();
    if (cmd == "addr") {
      const bool ok = nl->add_address(ifindex, ip(a), uint8_t(std::stoi(b)), &err);
      out = {{"ok", ok}, {"err", err}};
    } else if (cmd == "link") {
      const bool ok = nl->set_link(ifindex, a == "up", uint32_t(std::stoul(b)), &err);
      out = {{"ok", ok}, {"err", err}};
    } else if (cmd == "nh") {
      const auto h = nl->next_hop(ifindex, ip(a), ip(b));
      char mac[18] = "";
      if (h.status == mg::hostif::Netlink::NhStatus::kKnown)
        std::snprintf(mac, sizeof mac, "%02x:%02x:%02x:%02x:%02x:%02x", h.mac[0], h.mac[1], h.mac[2], h.mac[3],
                      h.mac[4], h.mac[5]);
      out = {{"status", mg::hostif::status_name(h.status)}, {"via", ip_text(h.via)}, {"mac", mac}, {"err", h.err}};
    } else if (cmd == "refresh") {
      const bool ok = nl->refresh(ifindex, ip(a), &err);
      out = {{"ok", ok}, {"err", err}};
    } else {
      out = {{"fatal", "unknown command: " + line}};
    }
    out["us"] = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0).count();
    std::cout << out.dump() << std::endl;
  }
  return 0;
}
