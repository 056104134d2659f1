#include "dataplane/liveness.h"

#include <algorithm>
#include <cmath>

namespace mg::dp {

const char* to_string(LiveState s) noexcept {
  switch (s) {
    case LiveState::kUp: return "up";
    case LiveState::kDown: return "down";
    case LiveState::kHolding: return "holding";
    case LiveState::kSuppressed: return "suppressed";
  }
  return "?";
}

bool parse_liveness(const std::string& s, LivenessConfig* out, std::string* err) {
  const size_t x = s.find('x');
  auto num = [](const std::string& v, uint32_t* r) {
    if (v.empty() || v.size() > 6 || v.find_first_not_of("0123456789") != std::string::npos) return false;
    *r = uint32_t(std::stoul(v));
    return true;
  };
  uint32_t iv = 0, mult = 0;
  if (s == "off") {
    out->enabled = false;
    return true;
  }
  if (x == std::string::npos || !num(s.substr(0, x), &iv) || !num(s.substr(x + 1), &mult)) {
    if (err) *err = "liveness '" + s + "': expected INTERVAL_MSxMULTIPLIER, e.g. 20x3";
    return false;
  }
  if (iv < 1 || iv > 60000 || mult < 1 || mult > 100) {
    if (err) *err = "liveness '" + s + "': interval 1..60000 ms, multiplier 1..100";
    return false;
  }
  out->enabled = true;
  out->interval_ms = iv;
  out->multiplier = mult;
  return true;
}

void Liveness::configure(uint32_t t, const LivenessConfig& c, uint32_t now) {
  T& x = t_[t];
  x = T{};
  x.cfg = c;
  x.last = now;  // grace: a tunnel gets interval * multiplier to show life from now
  x.pen_at = now;
}

void Liveness::proof(uint32_t t, uint32_t at) noexcept {
  T& x = t_[t];
  if (!x.seen || int32_t(at - x.last) > 0) x.last = at;
  x.seen = true;
}

void Liveness::set_paused(uint32_t t, bool paused, uint32_t now) noexcept {
  T& x = t_[t];
  if (x.paused == paused) return;
  x.paused = paused;
  if (paused) return;
  x.last = now;  // the grace of configure(): probes start again only now
  x.streak_on = false;
}

double Liveness::decayed(const T& x, uint32_t now) noexcept {
  if (x.pen <= 0 || x.cfg.half_life_ms == 0) return x.pen;
  const double dt = double(std::max<int32_t>(0, int32_t(now - x.pen_at)));
  return x.pen * std::exp2(-dt / double(x.cfg.half_life_ms));
}

uint32_t Liveness::penalty(uint32_t t, uint32_t now) const noexcept { return uint32_t(decayed(t_[t], now)); }

void Liveness::tick(uint32_t now, std::vector<Change>* out) {
  for (uint32_t t = 0; t < t_.size(); ++t) {
    T& x = t_[t];
    if (!x.cfg.enabled || x.paused) continue;
    // Fresh: the last proof is no older than the detection time. A proof "from the future" (a worker's tick
    // read after main's) is fresh too.
    const bool fresh = int32_t(now - x.last) <= int32_t(x.cfg.detect_ms());
    if (x.state == LiveState::kUp) {
      if (fresh) continue;
      x.state = LiveState::kDown;
      x.verdict_up = false;
      ++x.flaps;
      if (x.cfg.penalty) {
        x.pen = std::min(decayed(x, now) + double(x.cfg.penalty), double(x.cfg.max_penalty));
        x.pen_at = now;
        if (x.pen > double(x.cfg.suppress)) {
          x.state = LiveState::kSuppressed;
          ++x.suppressions;
        }
      }
      x.released = false;
      out->push_back(Change{t, false, now, x.last, x.state == LiveState::kSuppressed});
      continue;
    }
    // Down, holding or suppressed: track the current run of continuous proof (any gap longer than the
    // detection time ends it).
    if (!fresh) {
      x.streak_on = false;
    } else if (!x.streak_on) {
      x.streak_on = true;
      x.streak = x.last;
    }
    if (x.state == LiveState::kSuppressed) {
      if (decayed(x, now) >= double(x.cfg.reuse)) continue;
      x.state = LiveState::kDown;  // released; the hold-down still applies (it may already be served)
      x.released = true;
    }
    x.state = x.streak_on ? LiveState::kHolding : LiveState::kDown;
    if (x.state == LiveState::kHolding && int32_t(now - x.streak) >= int32_t(x.cfg.hold_down_ms)) {
      x.state = LiveState::kUp;
      x.verdict_up = true;
      out->push_back(Change{t, true, now, x.last, x.released});
    }
  }
}

}  // namespace mg::dp
