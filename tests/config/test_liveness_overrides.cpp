// config::apply_liveness_overrides (meshgate's --liveness, --probe-source, ... flags) on gateways loaded by
// lib/config: what is overridden, what is kept, probe_source re-resolved for a probe_address of another IP
// version, and a refused override that leaves the model as it was.
#include <gtest/gtest.h>

#include <string>

#include "config/liveness_overrides.h"
#include "config_fixture.h"

namespace mg::config {
namespace {

using namespace mg::config::test;

net::IpAddr ip(const char* s) {
  net::IpAddr a;
  EXPECT_TRUE(net::parse_ip(s, &a)) << s;
  return a;
}

std::string text(const net::IpAddr& a) {
  char b[64];
  return a.version ? net::format_ip(a, b, sizeof b) : "(none)";
}

// The base gateway with a [liveness] table: every tunnel on, 50 ms x 4, hold-down 700 ms, damping off.
std::string live_gateway() {
  return gateway() + "\n[liveness]\ninterval_ms = 50\nmultiplier = 4\nhold_down_ms = 700\ndamping = false\n";
}

TEST_F(Config, LivenessOverridesReplaceOnlyWhatTheyName) {
  Gateway g = good_gw(live_gateway());
  LivenessOverrides o;
  o.interval_ms = 10;
  o.monitor = true;
  std::string err;
  ASSERT_TRUE(apply_liveness_overrides(&g, o, &err)) << err;
  for (const Tunnel& t : g.tunnels) {
    EXPECT_TRUE(t.liveness.enabled) << t.name;
    EXPECT_EQ(t.liveness.interval_ms, 10u) << t.name;   // overridden
    EXPECT_EQ(t.liveness.multiplier, 4u) << t.name;     // the file's
    EXPECT_EQ(t.liveness.hold_down_ms, 700u) << t.name;
    EXPECT_TRUE(t.liveness.probes) << t.name;
  }
  EXPECT_TRUE(g.liveness.monitor);
  EXPECT_FALSE(g.liveness.damping);  // the file's
  EXPECT_FALSE(g.liveness.reflect);
  EXPECT_EQ(text(g.tunnels[1].liveness.probe_source), "192.0.2.2");
  EXPECT_EQ(text(g.tunnels[1].liveness.probe_address), "198.51.100.1");

  // Every field at once, on a file without [liveness] (liveness off by default).
  Gateway h = good_gw(gateway());
  ASSERT_FALSE(h.tunnels[0].liveness.enabled);
  LivenessOverrides all;
  all.enabled = true;
  all.interval_ms = 30;
  all.multiplier = 5;
  all.hold_down_ms = 0;
  all.probes = false;
  all.damping = false;
  all.monitor = true;
  all.reflect = true;
  ASSERT_TRUE(apply_liveness_overrides(&h, all, &err)) << err;
  for (const Tunnel& t : h.tunnels) {
    EXPECT_TRUE(t.liveness.enabled);
    EXPECT_EQ(t.liveness.interval_ms, 30u);
    EXPECT_EQ(t.liveness.multiplier, 5u);
    EXPECT_EQ(t.liveness.hold_down_ms, 0u);
    EXPECT_FALSE(t.liveness.probes);
  }
  EXPECT_FALSE(h.liveness.damping);
  EXPECT_TRUE(h.liveness.monitor);
  EXPECT_TRUE(h.liveness.reflect);
}

TEST_F(Config, LivenessOverrideOfProbeAddressReResolvesTheSource) {
  // Instances with both versions: an IPv6 probe_address takes each instance's IPv6 address as the source.
  std::string s = edit(live_gateway(), "ipv4 = \"192.0.2.1\"", "ipv4 = \"192.0.2.1\"\nipv6 = \"2001:db8:1::1\"");
  s = edit(s, "ipv4 = \"192.0.2.2\"", "ipv4 = \"192.0.2.2\"\nipv6 = \"2001:db8:1::2\"");
  Gateway g = good_gw(s);
  LivenessOverrides o;
  o.probe_address = ip("2001:db8:a::9");
  std::string err;
  ASSERT_TRUE(apply_liveness_overrides(&g, o, &err)) << err;
  EXPECT_EQ(text(g.tunnels[0].liveness.probe_address), "2001:db8:a::9");
  EXPECT_EQ(text(g.tunnels[0].liveness.probe_source), "2001:db8:1::1");
  EXPECT_EQ(text(g.tunnels[1].liveness.probe_source), "2001:db8:1::2");

  // Both given: used as they are, on every tunnel.
  Gateway h = good_gw(live_gateway());
  o.probe_address = ip("10.9.0.2");
  o.probe_source = ip("10.9.0.1");
  ASSERT_TRUE(apply_liveness_overrides(&h, o, &err)) << err;
  for (const Tunnel& t : h.tunnels) {
    EXPECT_EQ(text(t.liveness.probe_source), "10.9.0.1");
    EXPECT_EQ(text(t.liveness.probe_address), "10.9.0.2");
  }
}

TEST_F(Config, LivenessOverrideLeavingNoUsableSourceIsRefusedAndChangesNothing) {
  // IPv6 probe_address, but the instances have only IPv4 and no probe_source is given.
  Gateway g = good_gw(live_gateway());
  LivenessOverrides o;
  o.probe_address = ip("2001:db8:a::9");
  o.interval_ms = 5;
  o.monitor = true;
  std::string err;
  EXPECT_FALSE(apply_liveness_overrides(&g, o, &err));
  EXPECT_NE(err.find("tunnel 'gw-a-d1'"), std::string::npos) << err;
  EXPECT_NE(err.find("--probe-source"), std::string::npos) << err;
  for (const Tunnel& t : g.tunnels) {
    EXPECT_EQ(t.liveness.interval_ms, 50u);
    EXPECT_EQ(text(t.liveness.probe_address), "198.51.100.1");
  }
  EXPECT_FALSE(g.liveness.monitor);

  // The same address with probes off and no reflector: nothing needs a source, so it is accepted.
  o.probes = false;
  EXPECT_TRUE(apply_liveness_overrides(&g, o, &err)) << err;
  EXPECT_EQ(text(g.tunnels[0].liveness.probe_address), "2001:db8:a::9");
  // A source of the other version given explicitly: refused again (reflect needs it).
  Gateway h = good_gw(live_gateway());
  LivenessOverrides r;
  r.reflect = true;
  r.probe_source = ip("2001:db8:1::1");
  EXPECT_FALSE(apply_liveness_overrides(&h, r, &err));
  EXPECT_NE(err.find("not of one IP version"), std::string::npos) << err;
  EXPECT_FALSE(h.liveness.reflect);
}

}  // namespace
}  // namespace mg::config
