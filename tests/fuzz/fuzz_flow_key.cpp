// libFuzzer target: the L3 parser and flow-key extraction (lib/net) and the burst hash over them (lib/flow), on
// packets in heap buffers of exactly their size, so that any read past a packet is an ASan report.
//
// The input is split into packets at 0xA5 0x5A separators (at most 32: one burst). For each packet, checked
// against the rules of flow_key.h and net.h restated here (each failure traps):
//   - parse_l3 and extract_flow_key agree on success; on failure the key is left untouched;
//   - version is the header's; the claimed length fits the bytes; the upper-layer offset fits the datagram;
//   - ports are used only for TCP/UDP/SCTP/UDP-Lite packets that are not fragments and hold both ports, and
//     then are the bytes at the upper-layer offset; every other key has zero ports; IPv6 fragments key on 44;
//   - the addresses are the header's, unused bytes zero; hash_len is 16 or 40;
//   - bytes past the claimed length (L2 padding) never change the key: the packet cut to ip_len gives the same;
//   - hash_burst gives flow_hash(key) for a packet that parses and kInvalidHash for one that does not.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "flow/flow.h"
#include "fuzz_check.h"
#include "net/flow_key.h"
#include "net/net.h"

namespace net = mg::net;

namespace {

struct HeapBytes {  // exactly n bytes on the heap (malloc(0) is still a distinct, unreadable block)
  uint8_t* p;
  explicit HeapBytes(const uint8_t* src, size_t n) : p(static_cast<uint8_t*>(std::malloc(n))) {
    if (p == nullptr) std::abort();
    if (n) std::memcpy(p, src, n);
  }
  ~HeapBytes() { std::free(p); }
  HeapBytes(const HeapBytes&) = delete;
  HeapBytes& operator=(const HeapBytes&) = delete;
};

bool port_proto(uint8_t p) {
  return p == net::kProtoTcp || p == net::kProtoUdp || p == net::kProtoSctp || p == net::kProtoUdpLite;
}

void check_one(const uint8_t* p, uint32_t len) {
  net::L3Info li;
  const net::ParseStatus ps = net::parse_l3(p, len, &li);
  net::FlowKey key;
  std::memset(&key, 0xee, sizeof key);
  const net::ParseStatus ks = net::extract_flow_key(p, len, &key);
  CHECK(ps == ks);
  if (ks != net::ParseStatus::kOk) {
    for (size_t i = 0; i < sizeof key; ++i) CHECK(reinterpret_cast<const uint8_t*>(&key)[i] == 0xee);
    return;
  }
  CHECK(len >= 1 && li.version == (p[0] >> 4));
  CHECK(li.version == 4 || li.version == 6);
  CHECK(li.ip_len <= len && li.l4_off <= li.ip_len);
  CHECK(li.ip_len >= (li.version == 4 ? 20u : 40u));
  CHECK(!li.later_fragment || li.fragment);
  CHECK(key.version == li.version && key.reserved == 0);
  CHECK(key.proto == ((li.fragment && li.version == 6) ? net::kProtoFragment : li.proto));
  const bool ports = !li.fragment && port_proto(li.proto) && uint32_t(li.l4_off) + 4 <= li.ip_len;
  CHECK(key.ports == (ports ? 1 : 0));
  if (ports) {
    CHECK(std::memcmp(&key.sport, p + li.l4_off, 2) == 0 && std::memcmp(&key.dport, p + li.l4_off + 2, 2) == 0);
  } else {
    CHECK(key.sport == 0 && key.dport == 0);
  }
  if (li.version == 4) {
    CHECK(key.hash_len() == 16);
    CHECK(std::memcmp(key.addr, p + 12, 8) == 0);
    for (int i = 8; i < 32; ++i) CHECK(key.addr[i] == 0);
    if (li.fragment) CHECK((net::load_be16(p + 6) & (net::kIpv4Mf | net::kIpv4OffMask)) != 0);
  } else {
    CHECK(key.hash_len() == 40);
    CHECK(std::memcmp(key.addr, p + 8, 32) == 0);
  }

  // The datagram alone, in a buffer of exactly ip_len bytes, gives the same key.
  HeapBytes cut(p, li.ip_len);
  net::FlowKey k2;
  CHECK(net::extract_flow_key(cut.p, li.ip_len, &k2) == net::ParseStatus::kOk);
  CHECK(std::memcmp(&key, &k2, sizeof key) == 0);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  constexpr uint16_t kBurst = 32;
  std::vector<std::unique_ptr<HeapBytes>> bufs;
  const uint8_t* pkts[kBurst];
  uint32_t lens[kBurst];
  uint16_t n = 0;
  size_t start = 0;
  for (size_t i = 0; i <= size && n < kBurst; ++i) {
    const bool sep = i + 1 < size && data[i] == 0xA5 && data[i + 1] == 0x5A;
    if (!sep && i != size) continue;
    bufs.push_back(std::make_unique<HeapBytes>(data + start, i - start));
    pkts[n] = bufs.back()->p;
    lens[n] = uint32_t(i - start);
    ++n;
    start = i + 2;
    ++i;
  }
  for (uint16_t i = 0; i < n; ++i) check_one(pkts[i], lens[i]);

  const uint64_t seed = 0x6d657368676174ull;
  uint64_t hashes[kBurst];
  const uint16_t ok = mg::flow::hash_burst(pkts, lens, n, seed, hashes);
  uint16_t parsed = 0;
  for (uint16_t i = 0; i < n; ++i) {
    net::FlowKey key;
    if (net::extract_flow_key(pkts[i], lens[i], &key) == net::ParseStatus::kOk) {
      ++parsed;
      CHECK(hashes[i] == mg::flow::flow_hash(key, seed) && hashes[i] != mg::flow::kInvalidHash);
    } else {
      CHECK(hashes[i] == mg::flow::kInvalidHash);
    }
  }
  CHECK(ok == parsed);
  return 0;
}
