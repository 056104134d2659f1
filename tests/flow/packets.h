// Test helpers: hand-built IPv4/IPv6 packets (L3 bytes) and random flow hashes.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "flow/flow.h"
#include "net/net.h"

namespace mg::flow::test {

struct V4 {
  uint32_t src = 0x0a000001, dst = 0x0a000002;
  uint8_t proto = net::kProtoUdp;
  uint16_t sport = 1000, dport = 2000;
  uint16_t frag = 0;        // host-order flags+offset field (kIpv4Mf, offset in 8-byte units)
  uint16_t payload = 32;    // bytes after the IPv4 header
};

inline std::vector<uint8_t> ipv4(const V4& v) {
  std::vector<uint8_t> p(20 + v.payload, 0);
  p[0] = 0x45;
  net::store_be16(&p[2], uint16_t(p.size()));
  net::store_be16(&p[6], v.frag);
  p[8] = 64;
  p[9] = v.proto;
  net::store_be32(&p[12], v.src);
  net::store_be32(&p[16], v.dst);
  if (v.payload >= 4 && (v.frag & net::kIpv4OffMask) == 0) {  // later fragments carry payload bytes only
    net::store_be16(&p[20], v.sport);
    net::store_be16(&p[22], v.dport);
  } else if (v.payload >= 4) {
    net::store_be16(&p[20], 0xdead);  // anything: must not be read as ports
    net::store_be16(&p[22], 0xbeef);
  }
  return p;
}

struct V6 {
  uint8_t src_last = 1, dst_last = 2;
  uint8_t proto = net::kProtoUdp;
  uint16_t sport = 1000, dport = 2000;
  bool hop_by_hop = false;   // an 8-byte hop-by-hop header first
  int frag = -1;             // -1: no fragment header; else fragment offset (8-byte units)
  uint16_t payload = 32;
};

template <size_t N>
inline void append(std::vector<uint8_t>& p, const std::array<uint8_t, N>& b) {
  const size_t at = p.size();
  p.resize(at + b.size());
  std::copy(b.begin(), b.end(), p.begin() + ptrdiff_t(at));
}

inline std::vector<uint8_t> ipv6(const V6& v) {
  std::vector<uint8_t> p(40, 0);
  p[0] = 0x60;
  p[7] = 64;
  p[8] = 0x20; p[9] = 0x01; p[10] = 0x0d; p[11] = 0xb8; p[23] = v.src_last;
  p[24] = 0x20; p[25] = 0x01; p[26] = 0x0d; p[27] = 0xb8; p[39] = v.dst_last;
  uint8_t* next = &p[6];
  if (v.hop_by_hop) {
    *next = net::kProtoHopOpts;
    append<8>(p, {0, 0, 1, 4, 0, 0, 0, 0});
    next = &p[p.size() - 8];
  }
  if (v.frag >= 0) {
    *next = net::kProtoFragment;
    const uint16_t fo = uint16_t(v.frag << 3 | 1);
    append<8>(p, {0, 0, uint8_t(fo >> 8), uint8_t(fo), 0, 0, 0x12, 0x34});
    next = &p[p.size() - 8];
  }
  *next = v.proto;
  const size_t l4 = p.size();
  p.resize(l4 + v.payload, 0);
  if (v.payload >= 4 && v.frag <= 0) {
    net::store_be16(&p[l4], v.sport);
    net::store_be16(&p[l4 + 2], v.dport);
  }
  net::store_be16(&p[4], uint16_t(p.size() - 40));
  return p;
}

inline uint64_t hash_of(const std::vector<uint8_t>& pkt, uint64_t seed) {
  const uint8_t* p = pkt.data();
  const uint32_t len = uint32_t(pkt.size());
  uint64_t h = 0;
  hash_burst(&p, &len, 1, seed, &h);
  return h;
}

// n distinct random IPv4 5-tuple flows, hashed with seed.
inline std::vector<uint64_t> random_flows(size_t n, uint64_t seed, uint64_t rng_seed = 42) {
  std::mt19937_64 rng(rng_seed);
  std::vector<uint64_t> out;
  out.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    net::FlowKey k;
    k.version = 4;
    k.proto = net::kProtoTcp;
    k.ports = 1;
    const uint64_t r = rng();
    std::memcpy(k.addr, &r, 8);
    k.sport = uint16_t(i);  // distinct even if two random address pairs collide
    k.dport = uint16_t(i >> 16);
    out.push_back(flow_hash(k, seed));
  }
  return out;
}

inline std::vector<TunnelSpec> tunnels(std::initializer_list<uint32_t> weights) {
  std::vector<TunnelSpec> t;
  for (uint32_t w : weights) t.push_back(TunnelSpec{.weight = w});
  return t;
}

// Runs every hash through the pin table one burst of up to 32 at a time.
inline std::vector<TunnelId> assign_all(PinTable& pins, const SelectionTable& sel, const std::vector<uint64_t>& h,
                                        uint32_t now) {
  std::vector<TunnelId> out(h.size());
  for (size_t i = 0; i < h.size(); i += 32) {
    const uint16_t n = uint16_t(std::min<size_t>(32, h.size() - i));
    pins.assign_burst(sel, &h[i], n, now, &out[i]);
  }
  return out;
}

// "4500..." (scapy's raw(...).hex()) -> bytes.
inline std::vector<uint8_t> unhex(const char* h) {
  std::vector<uint8_t> b;
  for (; h[0] && h[1]; h += 2) b.push_back(uint8_t(std::stoi(std::string(h, 2), nullptr, 16)));
  return b;
}

}  // namespace mg::flow::test
