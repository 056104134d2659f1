// How the outer IP header of a tunnel takes its DF bit and DSCP from the inner packet, and whether ESP travels in UDP
// (RFC 3948 NAT traversal). Declared here, below both
// lib/config (which reads them from the gateway file) and lib/esp (which applies them), so that the config loader
// needs no ESP engine and therefore no DPDK. Header only, no dependencies.
#pragma once

#include <cstdint>

namespace mg::net {

enum class DfPolicy : uint8_t { kCopy, kSet, kClear };  // outer IPv4 DF bit
enum class DscpPolicy : uint8_t { kCopy, kSet };         // outer TOS / traffic class
enum class Encap : uint8_t { kNone, kUdp };              // raw ESP (IP protocol 50), or ESP in UDP (RFC 3948)

inline constexpr uint16_t kNatTPort = 4500;  // RFC 3948 / RFC 7296 2.23: IKE and ESP in UDP after NAT detection
inline constexpr uint16_t kIkePort = 500;
inline constexpr uint32_t kUdpHdrLen = 8;

}  // namespace mg::net
