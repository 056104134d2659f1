// mg::dp::Liveness — the main lcore's verdict on whether each tunnel is alive (docs/ARCHITECTURE.md "Liveness", issue 6).
//
// Input: proof of life per tunnel, as a ms tick (the time of the last authenticated inbound ESP packet the
// workers saw: data, probe replies, anything whose ICV verified). Output: a verdict per tunnel, up or down, that
// the caller turns into the Model's liveness flag and publishes like an operator command.
//
//   up        no proof for interval * multiplier ms -> down (a "flap"; the damping penalty grows)
//   down      proof again -> holding: it must keep arriving (no gap longer than interval * multiplier) for
//             hold_down_ms before the tunnel is up again; a gap restarts the hold-down
//   damping   every flap adds `penalty` to a figure that halves every half_life_ms (capped at max_penalty). Above
//             `suppress` the tunnel is suppressed: it stays down, whatever the proof, until the figure has decayed
//             below `reuse` (RFC 2439-style route flap damping). A tunnel that flaps forever is kept out for at
//             most half_life * log2(max_penalty / reuse).
//
// Disabled tunnels (the default) are always up: liveness never touches them. Operator state is not here: the
// Model combines both (an operator `down` always wins over a liveness `up`); the caller pauses a tunnel the
// operator holds down, whose silence is then its own doing (set_paused).
//
// Pure C++, no DPDK, no clock of its own: every call takes `now` (ms ticks, wrapping uint32; differences are
// taken as int32, so ticks must be less than 24 days apart). Not thread-safe: main owns it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "net/net.h"

namespace mg::dp {

struct LivenessConfig {
  bool enabled = false;
  uint32_t interval_ms = 20;    // probe interval, and the unit of detection
  uint32_t multiplier = 3;      // missed intervals before down
  uint32_t hold_down_ms = 1000; // continuous proof before a tunnel that came back is used again
  // Damping (penalty units; 0 penalty = no damping).
  uint32_t penalty = 1000;
  uint32_t suppress = 2500;
  uint32_t reuse = 1000;
  uint32_t half_life_ms = 5000;
  uint32_t max_penalty = 8000;

  uint32_t detect_ms() const noexcept { return interval_ms * multiplier; }
};
// "20x3" -> interval 20 ms, multiplier 3 (enabled); "off" -> disabled. False with *err on anything else.
bool parse_liveness(const std::string& s, LivenessConfig* out, std::string* err);

enum class LiveState : uint8_t {
  kUp,          // proof within interval * multiplier (or liveness disabled)
  kDown,        // no proof
  kHolding,     // proof again, waiting for hold_down_ms of it
  kSuppressed,  // damped: down until the penalty decays below `reuse`
};
const char* to_string(LiveState s) noexcept;

class Liveness {
 public:
  struct Change {
    uint32_t tunnel;
    bool up;               // the new verdict
    uint32_t at;           // tick of the verdict
    uint32_t last_proof;   // tick of the last proof at that moment
    bool damped = false;   // down: suppressed by damping at once; up: released from a suppression first
  };

  explicit Liveness(uint32_t tunnels = 0) : t_(tunnels) {}
  uint32_t tunnels() const noexcept { return uint32_t(t_.size()); }

  // Enables (or disables) liveness of tunnel t from `now`: it starts up, with `now` as its last proof, so a
  // tunnel that never shows life goes down after interval * multiplier.
  void configure(uint32_t t, const LivenessConfig& c, uint32_t now);
  const LivenessConfig& config(uint32_t t) const noexcept { return t_[t].cfg; }

  // Proof of life of tunnel t at tick `at` (older proofs than the last one are ignored).
  void proof(uint32_t t, uint32_t at) noexcept;

  // The operator holds tunnel t down (the tunnel or its instance): it sends no probes, so its silence proves
  // nothing. While paused the tunnel gets no verdict, no flap and no penalty (BFD's AdminDown). On resume it keeps
  // the verdict it had and gets the grace of configure() (interval * multiplier from `now` to show life); a
  // tunnel that was not up still needs its hold-down of continuous proof. Idempotent.
  void set_paused(uint32_t t, bool paused, uint32_t now) noexcept;
  bool paused(uint32_t t) const noexcept { return t_[t].paused; }

  // Runs every tunnel's state machine at `now`; appends verdict changes to *out. Call often (every ms or so):
  // detection is late by at most the time between calls.
  void tick(uint32_t now, std::vector<Change>* out);

  bool up(uint32_t t) const noexcept { return t_[t].verdict_up; }
  LiveState state(uint32_t t) const noexcept { return t_[t].state; }
  bool enabled(uint32_t t) const noexcept { return t_[t].cfg.enabled; }
  bool ever_proof(uint32_t t) const noexcept { return t_[t].seen; }
  uint32_t last_proof(uint32_t t) const noexcept { return t_[t].last; }
  uint64_t flaps(uint32_t t) const noexcept { return t_[t].flaps; }          // up -> down verdicts
  uint64_t suppressions(uint32_t t) const noexcept { return t_[t].suppressions; }
  uint32_t penalty(uint32_t t, uint32_t now) const noexcept;                 // decayed to `now`

 private:
  struct T {
    LivenessConfig cfg;
    LiveState state = LiveState::kUp;
    bool verdict_up = true;
    bool seen = false;        // a proof arrived since configure()
    bool paused = false;      // held down by the operator: no verdict
    bool released = false;    // out of a suppression since the last down verdict (Change::damped of the up)
    uint32_t last = 0;        // last proof
    bool streak_on = false;   // not up: proof is arriving continuously
    uint32_t streak = 0;      // start of that run of proof
    double pen = 0;           // penalty at pen_at
    uint32_t pen_at = 0;
    uint64_t flaps = 0, suppressions = 0;
  };
  static double decayed(const T& x, uint32_t now) noexcept;
  std::vector<T> t_;
};

}  // namespace mg::dp
