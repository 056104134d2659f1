#include "esp/esp.h"

namespace mg::esp {

ReplayWindow::ReplayWindow(uint32_t size) : size_(size) {
  // One spare word beyond the window so that the word holding `top` never overlaps the window's oldest
  // word (RFC 6479); a power-of-two word count makes the ring index a mask.
  uint32_t words = 1;
  while (words < size / 64 + 1) words <<= 1;
  word_mask_ = words - 1;
  words_.assign(words, 0);
}

bool ReplayWindow::infer_esn(uint32_t seq_lo, uint64_t* seq) const noexcept {
  // RFC 4303 Appendix A2.2: the high half follows from where seq_lo falls relative to the window.
  const uint32_t tl = uint32_t(top_);
  const uint32_t th = uint32_t(top_ >> 32);
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
  if (seq > top_) return Result::kOk;
  if (seq + size_ <= top_) return Result::kTooOld;
  const uint64_t bit = seq & (uint64_t(word_mask_ + 1) * 64 - 1);
  return (words_[bit >> 6] >> (bit & 63)) & 1 ? Result::kReplay : Result::kOk;
}

ReplayWindow::Result ReplayWindow::check_and_update(uint64_t seq) noexcept {
  const Result r = check(seq);
  if (r != Result::kOk) return r;
  if (seq > top_) {
    const uint64_t old_word = top_ >> 6;
    const uint64_t new_word = seq >> 6;
    uint64_t diff = new_word - old_word;
    if (diff > word_mask_) diff = word_mask_ + 1;
    for (uint64_t i = 1; i <= diff; ++i) words_[(old_word + i) & word_mask_] = 0;
    top_ = seq;
  }
  const uint64_t bit = seq & (uint64_t(word_mask_ + 1) * 64 - 1);
  words_[bit >> 6] |= uint64_t(1) << (bit & 63);
  return Result::kOk;
}

}  // namespace mg::esp
