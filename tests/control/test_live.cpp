// The control path against a running meshgate forwarding traffic (bench vdevs): bad commands are refused
// field by field and change nothing; good ones bump the generation; killed clients and a killed gateway leave
// everything usable; an instance reset continues its sequence numbers.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <chrono>
#include <thread>

#include "live_gateway.h"

using mg::ctrl::Command;
using mg::ctrl::Op;
using mg::ctrl::Reply;
using mg::ctrl::Status;
using mg::harness::LiveGateway;

namespace {

Command cmd(mg::ctrl::Block& b, Op op, uint32_t target, uint32_t value, uint32_t deadline = 0) {
  Command c{};
  c.version = mg::ctrl::kLayoutVersion;
  c.length = sizeof(Command);
  c.request_id = b.next_request_id();
  c.op = uint16_t(op);
  c.target = target;
  c.value = value;
  c.deadline_ms = deadline;
  return c;
}

Reply roundtrip(mg::ctrl::Block& b, const Command& c) {
  // A full ring is an immediate error to the caller; commands still queued from an earlier step drain soon.
  mg::ctrl::SubmitError se = b.submit(c);
  for (int i = 0; i < 300 && se == mg::ctrl::SubmitError::kFull; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    se = b.submit(c);
  }
  EXPECT_EQ(se, mg::ctrl::SubmitError::kOk);
  auto r = b.wait_reply(c.request_id, 3000);
  EXPECT_TRUE(r.has_value()) << "no reply";
  return r.value_or(Reply{});
}

bool wait_forwarding(const LiveGateway& g) {
  const uint64_t a = g.forwarded();
  for (int i = 0; i < 40; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    if (g.forwarded() > a) return true;
  }
  return false;
}

}  // namespace

TEST(ControlLive, BadCommandsAreRefusedAndChangeNothing) {
  LiveGateway g("mgc-bad");
  ASSERT_TRUE(g.ok()) << g.error;
  auto& b = *g.block;
  struct Case {
    const char* what;
    Command c;
    Status want;
  };
  std::vector<Case> cases;
  auto add = [&](const char* what, Command c, Status s) { cases.push_back({what, c, s}); };
  {
    Command c = cmd(b, Op::kTunnelWeight, 0, 5);
    c.version = mg::ctrl::kLayoutVersion + 1;
    add("wrong layout version", c, Status::kBadVersion);
  }
  {
    Command c = cmd(b, Op::kTunnelWeight, 0, 5);
    c.length = sizeof(Command) - 8;
    add("truncated message", c, Status::kBadLength);
  }
  add("unknown opcode", [&] { Command c = cmd(b, Op::kNop, 0, 0); c.op = 77; return c; }(), Status::kBadOp);
  add("tunnel id out of range", cmd(b, Op::kTunnelState, 4, 2), Status::kBadTarget);
  add("huge tunnel id", cmd(b, Op::kTunnelWeight, 0xffffffffu, 1), Status::kBadTarget);
  add("instance id out of range", cmd(b, Op::kInstanceState, 2, 2), Status::kBadTarget);
  add("reset of a missing instance", cmd(b, Op::kInstanceReset, 9, 0), Status::kBadTarget);
  add("state 3", cmd(b, Op::kTunnelState, 0, 3), Status::kBadValue);
  add("deadline with down", cmd(b, Op::kTunnelState, 0, 2, 1000), Status::kBadValue);
  add("deadline beyond 24 h", cmd(b, Op::kTunnelState, 0, 1, 25u * 3600 * 1000), Status::kBadValue);
  add("weight too large", cmd(b, Op::kTunnelWeight, 0, 2000000), Status::kBadValue);
  add("mode 7", cmd(b, Op::kMode, 0, 7), Status::kBadValue);
  {
    Command c = cmd(b, Op::kTunnelWeight, 0, 5);
    c.reserved[3] = 1;
    add("reserved bytes set", c, Status::kBadValue);
  }
  {
    Command c = cmd(b, Op::kTunnelWeight, 0, 5);
    c.flags = 1;
    add("unknown flags", c, Status::kBadValue);
  }
  const uint64_t gen0 = b.generation();
  for (auto& k : cases) {
    const Reply r = roundtrip(b, k.c);
    EXPECT_EQ(r.status, k.want) << k.what << ": " << r.message;
    EXPECT_EQ(r.generation, gen0) << k.what;
    EXPECT_NE(std::string(r.message), "") << k.what;
  }
  EXPECT_EQ(b.generation(), gen0) << "a refused command changed the state";
  mg::ctrl::TunnelInfo t;
  ASSERT_TRUE(b.read_tunnel(0, &t));
  EXPECT_EQ(t.weight, 1u);
  EXPECT_EQ(t.state, uint32_t(mg::ctrl::State::kUp));
  EXPECT_TRUE(wait_forwarding(g)) << "traffic stopped";
  EXPECT_EQ(g.stop(), 0) << "meshgate exit status (mbuf accounting at exit)";
}

TEST(ControlLive, GoodCommandsBumpTheGenerationAndShowInTheMirror) {
  LiveGateway g("mgc-good");
  ASSERT_TRUE(g.ok()) << g.error;
  auto& b = *g.block;
  const uint64_t gen0 = b.generation();
  Reply r = roundtrip(b, cmd(b, Op::kTunnelState, 2, uint32_t(mg::ctrl::State::kDown)));
  ASSERT_EQ(r.status, Status::kOk) << r.message;
  EXPECT_EQ(r.generation, gen0 + 1);
  mg::ctrl::TunnelInfo t;
  ASSERT_TRUE(b.read_tunnel(2, &t));
  EXPECT_EQ(t.state, uint32_t(mg::ctrl::State::kDown)) << "the mirror is refreshed before the reply";
  // The tunnel's flows moved: its pins are gone once traffic has passed again.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  mg::ctrl::GatewayInfo gi;
  ASSERT_TRUE(b.read_gateway(&gi));
  ASSERT_TRUE(b.read_tunnel(2, &t));
  const uint64_t p0 = mg::ctrl::counter(gi, t, "packets_out");
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  ASSERT_TRUE(b.read_tunnel(2, &t));
  EXPECT_EQ(mg::ctrl::counter(gi, t, "packets_out"), p0) << "a down tunnel still carries traffic";
  r = roundtrip(b, cmd(b, Op::kMode, 0, uint32_t(mg::ctrl::Mode::kActiveStandby)));
  EXPECT_EQ(r.status, Status::kOk);
  r = roundtrip(b, cmd(b, Op::kMode, 0, uint32_t(mg::ctrl::Mode::kActiveActive)));
  EXPECT_EQ(r.status, Status::kOk);
  EXPECT_EQ(r.generation, gen0 + 3);
  EXPECT_TRUE(wait_forwarding(g));
  EXPECT_EQ(g.stop(), 0);
}

TEST(ControlLive, RepliesNobodyCollectsAreHarmless) {
  LiveGateway g("mgc-norep");
  ASSERT_TRUE(g.ok()) << g.error;
  auto& b = *g.block;
  for (int i = 0; i < 3 * int(mg::ctrl::kReplySlots); ++i) {
    Command c = cmd(b, Op::kNop, 0, 0);
    while (b.submit(c) == mg::ctrl::SubmitError::kFull) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  const Reply r = roundtrip(b, cmd(b, Op::kTunnelWeight, 1, 3));
  EXPECT_EQ(r.status, Status::kOk) << r.message;
  EXPECT_TRUE(wait_forwarding(g));
}

TEST(ControlLive, KilledClientsLeaveTheBlockUsable) {
  LiveGateway g("mgc-kill");
  ASSERT_TRUE(g.ok()) << g.error;
  for (int round = 0; round < 6; ++round) {
    const pid_t c = fork();
    if (c == 0) {
      std::string e;
      mg::ctrl::SubmitError code;
      auto b = mg::ctrl::Block::open(g.name, &e, &code);
      if (!b) _exit(1);
      for (uint32_t i = 0;; ++i) {
        Command x = cmd(*b, Op::kTunnelWeight, i % 4, 1 + i % 3);
        b->submit(x);
        mg::ctrl::TunnelInfo t;
        b->read_tunnel(i % 4, &t);
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20 + 37 * round));
    kill(c, SIGKILL);
    waitpid(c, nullptr, 0);
  }
  auto& b = *g.block;
  // The killed clients may have left the ring full of valid commands: it drains (a full ring is the caller's
  // immediate error, never a stall), then works as before.
  Command c = cmd(b, Op::kNop, 0, 0);
  mg::ctrl::SubmitError se = mg::ctrl::SubmitError::kFull;
  for (int i = 0; i < 400 && se == mg::ctrl::SubmitError::kFull; ++i) {
    se = b.submit(c);
    if (se == mg::ctrl::SubmitError::kFull) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_EQ(se, mg::ctrl::SubmitError::kOk) << "the ring never drained";
  auto r = b.wait_reply(c.request_id, 3000);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, Status::kOk);
  EXPECT_TRUE(wait_forwarding(g)) << "the data plane stopped forwarding";
  EXPECT_EQ(g.stop(), 0);
}

TEST(ControlLive, KilledGatewayIsNoGatewayAndANewOneStartsOverTheStaleBlock) {
  std::string name;
  {
    LiveGateway g("mgc-dead");
    ASSERT_TRUE(g.ok()) << g.error;
    name = g.name;
    kill(g.pid, SIGKILL);
    waitpid(g.pid, nullptr, 0);
    g.pid = -1;
    std::string e;
    mg::ctrl::SubmitError code = mg::ctrl::SubmitError::kOk;
    EXPECT_EQ(mg::ctrl::Block::open(g.name, &e, &code), nullptr);
    EXPECT_EQ(code, mg::ctrl::SubmitError::kNoGateway) << e;
  }
  // The stale block (and EAL files) of the killed process are still there; a new gateway takes over.
  LiveGateway again("mgc-dead");
  ASSERT_TRUE(again.ok()) << again.error;
  EXPECT_TRUE(wait_forwarding(again));
  EXPECT_EQ(again.stop(), 0);
}

TEST(ControlLive, ResetContinuesSequenceNumbersAndLeavesTheOtherInstanceAlone) {
  LiveGateway g("mgc-reset");
  ASSERT_TRUE(g.ok()) << g.error;
  auto& b = *g.block;
  ASSERT_TRUE(wait_forwarding(g));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  mg::ctrl::TunnelInfo before[4], after[4];
  for (uint32_t t = 0; t < 4; ++t) ASSERT_TRUE(b.read_tunnel(t, &before[t]));
  const Reply r = roundtrip(b, cmd(b, Op::kInstanceReset, 0, 0));
  ASSERT_EQ(r.status, Status::kOk) << r.message;
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  for (uint32_t t = 0; t < 4; ++t) ASSERT_TRUE(b.read_tunnel(t, &after[t]));
  for (uint32_t t = 0; t < 4; ++t) {
    EXPECT_GE(after[t].last_seq_out, before[t].last_seq_out)
        << after[t].name << ": the sequence number went back: a (key, IV) pair would repeat";
    EXPECT_EQ(after[t].state, uint32_t(mg::ctrl::State::kUp)) << after[t].name;
  }
  mg::ctrl::InstanceInfo ia;
  ASSERT_TRUE(b.read_instance(0, &ia));
  EXPECT_EQ(ia.resets, 1u);
  EXPECT_EQ(ia.admin, uint32_t(mg::ctrl::State::kUp));
  // gw-b's tunnels (2, 3) kept their flows: their pins did not drop.
  mg::ctrl::GatewayInfo gi;
  ASSERT_TRUE(b.read_gateway(&gi));
  for (uint32_t t = 2; t < 4; ++t)
    EXPECT_GE(mg::ctrl::counter(gi, after[t], "pinned"), mg::ctrl::counter(gi, before[t], "pinned")) << after[t].name;
  EXPECT_TRUE(wait_forwarding(g));
  EXPECT_EQ(g.stop(), 0);
}
