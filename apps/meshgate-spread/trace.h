// Traffic for the analyser: distinct flow keys plus the packet sequence that refers to them. Keys are extracted
// once, with the data plane's own extraction (net/flow_key.h), so one trace can be replayed under many seeds.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "net/flow_key.h"

namespace mg::spread {

struct Trace {
  struct Packet {
    uint32_t flow;   // index into flows
    uint32_t bytes;  // L3 bytes (IP header and payload)
    uint32_t time;   // milliseconds since the first packet
  };
  std::vector<net::FlowKey> flows;  // in order of first appearance
  std::vector<Packet> packets;
  uint64_t skipped = 0;             // frames that are not IPv4/IPv6 or do not parse
  std::string source;               // what produced it, for the report
};

// Reads a pcap or pcapng file with Ethernet (VLAN tags allowed), raw IP, Linux cooked or BSD loopback framing.
// Frames cut short by the snap length still count: their IP length is taken as what was captured.
// Throws InputError (spread_conf.h) for an unreadable file or another link type.
Trace read_pcap(const std::string& path);

struct SynthOptions {
  enum class Sizes { kUniform, kZipf };
  uint32_t flows = 100000;
  uint64_t packets = 0;       // 0: 10 per flow on average
  Sizes sizes = Sizes::kUniform;
  double zipf_s = 1.0;        // flow of rank r gets a share of packets proportional to 1 / r^s
  double ipv6_share = 0.2;
  double icmp_share = 0.05;
  double rate_pps = 100000;   // sets packet times
  uint64_t seed = 1;          // of the generator, not of the flow hash
};

// Every flow sends at least one packet; the rest are drawn by the size distribution, in random order.
// Packet sizes are fixed per flow, uniform in [64, 1500]. Throws InputError for impossible options.
Trace synthesize(const SynthOptions& o);

}  // namespace mg::spread
