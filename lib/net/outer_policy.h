// How the outer IP header of a tunnel takes its DF bit and DSCP from the inner packet. Declared here, below both
// lib/config (which reads them from the gateway file) and lib/esp (which applies them), so that the config loader
// needs no ESP engine and therefore no DPDK. Header only, no dependencies.
#pragma once

#include <cstdint>

namespace mg::net {

enum class DfPolicy : uint8_t { kCopy, kSet, kClear };  // outer IPv4 DF bit
enum class DscpPolicy : uint8_t { kCopy, kSet };         // outer TOS / traffic class

}  // namespace mg::net
