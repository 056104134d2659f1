// mg::ctrl::validate: one row per rule, the passing command and every way to break it, with the Status and the
// words the data plane replies with (operators and other tests grep them).
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <functional>
#include <string>

#include "ctrl/ctrl.h"

using namespace mg::ctrl;

namespace {

// The version rule's message names both layout versions (whatever kLayoutVersion is now).
const std::string kVersionMessage = "layout version " + std::to_string(kLayoutVersion + 1) +
                                    " (this gateway speaks " + std::to_string(kLayoutVersion) + ")";

struct Row {
  const char* what;
  Command cmd;
  Limits limits;
  Status want;
  const char* message;  // a substring of *why; "" for kOk (why is cleared)
};

Command cmd(Op op, uint32_t target = 0, uint32_t value = 0, uint32_t deadline = 0,
            std::function<void(Command&)> tweak = nullptr) {
  Command c = make_command(op, target, value, deadline);
  c.request_id = 7;
  if (tweak) tweak(c);
  return c;
}

const Limits kGw{4, 2};  // tunnels 0..3, instances 0..1

}  // namespace

TEST(CtrlValidate, MakeCommandFillsTheFixedFields) {
  const Command c = make_command(Op::kTunnelWeight, 3, 250, 0);
  EXPECT_EQ(c.version, kLayoutVersion);
  EXPECT_EQ(c.length, sizeof(Command));
  EXPECT_EQ(c.request_id, 0u);
  EXPECT_EQ(Op(c.op), Op::kTunnelWeight);
  EXPECT_EQ(c.flags, 0);
  EXPECT_EQ(c.target, 3u);
  EXPECT_EQ(c.value, 250u);
  for (uint8_t b : c.reserved) EXPECT_EQ(b, 0);
}

TEST(CtrlValidate, OneRowPerRule) {
  const uint32_t drain = uint32_t(State::kDrain), down = uint32_t(State::kDown);
  const Row rows[] = {
      // Every op, valid.
      {"nop", cmd(Op::kNop), kGw, Status::kOk, ""},
      {"tunnel down", cmd(Op::kTunnelState, 3, down), kGw, Status::kOk, ""},
      {"tunnel drain with deadline", cmd(Op::kTunnelState, 0, drain, kMaxDeadlineMs), kGw, Status::kOk, ""},
      {"weight max", cmd(Op::kTunnelWeight, 1, kMaxWeight), kGw, Status::kOk, ""},
      {"weight 0", cmd(Op::kTunnelWeight, 1, 0), kGw, Status::kOk, ""},
      {"instance drain deadline", cmd(Op::kInstanceState, 1, drain, 1), kGw, Status::kOk, ""},
      {"instance reset", cmd(Op::kInstanceReset, 1), kGw, Status::kOk, ""},
      {"mode standby", cmd(Op::kMode, 0, 1), kGw, Status::kOk, ""},
      {"clear", cmd(Op::kClearCounters), kGw, Status::kOk, ""},
      {"targets ignored where none", cmd(Op::kMode, 99, 0), Limits{}, Status::kOk, ""},
      // version
      {"version", cmd(Op::kNop, 0, 0, 0, [](Command& c) { c.version = kLayoutVersion + 1; }), kGw,
       Status::kBadVersion, kVersionMessage.c_str()},
      // length (checked after the version)
      {"length", cmd(Op::kNop, 0, 0, 0, [](Command& c) { c.length = 32; }), kGw, Status::kBadLength,
       "length 32 (expected 64)"},
      {"version before length",
       cmd(Op::kNop, 0, 0, 0, [](Command& c) { c.length = 32, c.version = 0; }), kGw, Status::kBadVersion,
       "layout version 0"},
      // opcode
      {"opcode", cmd(Op::kCount), kGw, Status::kBadOp, "unknown opcode 7"},
      {"opcode max", cmd(Op::kNop, 0, 0, 0, [](Command& c) { c.op = 0xffff; }), kGw, Status::kBadOp,
       "unknown opcode 65535"},
      // flags and reserved
      {"flags", cmd(Op::kNop, 0, 0, 0, [](Command& c) { c.flags = 1; }), kGw, Status::kBadValue,
       "flags and reserved bytes must be zero"},
      {"reserved last byte", cmd(Op::kNop, 0, 0, 0, [](Command& c) { c.reserved[sizeof c.reserved - 1] = 0x80; }), kGw,
       Status::kBadValue, "flags and reserved bytes must be zero"},
      {"reserved before target", cmd(Op::kTunnelState, 9, 0, 0, [](Command& c) { c.reserved[0] = 1; }), kGw,
       Status::kBadValue, "flags and reserved bytes must be zero"},
      // target range, per op
      {"tunnel state target", cmd(Op::kTunnelState, 4, 0), kGw, Status::kBadTarget, "tunnel 4 out of range (0..3)"},
      {"tunnel weight target", cmd(Op::kTunnelWeight, 4000000000u, 1), kGw, Status::kBadTarget,
       "tunnel 4000000000 out of range (0..3)"},
      {"instance state target", cmd(Op::kInstanceState, 2, 0), kGw, Status::kBadTarget,
       "instance 2 out of range (0..1)"},
      {"instance reset target", cmd(Op::kInstanceReset, 2), kGw, Status::kBadTarget,
       "instance 2 out of range (0..1)"},
      {"no tunnels at all", cmd(Op::kTunnelState, 0, 0), Limits{0, 2}, Status::kBadTarget,
       "tunnel 0 out of range (none)"},
      {"target before state", cmd(Op::kTunnelState, 4, 9), kGw, Status::kBadTarget, "tunnel 4 out of range"},
      // state value
      {"tunnel state value", cmd(Op::kTunnelState, 0, 3), kGw, Status::kBadValue, "state 3 (0 up, 1 drain, 2 down)"},
      {"instance state value", cmd(Op::kInstanceState, 0, 0xffffffffu), kGw, Status::kBadValue,
       "state 4294967295 (0 up, 1 drain, 2 down)"},
      // deadline only with drain
      {"deadline with down", cmd(Op::kTunnelState, 0, down, 5), kGw, Status::kBadValue,
       "a deadline goes with drain only"},
      {"deadline with up", cmd(Op::kInstanceState, 0, 0, 5), kGw, Status::kBadValue,
       "a deadline goes with drain only"},
      {"deadline with weight", cmd(Op::kTunnelWeight, 0, drain, 5), kGw, Status::kBadValue,
       "a deadline goes with drain only"},
      {"deadline with reset", cmd(Op::kInstanceReset, 0, 0, 5), kGw, Status::kBadValue,
       "a deadline goes with drain only"},
      {"deadline with nop", cmd(Op::kNop, 0, drain, 5), kGw, Status::kBadValue, "a deadline goes with drain only"},
      // deadline bound
      {"deadline above 24 h", cmd(Op::kTunnelState, 0, drain, kMaxDeadlineMs + 1), kGw, Status::kBadValue,
       "deadline 86400001 ms is above 24 h"},
      // weight bound
      {"weight above max", cmd(Op::kTunnelWeight, 0, kMaxWeight + 1), kGw, Status::kBadValue,
       "weight 1000001 is above 1000000"},
      // mode
      {"mode", cmd(Op::kMode, 0, 2), kGw, Status::kBadValue, "mode 2 (0 active-active, 1 active-standby)"},
  };
  for (const Row& r : rows) {
    SCOPED_TRACE(r.what);
    std::string why = "stale";
    EXPECT_EQ(validate(r.cmd, r.limits, &why), r.want);
    if (r.want == Status::kOk) {
      EXPECT_EQ(why, "");
    } else {
      EXPECT_NE(why.find(r.message), std::string::npos) << why;
    }
    EXPECT_EQ(validate(r.cmd, r.limits, nullptr), r.want);  // why is optional
  }
}

TEST(CtrlValidate, StatusNames) {
  const std::pair<Status, const char*> names[] = {
      {Status::kOk, "ok"},           {Status::kBadVersion, "bad-version"}, {Status::kBadLength, "bad-length"},
      {Status::kBadOp, "bad-op"},    {Status::kBadTarget, "bad-target"},   {Status::kBadValue, "bad-value"},
      {Status::kRefused, "refused"},
  };
  for (const auto& [s, n] : names) EXPECT_STREQ(to_string(s), n);
}

TEST(CtrlCounters, LookupByName) {
  GatewayInfo g{};
  ASSERT_EQ(add_counter_name(g.counter_names, &g.n_counters, "inside_rx"), 0u);
  ASSERT_EQ(add_counter_name(g.counter_names, &g.n_counters, "evicted"), 1u);
  g.counters[0] = 10;
  g.counters[1] = 20;
  g.counters[2] = 30;  // beyond n: not a counter
  EXPECT_EQ(counter(g, "inside_rx"), 10u);
  EXPECT_EQ(counter(g, "evicted"), 20u);
  EXPECT_EQ(counter(g, "absent"), 0u);
  EXPECT_EQ(counter(g, ""), 0u);
  EXPECT_EQ(counter_index(g.counter_names, g.n_counters, "evicted"), 1u);
  EXPECT_FALSE(counter_index(g.counter_names, g.n_counters, "evict"));
  EXPECT_FALSE(counter_index(g.counter_names, g.n_counters, "evicted_more"));
  EXPECT_EQ(counter_name(g.counter_names, g.n_counters, 1), "evicted");
  EXPECT_EQ(counter_name(g.counter_names, g.n_counters, 2), "");

  // A name of exactly kCounterNameLen characters has no NUL and still matches; a longer one is cut.
  const std::string full(kCounterNameLen, 'x');
  ASSERT_EQ(add_counter_name(g.tunnel_counter_names, &g.n_tunnel_counters, full), 0u);
  ASSERT_EQ(add_counter_name(g.tunnel_counter_names, &g.n_tunnel_counters, "packets_out"), 1u);
  TunnelInfo t{};
  t.counters[0] = 5;
  t.counters[1] = 6;
  EXPECT_EQ(counter(g, t, full), 5u);
  EXPECT_EQ(counter(g, t, "packets_out"), 6u);
  EXPECT_EQ(counter_name(g.tunnel_counter_names, g.n_tunnel_counters, 0), full);
  WorkerInfo w{};
  EXPECT_EQ(counter(g, w, "inside_rx"), 0u);  // the worker list is empty

  // A list fills at kMaxCounters; a count beyond it (another process's garbage) is clamped.
  uint32_t n = 0;
  CounterNames names{};
  for (uint32_t i = 0; i < kMaxCounters; ++i) {
    char name[8];
    std::snprintf(name, sizeof name, "c%u", unsigned(i));
    ASSERT_EQ(add_counter_name(names, &n, name), i);
  }
  EXPECT_FALSE(add_counter_name(names, &n, "one-too-many"));
  EXPECT_EQ(n, kMaxCounters);
  uint64_t values[kMaxCounters] = {};
  values[kMaxCounters - 1] = 99;
  EXPECT_EQ(counter(names, 0xffffffffu, values, "c47"), 99u);
  EXPECT_EQ(counter_name(names, 0xffffffffu, kMaxCounters), "");
}
