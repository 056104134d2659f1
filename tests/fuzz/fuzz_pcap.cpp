// libFuzzer target: meshgate-esp's input, a pcap file. The input is the file's bytes, read by libpcap as the tool
// does (pcap_fopen_offline on an in-memory FILE); every frame is copied to a heap buffer of exactly its captured
// length and classified by the tool's rules (apps/meshgate-esp/frames.h); each IP datagram then goes through
// encrypt and decrypt as the tool would run it, each frame under the next of four SA pairs (AES-GCM-128, AES-GCM-256,
// ChaCha20-Poly1305 via IPsec-MB and via libsodium; IPv4 and IPv6 outer), in a buffer with exactly the head- and
// tailroom ESP needs. Checked (each failure traps):
//   - the classification is the one restated here: truncated captures and non-IP Ethernet types skipped, one VLAN
//     tag understood, and an IP datagram is exactly the bytes behind the link header;
//   - encrypt refuses exactly what is not an IPv4/IPv6 header (shorter than 20 or 40 bytes, other versions);
//   - what encrypt took, decrypt gives back byte for byte (the datagram's claimed length; L2 padding dropped),
//     unless its inner header does not parse, which decrypt drops as in_bad_inner;
//   - every mbuf and buffer is returned.
#include <pcap/pcap.h>
#include <rte_mbuf.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "esp/esp.h"
#include "exact_mbuf.h"
#include "frames.h"
#include "fuzz_check.h"
#include "fuzz_eal.h"
#include "net/net.h"

namespace crypto = mg::crypto;
namespace esp = mg::esp;
namespace net = mg::net;
namespace tool = mg::esptool;

namespace {

constexpr uint32_t kMaxL3 = 10240 - esp::kMaxOverhead;  // meshgate-esp's limit (its data room less ESP overhead)
constexpr int kMaxFrames = 64;

struct Pair {
  std::unique_ptr<esp::Sa> out, in;
  std::unique_ptr<esp::SaTable> table;
  bool v6;
};

std::vector<Pair>& pairs() {
  static std::vector<Pair> p = [] {
    mg::fuzz::fuzz_pool();
    struct Def {
      crypto::Cipher c;
      crypto::Engine e;
      bool v6;
    };
    const Def defs[] = {{crypto::Cipher::kAesGcm128, crypto::Engine::kIpsecMb, false},
                        {crypto::Cipher::kAesGcm256, crypto::Engine::kIpsecMb, true},
                        {crypto::Cipher::kChacha20Poly1305, crypto::Engine::kIpsecMb, false},
                        {crypto::Cipher::kChacha20Poly1305, crypto::Engine::kSodium, true}};
    std::vector<Pair> v;
    uint32_t spi = 0x1001;
    for (const Def& d : defs) {
      Pair pr;
      pr.v6 = d.v6;
      for (int dir = 0; dir < 2; ++dir) {
        esp::SaConfig cfg;
        cfg.spi = spi;
        cfg.cipher = d.c;
        cfg.engine = d.e;
        cfg.keymat.resize(crypto::key_len(d.c) + crypto::kSaltLen);
        for (size_t i = 0; i < cfg.keymat.size(); ++i) cfg.keymat[i] = uint8_t(spi * 7 + i);
        cfg.esn = d.v6;
        cfg.replay_window = 1024;
        net::parse_ip(d.v6 ? "2001:db8::1" : "192.0.2.1", &cfg.outer_src);
        net::parse_ip(d.v6 ? "2001:db8::2" : "198.51.100.2", &cfg.outer_dst);
        std::string err;
        auto sa = esp::Sa::create(cfg, dir == 0 ? esp::Direction::kOutbound : esp::Direction::kInbound, 1, &err);
        if (!sa) std::abort();
        (dir == 0 ? pr.out : pr.in) = std::move(sa);
      }
      esp::Sa* list[] = {pr.in.get()};
      std::string err;
      pr.table = esp::SaTable::build(list, 1, &err);
      if (!pr.table) std::abort();
      v.push_back(std::move(pr));
      ++spi;
    }
    return v;
  }();
  return p;
}

// meshgate-esp's rules, restated.
tool::FrameKind expected_kind(int l2len, const uint8_t* d, uint32_t caplen, uint32_t len, uint32_t* off) {
  if (caplen != len || caplen < uint32_t(l2len)) return tool::FrameKind::kNotIp;
  *off = uint32_t(l2len);
  if (l2len == 14) {
    uint16_t et = uint16_t(d[12] << 8 | d[13]);
    if (et == 0x8100 && caplen >= 18) {
      et = uint16_t(d[16] << 8 | d[17]);
      *off = 18;
    }
    if (et != 0x0800 && et != 0x86dd) return tool::FrameKind::kNotIp;
  }
  return caplen - *off > kMaxL3 ? tool::FrameKind::kTooBig : tool::FrameKind::kIp;
}

void round_trip(Pair& pr, const uint8_t* ip, uint32_t len) {
  rte_mempool* mp = mg::fuzz::fuzz_pool();
  const uint32_t head = (pr.v6 ? 40 : 20) + 16;
  const uint32_t tail = ((4 - ((len + 2) & 3)) & 3) + 2 + 16;
  rte_mbuf* m = mg::fuzz::exact_mbuf(mp, ip, len, head, tail);
  if (m == nullptr) return;  // beyond an mbuf's 16-bit buffer: the tool's data room is far below
  const uint8_t ver = len ? ip[0] >> 4 : 0;
  const bool inner_ok = len >= 20 && (ver == 4 || (ver == 6 && len >= 40));
  rte_mbuf* pkts[1] = {m};
  const uint16_t k = esp::encap_burst(*pr.out, 0, pkts, 1);
  CHECK(k == (inner_ok ? 1 : 0));
  if (k == 1) {
    net::L3Info li;
    const bool parses = net::parse_l3(ip, len, &li) == net::ParseStatus::kOk;
    const uint64_t bad_inner = pr.in->stats().drops[size_t(esp::Drop::kInBadInner)];
    const uint16_t d = esp::decap_burst(*pr.table, 0, pkts, 1);
    CHECK(d == (parses ? 1 : 0));
    if (d == 1) {
      CHECK(rte_pktmbuf_pkt_len(m) == li.ip_len);
      CHECK(std::memcmp(rte_pktmbuf_mtod(m, const uint8_t*), ip, li.ip_len) == 0);
    } else {
      CHECK(pr.in->stats().drops[size_t(esp::Drop::kInBadInner)] == bad_inner + 1);
    }
  }
  rte_pktmbuf_free(m);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<Pair>& prs = pairs();
  rte_mempool* mp = mg::fuzz::fuzz_pool();
  const unsigned base = rte_mempool_in_use_count(mp);
  if (size == 0) return 0;
  FILE* f = fmemopen(const_cast<uint8_t*>(data), size, "rb");
  if (f == nullptr) std::abort();
  char errbuf[PCAP_ERRBUF_SIZE];
  pcap_t* in = pcap_fopen_offline(f, errbuf);  // owns f from here on; on failure f is still ours
  if (in == nullptr) {
    std::fclose(f);
    return 0;
  }
  const int l2len = tool::link_l2_len(pcap_datalink(in));
  pcap_pkthdr* h;
  const u_char* frame;
  int frames = 0;
  while (l2len >= 0 && frames < kMaxFrames && pcap_next_ex(in, &h, &frame) == 1) {
    // Exactly the captured bytes: a read past caplen is an ASan report.
    auto* buf = static_cast<uint8_t*>(std::malloc(h->caplen));
    if (buf == nullptr) std::abort();
    if (h->caplen) std::memcpy(buf, frame, h->caplen);
    tool::Frame fr;
    const tool::FrameKind kind = tool::classify_frame(l2len, buf, h->caplen, h->len, kMaxL3, &fr);
    uint32_t off = 0;
    CHECK(kind == expected_kind(l2len, buf, h->caplen, h->len, &off));
    if (kind == tool::FrameKind::kIp) {
      CHECK(fr.l3_off == off && fr.l3_off + fr.l3_len == h->caplen && fr.l3_len <= kMaxL3);
      round_trip(prs[size_t(frames) % prs.size()], buf + fr.l3_off, fr.l3_len);
    }
    std::free(buf);
    ++frames;
  }
  pcap_close(in);
  CHECK(mg::fuzz::exact_live() == 0);
  CHECK(rte_mempool_in_use_count(mp) == base);
  return 0;
}
