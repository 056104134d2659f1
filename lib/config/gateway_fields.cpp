// The gateway file's field readers and value checks shared by its sections (gateway.cpp, gateway_sa.cpp,
// gateway_liveness.cpp, gateway_mtu.cpp): addresses, MACs, prefixes, misplaced keys.
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>

#include "config/config.h"
#include "config/gateway_internal.h"
#include "config/reader.h"

namespace mg::config {

namespace detail {

std::string ip_text(const net::IpAddr& a) {
  char b[64];
  return net::format_ip(a, b, sizeof b);
}

// An address that cannot be a tunnel endpoint: unspecified, loopback, multicast, limited broadcast.
const char* unusable_endpoint(const net::IpAddr& a) noexcept {
  if (a.version == 4) {
    const uint8_t* b = a.bytes;
    if (b[0] == 0) return "in 0.0.0.0/8 (this network)";
    if (b[0] == 127) return "a loopback address";
    if (b[0] >= 224 && b[0] <= 239) return "a multicast address";
    if (b[0] == 255 && b[1] == 255 && b[2] == 255 && b[3] == 255) return "the broadcast address";
    return nullptr;
  }
  static const uint8_t zero[16] = {};
  if (std::memcmp(a.bytes, zero, 16) == 0) return "the unspecified address";
  if (std::memcmp(a.bytes, zero, 15) == 0 && a.bytes[15] == 1) return "the loopback address";
  if (a.bytes[0] == 0xff) return "a multicast address";
  return nullptr;
}

// A key written in a table where it does not apply: "unknown-key", but saying where it goes, since the key
// itself is right.
void misplaced(Reader& r, Sink& sink, std::string_view key, const std::string& where_it_belongs) {
  if (!r.table().get(key)) return;
  r.get(key);
  sink.add(r.line(key), "unknown-key", r.where() + " has `" + std::string(key) + "`, which " + where_it_belongs);
}

void read_ips(Reader& r, Sink& sink, net::IpAddr* v4, net::IpAddr* v6, const char* rule, const char* use) {
  for (int ver : {4, 6}) {
    const char* key = ver == 4 ? "ipv4" : "ipv6";
    const std::optional<std::string> s = r.str(key);
    if (!s) continue;
    net::IpAddr a;
    if (!net::parse_ip(s->c_str(), &a) || a.version != ver) {
      sink.add(r.line(key), rule,
               r.where() + " `" + key + "` = \"" + *s + "\" is not an IPv" + std::to_string(ver) + " address");
      continue;
    }
    if (const char* why = unusable_endpoint(a)) {
      sink.add(r.line(key), rule,
               r.where() + " `" + key + "` = \"" + *s + "\" is " + why + " and cannot be " + use);
      continue;
    }
    *(ver == 4 ? v4 : v6) = a;
  }
}


void read_mac(Reader& r, Sink& sink, const char* key, uint8_t mac[6], std::string* text) {
  const std::optional<std::string> s = r.str(key);
  if (!s) return;
  if (!detail::parse_mac(*s, mac)) {
    sink.add(r.line(key), "mac",
             r.where() + " `" + key + "` = \"" + *s + "\" is not a MAC address (aa:bb:cc:dd:ee:ff)");
    return;
  }
  if (text) *text = detail::format_mac(mac);
}

bool parse_prefix(const std::string& s, Prefix* out, std::string* why) {
  const size_t slash = s.find('/');
  if (slash == std::string::npos) {
    *why = "has no /length (write e.g. \"10.0.0.0/8\" or \"192.0.2.7/32\")";
    return false;
  }
  const std::string addr = s.substr(0, slash), len = s.substr(slash + 1);
  net::IpAddr a;
  if (!net::parse_ip(addr.c_str(), &a)) {
    *why = "does not start with an IP address";
    return false;
  }
  const int max = a.version == 4 ? 32 : 128;
  if (len.empty() || len.size() > 3 || !std::all_of(len.begin(), len.end(), [](char c) { return c >= '0' && c <= '9'; }) ||
      std::stoi(len) > max) {
    *why = "has a length that is not 0.." + std::to_string(max);
    return false;
  }
  const int l = std::stoi(len);
  for (int bit = l; bit < max; ++bit) {
    if (a.bytes[bit / 8] & (0x80 >> (bit % 8))) {
      Prefix base;
      base.addr = a;
      for (int b2 = l; b2 < max; ++b2) base.addr.bytes[b2 / 8] &= uint8_t(~(0x80 >> (b2 % 8)));
      *why = "has host bits set (did you mean " + ip_text(base.addr) + "/" + std::to_string(l) + "?)";
      return false;
    }
  }
  out->addr = a;
  out->len = uint8_t(l);
  return true;
}

bool is_prime(uint64_t n) noexcept {
  if (n < 2) return false;
  for (uint64_t d = 2; d * d <= n; ++d)
    if (n % d == 0) return false;
  return true;
}


}  // namespace detail

}  // namespace mg::config
