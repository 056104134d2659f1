// The state model: effective states, active-standby weights, drain deadlines, validation, and what the flow
// library does with the specs it produces (only the lost tunnel's flows move; returning tunnels keep pins away).
#include <gtest/gtest.h>

#include <random>

#include "dataplane/model.h"

using mg::config::Gateway;
using mg::config::Mode;
using mg::dp::AdminState;
using mg::dp::Model;
namespace flow = mg::flow;

namespace {

// 2 instances x 2 devices; tunnels 0,1 on instance 0 and 2,3 on instance 1.
Gateway mesh(Mode mode) {
  Gateway g;
  g.name = "t";
  g.mode = mode;
  g.instances.resize(2);
  g.instances[0].name = "gw-a";
  g.instances[1].name = "gw-b";
  g.instances[1].standby = true;
  g.devices.resize(2);
  for (uint32_t i = 0; i < 2; ++i)
    for (uint32_t d = 0; d < 2; ++d) {
      mg::config::Tunnel t;
      t.instance = i;
      t.device = d;
      t.weight = 1;
      g.tunnels.push_back(std::move(t));
    }
  return g;
}

struct Placement {
  std::vector<flow::TunnelId> where;
};

// Places `n` flows with a fresh pin table over the model's current specs.
std::vector<flow::TunnelId> place(Model& m, flow::PinTable& pins, const std::vector<uint64_t>& h, uint32_t now) {
  auto sel = flow::SelectionTable::build(m.specs(), 42);
  std::vector<flow::TunnelId> out(h.size());
  for (size_t i = 0; i < h.size(); i += 32) {
    const uint16_t n = uint16_t(std::min<size_t>(32, h.size() - i));
    pins.assign_burst(*sel, &h[i], n, now, &out[i]);
  }
  return out;
}

std::vector<uint64_t> hashes(size_t n) {
  std::mt19937_64 r(7);
  std::vector<uint64_t> v(n);
  for (auto& x : v) x = r() | 1;
  return v;
}

}  // namespace

TEST(Model, InstanceStateAppliesToItsTunnels) {
  Model m(mesh(Mode::kActiveActive));
  std::string err;
  ASSERT_TRUE(m.set_instance(0, AdminState::kDown, std::nullopt, &err)) << err;
  EXPECT_EQ(m.effective(0), AdminState::kDown);
  EXPECT_EQ(m.effective(1), AdminState::kDown);
  EXPECT_EQ(m.effective(2), AdminState::kUp);
  EXPECT_EQ(m.tunnel_admin(0), AdminState::kUp) << "the tunnel's own state is kept for when the instance returns";
  ASSERT_TRUE(m.set_tunnel(2, AdminState::kDraining, std::nullopt, &err));
  ASSERT_TRUE(m.set_instance(1, AdminState::kDown, std::nullopt, &err));
  EXPECT_EQ(m.effective(2), AdminState::kDown) << "down is more severe than draining";
  ASSERT_TRUE(m.set_instance(1, AdminState::kUp, std::nullopt, &err));
  EXPECT_EQ(m.effective(2), AdminState::kDraining);
}

TEST(Model, BadInputChangesNothing) {
  Model m(mesh(Mode::kActiveActive));
  std::string err;
  EXPECT_FALSE(m.set_tunnel(4, AdminState::kDown, std::nullopt, &err));
  EXPECT_NE(err.find("does not exist"), std::string::npos);
  EXPECT_FALSE(m.set_instance(2, AdminState::kDown, std::nullopt, &err));
  EXPECT_FALSE(m.set_tunnel(0, AdminState::kDown, 100u, &err)) << "deadline without drain";
  EXPECT_FALSE(m.set_weight(0, 2000000, &err));
  for (uint32_t t = 0; t < 4; ++t) {
    EXPECT_EQ(m.effective(t), AdminState::kUp);
    EXPECT_EQ(m.weight(t), 1u);
  }
}

TEST(Model, ActiveStandbyWeights) {
  Model m(mesh(Mode::kActiveStandby));
  std::string err;
  EXPECT_EQ(m.effective_weight(0), 1u);
  EXPECT_EQ(m.effective_weight(2), 0u) << "standby gets no new flows while the active instance is up";
  ASSERT_TRUE(m.set_tunnel(0, AdminState::kDown, std::nullopt, &err));
  EXPECT_EQ(m.effective_weight(2), 0u) << "one active tunnel still up";
  ASSERT_TRUE(m.set_instance(0, AdminState::kDown, std::nullopt, &err));
  EXPECT_EQ(m.effective_weight(2), 1u) << "no active tunnel left: standby takes flows at once";
  m.set_mode(Mode::kActiveActive);
  ASSERT_TRUE(m.set_instance(0, AdminState::kUp, std::nullopt, &err));
  ASSERT_TRUE(m.set_tunnel(0, AdminState::kUp, std::nullopt, &err));
  EXPECT_EQ(m.effective_weight(2), 1u) << "active-active: every up tunnel by weight";
}

TEST(Model, ActiveStandbyFailoverAndReturnKeepPins) {
  Model m(mesh(Mode::kActiveStandby));
  flow::PinTable pins(1 << 16, 1u << 30);
  const auto h = hashes(20000);
  const auto a = place(m, pins, h, 1);
  for (auto t : a) ASSERT_LT(t, 2) << "all flows on the active instance";
  std::string err;
  ASSERT_TRUE(m.set_instance(0, AdminState::kDown, std::nullopt, &err));
  const auto b = place(m, pins, h, 2);
  for (auto t : b) ASSERT_GE(t, 2) << "all flows on the standby";
  ASSERT_TRUE(m.set_instance(0, AdminState::kUp, std::nullopt, &err));
  const auto c = place(m, pins, h, 3);
  EXPECT_EQ(c, b) << "back up: pinned flows stay on the standby";
  // New flows go to the active instance again.
  const auto fresh = place(m, pins, hashes(20001), 4);
  EXPECT_LT(fresh.back(), 2);
}

TEST(Model, OneInstanceDownMovesOnlyItsFlows) {
  Model m(mesh(Mode::kActiveActive));
  flow::PinTable pins(1 << 17, 1u << 30);
  const auto h = hashes(40000);
  const auto a = place(m, pins, h, 1);
  std::string err;
  ASSERT_TRUE(m.set_instance(1, AdminState::kDown, std::nullopt, &err));
  const auto b = place(m, pins, h, 2);
  size_t moved = 0;
  for (size_t i = 0; i < h.size(); ++i) {
    if (a[i] < 2) EXPECT_EQ(b[i], a[i]) << "a flow of the healthy instance moved";
    else {
      EXPECT_LT(b[i], 2);
      ++moved;
    }
  }
  EXPECT_NEAR(double(moved) / double(h.size()), 0.5, 0.02);
}

TEST(Model, DrainDeadlineBecomesDown) {
  Model m(mesh(Mode::kActiveActive));
  std::string err;
  ASSERT_TRUE(m.set_tunnel(1, AdminState::kDraining, 1000u, &err));
  EXPECT_FALSE(m.expire_drains(999));
  EXPECT_EQ(m.effective(1), AdminState::kDraining);
  EXPECT_TRUE(m.expire_drains(1000));
  EXPECT_EQ(m.effective(1), AdminState::kDown);
  // The flow library keeps a draining tunnel with a past deadline, so pins move as drain moves.
  const auto& s = m.specs();
  EXPECT_EQ(s[1].state, flow::TunnelState::kDraining);
  EXPECT_TRUE(s[1].has_deadline);
  EXPECT_EQ(s[1].drain_deadline, 1000u);
  // A real down afterwards is a down.
  ASSERT_TRUE(m.set_tunnel(1, AdminState::kDown, std::nullopt, &err));
  EXPECT_EQ(m.specs()[1].state, flow::TunnelState::kDown);
}
