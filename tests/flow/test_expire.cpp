// PinTable::expire, the bounded sweep a worker runs in idle moments: it reclaims idle pins only, at most
// `buckets` buckets per call from a cursor that wraps, and keeps resident() and every tunnel's `pinned` gauge
// equal to the live flows. (test_spread.cpp's ExpireFreesIdlePinsOnlyAndKeepsGaugesTrue covers the totals on
// random flows; here the hashes are chosen so that the test knows which bucket each pin sits in.)
#include <gtest/gtest.h>

#include <array>
#include <vector>

#include "packets.h"

namespace mg::flow::test {
namespace {

constexpr uint64_t kSeed = 0x5eed;
constexpr uint32_t kIdle = 1000;
constexpr uint32_t kCapacity = 4096;  // 1024 buckets of 4 pins
constexpr uint32_t kBuckets = kCapacity / 4;

// A flow hash that lands in bucket b (its primary: the low bits) with upper bits that vary with `salt`, so the
// selection table (which reads the upper 32 bits) spreads them. Never 0.
uint64_t in_bucket(uint32_t b, uint32_t salt) { return (uint64_t(salt * 2654435761u | 1) << 32) | b; }

struct Table {
  std::unique_ptr<const SelectionTable> sel = SelectionTable::build(tunnels({1, 1, 1}), kSeed);
  PinTable pins{kCapacity, kIdle};
  std::vector<uint64_t> old_flows, live_flows;
  std::vector<TunnelId> old_t, live_t;
  std::array<uint64_t, 3> live_per_tunnel{};

  // One flow per bucket seen at t = 0 (idle after kIdle) and one per bucket seen at t = kIdle (still live at
  // kIdle + 1): no bucket overflows, so every pin sits in the bucket its hash names.
  Table() {
    for (uint32_t b = 0; b < kBuckets; ++b) {
      old_flows.push_back(in_bucket(b, 2 * b + 1));
      live_flows.push_back(in_bucket(b, 2 * b + 2));
    }
    old_t = assign_all(pins, *sel, old_flows, 0);
    live_t = assign_all(pins, *sel, live_flows, kIdle);
    for (TunnelId t : live_t) ++live_per_tunnel.at(t);
  }
  uint64_t pinned(TunnelId t) const { return pins.tunnel_counters(t).pinned; }
};

TEST(PinExpire, SetUpAsIntended) {
  Table x;
  ASSERT_EQ(x.pins.resident(), 2 * kBuckets);
  ASSERT_EQ(x.pins.counters().evicted, 0u);
  ASSERT_EQ(x.pins.counters().expired, 0u);
  for (TunnelId t = 0; t < 3; ++t) EXPECT_GT(x.live_per_tunnel[t], 200u) << "all three tunnels hold pins";
}

TEST(PinExpire, BudgetBoundsEachCallAndTheSweepCoversTheTableInTableOverBudgetCalls) {
  Table x;
  const uint32_t now = kIdle + 1, budget = 100;
  // ceil(1024 / 100) = 11 calls: ten of 100 buckets and one that reaches the last 24 before wrapping.
  for (int call = 0; call < 10; ++call) EXPECT_EQ(x.pins.expire(now, budget), budget) << call;
  EXPECT_EQ(x.pins.resident(), 2 * kBuckets - 1000);
  EXPECT_EQ(x.pins.expire(now, budget), kBuckets - 1000);
  EXPECT_EQ(x.pins.resident(), kBuckets);
  EXPECT_EQ(x.pins.counters().expired, kBuckets);
  // Every idle pin is gone; further sweeps find nothing, at any budget.
  EXPECT_EQ(x.pins.expire(now, budget), 0u);
  EXPECT_EQ(x.pins.expire(now, kBuckets * 4), 0u);
  EXPECT_EQ(x.pins.expire(now, 0), 0u);
}

TEST(PinExpire, GaugesDropToTheLiveFlowsOfEachTunnel) {
  Table x;
  std::array<uint64_t, 3> before{};
  for (TunnelId t = 0; t < 3; ++t) before[t] = x.pinned(t);
  for (uint32_t i = 0; i < kBuckets / 64; ++i) x.pins.expire(kIdle + 1, 64);
  for (TunnelId t = 0; t < 3; ++t) {
    EXPECT_EQ(x.pinned(t), x.live_per_tunnel[t]) << "tunnel " << t;
    EXPECT_LT(x.pinned(t), before[t]) << "tunnel " << t;
  }
  EXPECT_EQ(x.pinned(0) + x.pinned(1) + x.pinned(2), x.pins.resident());
}

TEST(PinExpire, LivePinsStayAndStillHit) {
  Table x;
  x.pins.expire(kIdle + 1, kBuckets);
  const uint64_t hits = x.pins.counters().hits, new_flows = x.pins.counters().new_flows;
  EXPECT_EQ(assign_all(x.pins, *x.sel, x.live_flows, kIdle + 2), x.live_t);
  EXPECT_EQ(x.pins.counters().hits - hits, kBuckets);
  EXPECT_EQ(x.pins.counters().new_flows, new_flows);
  // A reclaimed flow that comes back is a new flow (placed by the selection table as before), not a move.
  const uint64_t moved_idle = x.pins.counters().moved_idle;
  EXPECT_EQ(assign_all(x.pins, *x.sel, x.old_flows, kIdle + 2), x.old_t);
  EXPECT_EQ(x.pins.counters().new_flows - new_flows, kBuckets);
  EXPECT_EQ(x.pins.counters().moved_idle, moved_idle);
}

TEST(PinExpire, APinIdleForExactlyTheTimeoutIsStillLive) {
  Table x;
  // At kIdle the old flows are exactly kIdle ticks old: assign_burst would still follow them, so must expire.
  EXPECT_EQ(x.pins.expire(kIdle, kBuckets), 0u);
  EXPECT_EQ(x.pins.resident(), 2 * kBuckets);
  EXPECT_EQ(x.pins.expire(kIdle + 1, kBuckets), kBuckets);
}

TEST(PinExpire, TheCursorResumesWhereTheLastCallStopped) {
  Table x;
  // Half the table swept at a time when nothing is idle yet: the cursor still advances.
  EXPECT_EQ(x.pins.expire(kIdle, kBuckets / 2), 0u);
  // Now the old pins are idle: the next half-table call sweeps the second half, not the first again.
  EXPECT_EQ(x.pins.expire(kIdle + 1, kBuckets / 2), kBuckets / 2);
  const std::vector<uint64_t> first_half(x.old_flows.begin(), x.old_flows.begin() + kBuckets / 2);
  const std::vector<uint64_t> second_half(x.old_flows.begin() + kBuckets / 2, x.old_flows.end());
  for (uint64_t h : first_half) EXPECT_NE(x.pins.peek(*x.sel, h, kIdle), kNoTunnel);
  const uint64_t hits = x.pins.counters().hits;
  assign_all(x.pins, *x.sel, first_half, kIdle);  // not yet idle at kIdle: followed, still pinned
  EXPECT_EQ(x.pins.counters().hits - hits, kBuckets / 2);
  const uint64_t nf = x.pins.counters().new_flows;
  assign_all(x.pins, *x.sel, second_half, kIdle);  // reclaimed: placed anew
  EXPECT_EQ(x.pins.counters().new_flows - nf, kBuckets / 2);
}

}  // namespace
}  // namespace mg::flow::test
