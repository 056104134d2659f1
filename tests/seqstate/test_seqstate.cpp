// lib/seqstate: fingerprints, the state directory (durable marks, corrupt and torn files, locks) and the
// reservation policy. Each test uses its own temporary directory.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "seqstate/seqstate.h"

namespace fs = std::filesystem;
using mg::seqstate::Fingerprint;
using mg::seqstate::Policy;
using mg::seqstate::Reservation;
using mg::seqstate::Store;

namespace {

struct TempDir {
  std::string path;
  TempDir() {
    char t[] = "/tmp/mg-seqstate-XXXXXX";
    path = mkdtemp(t);
  }
  ~TempDir() { fs::remove_all(path); }
};

std::vector<uint8_t> key(uint8_t base, size_t n = 20) {
  std::vector<uint8_t> k(n);
  for (size_t i = 0; i < n; ++i) k[i] = uint8_t(base + i * 7);
  return k;
}

std::string slurp(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

void spit(const std::string& p, const std::string& text) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f << text;
}

std::unique_ptr<Store> open_ok(const std::string& dir) {
  std::string err;
  auto s = Store::open(dir, false, &err);
  EXPECT_NE(s, nullptr) << err;
  return s;
}

}  // namespace

TEST(Fingerprint, StableDistinctAndNotTheKey) {
  const auto a = key(1), b = key(2);
  const Fingerprint fa = mg::seqstate::fingerprint(a), fb = mg::seqstate::fingerprint(b);
  EXPECT_EQ(fa, mg::seqstate::fingerprint(a));
  EXPECT_NE(fa, fb);
  EXPECT_EQ(fa.hex().size(), 64u);
  std::string khex;
  for (uint8_t x : a) khex += "0123456789abcdef"[x >> 4], khex += "0123456789abcdef"[x & 15];
  EXPECT_EQ(fa.hex().find(khex.substr(0, 8)), std::string::npos) << "the fingerprint must not show the key";
  // The salt is part of the nonce: the same key with another salt is another (key, nonce) space.
  auto salted = a;
  salted.back() ^= 1;
  EXPECT_NE(mg::seqstate::fingerprint(salted), fa);
}

TEST(Store, NewKeyStartsAtZeroAndMarksSurviveReopen) {
  TempDir d;
  const Fingerprint fp = mg::seqstate::fingerprint(key(3));
  {
    auto s = open_ok(d.path);
    uint64_t high = 99;
    std::string err;
    ASSERT_TRUE(s->load(fp, &high, &err)) << err;
    EXPECT_EQ(high, 0u);
    ASSERT_TRUE(s->save(fp, 123456789012ull, &err)) << err;
    const std::string text = slurp(s->path(fp));
    EXPECT_NE(text.find("high 123456789012\n"), std::string::npos) << text;
    struct stat st {};
    ASSERT_EQ(stat(s->path(fp).c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);
  }
  auto s = open_ok(d.path);
  uint64_t high = 0;
  std::string err;
  ASSERT_TRUE(s->load(fp, &high, &err)) << err;
  EXPECT_EQ(high, 123456789012ull);
}

TEST(Store, MissingDirectoryRefusedUnlessCreateWithParent) {
  TempDir d;
  std::string err;
  const std::string sub = d.path + "/state";
  EXPECT_EQ(Store::open(sub, false, &err), nullptr);
  EXPECT_NE(err.find("does not exist"), std::string::npos) << err;
  EXPECT_EQ(Store::open(d.path + "/no/state", true, &err), nullptr) << "no parent: not created";
  EXPECT_NE(err.find("nor does its parent"), std::string::npos) << err;
  auto s = Store::open(sub, true, &err);
  ASSERT_NE(s, nullptr) << err;
  struct stat st {};
  ASSERT_EQ(stat(sub.c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  spit(d.path + "/file", "x");
  EXPECT_EQ(Store::open(d.path + "/file", false, &err), nullptr);
  EXPECT_NE(err.find("not a directory"), std::string::npos) << err;
  EXPECT_EQ(Store::open("", true, &err), nullptr);
}

// A crash between writing the temporary file and the rename leaves the old mark in force: the block in the
// temporary file was never handed out (save had not returned).
TEST(Store, TornTemporaryFileLeavesTheOldMark) {
  TempDir d;
  const Fingerprint fp = mg::seqstate::fingerprint(key(4));
  std::string err;
  {
    auto s = open_ok(d.path);
    uint64_t h;
    ASSERT_TRUE(s->load(fp, &h, &err));
    ASSERT_TRUE(s->save(fp, 65536, &err)) << err;
  }
  spit(d.path + "/" + fp.hex() + ".seq.tmp", "meshgate-seqstate 1\nkey " + fp.hex() + "\nhigh 13");
  auto s = open_ok(d.path);
  uint64_t h = 0;
  ASSERT_TRUE(s->load(fp, &h, &err)) << err;
  EXPECT_EQ(h, 65536u);
}

// A corrupt or torn state file is a clear error: the numbers used before are unknown, so nothing may start.
TEST(Store, CorruptFileIsAClearErrorNeverAFreshStart) {
  TempDir d;
  const Fingerprint fp = mg::seqstate::fingerprint(key(5)), other = mg::seqstate::fingerprint(key(6));
  std::string good;
  {
    auto s = open_ok(d.path);
    std::string err;
    uint64_t h;
    ASSERT_TRUE(s->load(fp, &h, &err));
    ASSERT_TRUE(s->save(fp, 700000, &err));
    ASSERT_TRUE(s->load(other, &h, &err));
    ASSERT_TRUE(s->save(other, 5, &err));
    good = slurp(s->path(fp));
  }
  const std::string path = d.path + "/" + fp.hex() + ".seq";
  std::string edited = good;
  edited.replace(edited.find("700000"), 6, "000001");  // someone "fixed" the number: the check no longer matches
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"empty", ""},
      {"torn", good.substr(0, good.size() / 2)},
      {"torn before the last newline", good.substr(0, good.size() - 1)},
      {"edited", edited},
      {"garbage", std::string(100, '\xff')},
      {"too long", good + std::string(1000, 'x')},
      {"another key's file", slurp(d.path + "/" + other.hex() + ".seq")},
  };
  for (const auto& [what, text] : cases) {
    spit(path, text);
    auto s = open_ok(d.path);
    uint64_t h = 42;
    std::string err;
    EXPECT_FALSE(s->load(fp, &h, &err)) << what;
    EXPECT_NE(err.find("corrupt"), std::string::npos) << what << ": " << err;
    EXPECT_NE(err.find("Replace the key"), std::string::npos) << what << ": " << err;
    // And a Reservation refuses to begin on it.
    Reservation r(*s, fp, false);
    uint64_t start = 0, limit = 0;
    EXPECT_FALSE(r.begin(&start, &limit, &err)) << what;
  }
  spit(path, good);
  auto s = open_ok(d.path);
  uint64_t h = 0;
  std::string err;
  ASSERT_TRUE(s->load(fp, &h, &err)) << err;
  EXPECT_EQ(h, 700000u);
}

// One sender per key: a second holder (another process, or another Store here) is refused while the first lives.
TEST(Store, OneHolderPerKey) {
  TempDir d;
  const Fingerprint fp = mg::seqstate::fingerprint(key(7));
  std::string err;
  uint64_t h;
  auto a = open_ok(d.path);
  ASSERT_TRUE(a->load(fp, &h, &err)) << err;
  ASSERT_TRUE(a->load(fp, &h, &err)) << "claiming again in the same Store: " << err;
  auto b = open_ok(d.path);
  EXPECT_FALSE(b->load(fp, &h, &err));
  EXPECT_NE(err.find("in use by another process"), std::string::npos) << err;
  EXPECT_TRUE(b->load(mg::seqstate::fingerprint(key(8)), &h, &err)) << "other keys are free: " << err;
  a.reset();
  EXPECT_TRUE(b->load(fp, &h, &err)) << "released with its holder: " << err;
}

TEST(Policy, BlockFollowsTheRateWithinBounds) {
  const Policy p;
  EXPECT_EQ(mg::seqstate::block_size(p, 0, false), 65536u);
  EXPECT_EQ(mg::seqstate::block_size(p, 100000, false), 1000000u);       // 10 s of traffic
  EXPECT_EQ(mg::seqstate::block_size(p, 1e7, false), 4u << 20);          // capped without ESN
  EXPECT_EQ(mg::seqstate::block_size(p, 1e7, true), 100000000u);         // 10 s with ESN
  EXPECT_EQ(mg::seqstate::block_size(p, 1e12, true), 1ull << 32);
}

// Startup, extension while running, and the next run: never below a number that may have been used.
TEST(Reservation, BeginsAfterTheMarkAndExtendsAheadDurably) {
  TempDir d;
  const Fingerprint fp = mg::seqstate::fingerprint(key(9));
  uint64_t limit1 = 0;
  {
    auto s = open_ok(d.path);
    Reservation r(*s, fp, false);
    uint64_t start = 1, limit = 0;
    std::string err;
    ASSERT_TRUE(r.begin(&start, &limit, &err)) << err;
    EXPECT_EQ(start, 0u) << "a key seen for the first time starts at 1 (after 0)";
    EXPECT_EQ(limit, 65536u);
    EXPECT_NE(slurp(s->path(fp)).find("high 65536\n"), std::string::npos) << "durable before use";
    uint64_t nl = 0;
    EXPECT_EQ(r.poll(1000, 0.0, &nl, &err), Reservation::Poll::kNothing);
    EXPECT_EQ(r.poll(30000, 5.0, &nl, &err), Reservation::Poll::kNothing) << "more than half a block left";
    ASSERT_EQ(r.poll(40000, 5.2, &nl, &err), Reservation::Poll::kExtended) << err;
    EXPECT_GT(nl, 65536u);
    EXPECT_GE(nl, 40000u + 65536u);
    EXPECT_NE(slurp(s->path(fp)).find("high " + std::to_string(nl) + "\n"), std::string::npos);
    // Workers stuck at the limit (control was late): the next block starts from there.
    uint64_t nl2 = 0;
    ASSERT_EQ(r.poll(nl, 5.4, &nl2, &err), Reservation::Poll::kExtended) << err;
    EXPECT_GT(nl2, nl);
    limit1 = nl2;
  }
  // The next run (or a crash and a restart) continues after the last durable limit.
  auto s = open_ok(d.path);
  Reservation r(*s, fp, false);
  uint64_t start = 0, limit = 0;
  std::string err;
  ASSERT_TRUE(r.begin(&start, &limit, &err)) << err;
  EXPECT_EQ(start, limit1);
  EXPECT_EQ(limit, limit1 + 65536);
}

// Workers that reached the limit (control was late, the rate not known yet) get twice the last block per
// extension, so a fast SA at startup waits for a few writes at most.
TEST(Reservation, AtTheLimitTheBlockDoubles) {
  TempDir d;
  auto s = open_ok(d.path);
  Reservation r(*s, mg::seqstate::fingerprint(key(13)), true);
  uint64_t start = 0, limit = 0, nl = 0;
  std::string err;
  ASSERT_TRUE(r.begin(&start, &limit, &err)) << err;
  ASSERT_EQ(r.poll(limit, 0.0, &nl, &err), Reservation::Poll::kExtended) << err;
  EXPECT_EQ(nl, limit + 2 * 65536);
  uint64_t nl2 = 0;
  ASSERT_EQ(r.poll(nl, 0.001, &nl2, &err), Reservation::Poll::kExtended) << err;
  EXPECT_EQ(nl2, nl + 4 * 65536);
  // Without ESN the doubling stops at the 32-bit cap.
  Reservation n(*s, mg::seqstate::fingerprint(key(14)), false);
  ASSERT_TRUE(n.begin(&start, &limit, &err)) << err;
  uint64_t at = limit;
  for (int i = 0; i < 12; ++i) {
    ASSERT_EQ(n.poll(at, 0.0005 * i, &nl, &err), Reservation::Poll::kExtended) << err;
    EXPECT_LE(nl - at, 4u << 20);
    at = nl;
  }
  EXPECT_EQ(n.poll(at, 0.007, &nl, &err), Reservation::Poll::kExtended);
  EXPECT_EQ(nl - at, 4u << 20) << "capped";
}

TEST(Reservation, StopsAtTheEndOfTheSpace) {
  TempDir d;
  const Fingerprint fp = mg::seqstate::fingerprint(key(10));
  std::string err;
  {
    auto s = open_ok(d.path);
    uint64_t h;
    ASSERT_TRUE(s->load(fp, &h, &err));
    ASSERT_TRUE(s->save(fp, 0xffffffffull - 100, &err));
  }
  {
    auto s = open_ok(d.path);
    Reservation r(*s, fp, false);
    uint64_t start = 0, limit = 0;
    ASSERT_TRUE(r.begin(&start, &limit, &err)) << err;
    EXPECT_EQ(start, 0xffffffffull - 100);
    EXPECT_EQ(limit, 0xffffffffull) << "saturates at 2^32 - 1 without ESN";
    uint64_t nl = 0;
    EXPECT_EQ(r.poll(0xffffffffull, 1.0, &nl, &err), Reservation::Poll::kNothing) << "nothing beyond the end";
  }
  auto s = open_ok(d.path);
  Reservation r(*s, fp, false);
  uint64_t start = 0, limit = 0;
  ASSERT_TRUE(r.begin(&start, &limit, &err)) << err;
  EXPECT_EQ(start, 0xffffffffull);
  EXPECT_EQ(limit, start) << "used up: nothing more may be sent";
  // With ESN the same key has room up to 2^64 - 1, and stops there too.
  Reservation e(*s, mg::seqstate::fingerprint(key(11)), true);
  ASSERT_TRUE(s->save(mg::seqstate::fingerprint(key(11)), UINT64_MAX - 5, &err));
  ASSERT_TRUE(e.begin(&start, &limit, &err)) << err;
  EXPECT_EQ(start, UINT64_MAX - 5);
  EXPECT_EQ(limit, UINT64_MAX);
}

TEST(Reservation, UnwritableDirectoryIsAnError) {
  TempDir d;
  auto s = open_ok(d.path);
  const Fingerprint fp = mg::seqstate::fingerprint(key(12));
  Reservation r(*s, fp, false);
  uint64_t start = 0, limit = 0;
  std::string err;
  ASSERT_TRUE(r.begin(&start, &limit, &err)) << err;
  // The mark can no longer be replaced (a directory in the way of the rename, which even root cannot pass).
  fs::remove(s->path(fp));
  fs::create_directory(s->path(fp));
  fs::create_directory(s->path(fp) + "/x");
  uint64_t nl = 0;
  EXPECT_EQ(r.poll(60000, 1.0, &nl, &err), Reservation::Poll::kError);
  EXPECT_NE(err.find("cannot replace"), std::string::npos) << err;
  EXPECT_EQ(r.limit(), 65536u) << "the limit does not move without a durable write";
}

// plan() and commit(): the caller writes on another thread (meshgate's main must not wait for an fsync). plan()
// writes nothing; the limit moves only at commit(), after the caller's durable save; until then the extension
// stays due.
TEST(Reservation, PlanWritesNothingCommitRaisesTheLimit) {
  TempDir d;
  const Fingerprint fp = mg::seqstate::fingerprint(key(11));
  auto s = open_ok(d.path);
  Reservation r(*s, fp, false);
  uint64_t start = 1, limit = 0;
  std::string err;
  ASSERT_TRUE(r.begin(&start, &limit, &err)) << err;
  ASSERT_EQ(limit, 65536u);
  uint64_t next = 0, again = 0;
  EXPECT_FALSE(r.plan(1000, 0.0, &next));
  ASSERT_TRUE(r.plan(40000, 5.2, &next));
  EXPECT_GE(next, 40000u + 65536u);
  EXPECT_EQ(r.limit(), 65536u) << "planned, not yet durable";
  EXPECT_NE(slurp(s->path(fp)).find("high 65536\n"), std::string::npos) << "plan() wrote nothing";
  ASSERT_TRUE(r.plan(40000, 5.3, &again)) << "still due: nothing was committed";
  ASSERT_TRUE(s->save(fp, next, &err)) << err;
  r.commit(next);
  EXPECT_EQ(r.limit(), next);
  r.commit(next - 1);  // an older result never lowers it
  EXPECT_EQ(r.limit(), next);
  EXPECT_FALSE(r.plan(40001, 5.4, &again)) << "more than half a block left again";
}
