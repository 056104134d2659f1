#include "net/icmp.h"

#include <algorithm>
#include <cstddef>
#include <cstring>

#include "net/net.h"

namespace mg::net {

namespace {

// Writes the IPv4 (no options, TOS 0, id 0, no DF) or IPv6 header in front of the ICMP message already at
// out[hl..hl+msg) and fills the message's checksum (bytes 2-3): RFC 1071 over the message for ICMP, with the
// pseudo-header for ICMPv6 (RFC 4443 2.3). The headers are assembled as structs and copied out: no typed access
// to the caller's bytes.
void finish_icmp(uint8_t* out, bool v6, const uint8_t* src, const uint8_t* dst, uint8_t ttl, uint32_t msg) noexcept {
  const uint32_t hl = v6 ? sizeof(Ipv6Hdr) : sizeof(Ipv4Hdr), len = hl + msg;
  uint16_t csum;
  if (v6) {
    Ipv6Hdr h{};
    h.vtc_flow.set(uint32_t(6) << 28);
    h.payload_len.set(uint16_t(msg));
    h.next = kProtoIcmp6;
    h.hop_limit = ttl;
    std::memcpy(h.src, src, 16);
    std::memcpy(h.dst, dst, 16);
    std::memcpy(out, &h, sizeof h);
    csum = icmpv6_checksum(out, len);  // its checksum field still zero
  } else {
    Ipv4Hdr h{};
    h.ver_ihl = 0x45;
    h.total_len.set(uint16_t(len));
    h.ttl = ttl;
    h.proto = kProtoIcmp;
    std::memcpy(h.src, src, 4);
    std::memcpy(h.dst, dst, 4);
    h.csum.set(ipv4_header_checksum(&h, sizeof h));
    std::memcpy(out, &h, sizeof h);
    csum = ipv4_header_checksum(out + hl, msg);
  }
  store_be16(out + hl + 2, csum);
}

}  // namespace

uint16_t build_echo(uint8_t* out, size_t cap, const EchoSpec& s) noexcept {
  const uint32_t hl = s.v6 ? sizeof(Ipv6Hdr) : sizeof(Ipv4Hdr);
  const uint32_t msg = sizeof(IcmpEcho) + uint32_t(s.payload_len);
  const uint32_t len = hl + msg;
  if (len > 0xffff || len > cap) return 0;

  IcmpEcho e{};
  e.type = s.v6 ? (s.reply ? kIcmp6EchoReply : kIcmp6EchoRequest) : (s.reply ? kIcmpEchoReply : kIcmpEchoRequest);
  e.id.set(s.id);
  e.seq.set(s.seq);
  std::memcpy(out + hl, &e, sizeof e);
  if (s.payload_len != 0) std::memcpy(out + hl + sizeof e, s.payload, s.payload_len);

  finish_icmp(out, s.v6, s.src, s.dst, s.ttl, msg);
  return uint16_t(len);
}

namespace {

bool v4_not_unicast(const uint8_t* a) noexcept {
  return a[0] == 0 || a[0] == 127 || a[0] >= 224;  // this network, loopback, multicast, class E and broadcast
}
bool v6_unspecified_or_loopback(const uint8_t* a) noexcept {
  static const uint8_t zero[15] = {};
  return std::memcmp(a, zero, 15) == 0 && a[15] <= 1;
}
// ICMP types that are queries or their answers; anything else counts as an error (never answered).
bool icmp4_query(uint8_t type) noexcept {
  switch (type) {
    case 0: case 8: case 9: case 10: case 13: case 14: case 15: case 16: case 17: case 18: return true;
    default: return false;
  }
}

}  // namespace

ErrorVerdict icmp_error_allowed(const uint8_t* ip, uint32_t len) noexcept {
  L3Info li;
  if (parse_l3(ip, len, &li) != ParseStatus::kOk) return ErrorVerdict::kMalformed;
  if (li.version == 4) {
    if (v4_not_unicast(ip + 12) || ip[16] >= 224) return ErrorVerdict::kNotUnicast;
    if (li.later_fragment) return ErrorVerdict::kLaterFragment;
    if (li.proto == kProtoIcmp && (li.l4_off >= li.ip_len || !icmp4_query(ip[li.l4_off])))
      return ErrorVerdict::kIcmpError;
    return ErrorVerdict::kSend;
  }
  // IPv6: Packet Too Big may answer a multicast destination (RFC 4443 2.4 (e.3)); not a multicast source.
  if (ip[8] == 0xff || v6_unspecified_or_loopback(ip + 8)) return ErrorVerdict::kNotUnicast;
  if (li.proto == kProtoIcmp6 && !li.later_fragment && (li.l4_off >= li.ip_len || ip[li.l4_off] < 128))
    return ErrorVerdict::kIcmpError;
  return ErrorVerdict::kSend;
}

uint16_t build_too_big(uint8_t* out, size_t cap, const TooBigSpec& s) noexcept {
  const uint8_t* in = s.invoking;
  if (in == nullptr || s.invoking_len < 20) return 0;
  const bool v6 = (in[0] >> 4) == 6;
  uint32_t quote;
  if (v6) {
    if (s.invoking_len < 40) return 0;
    quote = std::min<uint32_t>({s.invoking_len, 40u + load_be16(in + 4), kTooBigMaxLen - 40 - 8});
  } else {
    const uint32_t ihl = uint32_t(in[0] & 0x0f) * 4;
    if (ihl < 20 || ihl > s.invoking_len || s.mtu > 0xffff) return 0;
    quote = std::min<uint32_t>({s.invoking_len, std::max<uint32_t>(load_be16(in + 2), ihl), ihl + 8});
  }
  const uint32_t hl = v6 ? sizeof(Ipv6Hdr) : sizeof(Ipv4Hdr);
  const uint32_t msg = 8 + quote, len = hl + msg;
  if (len > cap) return 0;

  uint8_t icmp[8] = {};
  icmp[0] = v6 ? kIcmp6PacketTooBig : kIcmpDestUnreach;
  icmp[1] = v6 ? 0 : kIcmpFragNeeded;
  if (v6) store_be32(icmp + 4, s.mtu);
  else store_be16(icmp + 6, uint16_t(s.mtu));  // RFC 1191 4: the low half of the "unused" field
  std::memcpy(out + hl, icmp, sizeof icmp);
  std::memcpy(out + hl + 8, in, quote);

  finish_icmp(out, v6, s.src, v6 ? in + 8 : in + 12, s.ttl, msg);
  return uint16_t(len);
}

}  // namespace mg::net
