// meshgate-esp's view of a captured frame: where its IP datagram is, or why it is skipped. Apart from main.cpp so
// that the rules can be fuzzed on their own (tests/fuzz/fuzz_pcap.cpp). No DPDK, no libpcap state: plain bytes.
#pragma once

#include <cstdint>

namespace mg::esptool {

// Link-layer bytes in front of the IP header for a pcap link type (DLT_*): 14 for Ethernet, 0 for raw IP; -1 for
// link types meshgate-esp does not read.
int link_l2_len(int dlt) noexcept;

enum class FrameKind : uint8_t {
  kIp,      // an IPv4 or IPv6 datagram at data[l3_off .. l3_off + l3_len)
  kNotIp,   // truncated capture (caplen != len, or shorter than the link header), or an Ethernet type not IP
  kTooBig,  // longer than max_l3 bytes
};

struct Frame {
  uint32_t l3_off = 0;  // 0, 14 or 18 (one VLAN tag)
  uint32_t l3_len = 0;
};

// Classifies one captured frame data[0..caplen) of original length `len` (pcap_pkthdr). Reads nothing outside
// data[0..caplen).
FrameKind classify_frame(int l2len, const uint8_t* data, uint32_t caplen, uint32_t len, uint32_t max_l3,
                         Frame* out) noexcept;

}  // namespace mg::esptool
