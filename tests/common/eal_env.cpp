#include "eal_env.h"

#include <gtest/gtest.h>
#include <rte_eal.h>
#include <rte_errno.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>

#include "net/net.h"

namespace mg::test {

rte_mempool* pool() {
  static rte_mempool* mp = [] {
    const char* argv[] = {"mg-test", "--no-huge", "-m", "512", "--no-pci", "--no-shconf",
                          "--log-level=lib.eal:error", "--no-telemetry"};
    int argc = int(sizeof(argv) / sizeof(argv[0]));
    if (rte_eal_init(argc, const_cast<char**>(argv)) < 0) {
      std::fprintf(stderr, "rte_eal_init failed: %s\n", rte_strerror(rte_errno));
      std::abort();
    }
    rte_mempool* p = rte_pktmbuf_pool_create("mg_test_pool", 8191, 0, 0,
                                             RTE_MBUF_DEFAULT_BUF_SIZE, SOCKET_ID_ANY);
    if (p == nullptr) {
      std::fprintf(stderr, "mempool: %s\n", rte_strerror(rte_errno));
      std::abort();
    }
    return p;
  }();
  return mp;
}

unsigned in_use() { return rte_mempool_in_use_count(pool()); }

rte_mbuf* make_mbuf(const std::vector<uint8_t>& bytes) {
  rte_mbuf* m = rte_pktmbuf_alloc(pool());
  EXPECT_NE(m, nullptr);
  if (m == nullptr) return nullptr;
  char* d = rte_pktmbuf_append(m, uint16_t(bytes.size()));
  EXPECT_NE(d, nullptr) << "packet of " << bytes.size() << " bytes does not fit an mbuf";
  if (d == nullptr) {
    rte_pktmbuf_free(m);
    return nullptr;
  }
  std::memcpy(d, bytes.data(), bytes.size());
  return m;
}

std::vector<uint8_t> mbuf_bytes(const rte_mbuf* m) {
  const uint8_t* p = rte_pktmbuf_mtod(m, const uint8_t*);
  return std::vector<uint8_t>(p, p + rte_pktmbuf_data_len(m));
}

void free_all(rte_mbuf** pkts, uint16_t n) {
  for (uint16_t i = 0; i < n; ++i) rte_pktmbuf_free(pkts[i]);
}

std::vector<uint8_t> udp_packet(int ip_version, uint32_t payload, uint32_t salt) {
  std::vector<uint8_t> p;
  const uint32_t l3 = ip_version == 4 ? 20 : 40;
  p.resize(l3 + 8 + payload);
  uint8_t* u = p.data() + l3;
  if (ip_version == 4) {
    p[0] = 0x45;
    net::store_be16(&p[2], uint16_t(p.size()));
    net::store_be16(&p[4], uint16_t(salt));
    p[8] = 64;
    p[9] = net::kProtoUdp;
    net::store_be32(&p[12], 0x0a000001 + (salt & 0xff));
    net::store_be32(&p[16], 0x0a800001);
    net::store_be16(&p[10], net::ipv4_header_checksum(p.data(), 20));
  } else {
    p[0] = 0x60;
    net::store_be16(&p[4], uint16_t(8 + payload));
    p[6] = net::kProtoUdp;
    p[7] = 64;
    p[8] = 0x20; p[9] = 0x01; p[10] = 0x0d; p[11] = 0xb8; p[23] = uint8_t(1 + salt);
    p[24] = 0x20; p[25] = 0x01; p[26] = 0x0d; p[27] = 0xb8; p[28] = 1; p[39] = 2;
  }
  net::store_be16(u, uint16_t(10000 + (salt & 0x3ff)));
  net::store_be16(u + 2, 5001);
  net::store_be16(u + 4, uint16_t(8 + payload));
  for (uint32_t i = 0; i < payload; ++i) u[8 + i] = uint8_t(i * 7 + salt);
  return p;
}

std::vector<uint8_t> from_hex(const std::string& hex) {
  std::vector<uint8_t> out;
  int hi = -1;
  for (char c : hex) {
    int v;
    if (c >= '0' && c <= '9') v = c - '0';
    else if (c >= 'a' && c <= 'f') v = c - 'a' + 10;
    else if (c >= 'A' && c <= 'F') v = c - 'A' + 10;
    else continue;
    if (hi < 0) {
      hi = v;
    } else {
      out.push_back(uint8_t(hi << 4 | v));
      hi = -1;
    }
  }
  return out;
}

std::string to_hex(const uint8_t* p, size_t n) {
  static const char* d = "0123456789abcdef";
  std::string s;
  for (size_t i = 0; i < n; ++i) {
    s += d[p[i] >> 4];
    s += d[p[i] & 15];
  }
  return s;
}

}  // namespace mg::test
