#include "net/icmp.h"

#include <cstddef>
#include <cstring>

#include "net/net.h"

namespace mg::net {

uint16_t build_echo(uint8_t* out, size_t cap, const EchoSpec& s) noexcept {
  const uint32_t hl = s.v6 ? sizeof(Ipv6Hdr) : sizeof(Ipv4Hdr);
  const uint32_t msg = sizeof(IcmpEcho) + uint32_t(s.payload_len);
  const uint32_t len = hl + msg;
  if (len > 0xffff || len > cap) return 0;

  // The headers are assembled as structs and copied out: no typed access to the caller's bytes.
  IcmpEcho e{};
  e.type = s.v6 ? (s.reply ? kIcmp6EchoReply : kIcmp6EchoRequest) : (s.reply ? kIcmpEchoReply : kIcmpEchoRequest);
  e.id.set(s.id);
  e.seq.set(s.seq);
  std::memcpy(out + hl, &e, sizeof e);
  if (s.payload_len != 0) std::memcpy(out + hl + sizeof e, s.payload, s.payload_len);

  uint16_t csum;
  if (s.v6) {
    Ipv6Hdr h{};
    h.vtc_flow.set(uint32_t(6) << 28);
    h.payload_len.set(uint16_t(msg));
    h.next = kProtoIcmp6;
    h.hop_limit = s.ttl;
    std::memcpy(h.src, s.src, 16);
    std::memcpy(h.dst, s.dst, 16);
    std::memcpy(out, &h, sizeof h);
    csum = icmpv6_checksum(out, len);  // over the pseudo-header and the message, its checksum field zero
  } else {
    Ipv4Hdr h{};
    h.ver_ihl = 0x45;
    h.total_len.set(uint16_t(len));
    h.ttl = s.ttl;
    h.proto = kProtoIcmp;
    std::memcpy(h.src, s.src, 4);
    std::memcpy(h.dst, s.dst, 4);
    h.csum.set(ipv4_header_checksum(&h, sizeof h));
    std::memcpy(out, &h, sizeof h);
    csum = ipv4_header_checksum(out + hl, msg);  // RFC 1071 over the ICMP message alone
  }
  Be16 c;
  c.set(csum);
  std::memcpy(out + hl + offsetof(IcmpEcho, csum), &c, sizeof c);
  return uint16_t(len);
}

}  // namespace mg::net
