// meshgatectl against a control block this test owns: the test fills the mirror, answers commands like the data
// plane would (poll + reply), runs the real binary (path in $MESHGATECTL) and checks output and exit codes.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "ctrl/ctrl.h"
#include "ctrl_test_util.h"

using namespace mg::ctrl;
using mg::ctrl::testing::slot;
using nlohmann::json;

namespace {

struct Result {
  int code = -1;
  std::string out, err;
};

std::string read_all(int fd) {
  std::string s;
  char buf[4096];
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) > 0) s.append(buf, size_t(n));
  return s;
}

// Runs meshgatectl with args; stdout and stderr captured.
Result run_ctl(std::vector<std::string> args) {
  const char* exe = std::getenv("MESHGATECTL");
  Result r;
  if (!exe) {
    r.err = "MESHGATECTL not set";
    return r;
  }
  args.insert(args.begin(), exe);
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  int out[2], err[2];
  if (pipe(out) != 0 || pipe(err) != 0) return r;
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(out[1], 1);
    dup2(err[1], 2);
    close(out[0]);
    close(err[0]);
    execv(exe, argv.data());
    _exit(127);
  }
  close(out[1]);
  close(err[1]);
  // Outputs are small (well under a pipe's buffer), so reading after the exit cannot dead-lock; read both anyway.
  std::thread t([&] { r.err = read_all(err[0]); });
  r.out = read_all(out[0]);
  t.join();
  close(out[0]);
  close(err[0]);
  int st = 0;
  waitpid(pid, &st, 0);
  r.code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  return r;
}

std::string unique_name() { return mg::ctrl::testing::unique_name('c'); }

// A fake data plane: a block with a filled mirror and a thread that answers commands.
class Ctl : public ::testing::Test {
 protected:
  void SetUp() override {
    name_ = unique_name();
    std::string err;
    block_ = Block::create(name_, &err);
    ASSERT_TRUE(block_) << err;
    GatewayInfo& g = g_;
    copy_name(g.name, sizeof g.name, name_);
    g.mode = uint32_t(Mode::kActiveActive);
    g.n_tunnels = 4;
    g.n_instances = 2;
    g.n_workers = 2;
    // The gateway and worker counters the data plane carries; for tunnels the ones meshgatectl has fixed keys for.
    mg::ctrl::testing::declare(g.counter_names, &g.n_counters, mg::ctrl::testing::kGatewayCounters);
    mg::ctrl::testing::declare(g.tunnel_counter_names, &g.n_tunnel_counters,
                               {"packets_out", "bytes_out", "packets_in", "bytes_in", "pinned", "placed", "moved_in",
                                "esp_drops"});
    mg::ctrl::testing::declare(g.worker_counter_names, &g.n_worker_counters, mg::ctrl::testing::kWorkerCounters);
    auto gc = [&](const char* n) -> uint64_t& { return slot(g.counter_names, g.n_counters, g.counters, n); };
    gc("inside_rx") = 1000;
    gc("outside_tx") = 990;
    g.drops[2] = 7;
    copy_name(g.drop_names[2], sizeof g.drop_names[2], "no-tunnel");
    g.esp_drops[4] = 3;
    copy_name(g.esp_drop_names[4], sizeof g.esp_drop_names[4], "icv-mismatch");
    gc("moved_down") = 11;
    gc("evicted") = 2;
    block_->write_gateway(g);
    for (uint32_t i = 0; i < 2; ++i) {
      InstanceInfo in{};
      copy_name(in.name, sizeof in.name, i ? "inst-b" : "inst-a");
      copy_name(in.ip, sizeof in.ip, i ? "198.51.100.2" : "198.51.100.1");
      in.admin = uint32_t(State::kUp);
      block_->write_instance(i, in);
    }
    const char* names[] = {"tun-a1", "tun-a2", "tun-b1", "tun-b2"};
    for (uint32_t t = 0; t < 4; ++t) {
      TunnelInfo r{};
      copy_name(r.name, sizeof r.name, names[t]);
      copy_name(r.instance, sizeof r.instance, t < 2 ? "inst-a" : "inst-b");
      copy_name(r.device, sizeof r.device, t % 2 ? "dev-2" : "dev-1");
      r.instance_index = t / 2;
      r.admin = r.state = uint32_t(t == 1 ? State::kDrain : State::kUp);
      r.weight = r.effective_weight = 100 + t;
      r.out_spi = 0x1000 + t;
      r.in_spi = 0x2000 + t;
      auto tc = [&](const char* n) -> uint64_t& { return tunnel_counter(r, n); };
      tc("packets_out") = 10 * t + 1;
      tc("bytes_out") = 1500 * (10 * t + 1);
      tc("packets_in") = 5 * t;
      tc("bytes_in") = 1400 * 5 * t;
      tc("pinned") = 100 + t;
      tc("placed") = 200 + t;
      tc("moved_in") = t;
      tc("esp_drops") = t == 3 ? 3 : 0;
      r.last_seq_out = 77 + t;
      block_->write_tunnel(t, r);
    }
    for (uint32_t w = 0; w < 2; ++w) {
      WorkerInfo wi{};
      wi.lcore = w + 1;
      slot(g.worker_counter_names, g.n_worker_counters, wi.counters, "inside_rx") = 500;
      slot(g.worker_counter_names, g.n_worker_counters, wi.counters, "outside_tx") = 495;
      block_->write_worker(w, wi);
    }
  }
  uint64_t& tunnel_counter(TunnelInfo& r, const char* n) {
    return slot(g_.tunnel_counter_names, g_.n_tunnel_counters, r.counters, n);
  }
  void TearDown() override {
    stop_responder();
    block_.reset();
  }

  // Answers like the data plane: tunnel 3 refuses state changes; everything else bumps the generation.
  void start_responder() {
    stop_ = false;
    responder_ = std::thread([this] {
      Command c{};
      while (!stop_) {
        if (!block_->poll(&c)) {
          std::this_thread::sleep_for(std::chrono::microseconds(100));
          continue;
        }
        {
          std::lock_guard<std::mutex> lk(mu_);
          got_.push_back(c);
        }
        Reply r{};
        r.request_id = c.request_id;
        if (Op(c.op) == Op::kTunnelState && c.target == 3) {
          r.status = Status::kRefused;
          r.generation = generation_;
          copy_name(r.message, sizeof r.message, "tun-b2 is the last tunnel up");
        } else {
          r.generation = ++generation_;
          block_->set_generation(generation_);
        }
        block_->reply(r);
      }
    });
  }
  void stop_responder() {
    stop_ = true;
    if (responder_.joinable()) responder_.join();
  }
  std::vector<Command> commands() {
    std::lock_guard<std::mutex> lk(mu_);
    return got_;
  }
  Result ctl(std::vector<std::string> args) {
    args.insert(args.begin(), {"--gateway", name_});
    return run_ctl(std::move(args));
  }

  std::string name_;
  GatewayInfo g_{};  // as last written
  std::unique_ptr<Block> block_;
  std::thread responder_;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::vector<Command> got_;
  uint64_t generation_ = 0;
};

}  // namespace

TEST_F(Ctl, OkPathSendsTheRightCommands) {
  start_responder();
  auto r = ctl({"tunnel", "tun-a2", "down"});
  EXPECT_EQ(r.code, 0) << r.out << r.err;
  EXPECT_EQ(r.out, "ok (generation 1)\n");
  r = ctl({"tunnel", "2", "drain", "--deadline", "1.5"});
  EXPECT_EQ(r.code, 0) << r.err;
  r = ctl({"tunnel", "tun-a1", "weight", "250"});
  EXPECT_EQ(r.code, 0) << r.err;
  r = ctl({"instance", "inst-b", "maintenance", "--drain", "--deadline", "30"});
  EXPECT_EQ(r.code, 0) << r.err;
  r = ctl({"instance", "0", "maintenance"});
  EXPECT_EQ(r.code, 0) << r.err;
  r = ctl({"instance", "inst-a", "up"});
  EXPECT_EQ(r.code, 0) << r.err;
  r = ctl({"instance", "inst-a", "reset"});
  EXPECT_EQ(r.code, 0) << r.err;
  r = ctl({"mode", "active-standby"});
  EXPECT_EQ(r.code, 0) << r.err;
  r = ctl({"clear", "counters"});
  EXPECT_EQ(r.code, 0) << r.err;
  r = ctl({"--json", "ping"});  // global options after the subcommand work too: checked below
  EXPECT_EQ(r.code, 0) << r.err;
  auto j = json::parse(r.out);
  EXPECT_EQ(j["ok"], true);
  EXPECT_EQ(j["generation"], 10);
  r = ctl({"ping", "--timeout-ms", "1000"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("ok (generation 11)"), std::string::npos) << r.out;

  const auto got = commands();
  ASSERT_EQ(got.size(), 11u);
  struct Want {
    Op op;
    uint32_t target, value, deadline;
  };
  const Want want[] = {
      {Op::kTunnelState, 1, uint32_t(State::kDown), 0},
      {Op::kTunnelState, 2, uint32_t(State::kDrain), 1500},
      {Op::kTunnelWeight, 0, 250, 0},
      {Op::kInstanceState, 1, uint32_t(State::kDrain), 30000},
      {Op::kInstanceState, 0, uint32_t(State::kDown), 0},
      {Op::kInstanceState, 0, uint32_t(State::kUp), 0},
      {Op::kInstanceReset, 0, 0, 0},
      {Op::kMode, 0, uint32_t(Mode::kActiveStandby), 0},
      {Op::kClearCounters, 0, 0, 0},
      {Op::kNop, 0, 0, 0},
      {Op::kNop, 0, 0, 0},
  };
  for (size_t i = 0; i < got.size(); ++i) {
    SCOPED_TRACE(i);
    EXPECT_EQ(got[i].version, kLayoutVersion);
    EXPECT_EQ(got[i].length, sizeof(Command));
    EXPECT_EQ(Op(got[i].op), want[i].op);
    EXPECT_EQ(got[i].target, want[i].target);
    EXPECT_EQ(got[i].value, want[i].value);
    EXPECT_EQ(got[i].deadline_ms, want[i].deadline);
    EXPECT_EQ(got[i].flags, 0);
    // Who sent it (the gateway's audit line): meshgatectl claims its own uid and pid, a process other than this.
    EXPECT_EQ(got[i].client_uid, uint32_t(geteuid()));
    EXPECT_GT(got[i].client_pid, 0);
    EXPECT_NE(got[i].client_pid, int32_t(getpid()));
  }
}

TEST_F(Ctl, RefusedExitsOne) {
  start_responder();
  auto r = ctl({"tunnel", "tun-b2", "down"});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("refused"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("tun-b2 is the last tunnel up"), std::string::npos) << r.err;
  r = ctl({"--json", "tunnel", "3", "up"});
  EXPECT_EQ(r.code, 1);
  auto j = json::parse(r.out);
  EXPECT_EQ(j["ok"], false);
  EXPECT_EQ(j["status"], "refused");
}

TEST_F(Ctl, UsageErrorsExitTwoAndSendNothing) {
  start_responder();
  const std::vector<std::vector<std::string>> bad = {
      {"tunnel", "no-such-tunnel", "down"},
      {"tunnel", "9", "down"},
      {"instance", "inst-z", "up"},
      {"tunnel", "tun-a1", "weight", "lots"},
      {"tunnel", "tun-a1", "weight", "1000001"},
      {"tunnel", "tun-a1", "weight"},
      {"tunnel", "tun-a1", "sideways"},
      {"tunnel", "tun-a1", "down", "--deadline", "5"},
      {"tunnel", "tun-a1", "drain", "--deadline", "-1"},
      {"tunnel", "tun-a1", "drain", "--deadline", "999999"},
      {"instance", "inst-a", "up", "--drain"},
      {"instance", "inst-a", "maintenance", "--deadline", "5"},
      {"mode", "active-passive"},
      {"clear", "everything"},
      {"show", "nonsense"},
      {"frobnicate"},
      {},
  };
  for (const auto& a : bad) {
    auto r = ctl(a);
    std::string joined;
    for (const auto& s : a) joined += s + " ";
    EXPECT_EQ(r.code, 2) << joined << "\n" << r.out << r.err;
  }
  auto r = ctl({"tunnel", "no-such-tunnel", "down"});
  EXPECT_NE(r.err.find("unknown tunnel 'no-such-tunnel' (known: tun-a1, tun-a2, tun-b1, tun-b2)"),
            std::string::npos)
      << r.err;
  r = run_ctl({"--gateway", "bad/name", "ping"});
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_TRUE(commands().empty());
}

TEST_F(Ctl, NoGatewayExitsThree) {
  auto r = run_ctl({"--gateway", name_ + "-none", "ping"});
  EXPECT_EQ(r.code, 3);
  EXPECT_NE(r.err.find("no gateway is running"), std::string::npos) << r.err;
  r = run_ctl({"--gateway", name_ + "-none", "show", "tunnels"});
  EXPECT_EQ(r.code, 3);

  // Stale block: its owner died without cleaning up.
  const std::string stale = name_ + "-st";
  const pid_t child = fork();
  if (child == 0) {
    std::string e;
    auto b = Block::create(stale, &e);
    _exit(b ? 0 : 1);
  }
  int st = 0;
  waitpid(child, &st, 0);
  ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  r = run_ctl({"--gateway", stale, "tunnel", "tun-a1", "down"});
  EXPECT_EQ(r.code, 3);
  EXPECT_NE(r.err.find("is stale (pid " + std::to_string(child) + ")"), std::string::npos) << r.err;
  r = run_ctl({"--gateway", stale, "--json", "show", "gateway"});
  EXPECT_EQ(r.code, 3);
  EXPECT_EQ(json::parse(r.out)["exit"], 3);
  std::string e;
  EXPECT_TRUE(Block::create(stale, &e)) << e;  // a new gateway starts over it (and unlinks it again here)
}

TEST_F(Ctl, TimeoutAndRingFullExitFour) {
  // Nobody answers: the owner (this process) is alive, so it is a timeout, not "no gateway".
  auto r = ctl({"--timeout-ms", "150", "ping"});
  EXPECT_EQ(r.code, 4);
  EXPECT_NE(r.err.find("timeout"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("is alive"), std::string::npos) << r.err;
  // Fill the ring: immediate "ring full".
  Command c{};
  c.version = kLayoutVersion;
  c.length = sizeof c;
  while (block_->submit(c) == SubmitError::kOk) c.request_id = block_->next_request_id();
  const auto t0 = std::chrono::steady_clock::now();
  r = ctl({"--timeout-ms", "5000", "tunnel", "tun-a1", "up"});
  EXPECT_EQ(r.code, 4);
  EXPECT_NE(r.err.find("ring full"), std::string::npos) << r.err;
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(3));
  // Drained: usable again.
  Command out{};
  while (block_->poll(&out)) {
  }
  start_responder();
  r = ctl({"tunnel", "tun-a1", "up"});
  EXPECT_EQ(r.code, 0) << r.err;
}

TEST_F(Ctl, ShowTunnelsJsonMatchesMirror) {
  auto r = ctl({"show", "tunnels", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  const auto j = json::parse(r.out);
  ASSERT_TRUE(j.is_array());
  ASSERT_EQ(j.size(), 4u);
  const char* states[] = {"up", "draining", "down"};
  for (uint32_t t = 0; t < 4; ++t) {
    SCOPED_TRACE(t);
    TunnelInfo m;
    ASSERT_TRUE(block_->read_tunnel(t, &m));
    const auto& e = j[t];
    EXPECT_EQ(e["index"], t);
    EXPECT_EQ(e["name"], std::string(m.name));
    EXPECT_EQ(e["instance"], std::string(m.instance));
    EXPECT_EQ(e["device"], std::string(m.device));
    EXPECT_EQ(e["instance_index"], m.instance_index);
    EXPECT_EQ(e["admin"], states[m.admin]);
    EXPECT_EQ(e["state"], states[m.state]);
    const std::pair<const char*, uint64_t> numbers[] = {
        {"weight", m.weight},         {"effective_weight", m.effective_weight}, {"out_spi", m.out_spi},
        {"in_spi", m.in_spi},         {"packets_out", tunnel_counter(m, "packets_out")},
        {"bytes_out", tunnel_counter(m, "bytes_out")},
        {"packets_in", tunnel_counter(m, "packets_in")}, {"bytes_in", tunnel_counter(m, "bytes_in")},
        {"pinned", tunnel_counter(m, "pinned")},
        {"placed", tunnel_counter(m, "placed")},         {"moved_in", tunnel_counter(m, "moved_in")},
        {"esp_drops", tunnel_counter(m, "esp_drops")},
        {"last_seq_out", m.last_seq_out}};
    for (const auto& [key, value] : numbers) EXPECT_EQ(e[key], value) << key;
    EXPECT_EQ(e.size(), 20u);
  }
}

TEST_F(Ctl, ShowEverythingHumanAndJson) {
  for (const char* what : {"gateway", "instances", "tunnels", "flows", "counters", "errors"}) {
    SCOPED_TRACE(what);
    auto r = ctl({"show", what});
    EXPECT_EQ(r.code, 0) << r.err;
    EXPECT_FALSE(r.out.empty());
    r = ctl({"--json", "show", what});
    EXPECT_EQ(r.code, 0) << r.err;
    EXPECT_TRUE(json::accept(r.out)) << r.out;
  }
  auto r = ctl({"show", "tunnels"});
  // Aligned columns: every line has its second column at the same offset.
  std::vector<std::string> lines;
  for (size_t p = 0, q; (q = r.out.find('\n', p)) != std::string::npos; p = q + 1) lines.push_back(r.out.substr(p, q - p));
  ASSERT_EQ(lines.size(), 5u) << r.out;
  EXPECT_EQ(lines[0].find("TUNNEL"), lines[1].find("tun-a1"));
  EXPECT_EQ(lines[0].find("OUT_SPI"), lines[2].find("0x00001001"));

  r = ctl({"--json", "show", "errors"});
  auto j = json::parse(r.out);
  EXPECT_EQ(j["dataplane"]["no-tunnel"], 7);
  EXPECT_EQ(j["esp"]["icv-mismatch"], 3);
  EXPECT_EQ(j["dataplane"].size(), 1u);
  r = ctl({"--json", "show", "flows"});
  j = json::parse(r.out);
  EXPECT_EQ(j["moved_down"], 11);
  EXPECT_EQ(j["evicted"], 2);
  EXPECT_EQ(j["tunnels"][2]["pinned"], 102);
  r = ctl({"--json", "show", "counters"});
  j = json::parse(r.out);
  EXPECT_EQ(j["workers"].size(), 2u);
  EXPECT_EQ(j["workers"][1]["lcore"], 2);
  EXPECT_EQ(j["tunnels"][3]["bytes_in"], 1400 * 15);
  r = ctl({"--json", "show", "gateway"});
  j = json::parse(r.out);
  EXPECT_EQ(j["pid"], getpid());
  EXPECT_EQ(j["mode"], "active-active");
  r = ctl({"--json", "show", "instances"});
  j = json::parse(r.out);
  EXPECT_EQ(j[1]["ip"], "198.51.100.2");
}

// A counter that only the block's name lists know of (a data plane newer than this meshgatectl) is shown by name.
TEST_F(Ctl, CounterOnlyInTheNameListIsShown) {
  GatewayInfo& g = g_;
  ASSERT_TRUE(add_counter_name(g.counter_names, &g.n_counters, "brand_new_total"));
  ASSERT_TRUE(add_counter_name(g.worker_counter_names, &g.n_worker_counters, "brand_new_worker"));
  // Every tunnel counter the data plane writes, and one nobody knows yet.
  for (const char* n : {"tx_full", "probes_out", "probe_replies_in", "reflect_in", "reflected", "probe_drops",
                        "probes_deferred", "probe_rtt_sum_us", "probe_rtt_max_us", "fault_drops", "flaps",
                        "suppressions", "brand_new_tunnel"})
    ASSERT_TRUE(add_counter_name(g.tunnel_counter_names, &g.n_tunnel_counters, n));
  slot(g.counter_names, g.n_counters, g.counters, "brand_new_total") = 12345;
  block_->write_gateway(g);
  for (uint32_t t = 0; t < 4; ++t) {
    TunnelInfo r;
    ASSERT_TRUE(block_->read_tunnel(t, &r));
    for (uint32_t i = 8; i < g.n_tunnel_counters; ++i) r.counters[i] = 1000 * (t + 1) + i;  // the added ones
    tunnel_counter(r, "brand_new_tunnel") = 40 + t;
    block_->write_tunnel(t, r);
  }
  for (uint32_t w = 0; w < 2; ++w) {
    WorkerInfo wi;
    ASSERT_TRUE(block_->read_worker(w, &wi));
    slot(g.worker_counter_names, g.n_worker_counters, wi.counters, "brand_new_worker") = 7 + w;
    block_->write_worker(w, wi);
  }

  auto r = ctl({"--json", "show", "counters"});
  ASSERT_EQ(r.code, 0) << r.err;
  auto j = json::parse(r.out);
  EXPECT_EQ(j["gateway"]["brand_new_total"], 12345);
  EXPECT_EQ(j["gateway"]["inside_rx"], 1000);
  EXPECT_EQ(j["gateway"]["evicted"], 2);  // every gateway counter, not only the four of earlier versions
  EXPECT_EQ(j["workers"][1]["brand_new_worker"], 8);
  EXPECT_EQ(j["workers"][1]["inside_rx"], 500);
  for (uint32_t t = 0; t < 4; ++t) {
    SCOPED_TRACE(t);
    EXPECT_EQ(j["tunnels"][t]["brand_new_tunnel"], 40 + t);
    EXPECT_EQ(j["tunnels"][t]["bytes_in"], 1400 * 5 * t);
    EXPECT_EQ(j["tunnels"][t]["pinned"], 100 + t);
    EXPECT_EQ(j["tunnels"][t].size(), 2 + g.n_tunnel_counters);  // index, name and every counter
  }

  r = ctl({"--json", "show", "tunnels"});
  ASSERT_EQ(r.code, 0) << r.err;
  j = json::parse(r.out);
  for (uint32_t t = 0; t < 4; ++t) {
    SCOPED_TRACE(t);
    TunnelInfo m;
    ASSERT_TRUE(block_->read_tunnel(t, &m));
    EXPECT_EQ(j[t]["brand_new_tunnel"], 40 + t);
    for (uint32_t i = 0; i < g.n_tunnel_counters; ++i) {
      const std::string n = counter_name(g.tunnel_counter_names, g.n_tunnel_counters, i);
      EXPECT_EQ(j[t][n], m.counters[i]) << n;
    }
    EXPECT_EQ(j[t]["name"], std::string(m.name));
    EXPECT_EQ(j[t]["last_seq_out"], 77 + t);
  }

  // The human table shows them too, by name.
  r = ctl({"show", "counters"});
  ASSERT_EQ(r.code, 0) << r.err;
  for (const char* n : {"brand_new_total", "brand_new_tunnel", "brand_new_worker", "tx_full", "probe_rtt_max_us",
                        "commands_rejected"})
    EXPECT_NE(r.out.find(n), std::string::npos) << n << "\n" << r.out;
  EXPECT_NE(r.out.find("40"), std::string::npos) << r.out;
}

// Liveness figures come from the tunnel's named counters.
TEST_F(Ctl, LivenessByName) {
  GatewayInfo& g = g_;
  for (const char* n : {"flaps", "probes_out", "probe_replies_in", "reflected"})
    ASSERT_TRUE(add_counter_name(g.tunnel_counter_names, &g.n_tunnel_counters, n));
  block_->write_gateway(g);
  TunnelInfo r;
  ASSERT_TRUE(block_->read_tunnel(2, &r));
  r.liveness = 2;
  r.last_proof_ms_ago = 1500;
  tunnel_counter(r, "flaps") = 3;
  tunnel_counter(r, "probes_out") = 90;
  tunnel_counter(r, "probe_replies_in") = 80;
  tunnel_counter(r, "reflected") = 5;
  block_->write_tunnel(2, r);
  auto res = ctl({"--json", "show", "tunnels"});
  ASSERT_EQ(res.code, 0) << res.err;
  const auto j = json::parse(res.out);
  EXPECT_EQ(j[2]["liveness"]["state"], "down");
  EXPECT_EQ(j[2]["liveness"]["flaps"], 3);
  EXPECT_EQ(j[2]["liveness"]["probes_out"], 90);
  EXPECT_EQ(j[2]["liveness"]["probe_replies_in"], 80);
  EXPECT_EQ(j[2]["reflected"], 5);
  EXPECT_FALSE(j[1].contains("liveness"));
  res = ctl({"show", "tunnels"});
  EXPECT_NE(res.out.find("LIVENESS"), std::string::npos) << res.out;
  EXPECT_NE(res.out.find("1500 ms ago"), std::string::npos) << res.out;
}

// meshgatectl checks a command with validate() before sending: the data plane's rule and words, exit 2, nothing sent.
TEST_F(Ctl, RulesAreValidatedAndNothingIsSent) {
  start_responder();
  const std::pair<std::vector<std::string>, std::string> cases[] = {
      {{"tunnel", "9", "down"}, "tunnel 9 out of range (0..3)"},
      {{"instance", "2", "up"}, "instance 2 out of range (0..1)"},
      {{"tunnel", "tun-a1", "weight", "1000001"}, "weight 1000001 is above 1000000"},
      {{"tunnel", "tun-a1", "down", "--deadline", "5"}, "a deadline goes with drain only"},
      {{"instance", "inst-a", "maintenance", "--deadline", "5"}, "a deadline goes with drain only"},
      {{"tunnel", "tun-a1", "drain", "--deadline", "999999"}, "deadline 999999000 ms is above 24 h"},
  };
  for (const auto& [args, msg] : cases) {
    SCOPED_TRACE(args[0] + " " + args[1] + " " + args[2]);
    auto r = ctl(args);
    EXPECT_EQ(r.code, 2) << r.out << r.err;
    EXPECT_NE(r.err.find(msg), std::string::npos) << r.err;
  }
  EXPECT_TRUE(commands().empty());
  auto r = ctl({"tunnel", "3", "weight", "1000000"});
  EXPECT_EQ(r.code, 0) << r.err;
}

// A block meshgatectl must not believe: another user's (a forged mirror: before, shown with exit 0) or one that
// others may write. Refused with the reason and exit 3, nothing shown or sent.
TEST_F(Ctl, ForgedOrWritableBlockIsRefused) {
  start_responder();
  const std::string path = Block::path_for(name_);
  if (geteuid() == 0) {
    ASSERT_EQ(::chown(path.c_str(), 65534, 65534), 0);
    for (const std::vector<std::string>& a : {std::vector<std::string>{"show", "tunnels"},
                                              std::vector<std::string>{"--json", "show", "gateway"},
                                              std::vector<std::string>{"tunnel", "tun-a1", "down"}}) {
      auto r = ctl(a);
      EXPECT_EQ(r.code, 3) << r.out << r.err;
      EXPECT_EQ(r.out.find("tun-a1"), std::string::npos) << "forged mirror shown: " << r.out;
      EXPECT_NE((r.out + r.err).find("owned by uid 65534"), std::string::npos) << r.out << r.err;
    }
    ASSERT_EQ(::chown(path.c_str(), 0, 0), 0);
  }
  ASSERT_EQ(::chmod(path.c_str(), 0666), 0);
  auto r = ctl({"show", "tunnels"});
  EXPECT_EQ(r.code, 3) << r.out << r.err;
  EXPECT_NE(r.err.find(path + " has mode 0666"), std::string::npos) << r.err;
  EXPECT_TRUE(commands().empty());
  ASSERT_EQ(::chmod(path.c_str(), 0600), 0);
  r = ctl({"show", "tunnels"});
  EXPECT_EQ(r.code, 0) << r.err;
}

// What validate() can judge without the gateway's tunnels and instances is a usage error (2) even when no gateway
// is running (before: 3, "no gateway", because the mirror was read first). Targets are names or indexes that only
// the mirror resolves, so their range is checked after.
TEST(CtlNoGateway, RulesCheckedBeforeTheBlockIsOpened) {
  const std::string none = unique_name().substr(0, 30) + "-x";  // a valid name nobody runs
  const std::pair<std::vector<std::string>, std::string> cases[] = {
      {{"tunnel", "t", "weight", "1000001"}, "weight 1000001 is above 1000000"},
      {{"tunnel", "t", "down", "--deadline", "5"}, "a deadline goes with drain only"},
      {{"instance", "i", "maintenance", "--deadline", "5"}, "a deadline goes with drain only"},
      {{"instance", "i", "up", "--deadline", "5"}, "a deadline goes with drain only"},
      {{"tunnel", "t", "drain", "--deadline", "999999"}, "deadline 999999000 ms is above 24 h"},
  };
  for (const auto& [args, msg] : cases) {
    std::vector<std::string> a = {"--gateway", none};
    a.insert(a.end(), args.begin(), args.end());
    SCOPED_TRACE(args[0] + " " + args[1] + " " + args[2]);
    auto r = run_ctl(a);
    EXPECT_EQ(r.code, 2) << r.out << r.err;
    EXPECT_NE(r.err.find(msg), std::string::npos) << r.err;
  }
  // A valid command still needs the gateway.
  auto r = run_ctl({"--gateway", none, "tunnel", "t", "weight", "5"});
  EXPECT_EQ(r.code, 3) << r.err;
}
