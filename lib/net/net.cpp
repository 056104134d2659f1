#include "net/net.h"

#include <arpa/inet.h>

namespace mg::net {

const char* to_string(ParseStatus s) noexcept {
  switch (s) {
    case ParseStatus::kOk: return "ok";
    case ParseStatus::kTruncated: return "truncated";
    case ParseStatus::kBadVersion: return "bad_version";
    case ParseStatus::kBadIhl: return "bad_ihl";
    case ParseStatus::kBadLength: return "bad_length";
    case ParseStatus::kBadExtHeader: return "bad_ext_header";
  }
  return "unknown";
}

static ParseStatus parse_v4(const uint8_t* p, uint32_t len, L3Info* out) noexcept {
  if (len < sizeof(Ipv4Hdr)) return ParseStatus::kTruncated;
  const uint32_t ihl = uint32_t(p[0] & 0x0f) * 4;
  if (ihl < 20 || ihl > len) return ParseStatus::kBadIhl;
  const uint32_t total = load_be16(p + 2);
  if (total < ihl || total > len) return ParseStatus::kBadLength;
  const uint16_t frag = load_be16(p + 6);
  out->version = 4;
  out->tos = p[1];
  out->proto = p[9];
  out->l4_off = uint16_t(ihl);
  out->ip_len = total;
  out->later_fragment = (frag & kIpv4OffMask) != 0;
  out->fragment = out->later_fragment || (frag & kIpv4Mf) != 0;
  return ParseStatus::kOk;
}

static ParseStatus parse_v6(const uint8_t* p, uint32_t len, L3Info* out) noexcept {
  if (len < sizeof(Ipv6Hdr)) return ParseStatus::kTruncated;
  const uint32_t total = 40u + load_be16(p + 4);
  if (total > len) return ParseStatus::kBadLength;
  out->version = 6;
  out->tos = uint8_t((load_be16(p) >> 4) & 0xff);
  out->ip_len = total;
  out->fragment = false;
  out->later_fragment = false;
  uint8_t next = p[6];
  uint32_t off = 40;
  for (int i = 0; i < 8; ++i) {
    switch (next) {
      case kProtoHopOpts:
      case kProtoRouting:
      case kProtoDstOpts: {
        if (off + 8 > total) return ParseStatus::kBadExtHeader;
        const uint32_t hlen = (uint32_t(p[off + 1]) + 1) * 8;
        if (off + hlen > total) return ParseStatus::kBadExtHeader;
        next = p[off];
        off += hlen;
        continue;
      }
      case kProtoFragment: {
        if (off + 8 > total) return ParseStatus::kBadExtHeader;
        const uint16_t fo = load_be16(p + off + 2);
        out->fragment = true;
        out->later_fragment = (fo & 0xfff8) != 0;
        next = p[off];
        off += 8;
        if (out->later_fragment) {
          // What follows is the middle of a datagram: its bytes are payload, not extension headers.
          out->proto = next;
          out->l4_off = uint16_t(off);
          return ParseStatus::kOk;
        }
        continue;
      }
      default:
        out->proto = next;
        out->l4_off = uint16_t(off);
        return ParseStatus::kOk;
    }
  }
  return ParseStatus::kBadExtHeader;
}

ParseStatus parse_l3(const uint8_t* p, uint32_t len, L3Info* out) noexcept {
  if (len < 1) return ParseStatus::kTruncated;
  switch (p[0] >> 4) {
    case 4: return parse_v4(p, len, out);
    case 6: return parse_v6(p, len, out);
    default: return ParseStatus::kBadVersion;
  }
}

namespace {
// RFC 1071: 16-bit big-endian words added to `sum` (an odd last byte padded with zero), not yet folded.
uint32_t add_words(const uint8_t* p, uint32_t len, uint32_t sum) noexcept {
  uint32_t i = 0;
  for (; i + 1 < len; i += 2) sum += load_be16(p + i);
  if (i < len) sum += uint32_t(p[i]) << 8;
  return sum;
}
uint16_t fold(uint32_t sum) noexcept {
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return uint16_t(~sum);
}
}  // namespace

uint16_t ipv4_header_checksum(const void* hdr, uint32_t hdr_len) noexcept {
  return fold(add_words(static_cast<const uint8_t*>(hdr), hdr_len, 0));
}

uint16_t icmpv6_checksum(const uint8_t* ip6, uint32_t len) noexcept {
  const uint32_t mlen = len - 40;
  const uint32_t pseudo = (mlen >> 16) + (mlen & 0xffff) + kProtoIcmp6;  // length and next header
  return fold(add_words(ip6 + 40, mlen, add_words(ip6 + 8, 32, pseudo)));  // addresses, then the message
}

bool parse_ip(const char* text, IpAddr* out) noexcept {
  IpAddr a;
  if (text == nullptr) return false;
  if (inet_pton(AF_INET, text, a.bytes) == 1) {
    a.version = 4;
  } else if (inet_pton(AF_INET6, text, a.bytes) == 1) {
    a.version = 6;
  } else {
    return false;
  }
  *out = a;
  return true;
}

const char* format_ip(const IpAddr& a, char* buf, size_t len) noexcept {
  if (len == 0) return buf;
  buf[0] = 0;
  if (a.version == 4) inet_ntop(AF_INET, a.bytes, buf, socklen_t(len));
  if (a.version == 6) inet_ntop(AF_INET6, a.bytes, buf, socklen_t(len));
  return buf;
}

}  // namespace mg::net
