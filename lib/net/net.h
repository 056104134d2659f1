// mg::net — wire-format views and validating parsers for IPv4, IPv6 (with extension headers), UDP, TCP,
// ICMP and ESP. Pure functions over byte spans: no DPDK state, no allocation, safe on any input (every
// read is bounds-checked against the length given). Thread-safe: no shared state.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace mg::net {

inline constexpr uint8_t kProtoHopOpts = 0;
inline constexpr uint8_t kProtoIcmp = 1;
inline constexpr uint8_t kProtoIpip = 4;   // IPv4-in-IP: ESP next header for an inner IPv4 packet
inline constexpr uint8_t kProtoTcp = 6;
inline constexpr uint8_t kProtoUdp = 17;
inline constexpr uint8_t kProtoIpv6 = 41;  // ESP next header for an inner IPv6 packet
inline constexpr uint8_t kProtoRouting = 43;
inline constexpr uint8_t kProtoFragment = 44;
inline constexpr uint8_t kProtoEsp = 50;
inline constexpr uint8_t kProtoAh = 51;
inline constexpr uint8_t kProtoIcmp6 = 58;
inline constexpr uint8_t kProtoNoNext = 59;  // ESP dummy packet (RFC 4303 2.6)
inline constexpr uint8_t kProtoDstOpts = 60;

// Header structs: every multi-byte field is a Be16/Be32, which keeps the network byte order of the wire in its
// bytes and converts on get()/set(), so a field cannot be read in host order by mistake. Made of bytes only,
// the structs are packed by construction (alignment 1, no padding: the static_asserts hold it) and can be
// copied to or from any offset of a packet (std::memcpy; parsers keep reading bytes by offset with bounds
// checks). Only the headers meshgate builds itself are here (liveness echo probes: net/icmp.h).
struct Be16 {
  uint8_t b[2];
  constexpr uint16_t get() const noexcept { return uint16_t(b[0] << 8 | b[1]); }
  constexpr void set(uint16_t v) noexcept { b[0] = uint8_t(v >> 8), b[1] = uint8_t(v); }
};
struct Be32 {
  uint8_t b[4];
  constexpr uint32_t get() const noexcept {
    return uint32_t(b[0]) << 24 | uint32_t(b[1]) << 16 | uint32_t(b[2]) << 8 | b[3];
  }
  constexpr void set(uint32_t v) noexcept {
    b[0] = uint8_t(v >> 24), b[1] = uint8_t(v >> 16), b[2] = uint8_t(v >> 8), b[3] = uint8_t(v);
  }
};

// IPv4 (RFC 791) without options.
struct Ipv4Hdr {
  uint8_t ver_ihl;    // 0x45: version 4, 5 words
  uint8_t tos;        // DSCP and ECN
  Be16 total_len;     // header and payload
  Be16 id;
  Be16 frag_off;      // kIpv4Df, kIpv4Mf and the offset in 8-byte units (kIpv4OffMask)
  uint8_t ttl;
  uint8_t proto;      // kProto*
  Be16 csum;          // ipv4_header_checksum over the 20 bytes, this field zero
  uint8_t src[4];
  uint8_t dst[4];
};
static_assert(sizeof(Ipv4Hdr) == 20 && alignof(Ipv4Hdr) == 1);

// IPv6 (RFC 8200) fixed header.
struct Ipv6Hdr {
  Be32 vtc_flow;      // version 6 (top 4 bits), traffic class (8), flow label (20)
  Be16 payload_len;   // bytes after this header, extension headers included
  uint8_t next;       // kProto* of the next header
  uint8_t hop_limit;
  uint8_t src[16];
  uint8_t dst[16];
};
static_assert(sizeof(Ipv6Hdr) == 40 && alignof(Ipv6Hdr) == 1);

// ICMP echo request/reply (RFC 792) and ICMPv6 echo request/reply (RFC 4443 4.1, 4.2): one layout; the data
// follows. The checksum covers the message (ICMPv6: and the pseudo-header, see icmpv6_checksum).
struct IcmpEcho {
  uint8_t type;       // kIcmpEcho* / kIcmp6Echo*
  uint8_t code;       // 0
  Be16 csum;
  Be16 id;
  Be16 seq;
};
static_assert(sizeof(IcmpEcho) == 8 && alignof(IcmpEcho) == 1);

inline constexpr uint8_t kIcmpEchoReply = 0;
inline constexpr uint8_t kIcmpEchoRequest = 8;
inline constexpr uint8_t kIcmp6EchoRequest = 128;
inline constexpr uint8_t kIcmp6EchoReply = 129;

inline constexpr uint16_t kIpv4Df = 0x4000;
inline constexpr uint16_t kIpv4Mf = 0x2000;
inline constexpr uint16_t kIpv4OffMask = 0x1fff;

enum class ParseStatus : uint8_t {
  kOk = 0,
  kTruncated,      // fewer bytes than the fixed header
  kBadVersion,     // neither 4 nor 6
  kBadIhl,         // IPv4 IHL < 5 or header beyond the data
  kBadLength,      // total/payload length shorter than the header or beyond the data
  kBadExtHeader,   // IPv6 extension header chain runs past the data or is too long
};

const char* to_string(ParseStatus s) noexcept;

// What an L3 parse learnt. Offsets are from the start of the IP header.
struct L3Info {
  uint8_t version = 0;       // 4 or 6
  uint8_t proto = 0;         // upper-layer protocol after any IPv6 extension headers
  uint16_t l4_off = 0;       // where the upper-layer header (or ESP) starts
  uint32_t ip_len = 0;       // datagram length claimed by the header (<= bytes available)
  bool fragment = false;     // any fragment (IPv4 MF or offset, IPv6 fragment header)
  bool later_fragment = false;  // offset != 0: no upper-layer header in this packet
  uint8_t tos = 0;           // IPv4 TOS / IPv6 traffic class
};

// Validates an IPv4 or IPv6 header at p[0..len). Bytes past the claimed length (L2 padding, ESP TFC) are
// allowed and ignored. IPv6 extension headers (hop-by-hop, routing, destination options, fragment) are
// walked, up to 8 of them.
ParseStatus parse_l3(const uint8_t* p, uint32_t len, L3Info* out) noexcept;

// RFC 1071 one's complement checksum of hdr_len bytes (an IPv4 header of ihl*4 bytes, an ICMP message; an odd last
// byte is padded with zero), the checksum field included as present.
uint16_t ipv4_header_checksum(const void* hdr, uint32_t hdr_len) noexcept;
// RFC 4443 2.3 checksum of the ICMPv6 message right after a 40-byte IPv6 header (no extension headers), over the
// pseudo-header of RFC 8200 8.1 and the message, its checksum field included as present: write the result into
// a zeroed field, or check that a received packet gives 0. `len` = 40 + the message length.
uint16_t icmpv6_checksum(const uint8_t* ip6, uint32_t len) noexcept;

// An IPv4 or IPv6 address in network byte order (IPv4 in the first 4 bytes).
struct IpAddr {
  uint8_t version = 0;  // 0 = unset, 4 or 6
  uint8_t bytes[16] = {};
  bool operator==(const IpAddr&) const = default;
};
// Parses "192.0.2.1" or "2001:db8::1"; false on anything else.
bool parse_ip(const char* text, IpAddr* out) noexcept;
// Writes the text form into buf (at least 46 bytes); returns buf.
const char* format_ip(const IpAddr& a, char* buf, size_t len) noexcept;

inline uint16_t load_be16(const uint8_t* p) noexcept { return uint16_t(p[0] << 8 | p[1]); }
inline uint32_t load_be32(const uint8_t* p) noexcept {
  return uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | p[3];
}
inline uint64_t load_be64(const uint8_t* p) noexcept { return uint64_t(load_be32(p)) << 32 | load_be32(p + 4); }
inline void store_be16(uint8_t* p, uint16_t v) noexcept { p[0] = uint8_t(v >> 8); p[1] = uint8_t(v); }
inline void store_be32(uint8_t* p, uint32_t v) noexcept {
  p[0] = uint8_t(v >> 24); p[1] = uint8_t(v >> 16); p[2] = uint8_t(v >> 8); p[3] = uint8_t(v);
}
inline void store_be64(uint8_t* p, uint64_t v) noexcept {
  store_be32(p, uint32_t(v >> 32));
  store_be32(p + 4, uint32_t(v));
}

}  // namespace mg::net
