// What fits in a tunnel: the inner path MTU of an ESP tunnel, TCP MSS clamping, and IPv4 fragmentation of an
// inner datagram before it is encrypted (docs/ARCHITECTURE.md "MTU and fragments"). Pure functions over bytes, no DPDK, no
// allocation; safe on any input (every read is bounds-checked). Thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>

namespace mg::net {

inline constexpr uint32_t kEspHdrLen = 8;       // SPI + sequence number
inline constexpr uint32_t kEspTrailerLen = 2;   // pad length + next header
inline constexpr uint32_t kEspPadAlign = 4;     // RFC 4303 2.4: the trailer ends on a 4-byte boundary
inline constexpr uint32_t kIpv6MinMtu = 1280;   // RFC 8200 5: every IPv6 link carries this much
inline constexpr uint32_t kMaxLinkMtu = 9216;   // the largest tunnel MTU the config accepts

// The largest inner datagram that, once encrypted in tunnel-mode ESP (outer IPv4 or IPv6 header without options,
// the 8-byte UDP header when udp_encap (RFC 3948), ESP header, IV, padding to 4 bytes, trailer, ICV), is at most
// link_mtu bytes long. Exact, not the worst case: the padding an inner packet of this length gets is counted, so a
// packet of exactly this size fills link_mtu (1500 over IPv4 with an 8-byte IV and 16-byte ICV: 1446; in UDP: 1438).
// 0 when nothing fits.
constexpr uint32_t esp_inner_mtu(uint32_t link_mtu, bool outer_v6, uint32_t iv_len, uint32_t icv_len,
                                 bool udp_encap = false) noexcept {
  const uint32_t fixed = (outer_v6 ? 40u : 20u) + (udp_encap ? 8u : 0u) + kEspHdrLen + iv_len + icv_len;
  if (link_mtu < fixed + kEspTrailerLen + 20) return 0;
  return (link_mtu - fixed) / kEspPadAlign * kEspPadAlign - kEspTrailerLen;
}

// The MSS that lets a full TCP segment without options fit a path MTU (RFC 879: MSS = MTU - 40 over IPv4,
// RFC 8200 8.3: MTU - 60 over IPv6); senders subtract their option bytes themselves (RFC 6691).
constexpr uint16_t mss_for_mtu(uint32_t path_mtu, bool v6) noexcept {
  const uint32_t hdr = v6 ? 60u : 40u;
  return path_mtu > hdr ? uint16_t(path_mtu - hdr > 0xffff ? 0xffff : path_mtu - hdr) : 0;
}

enum class MssResult : uint8_t {
  kNotSyn,     // not TCP, not a SYN, or a fragment without the TCP header: nothing to do
  kNoOption,   // a SYN without an MSS option (the default, 536 / 1220, is below any clamp)
  kUnchanged,  // a SYN whose MSS is already at or below the clamp
  kClamped,    // MSS lowered and the TCP checksum updated
  kMalformed,  // an IP/TCP header or option list that does not parse: left untouched
};

// Lowers the MSS option of a TCP SYN (SYN-ACK included) in the IPv4/IPv6 datagram ip[0..len) to `mss` when it is
// above it, in place, with the TCP checksum updated incrementally (RFC 1624 eqn. 3) so that the rest of the segment
// is never read. IPv6 extension headers are walked. Never grows the packet (no option is added).
MssResult clamp_mss(uint8_t* ip, uint32_t len, uint16_t mss) noexcept;

// One's complement checksum `csum` (as on the wire) after the 16-bit value at byte offset `off` of the summed data
// changed from old_v to new_v (RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m')). An odd offset straddles two words; the
// one's complement sum is byte-order independent, so the value then counts byte-swapped.
uint16_t csum_replace16(uint16_t csum, uint32_t off, uint16_t old_v, uint16_t new_v) noexcept;

// IPv4 fragmentation (RFC 791 3.2 "Fragmentation"). A fragment holds a header and a slice of the original payload;
// every slice but the last is a multiple of 8 bytes. The first fragment keeps the whole header, later ones only the
// options whose copied flag is set (padded to 4 bytes with end-of-list).
struct Ipv4FragPlan {
  uint16_t hl_first = 0, hl_rest = 0;        // header lengths
  uint16_t data_first = 0, data_rest = 0;    // payload bytes per fragment (the last one takes what is left)
  uint16_t payload = 0;                      // payload bytes of the datagram
  uint16_t count = 0;                        // fragments
};
// Plans the fragments of the IPv4 datagram ip[0..len) (len >= its total length) for a path MTU of `mtu`. False when
// it must not or cannot be fragmented: DF set, a bad header or option list, or an MTU too small for 8 payload bytes.
bool ipv4_frag_plan(const uint8_t* ip, uint32_t len, uint32_t mtu, Ipv4FragPlan* plan) noexcept;
// Writes fragment i's header to out (plan.hl_first or plan.hl_rest bytes): the original header (or its copied
// options) with total length, MF and fragment offset set (an original MF or offset is kept: a fragment may be
// fragmented again) and the header checksum recomputed. Returns the header length. Payload slice of fragment i:
// bytes [hl_first + i == 0 ? 0 : data_first + (i - 1) * data_rest, ...) of the original.
uint16_t ipv4_frag_header(const uint8_t* ip, const Ipv4FragPlan& plan, uint16_t i, uint8_t* out) noexcept;
// Where fragment i's payload starts within the original payload, and how long it is.
inline uint32_t ipv4_frag_offset(const Ipv4FragPlan& p, uint16_t i) noexcept {
  return i == 0 ? 0u : uint32_t(p.data_first) + uint32_t(i - 1) * p.data_rest;
}
inline uint32_t ipv4_frag_len(const Ipv4FragPlan& p, uint16_t i) noexcept {
  const uint32_t off = ipv4_frag_offset(p, i), full = i == 0 ? p.data_first : p.data_rest;
  return i + 1 == p.count ? p.payload - off : full;
}

}  // namespace mg::net
