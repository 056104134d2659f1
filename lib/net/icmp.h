// ICMP / ICMPv6 datagrams the data plane builds whole: echo (the liveness probes and reflector replies it sends
// inside a tunnel, docs/ARCHITECTURE.md "Liveness") and "too big" errors (sent back to an inside sender whose packet does not
// fit a tunnel, "MTU and fragments"). Here rather than in lib/dataplane so that the bytes are checked against an
// independent builder (scapy known answers in tests/flow/test_icmp.cpp) without mbufs or EAL.
// Pure function, no allocation, no DPDK; thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>

namespace mg::net {

struct EchoSpec {
  bool v6 = false;                  // ICMPv6 in IPv6, else ICMP in IPv4
  bool reply = false;               // echo reply, else echo request
  const uint8_t* src = nullptr;     // 4 or 16 bytes (network order), as v6 says
  const uint8_t* dst = nullptr;
  uint16_t id = 0, seq = 0;         // echo identifier and sequence number
  uint8_t ttl = 64;                 // IPv4 TTL / IPv6 hop limit
  const uint8_t* payload = nullptr; // echo data; may be null when payload_len is 0
  uint16_t payload_len = 0;
};

// Writes the whole IP datagram to out[0..len) and returns len = 20 or 40 + 8 + payload_len, or 0 (nothing
// written) when cap < len or len would not fit the 16-bit length fields. IPv4: no options, TOS 0, id 0, no DF,
// header checksum set. IPv6: traffic class and flow label 0, no extension headers. The ICMP checksum covers
// the message; ICMPv6's also the pseudo-header (RFC 4443 2.3). A receiver's checksum over the result is 0.
uint16_t build_echo(uint8_t* out, size_t cap, const EchoSpec& spec) noexcept;

// ---- "too big" errors ----
inline constexpr uint8_t kIcmpDestUnreach = 3, kIcmpFragNeeded = 4;  // RFC 792 type 3 code 4
inline constexpr uint8_t kIcmp6PacketTooBig = 2;                     // RFC 4443 3.2
inline constexpr uint32_t kTooBigMaxLen = 1280;  // RFC 4443 2.4 (c): an ICMPv6 error fits the IPv6 minimum MTU

// Whether a packet may be answered with an ICMP error at all (RFC 1122 3.2.2, RFC 1812 4.3.2.7, RFC 4443 2.4 (e)).
enum class ErrorVerdict : uint8_t {
  kSend,
  kIcmpError,         // an ICMP/ICMPv6 error message (or an ICMP type not known to be a query): never answered
  kNotUnicast,        // source unspecified, loopback, multicast or broadcast; IPv4 destination multicast/broadcast
  kLaterFragment,     // IPv4 fragment other than the first
  kMalformed,         // header does not parse
};
ErrorVerdict icmp_error_allowed(const uint8_t* ip, uint32_t len) noexcept;

struct TooBigSpec {
  const uint8_t* invoking = nullptr;  // the packet that does not fit, from its IP header; its version decides
  uint32_t invoking_len = 0;          // bytes of it available (only its datagram length is ever quoted)
  const uint8_t* src = nullptr;       // our address, 4 or 16 bytes; the destination is the invoking source
  uint32_t mtu = 0;                   // the MTU to report (IPv4: 16 bits, RFC 1191 4; IPv6: 32 bits)
  uint8_t ttl = 64;                   // TTL / hop limit
};
// Writes ICMP "fragmentation needed and DF set" with the next-hop MTU (RFC 792, RFC 1191 4) quoting the invoking
// header and the first 8 bytes of its data, or ICMPv6 "Packet Too Big" quoting as much of the invoking packet as
// keeps the error within 1280 bytes (RFC 4443 3.2, 2.4 (c)). IPv4 header: no options, TOS 0, id 0, no DF. Returns
// the datagram length, or 0 (nothing written) when cap is too small, the invoking packet is shorter than its
// header, or the MTU does not fit the IPv4 field. Does not judge whether an error may be sent: icmp_error_allowed.
uint16_t build_too_big(uint8_t* out, size_t cap, const TooBigSpec& spec) noexcept;

}  // namespace mg::net
