// ICMP / ICMPv6 echo datagrams, built whole: the liveness probes and reflector replies that the data plane sends
// inside a tunnel (DESIGN.md "Liveness"). Here rather than in lib/dataplane so that the bytes are checked against
// an independent builder (scapy known answers in tests/flow/test_icmp.cpp) without mbufs or EAL.
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

}  // namespace mg::net
