// Route prefixes as text: "10.0.0.0/8", "2001:db8::/32".
#include <string>

#include "net/net.h"
#include "route/route.h"

namespace mg::route {

bool parse_prefix(const std::string& text, Route* r, std::string* err) {
  const size_t slash = text.find('/');
  if (slash == std::string::npos || slash + 1 == text.size() || text.size() - slash > 4) {
    *err = "'" + text + "': not ADDRESS/LENGTH";
    return false;
  }
  net::IpAddr a;
  if (!net::parse_ip(text.substr(0, slash).c_str(), &a)) {
    *err = "'" + text + "': not an IPv4 or IPv6 address";
    return false;
  }
  uint32_t len = 0;
  for (size_t i = slash + 1; i < text.size(); ++i) {
    if (text[i] < '0' || text[i] > '9') {
      *err = "'" + text + "': the length is not a number";
      return false;
    }
    len = len * 10 + uint32_t(text[i] - '0');
  }
  const uint32_t max = a.version == 4 ? 32 : 128;
  if (len > max) {
    *err = "'" + text + "': length over " + std::to_string(max);
    return false;
  }
  Route out;
  out.family = a.version;
  out.len = uint8_t(len);
  for (uint32_t i = 0; i < (a.version == 4 ? 4u : 16u); ++i) out.addr[i] = a.bytes[i];
  for (uint32_t b = len; b < max; ++b)
    if (out.addr[b / 8] & (0x80u >> (b % 8))) {
      *err = "'" + text + "': host bits set (the network is " + format_prefix([&] {
        Route m = out;
        for (uint32_t k = len; k < max; ++k) m.addr[k / 8] &= uint8_t(~(0x80u >> (k % 8)));
        return m;
      }()) + ")";
      return false;
    }
  out.tunnels = r->tunnels;
  *r = out;
  return true;
}

std::string format_prefix(const Route& r) {
  net::IpAddr a;
  a.version = r.family == 6 ? 6 : 4;
  for (uint32_t i = 0; i < 16; ++i) a.bytes[i] = r.addr[i];
  char buf[64];
  return std::string(net::format_ip(a, buf, sizeof(buf))) + "/" + std::to_string(r.len);
}

}  // namespace mg::route
