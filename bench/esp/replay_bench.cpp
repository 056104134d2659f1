// replay_bench — the anti-replay window per packet: the lock-free several-writer window (esp::ReplayWindow) next to
// the single-writer RFC 6479 ring it replaced (kept here, verbatim in behaviour, as the baseline), in one run.
//
//   sbs/<pattern>/<window>   each iteration runs the same 4096 sequence numbers through both windows, each timed on
//                            its own (steady_clock, interleaved so that machine noise hits both alike): counters
//                            single_ns and multi_ns per packet and multi_over_single, the ratio
// Per packet, as decap does it: check() before the crypto, check_and_update() after. Patterns: in_order (every
// packet a new top), reordered (shuffled within blocks of 64), dup (every number twice, the second a replay).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <random>
#include <vector>

#include "esp/esp.h"

namespace {

using Clock = std::chrono::steady_clock;
using mg::esp::ReplayWindow;
using R = ReplayWindow::Result;

// The single-writer window of meshgate before the several-writer one: a ring of 64-bit bitmaps (RFC 6479),
// words cleared as the top slides.
class SingleWriterWindow {
 public:
  explicit SingleWriterWindow(uint32_t size) : size_(size) {
    uint32_t words = 1;
    while (words < size / 64 + 1) words <<= 1;
    mask_ = words - 1;
    words_.assign(words, 0);
  }
  R check(uint64_t seq) const noexcept {
    if (seq == 0) return R::kZero;
    if (seq > top_) return R::kOk;
    if (seq + size_ <= top_) return R::kTooOld;
    const uint64_t bit = seq & (uint64_t(mask_ + 1) * 64 - 1);
    return (words_[bit >> 6] >> (bit & 63)) & 1 ? R::kReplay : R::kOk;
  }
  R check_and_update(uint64_t seq) noexcept {
    const R r = check(seq);
    if (r != R::kOk) return r;
    if (seq > top_) {
      const uint64_t old_word = top_ >> 6, new_word = seq >> 6;
      uint64_t diff = new_word - old_word;
      if (diff > mask_) diff = mask_ + 1;
      for (uint64_t i = 1; i <= diff; ++i) words_[(old_word + i) & mask_] = 0;
      top_ = seq;
    }
    const uint64_t bit = seq & (uint64_t(mask_ + 1) * 64 - 1);
    words_[bit >> 6] |= uint64_t(1) << (bit & 63);
    return R::kOk;
  }

 private:
  uint64_t top_ = 0;
  uint32_t size_, mask_;
  std::vector<uint64_t> words_;
};

constexpr size_t kBatch = 4096;
enum Pattern { kInOrder, kReordered, kDup };
const char* const kPatternNames[] = {"in_order", "reordered", "dup"};

// Offsets within one batch; the batch base grows by kBatch every iteration, so numbers keep moving forward.
std::vector<uint32_t> offsets(Pattern p) {
  std::vector<uint32_t> v;
  std::mt19937 rng(42);
  for (uint32_t i = 0; i < kBatch; ++i) {
    v.push_back(i);
    if (p == kDup) v.push_back(i);
  }
  if (p == kReordered)
    for (size_t b = 0; b < v.size(); b += 64) std::shuffle(v.begin() + b, v.begin() + b + 64, rng);
  return v;
}

template <class W>
inline uint64_t run(W& w, const std::vector<uint32_t>& off, uint64_t base) {
  uint64_t ok = 0;
  for (uint32_t o : off) {
    const uint64_t s = base + o;
    if (w.check(s) == R::kOk) ok += w.check_and_update(s) == R::kOk;
  }
  return ok;
}

void bm_sbs(benchmark::State& state, Pattern p, uint32_t window) {
  const auto off = offsets(p);
  SingleWriterWindow single(window);
  ReplayWindow multi(window);
  uint64_t base = 1;
  double single_ns = 0, multi_ns = 0;
  uint64_t ok_single = 0, ok_multi = 0;
  for (auto _ : state) {
    const auto t0 = Clock::now();
    ok_single += run(single, off, base);
    const auto t1 = Clock::now();
    ok_multi += run(multi, off, base);
    const auto t2 = Clock::now();
    base += kBatch;
    single_ns += std::chrono::duration<double, std::nano>(t1 - t0).count();
    multi_ns += std::chrono::duration<double, std::nano>(t2 - t1).count();
    state.SetIterationTime(std::chrono::duration<double>(t2 - t0).count());
  }
  const double pkts = double(state.iterations()) * double(off.size());
  if (ok_single != ok_multi || ok_multi != uint64_t(state.iterations()) * kBatch)
    state.SkipWithError("the windows disagree on what to accept");
  state.counters["single_ns"] = single_ns / pkts;
  state.counters["multi_ns"] = multi_ns / pkts;
  state.counters["multi_over_single"] = multi_ns / single_ns;
}

}  // namespace

int main(int argc, char** argv) {
  for (uint32_t window : {1024u, 65536u}) {
    for (Pattern p : {kInOrder, kReordered, kDup}) {
      benchmark::RegisterBenchmark(
          ("sbs/" + std::string(kPatternNames[p]) + "/" + std::to_string(window)).c_str(),
          [p, window](benchmark::State& s) { bm_sbs(s, p, window); })
          ->UseManualTime()
          ->Unit(benchmark::kMicrosecond);
    }
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
