// The reservation policy: how far ahead to reserve and when to extend.
#include <algorithm>

#include "seqstate/seqstate.h"

namespace mg::seqstate {

uint64_t block_size(const Policy& p, double rate_per_s, bool esn) noexcept {
  const uint64_t cap = esn ? p.max_block_64 : p.max_block_32;
  const double want = rate_per_s * p.ahead_s;
  const uint64_t b = want >= double(cap) ? cap : uint64_t(want);
  return std::clamp<uint64_t>(b, std::min(p.min_block, cap), cap);
}

namespace {

uint64_t add_sat(uint64_t a, uint64_t b, uint64_t end) noexcept { return a >= end || end - a < b ? end : a + b; }

}  // namespace

Reservation::Reservation(Store& store, const Fingerprint& fp, bool esn, Policy p)
    : store_(store), fp_(fp), esn_(esn), policy_(p) {}

bool Reservation::begin(uint64_t* start, uint64_t* limit, std::string* err) {
  uint64_t high = 0;
  if (!store_.load(fp_, &high, err)) return false;
  const uint64_t end = space_end(esn_);
  const uint64_t next = add_sat(high, block_size(policy_, 0, esn_), end);
  // A non-ESN key that was once used with ESN may have a mark above 2^32 - 1: its space is used up.
  if (next > high && !store_.save(fp_, next, err)) return false;
  *start = high;
  limit_ = *limit = std::max(next, high);
  last_block_ = next - std::min(next, high);
  sample_used_ = high;
  return true;
}

bool Reservation::plan(uint64_t used, double now_s, uint64_t* next) {
  // Rate over >= 10 ms windows: rises at once with the traffic (a durable write takes ~10-40 ms, so a fast SA
  // must get a big block within its first few of them), halves per window when it falls.
  if (sample_t_ < 0) {
    sample_t_ = now_s;
    sample_used_ = used;
  } else if (now_s - sample_t_ >= 0.01) {
    const double r = used > sample_used_ ? double(used - sample_used_) / (now_s - sample_t_) : 0;
    rate_ = std::max(r, rate_ / 2);
    sample_t_ = now_s;
    sample_used_ = used;
  }
  const uint64_t end = space_end(esn_);
  if (limit_ >= end) return false;
  uint64_t block = block_size(policy_, rate_, esn_);
  // Workers waiting at the limit: the rate seen is the limit's, not the traffic's. Twice the last block each
  // time gets them going within a few writes whatever the rate.
  const uint64_t cap = esn_ ? policy_.max_block_64 : policy_.max_block_32;
  if (used >= limit_) block = std::max(block, std::min(last_block_ * 2, cap));
  const uint64_t left = used < limit_ ? limit_ - used : 0;
  if (left >= block / 2) return false;
  *next = add_sat(std::max(used, limit_), block - left, end);
  planned_block_ = block;
  return true;
}

void Reservation::commit(uint64_t next) noexcept {
  if (next <= limit_) return;
  limit_ = next;
  last_block_ = planned_block_;
}

Reservation::Poll Reservation::poll(uint64_t used, double now_s, uint64_t* limit, std::string* err) {
  uint64_t next = 0;
  if (!plan(used, now_s, &next)) return Poll::kNothing;
  if (!store_.save(fp_, next, err)) return Poll::kError;
  commit(next);
  *limit = next;
  return Poll::kExtended;
}

}  // namespace mg::seqstate
