// Rule `limits`: the product's maxima (net/limits.h) for tunnels and instances in a gateway file and worker lcores
// in a pmd_config: one over is refused with the count, the maximum and the line of the first one too many;
// exactly the maximum loads.
#include <gtest/gtest.h>

#include <cstdio>
#include <string>

#include "config_fixture.h"
#include "net/limits.h"

namespace mg::config {
namespace {

using namespace mg::config::test;

// 40 hex digits (20 bytes, aes-gcm-128), different for every n.
std::string key(uint32_t n) {
  char b[48];
  std::snprintf(b, sizeof b, "%08x%08x%08x%08x%08x", n, ~n, n * 2654435761u, n ^ 0x5a5a5a5au, n + 7);
  return b;
}

std::string tunnel(const std::string& inst, const std::string& dev, uint32_t n, bool marker) {
  std::string s = "\n[[tunnel]]";
  if (marker) s += " #@";
  s += "\ninstance = \"" + inst + "\"\ndevice = \"" + dev + "\"\n";
  s += "[tunnel.out]\nspi = " + std::to_string(0x1000 + n) + "\ncipher = \"aes-gcm-128\"\nkey = \"" + key(2 * n) + "\"\n";
  s += "[tunnel.in]\nspi = " + std::to_string(0x100000 + n) + "\ncipher = \"aes-gcm-128\"\nkey = \"" +
       key(2 * n + 1) + "\"\n";
  return s;
}

std::string header() {
  return "[gateway]\nname = \"t\"\nmode = \"active-active\"\npmd_config = \"pmd.toml\"\n"
         "[inside]\nport = \"inside\"\nprefixes = [\"10.0.0.0/8\"]\n";
}

// Two instances, `tunnels` tunnels over as many devices as needed (at most one tunnel per pair).
std::string many_tunnels(uint32_t tunnels) {
  std::string s = header() +
                  "[[instance]]\nname = \"gw-a\"\nipv4 = \"192.0.2.1\"\nport = \"out-a\"\n"
                  "[[instance]]\nname = \"gw-b\"\nipv4 = \"192.0.2.2\"\nport = \"out-b\"\n";
  for (uint32_t d = 0; d < (tunnels + 1) / 2; ++d)
    s += "[[device]]\nname = \"d" + std::to_string(d) + "\"\nipv4 = \"198.51." + std::to_string(d / 250) + "." +
         std::to_string(1 + d % 250) + "\"\n";
  for (uint32_t t = 0; t < tunnels; ++t)
    s += tunnel(t % 2 ? "gw-b" : "gw-a", std::string("d").append(std::to_string(t / 2)), t, t == kMaxTunnels);
  return s;
}

// `instances` instances, each with its own address and port, and one tunnel.
std::string many_instances(uint32_t instances) {
  std::string s = header();
  for (uint32_t i = 0; i < instances; ++i)
  {
    s += "[[instance]]";
    if (i == kMaxInstances) s += " #@";
    s += "\nname = \"gw-" + std::to_string(i) + "\"\nipv4 = \"192.0.2." + std::to_string(1 + i) +
         "\"\nport = \"out-" + std::to_string(i) + "\"\n";
  }
  s += "[[device]]\nname = \"d1\"\nipv4 = \"198.51.100.1\"\n";
  return s + tunnel("gw-0", "d1", 0, false);
}

// `workers` worker lcores, one per line, lcores 0..workers enabled.
std::string many_workers(uint32_t workers) {
  std::string s = "[eal]\nargs = [\"--no-huge\", \"-l\", \"0-" + std::to_string(workers) +
                  "\"]\n[workers]\nmbufs = 1000000\nlcores = [\n";
  for (uint32_t w = 1; w <= workers; ++w) s += std::to_string(w) + (w == kMaxWorkers + 1 ? ", #@\n" : ",\n");
  return s + "]\n[[port]]\nname = \"inside\"\ndevargs = \"net_null0\"\n";
}

TEST_F(Config, LimitsTunnels) {
  bad_gw(many_tunnels(kMaxTunnels + 1), "limits", "257 tunnels: this build carries at most 256");
  const Gateway g = good_gw(many_tunnels(kMaxTunnels));
  EXPECT_EQ(g.tunnels.size(), kMaxTunnels);
}

TEST_F(Config, LimitsInstances) {
  bad_gw(many_instances(kMaxInstances + 1), "limits", "33 instances: this build carries at most 32");
  const Gateway g = good_gw(many_instances(kMaxInstances));
  EXPECT_EQ(g.instances.size(), kMaxInstances);
}

TEST_F(Config, LimitsWorkers) {
  bad_pmd(many_workers(kMaxWorkers + 1), "limits", "65 worker lcores: this build carries at most 64");
  std::vector<Error> errs;
  const auto p = pmd(many_workers(kMaxWorkers), &errs);
  ASSERT_TRUE(p.has_value()) << (errs.empty() ? "" : errs[0].format());
  EXPECT_EQ(p->worker_lcores.size(), kMaxWorkers);
}

}  // namespace
}  // namespace mg::config
