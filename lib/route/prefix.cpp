// Route prefixes as text, for messages: "10.0.0.0/8", "2001:db8::/32".
#include <string>

#include "net/net.h"
#include "route/route.h"

namespace mg::route {

std::string format_prefix(const Route& r) {
  net::IpAddr a;
  a.version = r.family == 6 ? 6 : 4;
  for (uint32_t i = 0; i < 16; ++i) a.bytes[i] = r.addr[i];
  char buf[64];
  return std::string(net::format_ip(a, buf, sizeof(buf))) + "/" + std::to_string(r.len);
}

}  // namespace mg::route
