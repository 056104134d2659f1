// meshgate-spread end to end: a pcap written here byte by byte, synthetic flows, --json checked by number, and
// the exit codes of bad input. The binary's path comes from MESHGATE_SPREAD (set by meson).
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "packets.h"

namespace mg::flow::test {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

struct Outcome {
  int rc = -1;
  std::string out;
};

class Tool : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* b = std::getenv("MESHGATE_SPREAD");
    ASSERT_NE(b, nullptr) << "MESHGATE_SPREAD not set";
    bin = b;
    dir = fs::temp_directory_path() / ("mg-spread-test-" + std::to_string(::getpid()));
    fs::create_directories(dir);
    write(dir / "gw.toml", config(65537, "gw-b"));
  }
  void TearDown() override { fs::remove_all(dir); }

  static std::string config(uint32_t table_size, const std::string& last_instance) {
    std::string s = "[flow]\nseed = 0x5eed\ntable_size = " + std::to_string(table_size) +
                    "\npin_idle_timeout_ms = 30000\n"
                    // A gateway file as lib/config reads it for the tool (no SAs, no ports): [gateway], [inside]
                    // prefixes and outer addresses, which the tool's own reader used to ignore.
                    "[gateway]\nname = \"spread\"\nmode = \"active-active\"\n[inside]\nprefixes = [\"10.0.0.0/8\"]\n"
                    "[[instance]]\nname = \"gw-a\"\nipv4 = \"192.0.2.1\"\n[[instance]]\nname = \"gw-b\"\nipv4 = \"192.0.2.2\"\n"
                    "[[device]]\nname = \"dc-1\"\nipv4 = \"198.51.100.1\"\n[[device]]\nname = \"dc-2\"\nipv4 = \"198.51.100.2\"\n";
    const char* tun[4][2] = {{"gw-a", "dc-1"}, {"gw-a", "dc-2"}, {"gw-b", "dc-1"}, {nullptr, "dc-2"}};
    for (auto& t : tun)
      s += "[[tunnel]]\ninstance = \"" + (t[0] ? std::string(t[0]) : last_instance) + "\"\ndevice = \"" + t[1] +
           "\"\nweight = 1\n";
    return s;
  }
  static void write(const fs::path& p, const std::string& s) { std::ofstream(p, std::ios::binary) << s; }

  Outcome run(const std::string& args) {
    const std::string cmd = bin + " " + args + " 2>" + (dir / "err").string();
    FILE* f = ::popen(cmd.c_str(), "r");
    Outcome r;
    if (!f) return r;
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) r.out.append(buf, n);
    const int st = ::pclose(f);
    r.rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    std::ifstream e(dir / "err");
    err.assign(std::istreambuf_iterator<char>(e), {});
    return r;
  }
  json run_json(const std::string& args) {
    const Outcome r = run(args + " --json");
    EXPECT_EQ(r.rc, 0) << err;
    return json::parse(r.out);
  }
  std::string cfg() const { return "-c " + (dir / "gw.toml").string(); }

  std::string bin, err;
  fs::path dir;
};

// Classic pcap, little-endian, microsecond timestamps.
class PcapWriter {
 public:
  explicit PcapWriter(uint32_t linktype) {
    u32(0xa1b2c3d4), u16(2), u16(4), u32(0), u32(0), u32(65535), u32(linktype);
  }
  void frame(const std::vector<uint8_t>& f, uint32_t ms) {
    u32(ms / 1000), u32(ms % 1000 * 1000), u32(uint32_t(f.size())), u32(uint32_t(f.size()));
    bytes.insert(bytes.end(), f.begin(), f.end());
  }
  std::string str() const { return std::string(bytes.begin(), bytes.end()); }

 private:
  void u32(uint32_t v) { for (int i = 0; i < 4; ++i) bytes.push_back(uint8_t(v >> (8 * i))); }
  void u16(uint16_t v) { for (int i = 0; i < 2; ++i) bytes.push_back(uint8_t(v >> (8 * i))); }
  std::vector<uint8_t> bytes;
};

std::vector<uint8_t> ether(const std::vector<uint8_t>& l3, uint16_t type, bool vlan = false) {
  std::vector<uint8_t> f(12, 0x02);
  if (vlan) append<4>(f, {0x81, 0x00, 0x00, 0x64});
  append<2>(f, {uint8_t(type >> 8), uint8_t(type)});
  f.resize(f.size() + l3.size());
  std::copy(l3.begin(), l3.end(), f.end() - ptrdiff_t(l3.size()));
  return f;
}

TEST_F(Tool, PcapCountsFlowsPacketsBytesAndSkipsNonIp) {
  PcapWriter w(1);  // Ethernet
  uint64_t l3_bytes = 0, packets = 0;
  uint32_t ms = 0;
  const auto add = [&](const std::vector<uint8_t>& l3, uint16_t type = 0x0800, bool vlan = false) {
    w.frame(ether(l3, type, vlan), ms += 10);
    l3_bytes += l3.size();
    ++packets;
  };
  for (int round = 0; round < 5; ++round)
    for (uint16_t f = 0; f < 40; ++f) add(ipv4({.sport = uint16_t(5000 + f), .payload = uint16_t(100 + f)}));
  for (uint8_t f = 0; f < 10; ++f)
    for (int k = 0; k < 3; ++k) add(ipv6({.src_last = f, .sport = 9}), 0x86dd, /*vlan=*/f % 2 == 0);
  // One fragmented datagram: one flow, two packets.
  add(ipv4({.src = 0x0a0000ff, .frag = net::kIpv4Mf, .payload = 1480}));
  add(ipv4({.src = 0x0a0000ff, .frag = 185, .payload = 20}));
  w.frame(ether(std::vector<uint8_t>(28, 0), 0x0806), ms += 10);  // ARP: skipped
  write(dir / "t.pcap", w.str());

  const json j = run_json(cfg() + " --pcap " + (dir / "t.pcap").string());
  EXPECT_EQ(j["flows"], 40 + 10 + 1);
  EXPECT_EQ(j["packets"], packets);
  EXPECT_EQ(j["bytes"], l3_bytes);
  EXPECT_EQ(j["skipped"], 1);
  uint64_t p = 0, f = 0;
  for (const auto& t : j["tunnels"]) p += t["packets"].get<uint64_t>(), f += t["flows"].get<uint64_t>();
  EXPECT_EQ(p, packets);
  EXPECT_EQ(f, 51u) << "no flow may use two tunnels without an event";
  EXPECT_EQ(j["counters"]["new_flows"], 51);
}

TEST_F(Tool, RawIpPcapWithDownEvent) {
  PcapWriter w(101);  // LINKTYPE_RAW
  for (int round = 0; round < 4; ++round)
    for (uint16_t f = 0; f < 500; ++f) w.frame(ipv4({.sport = f}), uint32_t(round * 1000 + f));
  write(dir / "raw.pcap", w.str());
  const json j = run_json(cfg() + " --pcap " + (dir / "raw.pcap").string() + " --event 'down gw-a/dc-2 at 50%'");
  EXPECT_EQ(j["flows"], 500);
  ASSERT_EQ(j["events"].size(), 1u);
  const auto& e = j["events"][0];
  EXPECT_EQ(e["at_packet"], 1000);
  EXPECT_EQ(e["active_flows"], 500);
  // Exactly the flows of the tunnel that went down move, and every one of them.
  const uint64_t on1_before = j["tunnels"][1]["flows"];
  EXPECT_EQ(e["moved_at_once"], on1_before);
  EXPECT_EQ(e["moved_observed"], on1_before);
  EXPECT_GT(e["moved_share"].get<double>(), 0.18);
  EXPECT_LT(e["moved_share"].get<double>(), 0.32);
  EXPECT_EQ(j["tunnels"][1]["state_at_end"], "down");
  EXPECT_EQ(j["tunnels"][1]["packets"].get<uint64_t>(), 2 * on1_before) << "two rounds before the event";
  EXPECT_EQ(j["tunnels"][1]["pins_at_end"], 0);
  uint64_t moved_in = 0, pins = 0;
  for (const auto& t : j["tunnels"]) moved_in += t["moved_in"].get<uint64_t>(), pins += t["pins_at_end"].get<uint64_t>();
  EXPECT_EQ(moved_in, on1_before);
  EXPECT_EQ(pins, 500u);
}

TEST_F(Tool, SyntheticBalanceEventsAndSeedSweep) {
  const json j = run_json(cfg() + " --synthetic 20000 --event 'down 2 at 40%' --event 'up 2 at 70%'");
  EXPECT_EQ(j["packets"], 200000);
  EXPECT_GE(j["flows"].get<uint64_t>(), 19000u);  // ICMP flows between the same hosts merge; few do
  ASSERT_EQ(j["events"].size(), 2u);
  EXPECT_NEAR(j["events"][0]["moved_share"].get<double>(), 0.25, 0.02);
  EXPECT_EQ(j["events"][1]["moved_at_once"], 0);
  EXPECT_EQ(j["events"][1]["moved_observed"], 0);
  EXPECT_EQ(j["tunnels"][2]["state_at_end"], "up");

  const json z = run_json(cfg() + " --synthetic 20000 --sizes zipf --zipf-s 1.1 --try-seeds 6");
  EXPECT_EQ(z["try_seeds"]["tried"], 6);
  EXPECT_LE(z["try_seeds"]["best_byte_imbalance"].get<double>(),
            z["try_seeds"]["configured_byte_imbalance"].get<double>());
  EXPECT_GT(z["imbalance"]["bytes"].get<double>(), z["imbalance"]["flows"].get<double>())
      << "Zipf: a few heavy flows unbalance bytes more than flow counts";
  // Uniform sizes over equal tunnels: flow counts near even.
  EXPECT_LT(j["imbalance"]["flows"].get<double>(), 1.1);
}

TEST_F(Tool, DrainWithDeadlineMovesItsFlowsOnlyAfterTheDeadline) {
  // 20 000 flows, 200 000 packets at 100 000 packets/s: 2 s of trace. Drain tunnel 0 at 0.5 s for 1 s.
  const json j = run_json(cfg() + " --synthetic 20000 --event 'drain gw-a/dc-1 at 25% for 1'");
  ASSERT_EQ(j["events"].size(), 1u);
  EXPECT_EQ(j["events"][0]["event"], "drain gw-a/dc-1 for 1 s at 50000");
  EXPECT_EQ(j["events"][0]["moved_at_once"], 0) << "draining moves nothing by itself";
  const auto& k = j["counters"];
  EXPECT_GT(k["moved_drain"].get<uint64_t>(), 4000u) << "most of its ~5 000 flows send again after 1.5 s";
  // Every flow it ever had either moved at the deadline or sent nothing since (its void pin still sits there).
  EXPECT_EQ(k["moved_drain"].get<uint64_t>() + j["tunnels"][0]["pins_at_end"].get<uint64_t>(),
            j["tunnels"][0]["flows"].get<uint64_t>());
  EXPECT_EQ(j["tunnels"][0]["state_at_end"], "draining");
  // No deadline: its pins stay (30 s idle timeout, 2 s trace).
  const json n = run_json(cfg() + " --synthetic 20000 --event 'drain 0 at 25%'");
  EXPECT_EQ(n["counters"]["moved_drain"], 0);
  EXPECT_GT(n["tunnels"][0]["pins_at_end"].get<uint64_t>(), 4000u);
}

TEST_F(Tool, BadInputGivesClearErrorsAndExitCodes) {
  // Usage errors exit 2, as in every meshgate program (before: 1).
  EXPECT_EQ(run("-c /nonexistent.toml --synthetic 10").rc, 2);
  EXPECT_EQ(run(cfg()).rc, 2) << "neither --pcap nor --synthetic";
  EXPECT_EQ(run(cfg() + " --synthetic 10 --sizes pareto").rc, 2);
  EXPECT_EQ(run(cfg() + " --synthetic -5").rc, 2);
  EXPECT_EQ(run(cfg() + " --synthetic 10 --rate -1").rc, 2);
  EXPECT_EQ(run(cfg() + " --synthetic 10 --packets -1").rc, 2) << "before: 2^64 - 1 packets";

  write(dir / "bad.toml", config(65537, "gw-c"));
  EXPECT_EQ(run("-c " + (dir / "bad.toml").string() + " --synthetic 10").rc, 2);
  EXPECT_NE(err.find("instance 'gw-c'"), std::string::npos) << err;

  write(dir / "np.toml", config(65539 + 2, "gw-b"));  // 65541 = 3 * 21847
  EXPECT_EQ(run("-c " + (dir / "np.toml").string() + " --synthetic 10").rc, 2);
  EXPECT_NE(err.find("prime"), std::string::npos) << err;

  write(dir / "syntax.toml", "[flow\nseed = 1\n");
  EXPECT_EQ(run("-c " + (dir / "syntax.toml").string() + " --synthetic 10").rc, 2);
  EXPECT_NE(err.find("line 1"), std::string::npos) << err;

  EXPECT_EQ(run(cfg() + " --synthetic 10 --event 'explode 1'").rc, 2);
  EXPECT_NE(err.find("unknown action"), std::string::npos) << err;
  EXPECT_EQ(run(cfg() + " --synthetic 10 --event 'down 9'").rc, 2);
  EXPECT_NE(err.find("unknown tunnel '9'"), std::string::npos) << err;
  EXPECT_EQ(run(cfg() + " --synthetic 10 --event 'down 1 at 5000'").rc, 2);
  EXPECT_EQ(run(cfg() + " --synthetic 10 --event 'down 1 for 5'").rc, 2) << "'for' is for drain only";
  EXPECT_EQ(run(cfg() + " --synthetic 10 --event 'drain 1 for x'").rc, 2);
  EXPECT_NE(err.find("seconds"), std::string::npos) << err;

  write(dir / "junk.pcap", "this is not a pcap file at all");
  EXPECT_EQ(run(cfg() + " --pcap " + (dir / "junk.pcap").string()).rc, 2);
  EXPECT_NE(err.find("pcap"), std::string::npos) << err;
}

// The gateway's own config file works: its key names, tunnel names, sub-tables and keys the tool ignores.
TEST_F(Tool, ReadsGatewayStyleConfig) {
  write(dir / "gw-full.toml",
        "[gateway]\nname = \"x\"\nmode = \"active-active\"\n"
        "[flow]\nseed = 42\ntable_size = 131071\npin_idle_timeout_ms = 1500\npin_capacity = 4096\n"
        "[inside]\nprefixes = [\"10.0.0.0/8\"]\n"
        "[[instance]]\nname = \"gw-a\"\nipv4 = \"192.0.2.1\"\nport = \"out-a\"\n"
        "[[instance]]\nname = \"gw-b\"\nipv4 = \"192.0.2.2\"\nport = \"out-b\"\n"
        "[[device]]\nname = \"d1\"\nipv4 = \"198.51.100.1\"\n"
        "[[device]]\nname = \"d2\"\nipv4 = \"198.51.100.2\"\n"
        "[[tunnel]]\nname = \"t-one\"\ninstance = \"gw-a\"\ndevice = \"d1\"\nweight = 3\nttl = 64\n"
        "[tunnel.out]\nspi = 0x100\ncipher = \"aes-gcm-128\"\n"
        "[[tunnel]]\nname = \"t-two\"\ninstance = \"gw-a\"\ndevice = \"d2\"\nweight = 1\n");
  const json j = run_json("-c " + (dir / "gw-full.toml").string() + " --synthetic 4000 --event 'down t-two at 50%'");
  EXPECT_EQ(j["seed"], 42);
  EXPECT_EQ(j["table_size"], 131071);
  EXPECT_EQ(j["pin_capacity"], 4096);
  EXPECT_DOUBLE_EQ(j["pin_idle_timeout_s"].get<double>(), 1.5);
  EXPECT_EQ(j["tunnels"][0]["name"], "t-one");
  EXPECT_EQ(j["tunnels"][1]["state_at_end"], "down");
  EXPECT_NEAR(j["tunnels"][0]["weight_share"].get<double>(), 0.75, 1e-9);
  // The analyser's first key name, now the gateway's: a clear message instead of a silent default.
  write(dir / "old.toml", "[flow]\npin_idle_timeout = 30\n" + config(65537, "gw-b").substr(6));
  EXPECT_EQ(run("-c " + (dir / "old.toml").string() + " --synthetic 10").rc, 2);
  EXPECT_NE(err.find("pin_idle_timeout_ms"), std::string::npos) << err;
}

TEST_F(Tool, TextReportHasOneRowPerTunnel) {
  const Outcome r = run(cfg() + " --synthetic 1000");
  ASSERT_EQ(r.rc, 0) << err;
  for (const char* name : {"gw-a/dc-1", "gw-a/dc-2", "gw-b/dc-1", "gw-b/dc-2", "imbalance max/mean"})
    EXPECT_NE(r.out.find(name), std::string::npos) << name;
}

}  // namespace
}  // namespace mg::flow::test
