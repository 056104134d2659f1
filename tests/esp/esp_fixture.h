// Helpers shared by the ESP tests: matched outbound/inbound SA pairs and one-packet ESP makers.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "eal_env.h"
#include "esp/esp.h"

namespace mg::test {

struct SaParams {
  crypto::Cipher cipher = crypto::Cipher::kAesGcm128;
  crypto::Engine engine = crypto::Engine::kIpsecMb;
  int outer_version = 4;
  bool esn = false;
  uint32_t window = 1024;
  uint32_t spi = 0x1001;
  net::Encap encap = net::Encap::kNone;
  uint16_t sport = net::kNatTPort, dport = net::kNatTPort;
};

inline std::vector<uint8_t> test_keymat(crypto::Cipher c) {
  std::vector<uint8_t> k(crypto::key_len(c) + crypto::kSaltLen);
  for (size_t i = 0; i < k.size(); ++i) k[i] = uint8_t(0x40 + i * 3);
  return k;
}

inline esp::SaConfig sa_config(const SaParams& p) {
  esp::SaConfig c;
  c.spi = p.spi;
  c.cipher = p.cipher;
  c.engine = p.engine;
  c.keymat = test_keymat(p.cipher);
  c.esn = p.esn;
  c.replay_window = p.window;
  if (p.outer_version == 4) {
    net::parse_ip("192.0.2.1", &c.outer_src);
    net::parse_ip("198.51.100.7", &c.outer_dst);
  } else {
    net::parse_ip("2001:db8:1::1", &c.outer_src);
    net::parse_ip("2001:db8:2::7", &c.outer_dst);
  }
  c.user_id = 7;
  c.encap = p.encap;
  c.udp_sport = p.sport;
  c.udp_dport = p.dport;
  return c;
}

inline std::unique_ptr<esp::Sa> make_sa(const SaParams& p, esp::Direction d, uint16_t workers = 2) {
  esp::SaConfig c = sa_config(p);
  std::string err;
  auto sa = esp::Sa::create(c, d, workers, &err);
  EXPECT_NE(sa, nullptr) << err;
  return sa;
}

// Encrypts `inner` as sequence number `seq` with a fresh outbound SA of parameters p.
inline std::vector<uint8_t> esp_packet(const SaParams& p, uint64_t seq, const std::vector<uint8_t>& inner) {
  auto out = make_sa(p, esp::Direction::kOutbound);
  if (!out) return {};
  out->resume_after(seq - 1);
  rte_mbuf* m = make_mbuf(inner);
  if (m == nullptr) return {};
  uint16_t k = esp::encap_burst(*out, 0, &m, 1);
  EXPECT_EQ(k, 1);
  std::vector<uint8_t> bytes = mbuf_bytes(m);
  rte_pktmbuf_free(m);
  return bytes;
}

// Mempool accounting: a test that takes mbufs gives them all back by the end of its scope.
struct MbufGuard {
  unsigned base = in_use();
  ~MbufGuard() { EXPECT_EQ(in_use(), base) << "mbufs leaked by this test"; }
};

inline uint64_t drops(const esp::Sa& sa, esp::Drop d) { return sa.stats().drops[size_t(d)]; }

}  // namespace mg::test
