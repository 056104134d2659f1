// Every counter the data plane declares (its tables in dataplane/dataplane.h) reaches every output of a running
// gateway: the control block's mirror, DPDK telemetry and meshgatectl. And a command that changes nothing says so
// and leaves the generation alone.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <array>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <set>

#include "dataplane/dataplane.h"
#include "live_gateway.h"

namespace dp = mg::dp;
namespace c = mg::ctrl;
using mg::harness::LiveGateway;

namespace {

// One request on DPDK's telemetry socket (/var/run/dpdk/<prefix>/dpdk_telemetry.v2, root's runtime dir).
nlohmann::json telemetry(const std::string& prefix, const std::string& cmd) {
  const std::string path = "/var/run/dpdk/" + prefix + "/dpdk_telemetry.v2";
  const int fd = socket(AF_UNIX, SOCK_SEQPACKET, 0);
  if (fd < 0) return {};
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::snprintf(a.sun_path, sizeof a.sun_path, "%s", path.c_str());
  nlohmann::json out;
  std::vector<char> buf(1 << 20);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 && read(fd, buf.data(), buf.size()) > 0 &&
      write(fd, cmd.data(), cmd.size()) == ssize_t(cmd.size())) {
    const ssize_t n = read(fd, buf.data(), buf.size());
    if (n > 0) out = nlohmann::json::parse(std::string(buf.data(), size_t(n)), nullptr, false);
  }
  close(fd);
  return out;
}

std::string run(const std::string& cmd) {
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return out;
  std::array<char, 4096> b;
  while (size_t n = fread(b.data(), 1, b.size(), p)) out.append(b.data(), n);
  pclose(p);
  return out;
}

}  // namespace

TEST(Counters, EveryTableCounterInMirrorTelemetryAndMeshgatectl) {
  LiveGateway g("mgc-ctr");
  ASSERT_TRUE(g.ok()) << g.error;
  c::GatewayInfo gi;
  ASSERT_TRUE(g.block->read_gateway(&gi));
  // The mirror: each table's names, in table order, nothing more.
  std::vector<std::string> want_g, want_t, want_w;
  for (const auto& x : dp::kGatewayCounters) want_g.push_back(x.name);
  for (const auto& x : dp::kTunnelCounters) want_t.push_back(x.name);
  for (const auto& x : dp::kWorkerCounters) want_w.push_back(x.name);
  ASSERT_EQ(gi.n_counters, want_g.size());
  ASSERT_EQ(gi.n_tunnel_counters, want_t.size());
  ASSERT_EQ(gi.n_worker_counters, want_w.size());
  for (uint32_t i = 0; i < want_g.size(); ++i) EXPECT_EQ(c::counter_name(gi.counter_names, gi.n_counters, i), want_g[i]);
  for (uint32_t i = 0; i < want_t.size(); ++i)
    EXPECT_EQ(c::counter_name(gi.tunnel_counter_names, gi.n_tunnel_counters, i), want_t[i]);
  for (uint32_t i = 0; i < want_w.size(); ++i)
    EXPECT_EQ(c::counter_name(gi.worker_counter_names, gi.n_worker_counters, i), want_w[i]);
  for (uint32_t r = 0; r < dp::kDropCount; ++r) EXPECT_STREQ(gi.drop_names[r], dp::kDropNames[r]);
  // Traffic flows, and the mirror's tunnel records carry it (waited for: a busy host may be slow to start).
  uint64_t out = 0;
  for (int i = 0; i < 200 && out == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    ASSERT_TRUE(g.block->read_gateway(&gi));
    for (uint32_t t = 0; t < gi.n_tunnels; ++t) {
      c::TunnelInfo ti;
      ASSERT_TRUE(g.block->read_tunnel(t, &ti));
      out += c::counter(gi, ti, "packets_out");
    }
  }
  EXPECT_GT(out, 0u) << "the tunnels' packets_out in the mirror";

  // DPDK telemetry.
  const nlohmann::json st = telemetry(g.name, "/meshgate/stats");
  ASSERT_TRUE(st.contains("/meshgate/stats")) << st.dump();
  for (const auto& x : dp::kGatewayCounters) EXPECT_TRUE(st["/meshgate/stats"].contains(x.name)) << x.name;
  for (const char* n : dp::kDropNames) EXPECT_TRUE(st["/meshgate/stats"].contains(n)) << n;
  const nlohmann::json tt = telemetry(g.name, "/meshgate/tunnels");
  ASSERT_TRUE(tt.contains("/meshgate/tunnels")) << tt.dump();
  ASSERT_EQ(tt["/meshgate/tunnels"].size(), gi.n_tunnels);
  for (const auto& n : tt["/meshgate/tunnels"]) {
    const std::string name = n.get<std::string>();
    const nlohmann::json one = telemetry(g.name, "/meshgate/tunnel," + name);
    ASSERT_TRUE(one.contains("/meshgate/tunnel")) << one.dump();
    EXPECT_EQ(one["/meshgate/tunnel"]["name"], name);
    EXPECT_EQ(one["/meshgate/tunnel"]["state"], "up");
    for (const auto& x : dp::kTunnelCounters) EXPECT_TRUE(one["/meshgate/tunnel"].contains(x.name)) << name << " " << x.name;
  }

  // meshgatectl, which knows none of these names: it walks what the block carries.
  const char* ctl = std::getenv("MESHGATECTL");
  ASSERT_NE(ctl, nullptr);
  const auto j = nlohmann::json::parse(run(std::string(ctl) + " --gateway " + g.name + " show counters --json"), nullptr,
                                       false);
  ASSERT_TRUE(j.is_object()) << "meshgatectl show counters --json";
  for (const auto& x : dp::kGatewayCounters) EXPECT_TRUE(j["gateway"].contains(x.name)) << x.name;
  ASSERT_EQ(j["tunnels"].size(), gi.n_tunnels);
  for (const auto& t : j["tunnels"])
    for (const auto& x : dp::kTunnelCounters) EXPECT_TRUE(t.contains(x.name)) << x.name;
  for (const auto& w : j["workers"])
    for (const auto& x : dp::kWorkerCounters) EXPECT_TRUE(w.contains(x.name)) << x.name;
  EXPECT_EQ(g.stop(), 0);
}

TEST(Counters, SameStateAgainChangesNothing) {
  LiveGateway g("mgc-noop");
  ASSERT_TRUE(g.ok()) << g.error;
  auto& b = *g.block;
  c::SubmitError se;
  auto r = b.call(c::Op::kTunnelState, 1, uint32_t(c::State::kDown), 0, 3000, &se);
  ASSERT_TRUE(r) << "no reply";
  ASSERT_EQ(r->status, c::Status::kOk) << r->message;
  const uint64_t gen = r->generation;
  EXPECT_EQ(b.generation(), gen);
  // Down again: ok, said to be a no-op, nothing published.
  r = b.call(c::Op::kTunnelState, 1, uint32_t(c::State::kDown), 0, 3000, &se);
  ASSERT_TRUE(r) << "no reply";
  EXPECT_EQ(r->status, c::Status::kOk) << r->message;
  EXPECT_EQ(r->generation, gen) << "a repeated down published a new state";
  EXPECT_NE(std::string(r->message).find("already down"), std::string::npos) << r->message;
  // The same for an instance, a weight and the mode.
  r = b.call(c::Op::kInstanceState, 0, uint32_t(c::State::kUp), 0, 3000, &se);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->generation, gen) << r->message;
  EXPECT_NE(std::string(r->message).find("already up"), std::string::npos) << r->message;
  c::GatewayInfo gi;
  c::TunnelInfo ti;
  ASSERT_TRUE(b.read_gateway(&gi));
  ASSERT_TRUE(b.read_tunnel(0, &ti));
  r = b.call(c::Op::kTunnelWeight, 0, ti.weight, 0, 3000, &se);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->generation, gen) << r->message;
  r = b.call(c::Op::kMode, 0, gi.mode, 0, 3000, &se);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->generation, gen) << r->message;
  // A real change still publishes.
  r = b.call(c::Op::kTunnelState, 1, uint32_t(c::State::kUp), 0, 3000, &se);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, c::Status::kOk);
  EXPECT_EQ(r->generation, gen + 1);
  EXPECT_EQ(g.stop(), 0);
}
