// mg::net flow keys — the bytes that decide which tunnel a packet takes.
//
// Rule (docs/ARCHITECTURE.md "Flow spreading"): every packet of a flow, and every fragment of a datagram, must produce the
// same key, so that one flow never spreads over two tunnels (reordering, and a different SA per fragment would
// break reassembly at the far end). Therefore:
//   - TCP, UDP, SCTP and UDP-Lite packets that are NOT fragments hash on the 5-tuple
//     (src, dst, proto, sport, dport);
//   - ICMP, ICMPv6, every other protocol and ALL fragments — first and later alike — hash on the 3-tuple
//     (src, dst, proto). A first fragment does carry the ports, but its later fragments do not, so using them
//     would split the datagram. The cost: fragmented traffic between two hosts shares one tunnel.
//   - IPv6 fragments use proto 44 (the fragment header) in the key: the upper-layer protocol seen after the
//     fragment header can differ between the first fragment (which may carry further extension headers) and
//     later ones (whose payload is opaque data), while 44 is the same in all of them.
//   - A TCP/UDP/SCTP header too short to hold both ports (malformed) also falls back to the 3-tuple.
//
// Pure functions over byte spans: no DPDK, no allocation, safe on any input. Thread-safe: no shared state.
#pragma once

#include <cstdint>

#include "net/net.h"

namespace mg::net {

inline constexpr uint8_t kProtoSctp = 132;
inline constexpr uint8_t kProtoUdpLite = 136;

// Fixed layout so that a key can be hashed as raw bytes: the hashed prefix is [0, hash_len()) and every byte
// of it is defined (no padding holes, unused address bytes zero). IPv4 keys hash 16 bytes, IPv6 keys 40; the
// version byte keeps an IPv4 key from ever equalling an IPv6 one.
struct alignas(8) FlowKey {
  uint16_t sport = 0;   // network order as on the wire; 0 for 3-tuple keys
  uint16_t dport = 0;
  uint8_t proto = 0;
  uint8_t version = 0;  // 4 or 6
  uint8_t ports = 0;    // 1 when sport/dport are part of the key (5-tuple), 0 for 3-tuple
  uint8_t reserved = 0;
  uint8_t addr[32] = {};  // IPv4: src [0,4) dst [4,8); IPv6: src [0,16) dst [16,32)

  uint32_t hash_len() const noexcept { return version == 6 ? 40u : 16u; }
};
static_assert(sizeof(FlowKey) == 40, "FlowKey is hashed as raw bytes; its size is part of the hash definition");

// Builds the key of the L3 packet p[0..len) (starts at the IP header). On error *out is untouched and the
// parse status says why; the caller drops such packets (they would not survive the inner selector check).
ParseStatus extract_flow_key(const uint8_t* p, uint32_t len, FlowKey* out) noexcept;

}  // namespace mg::net
