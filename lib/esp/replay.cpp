// The anti-replay window, exact with any number of concurrent writers and lock-free.
//
// Each ring word is one atomic 64-bit value {generation tag : 32, bitmap : 32} covering one block of 32 sequence
// numbers: block = seq >> 5, slot = block & mask, generation = block >> log2(words). A commit is one CAS on that
// word (tag equal: set the bit, already set = replay; word older: replace it by {tag, bit}; word newer: too old),
// then `top` is raised with a CAS-based atomic max. Nothing is ever cleared in place, so no writer can wipe a bit
// that another has just set, and a word only moves to newer generations, so a sequence number can be set once.
// A word whose bitmap is 0 has never been written (every write sets a bit): it holds no block, whatever its tag.
//
// Why each refusal is honest: "too old" is only said when a committed number s' >= seq + W exists (`top`, or a
// newer generation in the slot: with words * 32 >= W + 32 that generation's numbers are >= seq + W), "replay" only
// when the bit of seq was set by a commit. Relaxed atomics suffice: every verdict rests on one value actually
// written by a commit, and the per-word modification order serialises commits of the same number; no other data is
// published through the window.
//
// Limit: generations compare modulo 2^32, so a slot last written 2^31 or more of its generations ago (no packet
// accepted in it for at least 2^31 * words * 32 >= 2^40 sequence numbers, ESN only) reads as newer, and the numbers
// that map to it as too old until it is 2^31 generations behind again. Non-ESN numbers stay below 2^32.
#include "esp/esp.h"

namespace mg::esp {

namespace {

constexpr unsigned kBlockShift = 5;  // 32 sequence numbers per word
constexpr uint32_t kMinWords = 16;   // pushes the generation wrap of small windows out to 2^40 numbers

inline uint64_t pack(uint32_t gen, uint32_t bits) noexcept { return uint64_t(gen) << 32 | bits; }

}  // namespace

ReplayWindow::ReplayWindow(uint32_t size) : size_(size) {
  // One spare word beyond the window: a word is replaced only by a block at least `words` blocks newer, whose
  // numbers are then >= W beyond every number of the block it replaces (words * 32 >= W + 32).
  uint32_t words = kMinWords;
  shift_ = 4;
  while (words < size / 32 + 1) {
    words <<= 1;
    ++shift_;
  }
  mask_ = words - 1;
  words_ = std::make_unique<std::atomic<uint64_t>[]>(words);
  for (uint32_t i = 0; i < words; ++i) words_[i].store(0, std::memory_order_relaxed);
}

bool ReplayWindow::assign(const ReplayWindow& o) noexcept {
  if (o.size_ != size_) return false;
  for (uint32_t i = 0; i <= mask_; ++i)
    words_[i].store(o.words_[i].load(std::memory_order_relaxed), std::memory_order_relaxed);
  top_.store(o.top_.load(std::memory_order_relaxed), std::memory_order_relaxed);
  return true;
}

bool ReplayWindow::infer_esn(uint32_t seq_lo, uint64_t* seq) const noexcept {
  // RFC 4303 Appendix A2.2: the high half follows from where seq_lo falls relative to the window. One load of
  // `top`: both halves come from the same value even while other workers move it.
  const uint64_t top = top_.load(std::memory_order_relaxed);
  const uint32_t tl = uint32_t(top);
  const uint32_t th = uint32_t(top >> 32);
  const uint32_t bottom = tl - size_ + 1;  // mod 2^32
  uint32_t sh;
  if (tl >= size_ - 1) {
    sh = seq_lo >= bottom ? th : th + 1;  // case A: the window lies within one 2^32 span
  } else {
    if (seq_lo >= bottom) {  // case B: the window straddles a 2^32 boundary
      if (th == 0) return false;  // before sequence number 1
      sh = th - 1;
    } else {
      sh = th;
    }
  }
  *seq = uint64_t(sh) << 32 | seq_lo;
  return true;
}

ReplayWindow::Result ReplayWindow::check(uint64_t seq) const noexcept {
  if (seq == 0) return Result::kZero;
  const uint64_t top = top_.load(std::memory_order_relaxed);
  if (seq > top) return Result::kOk;
  if (top - seq >= size_) return Result::kTooOld;
  const uint64_t block = seq >> kBlockShift;
  const uint64_t w = words_[block & mask_].load(std::memory_order_relaxed);
  const int32_t age = int32_t(uint32_t(block >> shift_) - uint32_t(w >> 32));
  if (age > 0 || uint32_t(w) == 0) return Result::kOk;  // the slot holds an older block, or none yet
  if (age < 0) return Result::kTooOld;
  return (w >> (seq & 31)) & 1 ? Result::kReplay : Result::kOk;
}

ReplayWindow::Result ReplayWindow::check_and_update(uint64_t seq) noexcept {
  if (seq == 0) return Result::kZero;
  uint64_t top = top_.load(std::memory_order_relaxed);
  if (seq <= top && top - seq >= size_) return Result::kTooOld;
  const uint64_t block = seq >> kBlockShift;
  const uint32_t gen = uint32_t(block >> shift_);
  const uint32_t bit = uint32_t(1) << (seq & 31);
  std::atomic<uint64_t>& word = words_[block & mask_];
  uint64_t w = word.load(std::memory_order_relaxed);
  uint64_t nw;
  do {
    const int32_t age = int32_t(gen - uint32_t(w >> 32));
    if (age > 0 || uint32_t(w) == 0) {
      nw = pack(gen, bit);  // the old block lies wholly behind the window of seq, or the slot was never used
    } else if (age == 0) {
      if (uint32_t(w) & bit) return Result::kReplay;
      nw = w | bit;
    } else {
      return Result::kTooOld;
    }
  } while (!word.compare_exchange_weak(w, nw, std::memory_order_relaxed));
  while (seq > top && !top_.compare_exchange_weak(top, seq, std::memory_order_relaxed)) {
  }
  return Result::kOk;
}

}  // namespace mg::esp
