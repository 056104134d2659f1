// What of the traffic reaching an outside port is the host's besides IKE (net/natt.h): ARP for the instance's IPv4
// address, ICMP / ICMPv6 (so ND, echo, errors) to its addresses or to the link (IPv6 link-local and link-scope
// multicast), and fragments of UDP to it (an IKE message too big for one packet: only the kernel reassembles). The
// exception path hands exactly these to the port's kernel twin; everything else stays in the data plane. Header
// only, pure, no DPDK; every read is inside the lengths the caller (or parse_l3) vouched for.
#pragma once

#include <cstdint>
#include <cstring>

#include "net/net.h"

namespace mg::net {

// An instance's addresses on one outside port (either may be absent).
struct LocalAddrs {
  uint8_t v4[4] = {};
  uint8_t v6[16] = {};
  bool has4 = false, has6 = false;
};

inline constexpr uint16_t kEtherArp = 0x0806;
inline constexpr uint32_t kArpLen = 28;  // Ethernet/IPv4 ARP (RFC 826)

// An ARP packet (the bytes after the Ethernet header) for Ethernet and IPv4 whose target is our address: a request
// for it or a reply to our request. Anything else (other targets, other hardware or protocol types) is not ours.
inline bool arp_for_us(const uint8_t* a, uint32_t len, const LocalAddrs& la) noexcept {
  if (!la.has4 || len < kArpLen) return false;
  if (load_be16(a) != 1 || load_be16(a + 2) != 0x0800 || a[4] != 6 || a[5] != 4) return false;
  const uint16_t op = load_be16(a + 6);
  if (op != 1 && op != 2) return false;
  return std::memcmp(a + 24, la.v4, 4) == 0;
}

// An IP datagram that parse_l3 accepted as `li` (and that is neither ESP nor IKE) which the host should see.
inline bool host_bound(const uint8_t* p, const L3Info& li, const LocalAddrs& la) noexcept {
  // The protocol first: on the per-packet path nearly everything is ESP, which fails here at once.
  const bool frag_udp = li.fragment && li.proto == kProtoUdp;
  if (li.version == 4) {
    if (li.proto != kProtoIcmp && !frag_udp) return false;
    return la.has4 && std::memcmp(p + 16, la.v4, 4) == 0;
  }
  if (li.version != 6 || (li.proto != kProtoIcmp6 && !frag_udp)) return false;
  const uint8_t* dst = p + 24;
  return (la.has6 && std::memcmp(dst, la.v6, 16) == 0) ||
         (dst[0] == 0xfe && (dst[1] & 0xc0) == 0x80) ||  // fe80::/10: the twin's link-local address
         (dst[0] == 0xff && (dst[1] & 0x0f) == 0x02);    // link-scope multicast (ND, all-nodes)
}

}  // namespace mg::net
