// What an outer datagram that reached a gateway address is: raw ESP, ESP in UDP (RFC 3948), a NAT-keepalive, IKE
// for the host, or something else. The one place that decides it: the ESP engine's inbound bursts use it, and so
// will the exception path that hands IKE to the host's daemon. Header only, pure, no DPDK; safe on any input the
// parser accepted (every read is inside li.ip_len).
#pragma once

#include <cstdint>

#include "net/net.h"
#include "net/outer_policy.h"

namespace mg::net {

enum class OuterKind : uint8_t {
  kEsp,        // IP protocol 50
  kEspInUdp,   // UDP to a NAT-T port, first 4 payload bytes not zero (an SPI is never 0, RFC 3948 2.2)
  kKeepalive,  // UDP to a NAT-T port carrying the single byte 0xFF (RFC 3948 2.3): ignored by the receiver
  kIke,        // UDP to port 500, or UDP to a NAT-T port behind the zero non-ESP marker (RFC 3948 2.2)
  kBadUdp,     // UDP to port 500 or a NAT-T port whose length undercuts its header or runs past the datagram
  kOther,      // any other protocol or port, UDP too short for its header, or a NAT-T payload of 0, 2 or 3 bytes
               // or of one byte other than 0xFF (neither ESP nor a keepalive)
};

struct OuterClass {
  OuterKind kind = OuterKind::kOther;
  uint16_t esp_off = 0;  // kEsp, kEspInUdp: where the ESP header starts (from the start of the IP header)
  uint32_t esp_len = 0;  // kEsp, kEspInUdp: ESP bytes (to the end of the IP datagram, or of the UDP datagram)
  uint16_t dport = 0;    // UDP kinds: the destination port
};

// p: an outer datagram that net::parse_l3 accepted as `li`; fragments must be handled before (a later fragment has
// no UDP header). nat_t_port(port): whether UDP to `port` carries ESP besides kNatTPort (an SA configured with
// another local port). ESP in UDP takes its length from the UDP header: bytes behind the UDP datagram are ignored,
// as behind an IP datagram.
template <class NatTPort>
inline OuterClass classify_outer(const uint8_t* p, const L3Info& li, NatTPort&& nat_t_port) noexcept {
  OuterClass c;
  const uint32_t room = li.ip_len - li.l4_off;
  if (li.proto == kProtoEsp) {
    c.kind = OuterKind::kEsp;
    c.esp_off = li.l4_off;
    c.esp_len = room;
    return c;
  }
  if (li.proto != kProtoUdp || room < kUdpHdrLen) return c;
  const uint8_t* u = p + li.l4_off;
  c.dport = load_be16(u + 2);
  // Other ports are not ours to judge, whatever their length field says.
  if (c.dport != kIkePort && c.dport != kNatTPort && !nat_t_port(c.dport)) return c;
  const uint32_t ulen = load_be16(u + 4);
  if (ulen < kUdpHdrLen || ulen > room) {
    c.kind = OuterKind::kBadUdp;
    return c;
  }
  if (c.dport == kIkePort) {
    c.kind = OuterKind::kIke;
    return c;
  }
  const uint32_t plen = ulen - kUdpHdrLen;
  const uint8_t* q = u + kUdpHdrLen;
  if (plen == 1 && q[0] == 0xff) {
    c.kind = OuterKind::kKeepalive;
  } else if (plen >= 4 && load_be32(q) == 0) {
    c.kind = OuterKind::kIke;
  } else if (plen >= 4) {
    c.kind = OuterKind::kEspInUdp;
    c.esp_off = uint16_t(li.l4_off + kUdpHdrLen);
    c.esp_len = plen;
  }
  return c;
}

}  // namespace mg::net
