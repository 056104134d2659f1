#include "dataplane/model.h"

#include <algorithm>

namespace mg::dp {

bool parse_admin_state(const std::string& s, AdminState* out) noexcept {
  if (s == "up") *out = AdminState::kUp;
  else if (s == "draining" || s == "drain") *out = AdminState::kDraining;
  else if (s == "down") *out = AdminState::kDown;
  else return false;
  return true;
}

Model::Model(const config::Gateway& g) : mode_(g.mode) {
  for (const auto& i : g.instances) instances_.push_back(I{i.standby});
  for (const auto& t : g.tunnels) tunnels_.push_back(T{t.instance, t.weight});
  specs_.resize(tunnels_.size());
  specs();
}

AdminState Model::effective(uint32_t t) const noexcept {
  if (!tunnels_[t].live || !tunnels_[t].keyed) return AdminState::kDown;
  return std::max(tunnels_[t].admin, instances_[tunnels_[t].instance].admin);  // enum order = severity
}

std::optional<uint32_t> Model::effective_deadline(uint32_t t) const noexcept {
  const T& x = tunnels_[t];
  const I& i = instances_[x.instance];
  std::optional<uint32_t> d;
  if (x.admin == AdminState::kDraining) d = x.deadline;
  if (i.admin == AdminState::kDraining && i.deadline) {
    if (!d || int32_t(*i.deadline - *d) < 0) d = i.deadline;  // the earlier deadline wins
  }
  return d;
}

uint32_t Model::effective_weight(uint32_t t) const noexcept {
  if (mode_ == config::Mode::kActiveStandby && instances_[tunnels_[t].instance].standby) {
    for (uint32_t u = 0; u < tunnels(); ++u) {
      if (!instances_[tunnels_[u].instance].standby && effective(u) == AdminState::kUp && tunnels_[u].weight > 0)
        return 0;
    }
  }
  return tunnels_[t].weight;
}

bool Model::set_tunnel(uint32_t t, AdminState s, std::optional<uint32_t> deadline, std::string* err, bool* changed) {
  if (t >= tunnels()) {
    if (err) *err = "tunnel " + std::to_string(t) + " does not exist (" + std::to_string(tunnels()) + " tunnels)";
    return false;
  }
  if (deadline && s != AdminState::kDraining) {
    if (err) *err = "a deadline applies to drain only";
    return false;
  }
  const std::optional<uint32_t> dl = s == AdminState::kDraining ? deadline : std::nullopt;
  T& x = tunnels_[t];
  if (changed) *changed = x.admin != s || x.deadline != dl || x.drained;
  x.admin = s;
  x.deadline = dl;
  x.drained = false;
  return true;
}

bool Model::set_instance(uint32_t i, AdminState s, std::optional<uint32_t> deadline, std::string* err,
                         bool* changed) {
  if (i >= instances()) {
    if (err) *err = "instance " + std::to_string(i) + " does not exist (" + std::to_string(instances()) + " instances)";
    return false;
  }
  if (deadline && s != AdminState::kDraining) {
    if (err) *err = "a deadline applies to drain only";
    return false;
  }
  const std::optional<uint32_t> dl = s == AdminState::kDraining ? deadline : std::nullopt;
  I& x = instances_[i];
  if (changed) *changed = x.admin != s || x.deadline != dl || x.drained;
  x.admin = s;
  x.deadline = dl;
  x.drained = false;
  return true;
}

bool Model::set_weight(uint32_t t, uint32_t w, std::string* err, bool* changed) {
  if (t >= tunnels()) {
    if (err) *err = "tunnel " + std::to_string(t) + " does not exist";
    return false;
  }
  if (w > 1000000) {
    if (err) *err = "weight " + std::to_string(w) + " is above 1000000";
    return false;
  }
  if (changed) *changed = tunnels_[t].weight != w;
  tunnels_[t].weight = w;
  return true;
}

bool Model::expire_drains(uint32_t now) noexcept {
  bool changed = false;
  for (auto& x : tunnels_) {
    if (x.admin == AdminState::kDraining && x.deadline && int32_t(now - *x.deadline) >= 0) {
      x.admin = AdminState::kDown;
      x.drained = true;
      changed = true;
    }
  }
  for (auto& i : instances_) {
    if (i.admin == AdminState::kDraining && i.deadline && int32_t(now - *i.deadline) >= 0) {
      i.admin = AdminState::kDown;
      i.drained = true;
      changed = true;
    }
  }
  return changed;
}

const std::vector<flow::TunnelSpec>& Model::specs() noexcept {
  for (uint32_t t = 0; t < tunnels(); ++t) {
    flow::TunnelSpec& s = specs_[t];
    AdminState e = effective(t);
    auto d = effective_deadline(t);
    // A drain whose deadline passed is `down` to operators, but the flow library keeps seeing a draining
    // tunnel with a past deadline: its pins then move as drain-deadline moves (moved_drain), not as downs.
    const T& x = tunnels_[t];
    const I& in = instances_[x.instance];
    if (e == AdminState::kDown && x.live && x.keyed && (x.admin != AdminState::kDown || x.drained) &&
        (in.admin != AdminState::kDown || in.drained)) {
      e = AdminState::kDraining;
      if (x.drained && x.deadline) d = x.deadline;
      if (in.drained && in.deadline && (!d || int32_t(*in.deadline - *d) < 0)) d = in.deadline;
    }
    s.set_state(e, d.has_value(), d.value_or(0));
    s.weight = effective_weight(t);
  }
  return specs_;
}

}  // namespace mg::dp
