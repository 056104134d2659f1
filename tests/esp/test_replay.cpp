// Anti-replay window and sequence numbers: the window on its own, then through real ESP packets.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <set>
#include <thread>
#include <vector>

#include "esp_fixture.h"

using mg::esp::Drop;
using mg::esp::ReplayWindow;
using R = ReplayWindow::Result;
using namespace mg::test;

class WindowSizes : public ::testing::TestWithParam<uint32_t> {};

TEST_P(WindowSizes, TableOnTheWindowAlone) {
  const uint64_t w = GetParam();
  ReplayWindow rw{uint32_t(w)};
  EXPECT_EQ(rw.check_and_update(2 * w), R::kOk);
  EXPECT_EQ(rw.check_and_update(w + 1), R::kOk);      // oldest seq still inside (top - W, top]
  EXPECT_EQ(rw.check_and_update(w), R::kTooOld);      // exactly W behind the top: outside
  EXPECT_EQ(rw.check_and_update(w + w / 2), R::kOk);
  EXPECT_EQ(rw.check_and_update(w + w / 2), R::kReplay);
  EXPECT_EQ(rw.top(), 2 * w);
}

TEST_P(WindowSizes, SlidingFarClearsOldBits) {
  const uint64_t w = GetParam();
  ReplayWindow rw{uint32_t(w)};
  for (uint64_t s = 1; s <= w; ++s) ASSERT_EQ(rw.check_and_update(s), R::kOk);
  // Jump by more than the ring: every bit of the new window must be fresh.
  const uint64_t top = 10 * w + 5;
  ASSERT_EQ(rw.check_and_update(top), R::kOk);
  for (uint64_t s = top - w + 1; s < top; ++s) ASSERT_EQ(rw.check(s), R::kOk) << s;
  EXPECT_EQ(rw.check(top), R::kReplay);
  EXPECT_EQ(rw.check(top - w), R::kTooOld);
}

TEST_P(WindowSizes, TableThroughEspPackets) {
  MbufGuard guard;
  const uint32_t w = GetParam();
  SaParams p;
  p.window = w;
  auto in = make_sa(p, mg::esp::Direction::kInbound);
  ASSERT_TRUE(in);
  const uint64_t seqs[] = {2ull * w, w + 1ull, w, w + w / 2ull, w + w / 2ull};
  const bool want[] = {true, true, false, true, false};
  const Drop why[] = {Drop::kCount, Drop::kCount, Drop::kInTooOld, Drop::kCount, Drop::kInReplay};
  for (int i = 0; i < 5; ++i) {
    rte_mbuf* m = make_mbuf(esp_packet(p, seqs[i], udp_packet(4, 100, uint32_t(i))));
    ASSERT_NE(m, nullptr);
    const auto before = in->stats();
    const uint16_t k = mg::esp::decap_burst(*in, 1, &m, 1);
    EXPECT_EQ(k, want[i] ? 1 : 0) << "seq " << seqs[i];
    if (!want[i]) {
      EXPECT_EQ(in->stats().drops[size_t(why[i])], before.drops[size_t(why[i])] + 1);
    }
    rte_pktmbuf_free(m);
  }
  EXPECT_EQ(in->stats().packets, 3u);
}

INSTANTIATE_TEST_SUITE_P(Replay, WindowSizes, ::testing::Values(64u, 1024u, 4096u));

TEST(Replay, EightCopiesOfOneSequenceNumberOnePasses) {
  MbufGuard guard;
  SaParams p;
  auto in = make_sa(p, mg::esp::Direction::kInbound);
  const auto pkt = esp_packet(p, 42, udp_packet(4, 64));
  rte_mbuf* m[8];
  for (auto& x : m) x = make_mbuf(pkt);
  EXPECT_EQ(mg::esp::decap_burst(*in, 0, m, 8), 1);
  EXPECT_EQ(drops(*in, Drop::kInReplay), 7u);
  free_all(m, 8);
}

TEST(Replay, ReplayOutOfWindowAndValidInOneBurst) {
  MbufGuard guard;
  SaParams p;
  p.window = 64;
  auto in = make_sa(p, mg::esp::Direction::kInbound);
  rte_mbuf* first = make_mbuf(esp_packet(p, 200, udp_packet(4, 10, 1)));
  ASSERT_EQ(mg::esp::decap_burst(*in, 0, &first, 1), 1);
  rte_pktmbuf_free(first);
  const auto valid = udp_packet(4, 10, 3);
  rte_mbuf* m[3] = {make_mbuf(esp_packet(p, 200, udp_packet(4, 10, 1))),   // replay
                    make_mbuf(esp_packet(p, 100, udp_packet(4, 10, 2))),   // 100 behind a window of 64
                    make_mbuf(esp_packet(p, 201, valid))};
  rte_mbuf* valid_mbuf = m[2];
  EXPECT_EQ(mg::esp::decap_burst(*in, 0, m, 3), 1);
  EXPECT_EQ(m[0], valid_mbuf) << "the survivor comes first";
  EXPECT_EQ(mbuf_bytes(m[0]), valid);
  EXPECT_EQ(drops(*in, Drop::kInReplay), 1u);
  EXPECT_EQ(drops(*in, Drop::kInTooOld), 1u);
  free_all(m, 3);
}

TEST(Replay, BadIcvRightOfWindowLeavesWindowUnchanged) {
  MbufGuard guard;
  SaParams p;
  auto in = make_sa(p, mg::esp::Direction::kInbound);
  rte_mbuf* m = make_mbuf(esp_packet(p, 10, udp_packet(4, 10)));
  ASSERT_EQ(mg::esp::decap_burst(*in, 0, &m, 1), 1);
  rte_pktmbuf_free(m);
  auto forged = esp_packet(p, 5000, udp_packet(4, 10));
  forged.back() ^= 0x01;  // last ICV byte
  m = make_mbuf(forged);
  EXPECT_EQ(mg::esp::decap_burst(*in, 0, &m, 1), 0);
  rte_pktmbuf_free(m);
  EXPECT_EQ(drops(*in, Drop::kInAuth), 1u);
  EXPECT_EQ(in->replay().top(), 10u);
  // Seq 11 is still acceptable: the forged 5000 did not move the window.
  m = make_mbuf(esp_packet(p, 11, udp_packet(4, 10)));
  EXPECT_EQ(mg::esp::decap_burst(*in, 0, &m, 1), 1);
  rte_pktmbuf_free(m);
}

TEST(Replay, InboundSequenceZeroRejected) {
  MbufGuard guard;
  SaParams p;
  auto in = make_sa(p, mg::esp::Direction::kInbound);
  // Seq 0 cannot come out of our encap: make seq 1 and rewrite the field (the ICV then fails too, but
  // the zero check comes first and nothing reaches the crypto).
  auto pkt = esp_packet(p, 1, udp_packet(4, 10));
  pkt[20 + 4] = pkt[20 + 5] = pkt[20 + 6] = pkt[20 + 7] = 0;
  rte_mbuf* m = make_mbuf(pkt);
  EXPECT_EQ(mg::esp::decap_burst(*in, 0, &m, 1), 0);
  EXPECT_EQ(drops(*in, Drop::kInSeqZero), 1u);
  EXPECT_EQ(drops(*in, Drop::kInAuth), 0u);
  rte_pktmbuf_free(m);
}

TEST(Replay, EsnInferenceBothSidesOf2To32) {
  MbufGuard guard;
  SaParams p;
  p.esn = true;
  p.window = 64;
  auto in = make_sa(p, mg::esp::Direction::kInbound);
  const uint64_t b = 1ull << 32;
  // Climb to just below 2^32 (a receiver infers the high half only relative to its window, so it must
  // see the climb), cross it, accept a late packet from below, refuse its replay. b - 70 is inferred as
  // 2b - 70 (ahead), so the high half in the AAD is wrong and the ICV fails: an RFC 4303 A2 receiver
  // cannot tell it from a forgery.
  const uint64_t seqs[] = {1, 1ull << 31, b - 10, b - 1, b, b + 5, b - 3, b - 3, b - 70, b + 1000};
  const bool want[] = {true, true, true, true, true, true, true, false, false, true};
  for (size_t i = 0; i < std::size(seqs); ++i) {
    rte_mbuf* m = make_mbuf(esp_packet(p, seqs[i], udp_packet(6, 20, uint32_t(i))));
    EXPECT_EQ(mg::esp::decap_burst(*in, 0, &m, 1), want[i] ? 1 : 0) << "seq " << seqs[i];
    rte_pktmbuf_free(m);
  }
  EXPECT_EQ(drops(*in, Drop::kInReplay), 1u);
  EXPECT_EQ(drops(*in, Drop::kInAuth), 1u);
  EXPECT_EQ(in->replay().top(), b + 1000);
}

TEST(Replay, EsnInferenceTable) {
  ReplayWindow rw(64);
  uint64_t s = 0;
  ASSERT_TRUE(rw.infer_esn(5, &s));
  EXPECT_EQ(s, 5u);
  EXPECT_FALSE(rw.infer_esn(0xfffffff0u, &s)) << "before sequence number 1";
  ASSERT_EQ(rw.check_and_update((1ull << 32) + 10), R::kOk);  // window straddles 2^32 (case B)
  ASSERT_TRUE(rw.infer_esn(0xfffffff0u, &s));
  EXPECT_EQ(s, 0xfffffff0ull) << "low half behind the boundary belongs to the previous span";
  ASSERT_TRUE(rw.infer_esn(20, &s));
  EXPECT_EQ(s, (1ull << 32) + 20);
  ReplayWindow a(64);
  ASSERT_EQ(a.check_and_update(0x1ffffff00ull), R::kOk);  // case A
  ASSERT_TRUE(a.infer_esn(5, &s));
  EXPECT_EQ(s, 0x200000005ull) << "a small low half ahead of a high top wraps into the next span";
  ASSERT_TRUE(a.infer_esn(0xffffff10u, &s));
  EXPECT_EQ(s, 0x1ffffff10ull);
}

// The window against the plain RFC 4303 3.4.3 model (the highest accepted number and the set of accepted numbers):
// a random walk of in-order runs, reordering, duplicates and jumps beyond the ring, for every result of check()
// and check_and_update(). High numbers (ESN) included.
class WindowModel : public ::testing::TestWithParam<uint32_t> {};

TEST_P(WindowModel, SameVerdictsAsTheRfcModel) {
  const uint64_t w = GetParam();
  for (const uint64_t start : {uint64_t(0), uint64_t((1ull << 32) - 5000), uint64_t(1) << 45}) {
    ReplayWindow rw{uint32_t(w)};
    std::set<uint64_t> accepted;
    uint64_t top = 0;
    auto model = [&](uint64_t s) {
      if (s == 0) return R::kZero;
      if (s <= top && top - s >= w) return R::kTooOld;
      return accepted.count(s) ? R::kReplay : R::kOk;
    };
    std::mt19937_64 rng(w + start);
    uint64_t cur = start;
    for (int i = 0; i < 200000; ++i) {
      const uint64_t r = rng() % 100;
      uint64_t s;
      if (r < 60) s = ++cur;                                  // in order
      else if (r < 85) s = cur - std::min(cur, rng() % (2 * w));  // late, duplicate or too old
      else if (r < 95) s = cur + rng() % (w / 2);             // a little ahead
      else s = cur += w + rng() % (40 * w);                   // a jump, often beyond the whole ring
      const R want = model(s);
      ASSERT_EQ(rw.check(s), want) << "check " << s << " top " << top << " (" << i << ") start " << start;
      ASSERT_EQ(rw.check_and_update(s), want) << "commit " << s << " top " << top << " (" << i << ")";
      if (want == R::kOk) {
        accepted.insert(s);
        top = std::max(top, s);
      }
      ASSERT_EQ(rw.top(), top);
      if (accepted.size() > 4 * w) accepted.erase(accepted.begin(), accepted.lower_bound(top - std::min(top, w)));
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Replay, WindowModel, ::testing::Values(64u, 1024u, 65536u));

TEST(Replay, NearTheEndOfTheSequenceSpace) {
  // top - W must not wrap: a number just below a top near 2^64 is inside the window, not too old.
  ReplayWindow rw(64);
  const uint64_t m = ~uint64_t(0);
  ASSERT_EQ(rw.check_and_update(m - 10), R::kOk);
  EXPECT_EQ(rw.check(m - 20), R::kOk);
  EXPECT_EQ(rw.check_and_update(m - 20), R::kOk);
  EXPECT_EQ(rw.check_and_update(m - 20), R::kReplay);
  EXPECT_EQ(rw.check(m - 74), R::kTooOld);
  EXPECT_EQ(rw.check_and_update(m), R::kOk);
  EXPECT_EQ(rw.check(m), R::kReplay);
}

TEST(Replay, AdoptedWindowRefusesWhatTheOldSaAccepted) {
  MbufGuard guard;
  SaParams p;
  p.window = 64;
  auto old_sa = make_sa(p, mg::esp::Direction::kInbound);
  for (uint64_t s : {5, 7, 100}) {
    rte_mbuf* m = make_mbuf(esp_packet(p, s, udp_packet(4, 10, uint32_t(s))));
    ASSERT_EQ(mg::esp::decap_burst(*old_sa, 0, &m, 1), 1);
    rte_pktmbuf_free(m);
  }
  auto fresh = make_sa(p, mg::esp::Direction::kInbound);
  ASSERT_TRUE(fresh->adopt_replay(*old_sa));
  EXPECT_EQ(fresh->replay().top(), 100u);
  const uint64_t seqs[] = {100, 5, 99, 101};
  const bool want[] = {false, false, true, true};  // 100: replay; 5: too old; 99 and 101 are new
  for (size_t i = 0; i < std::size(seqs); ++i) {
    rte_mbuf* m = make_mbuf(esp_packet(p, seqs[i], udp_packet(4, 10, uint32_t(seqs[i]))));
    EXPECT_EQ(mg::esp::decap_burst(*fresh, 0, &m, 1), want[i] ? 1 : 0) << "seq " << seqs[i];
    rte_pktmbuf_free(m);
  }
  EXPECT_EQ(drops(*fresh, Drop::kInReplay), 1u);
  EXPECT_EQ(drops(*fresh, Drop::kInTooOld), 1u);
  p.window = 128;
  auto other = make_sa(p, mg::esp::Direction::kInbound);
  EXPECT_FALSE(other->adopt_replay(*old_sa)) << "windows of different sizes";
}

TEST(Sequence, StartsAtOneAndIvIsTheSequenceNumber) {
  MbufGuard guard;
  SaParams p;
  auto out = make_sa(p, mg::esp::Direction::kOutbound);
  rte_mbuf* m[3];
  for (auto& x : m) x = make_mbuf(udp_packet(4, 30));
  ASSERT_EQ(mg::esp::encap_burst(*out, 0, m, 3), 3);
  for (int i = 0; i < 3; ++i) {
    const auto b = mbuf_bytes(m[i]);
    EXPECT_EQ(mg::net::load_be32(&b[24]), uint32_t(i + 1));
    EXPECT_EQ(mg::net::load_be32(&b[28]), 0u);
    EXPECT_EQ(mg::net::load_be32(&b[32]), uint32_t(i + 1));
  }
  EXPECT_EQ(out->last_seq(), 3u);
  free_all(m, 3);
}

TEST(Sequence, NonEsnWrapDropsAndAsksForRekey) {
  MbufGuard guard;
  SaParams p;
  auto out = make_sa(p, mg::esp::Direction::kOutbound);
  out->resume_after(0xfffffffeull);
  rte_mbuf* m[3];
  for (auto& x : m) x = make_mbuf(udp_packet(4, 30));
  EXPECT_FALSE(out->needs_rekey());
  EXPECT_EQ(mg::esp::encap_burst(*out, 0, m, 3), 1);  // 0xffffffff goes; the next two would cycle
  EXPECT_EQ(mg::net::load_be32(&mbuf_bytes(m[0])[24]), 0xffffffffu);
  EXPECT_EQ(drops(*out, Drop::kOutSeqOverflow), 2u);
  EXPECT_TRUE(out->needs_rekey());
  free_all(m, 3);
}

TEST(Sequence, EsnCarriesPast2To32) {
  MbufGuard guard;
  SaParams p;
  p.esn = true;
  auto out = make_sa(p, mg::esp::Direction::kOutbound);
  out->resume_after(0xffffffffull);
  rte_mbuf* m = make_mbuf(udp_packet(4, 30));
  ASSERT_EQ(mg::esp::encap_burst(*out, 0, &m, 1), 1);
  const auto b = mbuf_bytes(m);
  EXPECT_EQ(mg::net::load_be32(&b[24]), 0u) << "low 32 bits on the wire";
  EXPECT_EQ(mg::net::load_be32(&b[28]), 1u) << "IV = full 64-bit number";
  EXPECT_FALSE(out->needs_rekey());
  rte_pktmbuf_free(m);
}

// Issue 15, defect 3: the 64-bit counter used to wrap to 0 (`meshgate-esp --start-seq 18446744073709551615`
// sent that number, then 0, 1, ...): IV reuse. 2^64 - 1 is the last number sent; then the SA asks for a rekey.
TEST(Sequence, EsnStopsAtTheLastNumberAndAsksForRekey) {
  MbufGuard guard;
  SaParams p;
  p.esn = true;
  auto out = make_sa(p, mg::esp::Direction::kOutbound);
  out->resume_after(UINT64_MAX - 2);
  rte_mbuf* m[4];
  for (auto& x : m) x = make_mbuf(udp_packet(4, 30));
  ASSERT_EQ(mg::esp::encap_burst(*out, 0, m, 4), 2);
  EXPECT_EQ(mg::net::load_be64(&mbuf_bytes(m[0])[28]), UINT64_MAX - 1) << "IV = full 64-bit number";
  EXPECT_EQ(mg::net::load_be64(&mbuf_bytes(m[1])[28]), UINT64_MAX);
  EXPECT_EQ(drops(*out, Drop::kOutSeqOverflow), 2u);
  EXPECT_TRUE(out->needs_rekey());
  EXPECT_EQ(out->last_seq(), UINT64_MAX) << "the counter must not wrap";
  free_all(m, 4);
  // Still nothing after it, however many bursts come.
  for (auto& x : m) x = make_mbuf(udp_packet(4, 30));
  EXPECT_EQ(mg::esp::encap_burst(*out, 1, m, 4), 0);
  EXPECT_EQ(drops(*out, Drop::kOutSeqOverflow), 6u);
  EXPECT_EQ(out->last_seq(), UINT64_MAX);
  free_all(m, 4);
}

TEST(Sequence, EsnLastNumberFromTheStart) {
  MbufGuard guard;
  SaParams p;
  p.esn = true;
  auto out = make_sa(p, mg::esp::Direction::kOutbound);
  out->resume_after(UINT64_MAX);  // everything used: nothing may be sent
  rte_mbuf* m = make_mbuf(udp_packet(4, 30));
  EXPECT_EQ(mg::esp::encap_burst(*out, 0, &m, 1), 0);
  EXPECT_EQ(drops(*out, Drop::kOutSeqOverflow), 1u);
  EXPECT_TRUE(out->needs_rekey());
  rte_pktmbuf_free(m);
}

// A hard packet lifetime from the keying daemon (issue 11): exactly `n` packets, then the SA stops and asks for a
// rekey, like at the end of its number space; the end never goes up again.
TEST(Sequence, HardLifetimeEndsTheSaExactly) {
  MbufGuard guard;
  SaParams p;
  auto out = make_sa(p, mg::esp::Direction::kOutbound);
  out->set_seq_end(5);
  out->set_seq_end(1000);  // ignored: an end only comes down
  EXPECT_EQ(out->seq_end(), 5u);
  rte_mbuf* m[4];
  for (auto& x : m) x = make_mbuf(udp_packet(4, 30));
  ASSERT_EQ(mg::esp::encap_burst(*out, 0, m, 4), 4);
  EXPECT_FALSE(out->needs_rekey());
  free_all(m, 4);
  for (auto& x : m) x = make_mbuf(udp_packet(4, 30));
  ASSERT_EQ(mg::esp::encap_burst(*out, 1, m, 4), 1);  // number 5 goes, the other three would pass the end
  EXPECT_EQ(mg::net::load_be32(&mbuf_bytes(m[0])[24]), 5u);
  EXPECT_EQ(drops(*out, Drop::kOutSeqOverflow), 3u);
  EXPECT_TRUE(out->needs_rekey());
  EXPECT_EQ(out->last_seq(), 5u);
  free_all(m, 4);
}

// Numbers past the durably reserved limit are held back (counted, no rekey) until control raises it.
TEST(Sequence, LimitHoldsBackUnreservedNumbers) {
  MbufGuard guard;
  SaParams p;
  auto out = make_sa(p, mg::esp::Direction::kOutbound);
  out->set_seq_limit(5);
  rte_mbuf* m[8];
  for (auto& x : m) x = make_mbuf(udp_packet(4, 30));
  ASSERT_EQ(mg::esp::encap_burst(*out, 0, m, 8), 5);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(mg::net::load_be32(&mbuf_bytes(m[i])[24]), uint32_t(i + 1));
  EXPECT_EQ(drops(*out, Drop::kOutSeqUnreserved), 3u);
  EXPECT_EQ(drops(*out, Drop::kOutSeqOverflow), 0u);
  EXPECT_FALSE(out->needs_rekey());
  EXPECT_EQ(out->last_seq(), 5u);
  free_all(m, 8);
  out->set_seq_limit(7);
  for (auto& x : m) x = make_mbuf(udp_packet(4, 30));
  ASSERT_EQ(mg::esp::encap_burst(*out, 0, m, 8), 2);
  EXPECT_EQ(mg::net::load_be32(&mbuf_bytes(m[0])[24]), 6u) << "continues right after the old limit";
  EXPECT_EQ(mg::net::load_be32(&mbuf_bytes(m[1])[24]), 7u);
  EXPECT_EQ(drops(*out, Drop::kOutSeqUnreserved), 9u);
  free_all(m, 8);
}

// Workers share an SA: under contention the reservation neither repeats a number nor passes the limit.
TEST(Sequence, ConcurrentWorkersStopAtTheLimit) {
  SaParams p;
  auto out = make_sa(p, mg::esp::Direction::kOutbound, 4);
  constexpr uint64_t kLimit = 3000;
  out->set_seq_limit(kLimit);
  std::vector<std::vector<uint32_t>> seen(4);
  std::vector<std::thread> th;
  for (uint16_t w = 0; w < 4; ++w) {
    th.emplace_back([&, w] {
      for (int round = 0; round < 40; ++round) {
        rte_mbuf* m[32];
        uint16_t n = 0;
        for (auto& x : m) {
          x = make_mbuf(udp_packet(4, 30));
          if (x == nullptr) break;
          ++n;
        }
        const uint16_t k = mg::esp::encap_burst(*out, w, m, n);
        for (uint16_t i = 0; i < k; ++i) seen[w].push_back(mg::net::load_be32(&mbuf_bytes(m[i])[24]));
        free_all(m, n);
      }
    });
  }
  for (auto& t : th) t.join();
  std::vector<uint32_t> all;
  for (auto& v : seen) all.insert(all.end(), v.begin(), v.end());
  std::sort(all.begin(), all.end());
  ASSERT_EQ(all.size(), kLimit) << "4 x 40 x 32 offered, exactly the reserved numbers sent";
  for (uint64_t i = 0; i < kLimit; ++i) ASSERT_EQ(all[i], i + 1);
  const auto st = out->stats();
  EXPECT_EQ(st.drops[size_t(Drop::kOutSeqUnreserved)], 4u * 40 * 32 - kLimit);
}
