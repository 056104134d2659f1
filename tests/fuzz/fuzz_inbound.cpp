// libFuzzer target for the inbound path and the header parsers.
//
// Input layout: byte 0 selects the mode, the rest is split into packets at 0xA5 0x5A separators.
//   mode & 1 == 0: raw outer packets straight into decap_burst (parsers, SPI table, length checks).
//   mode & 1 == 1: each piece is an ESP *plaintext* (inner packet + trailer as the fuzzer likes); the
//                  harness seals it under a known SA with a valid ICV so the post-ICV code (padding, next
//                  header, inner header, TFC trim) sees arbitrary bytes.
// Every run checks that all mbufs went back to the pool.
#include <rte_eal.h>
#include <rte_mbuf.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "esp/esp.h"
#include "net/net.h"

namespace {

struct World {
  rte_mempool* mp;
  std::unique_ptr<mg::esp::Sa> gcm, chacha, esn;
  std::unique_ptr<mg::esp::SaTable> table;
  std::unique_ptr<mg::crypto::AeadCtx, mg::crypto::AeadCtxDeleter> seal;
  uint64_t next_seq = 1;
};

std::vector<uint8_t> keymat(size_t n, uint8_t seed) {
  std::vector<uint8_t> k(n);
  for (size_t i = 0; i < n; ++i) k[i] = uint8_t(seed + i);
  return k;
}

World* world() {
  static World* w = [] {
    const char* argv[] = {"fuzz", "--no-huge", "-m", "256", "--no-pci", "--no-shconf", "--no-telemetry",
                          "--log-level=*:error"};
    if (rte_eal_init(int(sizeof(argv) / sizeof(argv[0])), const_cast<char**>(argv)) < 0) std::abort();
    auto* x = new World();
    x->mp = rte_pktmbuf_pool_create("fuzz", 1023, 0, 0, RTE_MBUF_DEFAULT_BUF_SIZE, SOCKET_ID_ANY);
    if (x->mp == nullptr) std::abort();
    std::string err;
    auto make = [&](uint32_t spi, mg::crypto::Cipher c, bool esn) {
      mg::esp::SaConfig cfg;
      cfg.spi = spi;
      cfg.cipher = c;
      cfg.keymat = keymat(mg::crypto::key_len(c) + 4, uint8_t(spi));
      cfg.esn = esn;
      cfg.replay_window = 64;
      auto sa = mg::esp::Sa::create(cfg, mg::esp::Direction::kInbound, 1, &err);
      if (!sa) std::abort();
      return sa;
    };
    x->gcm = make(0x100, mg::crypto::Cipher::kAesGcm128, false);
    x->chacha = make(0x200, mg::crypto::Cipher::kChacha20Poly1305, false);
    x->esn = make(0x300, mg::crypto::Cipher::kAesGcm256, true);
    mg::esp::Sa* list[] = {x->gcm.get(), x->chacha.get(), x->esn.get()};
    x->table = mg::esp::SaTable::build(list, 1, &err);
    auto km = keymat(20, 0x00);  // spi 0x100's key: seed = uint8_t(0x100) = 0
    x->seal = mg::crypto::make_aead(mg::crypto::Cipher::kAesGcm128, mg::crypto::Engine::kIpsecMb, km, &err);
    if (!x->table || !x->seal) std::abort();
    return x;
  }();
  return w;
}

// Outer IPv4 + ESP(spi 0x100) around `pt`, sealed with a valid ICV.
std::vector<uint8_t> sealed(World* w, const uint8_t* pt, size_t n) {
  std::vector<uint8_t> b(20 + 16 + n + 16);
  b[0] = 0x45;
  mg::net::store_be16(&b[2], uint16_t(b.size()));
  b[8] = 64;
  b[9] = mg::net::kProtoEsp;
  mg::net::store_be32(&b[20], 0x100);
  const uint64_t seq = w->next_seq++;
  mg::net::store_be32(&b[24], uint32_t(seq));
  mg::net::store_be64(&b[28], seq);
  if (n != 0) std::memcpy(&b[36], pt, n);
  uint8_t aad[8];
  std::memcpy(aad, &b[20], 8);
  mg::crypto::AeadOp op{};
  op.data = &b[36];
  op.len = uint32_t(n);
  op.aad = aad;
  op.aad_len = 8;
  op.icv = &b[36 + n];
  std::memcpy(op.iv, &b[28], 8);
  mg::crypto::seal_burst(*w->seal, &op, 1);
  return b;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  World* w = world();
  const unsigned base = rte_mempool_in_use_count(w->mp);
  const uint8_t mode = data[0];
  ++data;
  --size;

  std::vector<std::vector<uint8_t>> pieces;
  size_t start = 0;
  for (size_t i = 0; i + 1 < size && pieces.size() < 63; ++i) {
    if (data[i] == 0xA5 && data[i + 1] == 0x5A) {
      pieces.emplace_back(data + start, data + i);
      start = i + 2;
      ++i;
    }
  }
  pieces.emplace_back(data + start, data + size);

  rte_mbuf* pkts[64];
  uint16_t n = 0;
  for (auto& p : pieces) {
    // The parsers on their own, on the raw bytes.
    mg::net::L3Info li;
    (void)mg::net::parse_l3(p.data(), uint32_t(p.size()), &li);
    std::vector<uint8_t> bytes = (mode & 1) ? sealed(w, p.data(), p.size()) : p;
    if (bytes.size() > 2000) continue;
    rte_mbuf* m = rte_pktmbuf_alloc(w->mp);
    if (m == nullptr) std::abort();
    char* dst = rte_pktmbuf_append(m, uint16_t(bytes.size()));
    if (!bytes.empty()) std::memcpy(dst, bytes.data(), bytes.size());
    pkts[n++] = m;
  }
  const uint16_t k = mg::esp::decap_burst(*w->table, 0, pkts, n);
  for (uint16_t i = 0; i < k; ++i) {
    // A packet that passed must be a well-formed inner IP packet of exactly its claimed length.
    mg::net::L3Info li;
    const uint8_t* p = rte_pktmbuf_mtod(pkts[i], const uint8_t*);
    if (mg::net::parse_l3(p, rte_pktmbuf_pkt_len(pkts[i]), &li) != mg::net::ParseStatus::kOk ||
        li.ip_len != rte_pktmbuf_pkt_len(pkts[i]))
      std::abort();
  }
  for (uint16_t i = 0; i < n; ++i) rte_pktmbuf_free(pkts[i]);
  if (rte_mempool_in_use_count(w->mp) != base) {
    std::fprintf(stderr, "mbuf leak\n");
    std::abort();
  }
  return 0;
}
