// Known answers from published vectors (sources and byte provenance in vectors.h):
//  - RFC 7634 Appendix A, the ChaCha20-Poly1305 ESP packet, through both engines;
//  - draft-mcgrew-gcm-test-01 section 4 AES-GCM ESP packets (32-bit and extended sequence numbers).
#include <gtest/gtest.h>

#include <span>

#include "esp_fixture.h"
#include "vectors.h"

using mg::crypto::Cipher;
using mg::crypto::Engine;
using mg::esp::Direction;
using mg::esp::Drop;
using namespace mg::test;
namespace v = mg::test::vectors;
namespace net = mg::net;

namespace {

template <class V>
std::vector<uint8_t> keymat() {
  std::vector<uint8_t> k(std::begin(V::kKey), std::end(V::kKey));
  k.insert(k.end(), std::begin(V::kSalt), std::end(V::kSalt));
  return k;
}

template <class V>
std::vector<uint8_t> ct_and_tag() {
  if constexpr (requires { V::kCiphertextAndTag; }) {
    return std::vector<uint8_t>(std::begin(V::kCiphertextAndTag), std::end(V::kCiphertextAndTag));
  } else {
    std::vector<uint8_t> r(std::begin(V::kCiphertext), std::end(V::kCiphertext));
    r.insert(r.end(), std::begin(V::kTag), std::end(V::kTag));
    return r;
  }
}

template <class V>
void check_aead(Cipher c, Engine e) {
  SCOPED_TRACE(std::string(mg::crypto::to_string(c)) + " via " + mg::crypto::to_string(e));
  std::string err;
  auto km = keymat<V>();
  auto aead = mg::crypto::make_aead(c, e, km, &err);
  ASSERT_TRUE(aead) << err;
  const auto want = ct_and_tag<V>();
  const size_t n = sizeof(V::kPlaintext);
  std::vector<uint8_t> buf(std::begin(V::kPlaintext), std::end(V::kPlaintext));
  buf.resize(n + 16);
  mg::crypto::AeadOp op{};
  op.data = buf.data();
  op.len = uint32_t(n);
  op.aad = V::kAad;
  op.aad_len = uint32_t(sizeof(V::kAad));
  op.icv = buf.data() + n;
  std::memcpy(op.iv, V::kIv, 8);
  mg::crypto::seal_burst(*aead, &op, 1);
  EXPECT_EQ(to_hex(buf.data(), buf.size()), to_hex(want.data(), want.size())) << "ciphertext || ICV";
  EXPECT_EQ(mg::crypto::open_burst(*aead, &op, 1), 1);
  EXPECT_EQ(to_hex(buf.data(), n), to_hex(V::kPlaintext, n));
  // A flipped ICV bit must fail.
  mg::crypto::seal_burst(*aead, &op, 1);
  buf[n + 15] ^= 0x01;
  EXPECT_EQ(mg::crypto::open_burst(*aead, &op, 1), 0);
  EXPECT_EQ(op.ok, 0);
}

// The draft's ESP packet (SPI onwards) behind an outer IPv4 header.
template <class V>
std::vector<uint8_t> with_outer_v4() {
  std::vector<uint8_t> b(20);
  b.insert(b.end(), std::begin(V::kEspPacket) + V::kEspOffset, std::end(V::kEspPacket));
  b[0] = 0x45;
  net::store_be16(&b[2], uint16_t(b.size()));
  b[8] = 64;
  b[9] = net::kProtoEsp;
  net::store_be32(&b[12], 0xc0000201);
  net::store_be32(&b[16], 0xc6336407);
  net::store_be16(&b[10], net::ipv4_header_checksum(b.data(), 20));
  return b;
}

template <class V>
std::unique_ptr<mg::esp::Sa> inbound_sa(Cipher c, Engine e, bool esn) {
  mg::esp::SaConfig cfg;
  cfg.spi = V::spi;
  cfg.cipher = c;
  cfg.engine = e;
  cfg.keymat = keymat<V>();
  cfg.esn = esn;
  cfg.replay_window = 64;
  std::string err;
  auto sa = mg::esp::Sa::create(cfg, Direction::kInbound, 1, &err);
  EXPECT_TRUE(sa) << err;
  return sa;
}

}  // namespace

TEST(KnownAnswer, Rfc7634AeadBothEngines) {
  check_aead<v::Rfc7634EspExample>(Cipher::kChacha20Poly1305, Engine::kIpsecMb);
  check_aead<v::Rfc7634EspExample>(Cipher::kChacha20Poly1305, Engine::kSodium);
}

TEST(KnownAnswer, Rfc7634EspPacketDecapsBackToTheSourcePacket) {
  MbufGuard guard;
  using V = v::Rfc7634EspExample;
  for (Engine e : {Engine::kIpsecMb, Engine::kSodium}) {
    SCOPED_TRACE(mg::crypto::to_string(e));
    auto sa = inbound_sa<V>(Cipher::kChacha20Poly1305, e, false);
    ASSERT_TRUE(sa);
    rte_mbuf* m = make_mbuf(std::vector<uint8_t>(std::begin(V::kEspPacket), std::end(V::kEspPacket)));
    ASSERT_EQ(mg::esp::decap_burst(*sa, 0, &m, 1), 1) << "drops " << sa->stats().total_drops();
    const auto got = mbuf_bytes(m);
    EXPECT_EQ(to_hex(got.data(), got.size()), to_hex(V::kSourcePacket, sizeof(V::kSourcePacket)));
    EXPECT_EQ(sa->replay().top(), V::seq);
    rte_pktmbuf_free(m);
  }
}

TEST(KnownAnswer, Rfc7634EncapMatchesTheAppendixLayout) {
  // Our IV is the sequence number, the appendix's is 0x1011..17, so the ciphertext differs; everything
  // else must match: outer addresses, protocol and length, SPI, sequence number, and (once opened with the
  // appendix key) the exact plaintext with padding 01 02, pad length 2, next header 4.
  MbufGuard guard;
  using V = v::Rfc7634EspExample;
  for (Engine e : {Engine::kIpsecMb, Engine::kSodium}) {
    SCOPED_TRACE(mg::crypto::to_string(e));
    std::string err;
    mg::esp::SaConfig cfg;
    std::string spec = "spi=0x01020304,cipher=chacha20-poly1305,src=203.0.113.153,dst=203.0.113.5,df=clear,key=" +
                       to_hex(V::kKeymat, sizeof(V::kKeymat)) + ",engine=" + mg::crypto::to_string(e);
    ASSERT_TRUE(mg::esp::parse_sa_spec(spec, &cfg, &err)) << err;
    auto sa = mg::esp::Sa::create(cfg, Direction::kOutbound, 1, &err);
    ASSERT_TRUE(sa) << err;
    sa->resume_after(V::seq - 1);
    rte_mbuf* m = make_mbuf(std::vector<uint8_t>(std::begin(V::kSourcePacket), std::end(V::kSourcePacket)));
    ASSERT_EQ(mg::esp::encap_burst(*sa, 0, &m, 1), 1);
    auto got = mbuf_bytes(m);
    ASSERT_EQ(got.size(), sizeof(V::kEspPacket));
    EXPECT_EQ(to_hex(&got[2], 2), to_hex(&V::kEspPacket[2], 2)) << "total length";
    EXPECT_EQ(got[9], V::kEspPacket[9]) << "protocol";
    EXPECT_EQ(to_hex(&got[12], 8), to_hex(&V::kEspPacket[12], 8)) << "addresses";
    EXPECT_EQ(to_hex(&got[20], 8), to_hex(&V::kEspPacket[20], 8)) << "SPI and sequence number";
    EXPECT_EQ(net::load_be64(&got[28]), V::seq) << "IV = sequence number";
    auto aead = mg::crypto::make_aead(Cipher::kChacha20Poly1305, e, keymat<V>(), &err);
    mg::crypto::AeadOp op{};
    op.data = &got[36];
    op.len = 88;
    op.icv = &got[36 + 88];
    op.aad = V::kAad;
    op.aad_len = 8;
    std::memcpy(op.iv, &got[28], 8);
    ASSERT_EQ(mg::crypto::open_burst(*aead, &op, 1), 1);
    EXPECT_EQ(to_hex(&got[36], 88), to_hex(V::kPlaintext, 88));
    rte_pktmbuf_free(m);
  }
}

TEST(KnownAnswer, McgrewGcmAead) {
  check_aead<v::Gcm128Case1Esn>(Cipher::kAesGcm128, Engine::kIpsecMb);
  check_aead<v::Gcm128Case2>(Cipher::kAesGcm128, Engine::kIpsecMb);
  check_aead<v::Gcm256Case3>(Cipher::kAesGcm256, Engine::kIpsecMb);
  check_aead<v::Gcm256Case9Esn>(Cipher::kAesGcm256, Engine::kIpsecMb);
  check_aead<v::Gcm128Case12>(Cipher::kAesGcm128, Engine::kIpsecMb);
}

template <class V>
void check_gcm_through_decap(Cipher c) {
  SCOPED_TRACE(V::spi);
  // The draft's packets are transport mode (next header 1): a tunnel-mode SA must verify the ICV, move the
  // window, and then refuse the next header, which shows the whole inbound path agrees with the vector.
  auto sa = inbound_sa<V>(c, Engine::kIpsecMb, false);
  ASSERT_TRUE(sa);
  rte_mbuf* m = make_mbuf(with_outer_v4<V>());
  EXPECT_EQ(mg::esp::decap_burst(*sa, 0, &m, 1), 0);
  EXPECT_EQ(drops(*sa, Drop::kInBadNextHeader), 1u);
  EXPECT_EQ(drops(*sa, Drop::kInAuth), 0u);
  EXPECT_EQ(sa->replay().top(), V::seq);
  rte_pktmbuf_free(m);
  // One flipped ciphertext bit: ICV failure, window unchanged.
  auto bad = with_outer_v4<V>();
  bad[20 + 16] ^= 0x04;
  auto sa2 = inbound_sa<V>(c, Engine::kIpsecMb, false);
  m = make_mbuf(bad);
  EXPECT_EQ(mg::esp::decap_burst(*sa2, 0, &m, 1), 0);
  EXPECT_EQ(drops(*sa2, Drop::kInAuth), 1u);
  EXPECT_EQ(sa2->replay().top(), 0u);
  rte_pktmbuf_free(m);
}

TEST(KnownAnswer, McgrewGcmThroughTheInboundPath) {
  MbufGuard guard;
  check_gcm_through_decap<v::Gcm128Case2>(Cipher::kAesGcm128);
  check_gcm_through_decap<v::Gcm256Case3>(Cipher::kAesGcm256);
  check_gcm_through_decap<v::Gcm128Case12>(Cipher::kAesGcm128);
}
