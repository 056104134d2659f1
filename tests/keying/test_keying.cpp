// lib/keying on its own: the validation of every field of every request, replies, and the socket server (peer
// check, stale socket replaced only when ours and dead, oversize datagrams refused, one reply per request).
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

#include "keying/keying.h"

namespace k = mg::keying;

namespace {

std::vector<uint8_t> msg(uint16_t type, const void* body, size_t n, uint16_t version = MG_KEYING_VERSION) {
  mg_keying_hdr h{MG_KEYING_MAGIC, version, type, 42, uint32_t(sizeof h + n)};
  std::vector<uint8_t> m(sizeof h + n);
  std::memcpy(m.data(), &h, sizeof h);
  if (n) std::memcpy(m.data() + sizeof h, body, n);
  return m;
}

mg_keying_sa good_sa() {
  mg_keying_sa s{};
  s.sel.family = 4;
  s.sel.local[0] = 192, s.sel.local[1] = 0, s.sel.local[2] = 2, s.sel.local[3] = 1;
  s.sel.remote[0] = 198, s.sel.remote[1] = 51, s.sel.remote[2] = 100, s.sel.remote[3] = 1;
  s.spi = 0x1234;
  s.dir = MG_KEY_DIR_OUT;
  s.cipher = MG_KEY_AES_GCM_128;
  s.keylen = 20;
  for (int i = 0; i < 20; ++i) s.key[i] = uint8_t(0xa0 + i);
  return s;
}

// validate() on an ADD_SA body: status and a reason naming the problem, never the key.
int32_t check_sa(const mg_keying_sa& s, std::string* why) {
  const auto m = msg(MG_KEY_ADD_SA, &s, sizeof s);
  k::Request r;
  int32_t st = -1;
  why->clear();
  const bool ok = k::validate(m.data(), m.size(), &r, &st, why);
  EXPECT_EQ(ok, st == MG_KEY_OK);
  EXPECT_EQ(r.seq, 42u);
  if (!ok) {
    EXPECT_FALSE(why->empty());
    EXPECT_EQ(why->find("a0a1a2a3"), std::string::npos);
    for (uint8_t b : r.sa.key) EXPECT_EQ(b, 0) << "a refused request keeps no key bytes";
  }
  return st;
}

}  // namespace

TEST(KeyingValidate, GoodAddSaAndEachFieldRefused) {
  std::string why;
  ASSERT_EQ(check_sa(good_sa(), &why), MG_KEY_OK) << why;
  struct Case {
    const char* what;
    void (*edit)(mg_keying_sa&);
    const char* says;
  } cases[] = {
      {"spi 0", [](mg_keying_sa& s) { s.spi = 0; }, "SPI 0"},
      {"direction", [](mg_keying_sa& s) { s.dir = 3; }, "direction"},
      {"cipher", [](mg_keying_sa& s) { s.cipher = 0; }, "cipher"},
      {"key length", [](mg_keying_sa& s) { s.keylen = 16; }, "needs 20 bytes"},
      {"key length 256", [](mg_keying_sa& s) { s.cipher = MG_KEY_AES_GCM_256; }, "needs 36 bytes"},
      {"bytes after key", [](mg_keying_sa& s) { s.key[30] = 1; }, "after the key"},
      {"esn", [](mg_keying_sa& s) { s.esn = 2; }, "esn"},
      {"encap", [](mg_keying_sa& s) { s.encap = 2; }, "encapsulation"},
      {"ports without encap", [](mg_keying_sa& s) { s.sport = 4500; }, "without UDP"},
      {"encap without ports", [](mg_keying_sa& s) { s.encap = 1; }, "both ports"},
      {"outbound window", [](mg_keying_sa& s) { s.replay_window = 1024; }, "no replay window"},
      {"window not power of 2", [](mg_keying_sa& s) { s.dir = MG_KEY_DIR_IN, s.replay_window = 1000; }, "power of two"},
      {"window too big", [](mg_keying_sa& s) { s.dir = MG_KEY_DIR_IN, s.replay_window = 131072; }, "power of two"},
      {"family", [](mg_keying_sa& s) { s.sel.family = 5; }, "family"},
      {"v4 tail", [](mg_keying_sa& s) { s.sel.local[9] = 1; }, "beyond the first 4"},
      {"no family, no if_id", [](mg_keying_sa& s) { s.sel.family = 0; }, "family"},
      {"padding", [](mg_keying_sa& s) { s.pad[1] = 1; }, "padding"},
      {"padding 2", [](mg_keying_sa& s) { s.pad2[0] = 1; }, "padding"},
      {"sel padding", [](mg_keying_sa& s) { s.sel.pad[0] = 1; }, "padding"},
      {"soft above hard", [](mg_keying_sa& s) { s.soft_bytes = 10, s.hard_bytes = 5; }, "soft lifetime"},
  };
  for (const Case& c : cases) {
    mg_keying_sa s = good_sa();
    c.edit(s);
    EXPECT_EQ(check_sa(s, &why), MG_KEY_E_MALFORMED) << c.what;
    EXPECT_NE(why.find(c.says), std::string::npos) << c.what << ": " << why;
  }
  // Accepted variants: inbound with a window, ChaCha20 36 bytes, UDP encapsulation with ports, if_id only.
  mg_keying_sa s = good_sa();
  s.dir = MG_KEY_DIR_IN, s.replay_window = 65536;
  EXPECT_EQ(check_sa(s, &why), MG_KEY_OK) << why;
  s = good_sa();
  s.cipher = MG_KEY_CHACHA20_POLY1305, s.keylen = 36;
  EXPECT_EQ(check_sa(s, &why), MG_KEY_OK) << why;
  s = good_sa();
  s.encap = 1, s.sport = 4500, s.dport = 4500;
  EXPECT_EQ(check_sa(s, &why), MG_KEY_OK) << why;
  s = good_sa();
  s.sel = mg_keying_sel{};
  s.sel.if_id = 7;
  EXPECT_EQ(check_sa(s, &why), MG_KEY_OK) << why;
}

TEST(KeyingValidate, HeaderAndLengths) {
  k::Request r;
  int32_t st = 0;
  std::string why;
  const mg_keying_sa s = good_sa();
  auto m = msg(MG_KEY_ADD_SA, &s, sizeof s);
  EXPECT_FALSE(k::validate(m.data(), 5, &r, &st, &why));  // shorter than a header
  EXPECT_EQ(st, MG_KEY_E_MALFORMED);
  auto bad = m;
  bad[0] ^= 1;
  EXPECT_FALSE(k::validate(bad.data(), bad.size(), &r, &st, &why));
  EXPECT_NE(why.find("magic"), std::string::npos);
  auto v = msg(MG_KEY_ADD_SA, &s, sizeof s, 2);
  EXPECT_FALSE(k::validate(v.data(), v.size(), &r, &st, &why));
  EXPECT_EQ(st, MG_KEY_E_VERSION);
  EXPECT_FALSE(k::validate(m.data(), m.size() - 1, &r, &st, &why));  // header length disagrees
  auto longer = msg(MG_KEY_ADD_SA, &s, sizeof s);
  longer.push_back(0);
  reinterpret_cast<mg_keying_hdr*>(longer.data())->len = uint32_t(longer.size());
  EXPECT_FALSE(k::validate(longer.data(), longer.size(), &r, &st, &why));
  EXPECT_NE(why.find("length"), std::string::npos);
  for (uint16_t type : {0, 7, 8, 0x81, 0xffff}) {
    auto t = msg(type, nullptr, 0);
    EXPECT_FALSE(k::validate(t.data(), t.size(), &r, &st, &why)) << type;
  }
  auto h = msg(MG_KEY_HELLO, nullptr, 0);
  EXPECT_TRUE(k::validate(h.data(), h.size(), &r, &st, &why)) << why;
  mg_keying_ref ref{0, MG_KEY_DIR_IN, {}};
  auto d = msg(MG_KEY_DEL_SA, &ref, sizeof ref);
  EXPECT_FALSE(k::validate(d.data(), d.size(), &r, &st, &why));
  ref.spi = 9;
  d = msg(MG_KEY_DEL_SA, &ref, sizeof ref);
  EXPECT_TRUE(k::validate(d.data(), d.size(), &r, &st, &why)) << why;
  mg_keying_update u{};
  u.spi = 9, u.dir = MG_KEY_DIR_OUT, u.family = 4, u.encap = 1, u.sport = 4500, u.dport = 4501;
  auto up = msg(MG_KEY_UPDATE_SA, &u, sizeof u);
  EXPECT_TRUE(k::validate(up.data(), up.size(), &r, &st, &why)) << why;
  u.family = 0;
  up = msg(MG_KEY_UPDATE_SA, &u, sizeof u);
  EXPECT_FALSE(k::validate(up.data(), up.size(), &r, &st, &why));
}

namespace {

int connect_to(const std::string& path) {
  const int fd = ::socket(AF_UNIX, SOCK_SEQPACKET, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

mg_keying_reply read_reply(int fd, k::Server& s, const k::Server::Handler& h, uint16_t* type) {
  uint8_t buf[1024];
  for (int i = 0; i < 200; ++i) {
    s.poll(h);
    const ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n > 0) {
      EXPECT_EQ(size_t(n), sizeof(mg_keying_hdr) + sizeof(mg_keying_reply));
      mg_keying_reply r{};
      std::memcpy(type, buf + 6, 2);  // the header type, after magic and version
      std::memcpy(&r, buf + sizeof(mg_keying_hdr), sizeof r);
      return r;
    }
    ::usleep(5000);
  }
  ADD_FAILURE() << "no reply";
  return {};
}

}  // namespace

TEST(KeyingServer, RepliesStaleSocketAndOversize) {
  char tmpl[] = "/tmp/mg-keying-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string path = std::string(tmpl) + "/sub/k.sock";
  k::Server s;
  std::string err;
  ASSERT_TRUE(s.open(path, &err)) << err;
  struct stat st;
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  int calls = 0;
  k::Server::Handler h = [&](const k::Request& r, const k::Server::Peer& p) {
    ++calls;
    EXPECT_EQ(p.uid, ::geteuid());
    return k::reply(MG_KEY_OK, r.type == MG_KEY_ADD_SA ? r.sa.spi : 0, "");
  };
  // A second server on the same live socket is refused.
  k::Server other;
  EXPECT_FALSE(other.open(path, &err));
  EXPECT_NE(err.find("listening"), std::string::npos) << err;
  const int fd = connect_to(path);
  ASSERT_GE(fd, 0);
  const mg_keying_sa sa = good_sa();
  auto m = msg(MG_KEY_ADD_SA, &sa, sizeof sa);
  ASSERT_EQ(::send(fd, m.data(), m.size(), 0), ssize_t(m.size()));
  uint16_t type = 0;
  mg_keying_reply r = read_reply(fd, s, h, &type);
  EXPECT_EQ(type, MG_KEY_ADD_SA | MG_KEY_REPLY);
  EXPECT_EQ(r.status, MG_KEY_OK);
  EXPECT_EQ(r.spi, 0x1234u);
  EXPECT_EQ(calls, 1);
  // Oversize: refused without the handler.
  std::vector<uint8_t> big(2000, 0x55);
  ASSERT_EQ(::send(fd, big.data(), big.size(), 0), ssize_t(big.size()));
  r = read_reply(fd, s, h, &type);
  EXPECT_EQ(r.status, MG_KEY_E_MALFORMED);
  EXPECT_NE(std::string(r.reason).find("longer than"), std::string::npos);
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(s.counters().invalid, 1u);
  // Unsolicited EXPIRE reaches the client.
  mg_keying_expire e{};
  e.spi = 0x77, e.hard = 1;
  s.broadcast_expire(e);
  uint8_t buf[256];
  ASSERT_EQ(::recv(fd, buf, sizeof buf, 0), ssize_t(sizeof(mg_keying_hdr) + sizeof e));
  ::close(fd);
  s.close();
  EXPECT_NE(::stat(path.c_str(), &st), 0) << "close() removes the socket file";
  // A stale socket of ours (nobody listening) is replaced; a regular file is not.
  {
    const int l = ::socket(AF_UNIX, SOCK_SEQPACKET, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
    ASSERT_EQ(::bind(l, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    ::close(l);  // the file stays, nothing answers
  }
  EXPECT_TRUE(s.open(path, &err)) << err;
  s.close();
  FILE* f = std::fopen(path.c_str(), "w");
  ASSERT_NE(f, nullptr);
  std::fclose(f);
  EXPECT_FALSE(s.open(path, &err));
  EXPECT_NE(err.find("not a socket"), std::string::npos) << err;
  ::unlink(path.c_str());
  ::rmdir((std::string(tmpl) + "/sub").c_str());
  ::rmdir(tmpl);
}
