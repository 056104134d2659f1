// The anti-replay window with several writers: 2 and 4 threads hammer one window (and one inbound SA through
// decap_burst) with every sequence number, duplicates, local reordering and tampered packets that are checked but
// never committed. Exactly-once is asserted by counts, never by timing.
//
// Why the outcome is exact whatever the scheduling: every thread sees every sequence number, reordered only within
// blocks of kShuffle (< window / 2). A thread that commits s' >= s + W has already handled s, so the first attempt
// at any s, in any thread, finds s inside the window: it is accepted there, and every later copy is a replay or
// too old. The window alone may refuse nothing else and accept nothing twice.
//
// Also built with -fsanitize=thread by scripts/tsan.sh.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <string>
#include <unordered_map>
#include <random>
#include <thread>
#include <vector>

#include "esp_fixture.h"

using mg::esp::Drop;
using mg::esp::ReplayWindow;
using R = ReplayWindow::Result;
using namespace mg::test;

namespace {

constexpr uint32_t kShuffle = 64;  // reordering span within one thread's stream

enum class Kind : uint8_t { kGood, kTampered };
struct Op {
  uint64_t seq;
  Kind kind;
};

// One thread's stream: first..first+n-1, shuffled within blocks of kShuffle, about 1/8 of them again within the
// same block (duplicates), and tampered packets: sequence numbers just ahead, far ahead and equal to one of the
// block, which pass the pre-check and then fail authentication.
// *ahead counts the tampered ones beyond the last good number: they always reach the ICV check.
std::vector<Op> stream(uint64_t first, uint64_t n, uint32_t seed, uint64_t* dups, uint64_t* tampered,
                       uint64_t* ahead) {
  std::mt19937_64 rng(seed);
  std::vector<Op> out;
  for (uint64_t b = 0; b < n; b += kShuffle) {
    std::vector<Op> blk;
    const uint64_t e = std::min<uint64_t>(n, b + kShuffle);
    for (uint64_t i = b; i < e; ++i) {
      blk.push_back({first + i, Kind::kGood});
      if (rng() % 8 == 0) {
        blk.push_back({first + i, Kind::kGood});
        ++*dups;
      }
      if (rng() % 16 == 0) {
        static constexpr uint64_t kAhead[] = {0, 1, 700, 1000000};
        const uint64_t seq = first + i + kAhead[rng() % 4];
        blk.push_back({seq, Kind::kTampered});
        ++*tampered;
        *ahead += seq >= first + n;
      }
    }
    std::shuffle(blk.begin(), blk.end(), rng);
    out.insert(out.end(), blk.begin(), blk.end());
  }
  return out;
}

// Keeps the threads in step (every kStep operations) so that they work on the same words at the same time whenever
// the machine lets them run at once: the races a wrong window loses. Spins with yield, as a worker would not sleep.
class Step {
 public:
  explicit Step(uint32_t n) : n_(n) {}
  void wait() {
    const uint32_t ph = phase_.load();
    if (count_.fetch_add(1) + 1 == n_) {
      count_.store(0);
      phase_.fetch_add(1);
    } else {
      while (phase_.load() == ph) std::this_thread::yield();
    }
  }

 private:
  const uint32_t n_;
  std::atomic<uint32_t> count_{0}, phase_{0};
};
constexpr size_t kStep = 512;

struct Hammer {
  uint32_t threads;
  uint32_t window;
  bool esn;
};

class WindowHammer : public ::testing::TestWithParam<Hammer> {};

// The window alone, as decap uses it: infer the high half (ESN) from the low 32 bits, pre-check, "authenticate"
// (a tampered packet or a wrong ESN guess fails here), commit.
TEST_P(WindowHammer, EveryNumberAcceptedExactlyOnce) {
  const Hammer h = GetParam();
  const uint64_t n = 20000;
  // ESN: start below 2^32 and cross it while the threads race; otherwise start at 1.
  const uint64_t first = h.esn ? (1ull << 32) - n / 2 : 1;
  for (int round = 0; round < 40; ++round) {
    ReplayWindow rw(h.window);
    if (first > 1) {
      ASSERT_EQ(rw.check_and_update(first - 1), R::kOk);
    }
    std::vector<std::vector<Op>> streams;
    uint64_t dups = 0, tampered = 0, ahead = 0;
    for (uint32_t t = 0; t < h.threads; ++t)
      streams.push_back(stream(first, n, 1000 * round + t, &dups, &tampered, &ahead));
    std::vector<std::atomic<uint32_t>> accepted(n);
    std::atomic<uint64_t> refused{0}, tampered_ok{0};
    const size_t longest = std::max_element(streams.begin(), streams.end(), [](auto& x, auto& y) {
                             return x.size() < y.size();
                           })->size();
    Step step(h.threads);
    std::vector<std::thread> th;
    for (uint32_t t = 0; t < h.threads; ++t) {
      th.emplace_back([&, t] {
        for (size_t i = 0; i < longest; ++i) {
          if (i % kStep == 0) step.wait();
          if (i >= streams[t].size()) continue;
          const Op& op = streams[t][i];
          uint64_t seq = op.seq;
          if (h.esn && !rw.infer_esn(uint32_t(op.seq), &seq)) continue;
          if (rw.check(seq) != R::kOk) {
            refused.fetch_add(1, std::memory_order_relaxed);
            continue;
          }
          if (op.kind == Kind::kTampered) {
            tampered_ok.fetch_add(1, std::memory_order_relaxed);
            continue;
          }
          if (seq != op.seq) continue;  // a wrong high half: the ICV would not verify
          if (rw.check_and_update(seq) == R::kOk) accepted[seq - first].fetch_add(1, std::memory_order_relaxed);
        }
      });
    }
    for (auto& x : th) x.join();
    uint64_t never = 0, twice = 0, first_never = 0, first_twice = 0;
    for (uint64_t i = 0; i < n; ++i) {
      const uint32_t a = accepted[i].load();
      if (a == 0 && never++ == 0) first_never = first + i;
      if (a > 1 && twice++ == 0) first_twice = first + i;
    }
    EXPECT_EQ(twice, 0u) << "accepted more than once, first " << first_twice << " (round " << round << ")";
    EXPECT_EQ(never, 0u) << "never accepted, first " << first_never << " (round " << round << ")";
    EXPECT_EQ(rw.top(), first + n - 1) << "tampered packets must not move the window";
    EXPECT_GE(tampered_ok.load(), ahead) << "tampered packets ahead of the window pass the pre-check";
    if (HasFailure()) break;
  }
}

INSTANTIATE_TEST_SUITE_P(Replay, WindowHammer,
                         ::testing::Values(Hammer{2, 1024, false}, Hammer{4, 1024, false}, Hammer{2, 1024, true},
                                           Hammer{4, 1024, true}, Hammer{4, 256, false}),
                         [](const auto& i) {
                           return std::to_string(i.param.threads) + "threads_w" + std::to_string(i.param.window) +
                                  (i.param.esn ? "_esn" : "");
                         });

// Through real ESP packets: each thread decaps its own copies with its own worker index on one inbound SA.
class DecapHammer : public ::testing::TestWithParam<uint32_t> {};

TEST_P(DecapHammer, OneInboundSaOverSeveralWorkers) {
  const uint32_t nthreads = GetParam();
  const uint64_t n = 1024;  // the pool has 8191 mbufs: four streams of ~1.2 n fit
  SaParams p;
  p.window = 1024;
  // ESP packets 1..n, once; tampered ones are copies with a flipped ciphertext byte (ICV fails). Sequence numbers
  // ahead of n (tampered only) come from a second encap starting further on.
  std::vector<std::vector<uint8_t>> esp(n + 1), inner(n + 1);
  std::unordered_map<std::string, uint64_t> seq_of_inner;  // inner bytes -> sequence number
  {
    MbufGuard guard;
    auto out = make_sa(p, mg::esp::Direction::kOutbound);
    ASSERT_TRUE(out);
    for (uint64_t s = 1; s <= n; ++s) {
      inner[s] = udp_packet(4, 40, uint32_t(s));
      seq_of_inner[std::string(inner[s].begin(), inner[s].end())] = s;
      rte_mbuf* m = make_mbuf(inner[s]);
      ASSERT_EQ(mg::esp::encap_burst(*out, 0, &m, 1), 1);
      esp[s] = mbuf_bytes(m);
      rte_pktmbuf_free(m);
    }
  }
  auto tampered_packet = [&](uint64_t seq) {
    std::vector<uint8_t> b;
    if (seq <= n) {
      b = esp[seq];
    } else {
      b = esp_packet(p, seq, udp_packet(4, 40, 7));
    }
    b[b.size() - 20] ^= 0x01;  // ciphertext, before the ICV
    return b;
  };

  for (int round = 0; round < 24; ++round) {
    MbufGuard guard;
    auto in = make_sa(p, mg::esp::Direction::kInbound, uint16_t(nthreads));
    ASSERT_TRUE(in);
    uint64_t dups = 0, tampered = 0, ahead = 0;
    // Every mbuf is made here, before the threads start, and freed after they joined: the threads share nothing
    // but the SA (so ThreadSanitizer sees no mbuf recycled through the uninstrumented mempool).
    std::vector<std::vector<rte_mbuf*>> mbufs(nthreads);
    for (uint32_t t = 0; t < nthreads; ++t) {
      for (const Op& op : stream(1, n, 7000 * round + t, &dups, &tampered, &ahead)) {
        rte_mbuf* m = make_mbuf(op.kind == Kind::kGood ? esp[op.seq] : tampered_packet(op.seq));
        ASSERT_NE(m, nullptr);
        mbufs[t].push_back(m);
      }
    }
    std::vector<std::vector<rte_mbuf*>> delivered(nthreads);
    size_t longest = 0;
    for (auto& v : mbufs) longest = std::max(longest, v.size());
    Step step(nthreads);
    std::vector<std::thread> th;
    for (uint32_t t = 0; t < nthreads; ++t) {
      th.emplace_back([&, t] {
        std::vector<rte_mbuf*>& v = mbufs[t];
        for (size_t off = 0; off < longest; off += 32) {
          if (off % (4 * 32) == 0) step.wait();
          if (off >= v.size()) continue;
          const uint16_t c = uint16_t(std::min<size_t>(32, v.size() - off));
          const uint16_t k = mg::esp::decap_burst(*in, uint16_t(t), v.data() + off, c);
          delivered[t].insert(delivered[t].end(), v.begin() + off, v.begin() + off + k);
        }
      });
    }
    for (auto& x : th) x.join();

    std::vector<uint32_t> times(n + 1, 0);
    uint64_t unknown = 0;
    for (auto& d : delivered) {
      for (rte_mbuf* m : d) {
        const auto b = mbuf_bytes(m);
        auto it = seq_of_inner.find(std::string(b.begin(), b.end()));
        if (it == seq_of_inner.end()) ++unknown;
        else ++times[it->second];
      }
    }
    uint64_t never = 0, twice = 0;
    for (uint64_t s = 1; s <= n; ++s) {
      never += times[s] == 0;
      twice += times[s] > 1;
    }
    const auto st = in->stats();
    EXPECT_EQ(unknown, 0u) << "round " << round;
    EXPECT_EQ(twice, 0u) << "inner packets delivered more than once (round " << round << ")";
    EXPECT_EQ(never, 0u) << "inner packets never delivered (round " << round << ")";
    EXPECT_EQ(st.packets, n) << "round " << round;
    // A tampered copy of a number already accepted is refused before the crypto (replay or too old); one ahead
    // of the window always reaches the ICV check.
    const uint64_t auth = st.drops[size_t(Drop::kInAuth)];
    EXPECT_GE(auth, ahead) << "round " << round;
    EXPECT_LE(auth, tampered) << "round " << round;
    const uint64_t copies = uint64_t(nthreads - 1) * n + dups;
    EXPECT_EQ(st.drops[size_t(Drop::kInReplay)] + st.drops[size_t(Drop::kInTooOld)] + auth, copies + tampered)
        << "round " << round;
    EXPECT_EQ(st.total_drops(), copies + tampered) << "round " << round;
    EXPECT_EQ(in->replay().top(), n) << "tampered packets must not move the window";
    for (auto& v : mbufs)
      for (rte_mbuf* m : v) rte_pktmbuf_free(m);
    if (HasFailure()) break;
  }
}

INSTANTIATE_TEST_SUITE_P(Replay, DecapHammer, ::testing::Values(2u, 4u),
                         [](const auto& i) { return std::to_string(i.param) + "threads"; });

}  // namespace
