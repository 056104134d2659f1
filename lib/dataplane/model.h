// mg::dp::Model — the control side's view of tunnel and instance state, and the rules that turn it into the
// flow library's TunnelSpecs (docs/ARCHITECTURE.md "Flow spreading", issue 4 "Workers").
//
//   effective state of a tunnel = the more severe of its own admin state and its instance's (down > draining > up),
//     and down while liveness says the tunnel is dead (so an operator `down` always wins over liveness `up`)
//   active-active: every effectively-up tunnel gets new flows by weight
//   active-standby: while any tunnel of an active instance is up with weight > 0, the standby instances' tunnels
//     stay `up` (their pins hold) but get weight 0 (no new flows); when none is, the standby tunnels get their
//     weights at once
//
// Every mutation validates first and changes nothing when it fails (the error says why). Not thread-safe: the
// main lcore owns the model. Pure C++: no DPDK, testable on its own.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "config/config.h"
#include "flow/flow.h"

namespace mg::dp {

// A tunnel's or instance's state: one enum from the flow library down to the control block (ctrl::State on the
// wire, converted in one place: control.cpp), named by flow::to_string.
using AdminState = flow::TunnelState;
bool parse_admin_state(const std::string& s, AdminState* out) noexcept;

class Model {
 public:
  explicit Model(const config::Gateway& g);

  uint32_t tunnels() const noexcept { return uint32_t(tunnels_.size()); }
  uint32_t instances() const noexcept { return uint32_t(instances_.size()); }
  config::Mode mode() const noexcept { return mode_; }
  AdminState tunnel_admin(uint32_t t) const noexcept { return tunnels_[t].admin; }
  AdminState instance_admin(uint32_t i) const noexcept { return instances_[i].admin; }
  AdminState effective(uint32_t t) const noexcept;
  bool live(uint32_t t) const noexcept { return tunnels_[t].live; }
  uint32_t weight(uint32_t t) const noexcept { return tunnels_[t].weight; }
  uint32_t instance_of(uint32_t t) const noexcept { return tunnels_[t].instance; }
  bool standby(uint32_t i) const noexcept { return instances_[i].standby; }
  // The weight the selection table uses now (0 for a standby tunnel while an active one is up).
  uint32_t effective_weight(uint32_t t) const noexcept;

  // `now` and `deadline` are in worker ticks (ms). A deadline applies to kDraining only; without one a
  // draining tunnel keeps its pins until they go idle. *changed (when given) says whether the call changed
  // anything: the same state again is a no-op that the caller reports as such and does not publish.
  bool set_tunnel(uint32_t t, AdminState s, std::optional<uint32_t> deadline, std::string* err,
                  bool* changed = nullptr);
  bool set_instance(uint32_t i, AdminState s, std::optional<uint32_t> deadline, std::string* err,
                    bool* changed = nullptr);
  bool set_weight(uint32_t t, uint32_t w, std::string* err, bool* changed = nullptr);
  void set_mode(config::Mode m) noexcept { mode_ = m; }
  // Liveness verdict (main's detector, not the operator): false makes the tunnel effectively down whatever its
  // admin state; true gives it back its admin state. Returns true when the flag changed.
  bool set_live(uint32_t t, bool live) noexcept {
    if (t >= tunnels() || tunnels_[t].live == live) return false;
    tunnels_[t].live = live;
    return true;
  }
  // Whether the tunnel has an outbound SA (a tunnel keyed by IKE has none until its keying daemon installs one, and
  // none again once it deletes it): false makes it effectively down, like a liveness `down`.
  bool keyed(uint32_t t) const noexcept { return tunnels_[t].keyed; }
  bool set_keyed(uint32_t t, bool keyed) noexcept {
    if (t >= tunnels() || tunnels_[t].keyed == keyed) return false;
    tunnels_[t].keyed = keyed;
    return true;
  }
  // Draining tunnels whose deadline passed become down. Returns true when something changed.
  bool expire_drains(uint32_t now) noexcept;

  // Specs for flow::SelectionTable::build. Epochs persist across calls (a tunnel that went down keeps its
  // bumped epoch), so call this after every change and build from the result.
  const std::vector<flow::TunnelSpec>& specs() noexcept;

 private:
  struct T {
    uint32_t instance;
    uint32_t weight;
    AdminState admin = AdminState::kUp;
    std::optional<uint32_t> deadline;
    bool live = true;
    bool keyed = true;
    bool drained = false;  // down because a drain deadline passed (deadline kept)
  };
  struct I {
    bool standby;
    AdminState admin = AdminState::kUp;
    std::optional<uint32_t> deadline;
    bool drained = false;
  };
  std::optional<uint32_t> effective_deadline(uint32_t t) const noexcept;
  std::vector<T> tunnels_;
  std::vector<I> instances_;
  config::Mode mode_;
  std::vector<flow::TunnelSpec> specs_;
};

}  // namespace mg::dp
