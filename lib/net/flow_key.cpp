#include "net/flow_key.h"

#include <cstring>

namespace mg::net {

static bool has_ports(uint8_t proto) noexcept {
  return proto == kProtoTcp || proto == kProtoUdp || proto == kProtoSctp || proto == kProtoUdpLite;
}

ParseStatus extract_flow_key(const uint8_t* p, uint32_t len, FlowKey* out) noexcept {
  L3Info l3;
  const ParseStatus st = parse_l3(p, len, &l3);
  if (st != ParseStatus::kOk) return st;
  FlowKey k;
  k.version = l3.version;
  // IPv6: the fragment header is the one protocol value every fragment of a datagram agrees on.
  k.proto = (l3.fragment && l3.version == 6) ? kProtoFragment : l3.proto;
  if (l3.version == 4) {
    std::memcpy(k.addr, p + 12, 8);  // src and dst are adjacent in the IPv4 header
  } else {
    std::memcpy(k.addr, p + 8, 32);  // likewise in IPv6
  }
  // Fragments never use ports, even the first one: see the rule in flow_key.h.
  if (!l3.fragment && has_ports(l3.proto) && uint32_t(l3.l4_off) + 4 <= l3.ip_len) {
    std::memcpy(&k.sport, p + l3.l4_off, 2);
    std::memcpy(&k.dport, p + l3.l4_off + 2, 2);
    k.ports = 1;
  }
  *out = k;
  return ParseStatus::kOk;
}

}  // namespace mg::net
