#include "trace.h"

#include <pcap/pcap.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <random>
#include <unordered_map>

#include "spread_conf.h"
#include "flow/flow.h"

namespace mg::spread {

namespace {

struct KeyHash {
  size_t operator()(const net::FlowKey& k) const noexcept { return size_t(flow::flow_hash(k, 0)); }
};
struct KeyEq {
  bool operator()(const net::FlowKey& a, const net::FlowKey& b) const noexcept {
    return std::memcmp(&a, &b, sizeof a) == 0;
  }
};

// Assigns flow indices in order of first appearance.
class FlowIndex {
 public:
  explicit FlowIndex(Trace& t) : t_(t) {}
  uint32_t operator()(const net::FlowKey& k) {
    const auto [it, added] = map_.try_emplace(k, uint32_t(t_.flows.size()));
    if (added) t_.flows.push_back(k);
    return it->second;
  }

 private:
  Trace& t_;
  std::unordered_map<net::FlowKey, uint32_t, KeyHash, KeyEq> map_;
};

constexpr uint32_t kKeep = 256;  // header bytes kept per frame: enough for IPv6 extension chains

// Where the IP header starts in a frame of the given link type, or -1 if the frame is not IP.
int l3_offset(int linktype, const uint8_t* f, uint32_t caplen) {
  switch (linktype) {
    case DLT_RAW:
    case DLT_IPV4:
    case DLT_IPV6:
      return 0;
    case DLT_NULL:
    case DLT_LOOP:
      return caplen >= 4 ? 4 : -1;
    case DLT_LINUX_SLL: {
      if (caplen < 16) return -1;
      const uint16_t et = net::load_be16(f + 14);
      return et == 0x0800 || et == 0x86dd ? 16 : -1;
    }
    case DLT_EN10MB: {
      uint32_t off = 12;
      while (off + 2 <= caplen) {
        const uint16_t et = net::load_be16(f + off);
        if (et == 0x8100 || et == 0x88a8) {
          off += 4;
          continue;
        }
        return et == 0x0800 || et == 0x86dd ? int(off + 2) : -1;
      }
      return -1;
    }
  }
  return -1;
}

// The capture (or kKeep) cut the frame: make the IP length fields say what is there, so the header parses.
void clamp_lengths(uint8_t* p, uint32_t len) {
  if (len >= 20 && p[0] >> 4 == 4 && net::load_be16(p + 2) > len) net::store_be16(p + 2, uint16_t(len));
  if (len >= 40 && p[0] >> 4 == 6 && 40u + net::load_be16(p + 4) > len) net::store_be16(p + 4, uint16_t(len - 40));
}

}  // namespace

Trace read_pcap(const std::string& path) {
  char err[PCAP_ERRBUF_SIZE] = {};
  pcap_t* pc = pcap_open_offline(path.c_str(), err);
  if (!pc) throw InputError("pcap " + path + ": " + err);
  struct Closer {
    pcap_t* p;
    ~Closer() { pcap_close(p); }
  } closer{pc};
  const int lt = pcap_datalink(pc);
  if (lt != DLT_EN10MB && lt != DLT_RAW && lt != DLT_IPV4 && lt != DLT_IPV6 && lt != DLT_NULL && lt != DLT_LOOP &&
      lt != DLT_LINUX_SLL) {
    const char* name = pcap_datalink_val_to_name(lt);
    throw InputError("pcap " + path + ": link type " + std::to_string(lt) + " (" + (name ? name : "?") +
                     ") not supported; use Ethernet, raw IP, Linux cooked or loopback captures");
  }
  Trace t;
  t.source = "pcap " + path;
  FlowIndex index(t);
  pcap_pkthdr* h;
  const u_char* data;
  int rc;
  bool first = true;
  uint64_t t0 = 0;
  while ((rc = pcap_next_ex(pc, &h, &data)) == 1) {
    const int off = l3_offset(lt, data, h->caplen);
    if (off < 0 || uint32_t(off) >= h->caplen) {
      ++t.skipped;
      continue;
    }
    uint8_t buf[kKeep];
    const uint32_t have = std::min(h->caplen - uint32_t(off), kKeep);
    std::memcpy(buf, data + off, have);
    if (have < h->len - uint32_t(off)) clamp_lengths(buf, have);
    net::FlowKey k;
    if (net::extract_flow_key(buf, have, &k) != net::ParseStatus::kOk) {
      ++t.skipped;
      continue;
    }
    const uint64_t ms = uint64_t(h->ts.tv_sec) * 1000 + uint64_t(h->ts.tv_usec) / 1000;
    if (first) t0 = ms, first = false;
    t.packets.push_back({index(k), h->len - uint32_t(off), uint32_t(ms >= t0 ? ms - t0 : 0)});
  }
  if (rc == PCAP_ERROR) throw InputError("pcap " + path + ": " + pcap_geterr(pc));
  if (t.packets.empty())
    throw InputError("pcap " + path + ": no IPv4/IPv6 packets (" + std::to_string(t.skipped) + " other frames)");
  return t;
}

namespace {

// One header of a synthetic flow: enough bytes for the key extraction to see what it would on the wire.
std::vector<uint8_t> synth_header(std::mt19937_64& rng, bool v6, uint8_t proto) {
  const uint64_t r = rng();
  std::vector<uint8_t> p(v6 ? 48 : 28, 0);
  uint8_t* l4;
  if (v6) {
    p[0] = 0x60;
    net::store_be16(&p[4], 8);
    p[6] = proto;
    p[7] = 64;
    const uint8_t pfx[4] = {0x20, 0x01, 0x0d, 0xb8};
    std::memcpy(&p[8], pfx, 4);
    std::memcpy(&p[24], pfx, 4);
    const uint64_t a = rng(), b = rng();
    std::memcpy(&p[16], &a, 8);
    std::memcpy(&p[32], &b, 8);
    l4 = &p[40];
  } else {
    p[0] = 0x45;
    net::store_be16(&p[2], 28);
    p[8] = 64;
    p[9] = proto;
    net::store_be32(&p[12], 0x0a000000u | uint32_t(r & 0xffffff));         // 10/8 inside
    net::store_be32(&p[16], 0xac100000u | uint32_t((r >> 24) & 0xfffff));  // 172.16/12 far side
    l4 = &p[20];
  }
  net::store_be16(l4, uint16_t(1024 + (r >> 44) % 64000));
  net::store_be16(l4 + 2, std::array<uint16_t, 4>{443, 80, 53, 4500}[(r >> 60) & 3]);
  return p;
}

}  // namespace

Trace synthesize(const SynthOptions& o) {
  if (o.flows == 0) throw InputError("synthetic: need at least one flow");
  const uint64_t packets = o.packets ? o.packets : uint64_t(o.flows) * 10;
  if (packets < o.flows)
    throw InputError("synthetic: " + std::to_string(packets) + " packets cannot carry " + std::to_string(o.flows) +
                     " flows (every flow sends at least one)");
  if (packets > (1ull << 31)) throw InputError("synthetic: at most 2^31 packets");
  if (o.sizes == SynthOptions::Sizes::kZipf && !(o.zipf_s > 0 && o.zipf_s <= 5))
    throw InputError("synthetic: Zipf exponent must be in (0, 5]");
  if (!(o.rate_pps > 0)) throw InputError("synthetic: rate must be positive");
  Trace t;
  t.source = "synthetic " + std::to_string(o.flows) + " flows, " +
             (o.sizes == SynthOptions::Sizes::kZipf ? "zipf s=" + std::to_string(o.zipf_s) : std::string("uniform"));
  std::mt19937_64 rng(o.seed);
  std::uniform_real_distribution<double> u01(0, 1);
  std::vector<uint32_t> size(o.flows);
  FlowIndex index(t);
  std::vector<uint32_t> flow_of(o.flows);
  for (uint32_t f = 0; f < o.flows; ++f) {
    const bool v6 = u01(rng) < o.ipv6_share;
    const uint8_t proto = u01(rng) < o.icmp_share ? (v6 ? net::kProtoIcmp6 : net::kProtoIcmp)
                                                  : (rng() & 1 ? net::kProtoTcp : net::kProtoUdp);
    const auto hdr = synth_header(rng, v6, proto);
    net::FlowKey k;
    if (net::extract_flow_key(hdr.data(), uint32_t(hdr.size()), &k) != net::ParseStatus::kOk)
      throw std::logic_error("synthetic header does not parse");
    flow_of[f] = index(k);  // ICMP flows between the same hosts merge, as they do in the gateway
    size[f] = 64 + uint32_t(rng() % (1500 - 64 + 1));
  }
  std::vector<uint32_t> seq(packets);
  for (uint32_t f = 0; f < o.flows; ++f) seq[f] = f;
  if (o.sizes == SynthOptions::Sizes::kUniform) {
    for (uint64_t i = o.flows; i < packets; ++i) seq[i] = uint32_t(rng() % o.flows);
  } else {
    std::vector<double> cdf(o.flows);
    double sum = 0;
    for (uint32_t f = 0; f < o.flows; ++f) cdf[f] = sum += std::pow(double(f + 1), -o.zipf_s);
    for (uint64_t i = o.flows; i < packets; ++i) {
      const double x = u01(rng) * sum;
      seq[i] = uint32_t(std::min<size_t>(std::lower_bound(cdf.begin(), cdf.end(), x) - cdf.begin(), o.flows - 1));
    }
  }
  std::shuffle(seq.begin(), seq.end(), rng);
  t.packets.reserve(packets);
  for (uint64_t i = 0; i < packets; ++i)
    t.packets.push_back({flow_of[seq[i]], size[seq[i]], uint32_t(double(i) * 1000.0 / o.rate_pps)});
  return t;
}

}  // namespace mg::spread
