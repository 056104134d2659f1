// config::LoadOptions (what an offline tool skips: SAs and keys, ports and the pmd_config) and the unknown-key
// hint (the known key an unknown one most resembles).
#include <gtest/gtest.h>

#include <string>

#include "config_fixture.h"

namespace mg::config {
namespace {

using namespace mg::config::test;

// The base gateway without its SA tables, [gateway] pmd_config and ports.
std::string no_sas_no_ports() {
  std::string s = gateway();
  for (const char* cut : {"pmd_config = \"pmd.toml\"\n", "port = \"inside\"\n", "port = \"out-a\"\n", "port = \"out-b\"\n"})
    s = edit(s, cut, "");
  while (s.find("[tunnel.out]") != std::string::npos) {
    const size_t a = s.find("[tunnel.out]");
    const size_t b = s.find("[[tunnel]]", a);
    s.erase(a, b == std::string::npos ? std::string::npos : b - a);
  }
  return s;
}

TEST_F(Config, LoadOptionsSkipSasAndPorts) {
  const std::string s = no_sas_no_ports();
  ASSERT_EQ(s.find("spi"), std::string::npos) << s;
  // The gateway needs them...
  std::vector<Error> errs;
  EXPECT_FALSE(gw(s, &errs));
  EXPECT_TRUE(std::any_of(errs.begin(), errs.end(), [](const Error& e) { return e.rule == "missing-key"; }));
  // ...an offline tool does not, and gets the same names, weights and defaults.
  errs.clear();
  const auto g = load_gateway(write("gw.toml", s), &errs, LoadOptions{.sas = false, .ports = false});
  ASSERT_TRUE(g.has_value()) << (errs.empty() ? "" : errs[0].format());
  ASSERT_EQ(g->tunnels.size(), 2u);
  EXPECT_EQ(g->tunnels[1].name, "gw-b-d1");
  EXPECT_EQ(g->tunnels[1].instance, 1u);
  EXPECT_EQ(g->tunnels[0].out.spi, 0u);
  EXPECT_EQ(g->flow.seed, FlowSettings{}.seed);
  EXPECT_TRUE(g->pmd_config.empty());

  // A full gateway file loads in the skipping mode too: SA tables (even broken ones) are not looked at, ports
  // are read when present.
  errs.clear();
  const auto full = load_gateway(write("gw.toml", edit(gateway(), "spi = 0x1001", "spi = 0")), &errs,
                                 LoadOptions{.sas = false, .ports = false});
  ASSERT_TRUE(full.has_value()) << (errs.empty() ? "" : errs[0].format());
  EXPECT_EQ(full->instances[0].port, "out-a");
  // Every other rule still holds.
  bad_gw(edit(s, "instance = \"gw-a\"", "instance = \"gw-c\" #@"), "tunnel-reference", "instance \"gw-c\"");
  EXPECT_FALSE(load_gateway(write("gw.toml", edit(s, "instance = \"gw-a\"", "instance = \"gw-c\"")), &errs,
                            LoadOptions{.sas = false, .ports = false}));
}

TEST_F(Config, UnknownKeyNamesTheKeyItResembles) {
  bad_gw(edit(gateway(), "instance = \"gw-a\"\n", "instance = \"gw-a\"\nwieght = 2 #@\n"), "unknown-key",
         "(did you mean `weight`?)");
  bad_gw(gateway() + "[flow]\npin_idle_timeout = 30 #@\n", "unknown-key", "did you mean `pin_idle_timeout_ms`?");
  // Nothing alike: no hint.
  std::vector<Error> errs;
  EXPECT_FALSE(gw(gateway() + "[flow]\ncolour = 3\n", &errs));
  ASSERT_EQ(errs.size(), 1u);
  EXPECT_EQ(errs[0].message.find("did you mean"), std::string::npos) << errs[0].message;
}

}  // namespace
}  // namespace mg::config
