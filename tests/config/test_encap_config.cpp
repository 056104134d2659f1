// lib/config: NAT traversal keys (`encap`, `udp_local_port`, `udp_remote_port`) in a [[tunnel]] and in its SA
// tables, how they resolve, each rule with the line it names, what describe() shows, and the MTU figures of a
// tunnel whose outbound SA sends ESP in UDP.
#include "config_fixture.h"

namespace mg::config {
namespace {

using namespace mg::config::test;

const std::string kTunnelA = "[[tunnel]]\ninstance = \"gw-a\"\n";
const std::string kOutA = "[tunnel.out]\nspi = 0x1001\n";
const std::string kInA = "[tunnel.in]\nspi = 0x2001\n";

TEST_F(Config, EncapDefaultsToRawEsp) {
  const Gateway g = good_gw(gateway());
  for (const Tunnel& t : g.tunnels)
    for (const SaSpec* s : {&t.out, &t.in}) {
      EXPECT_EQ(s->encap, net::Encap::kNone);
      EXPECT_EQ(s->udp_local_port, 4500);
      EXPECT_EQ(s->udp_remote_port, 4500);
    }
  EXPECT_NE(describe(g).find("encap none"), std::string::npos);
}

TEST_F(Config, EncapOnTheTunnelAppliesToBothSas) {
  const Gateway g = good_gw(edit(gateway(), kTunnelA, kTunnelA + "encap = \"udp\"\n"));
  EXPECT_EQ(g.tunnels[0].out.encap, net::Encap::kUdp);
  EXPECT_EQ(g.tunnels[0].in.encap, net::Encap::kUdp);
  EXPECT_EQ(g.tunnels[0].out.udp_local_port, 4500);
  EXPECT_EQ(g.tunnels[0].in.udp_remote_port, 4500);
  EXPECT_EQ(g.tunnels[1].out.encap, net::Encap::kNone) << "the other tunnel is untouched";
  const std::string d = describe(g);
  EXPECT_NE(d.find("encap udp 4500 -> 4500"), std::string::npos) << d;
}

TEST_F(Config, EncapPortsAndSaOverrides) {
  std::string t = edit(gateway(), kTunnelA,
                       kTunnelA + "encap = \"udp\"\nudp_local_port = 4501\nudp_remote_port = 61000\n");
  t = edit(t, kInA, kInA + "udp_remote_port = 62000\n");
  const Gateway g = good_gw(t);
  const Tunnel& a = g.tunnels[0];
  EXPECT_EQ(a.out.udp_local_port, 4501);
  EXPECT_EQ(a.out.udp_remote_port, 61000);
  EXPECT_EQ(a.in.udp_local_port, 4501);
  EXPECT_EQ(a.in.udp_remote_port, 62000) << "the SA's own key wins";
  const std::string d = describe(g);
  EXPECT_NE(d.find("out spi 0x00001001"), std::string::npos) << d;
  EXPECT_NE(d.find("encap udp 4501 -> 61000"), std::string::npos) << "outbound: ours -> the device's\n" << d;
  EXPECT_NE(d.find("encap udp 62000 -> 4501"), std::string::npos) << "inbound: the device's -> ours\n" << d;

  // One SA in UDP, the other raw (the keying interface sets them one by one, so the model allows it).
  const Gateway h = good_gw(edit(gateway(), kOutA, kOutA + "encap = \"udp\"\n"));
  EXPECT_EQ(h.tunnels[0].out.encap, net::Encap::kUdp);
  EXPECT_EQ(h.tunnels[0].in.encap, net::Encap::kNone);
  const Gateway k = good_gw(edit(edit(gateway(), kTunnelA, kTunnelA + "encap = \"udp\"\n"), kInA,
                                 kInA + "encap = \"none\"\n"));
  EXPECT_EQ(k.tunnels[0].out.encap, net::Encap::kUdp);
  EXPECT_EQ(k.tunnels[0].in.encap, net::Encap::kNone);
}

TEST_F(Config, EncapRules) {
  bad_gw(edit(gateway(), kTunnelA, kTunnelA + "encap = \"tcp\" #@\n"), "encap", "is not \"none\" or \"udp\"");
  bad_gw(edit(gateway(), kTunnelA, kTunnelA + "encap = 1 #@\n"), "type", "encap");
  bad_gw(edit(gateway(), kTunnelA, kTunnelA + "encap = \"udp\"\nudp_local_port = 0 #@\n"), "udp-port",
         "1..65535 other than 500");
  bad_gw(edit(gateway(), kTunnelA, kTunnelA + "encap = \"udp\"\nudp_remote_port = 65536 #@\n"), "udp-port",
         "1..65535");
  bad_gw(edit(gateway(), kTunnelA, kTunnelA + "encap = \"udp\"\nudp_remote_port = 500 #@\n"), "udp-port",
         "takes UDP to 500 for IKE");
  bad_gw(edit(gateway(), kOutA, kOutA + "encap = \"udp\"\nudp_local_port = 500 #@\n"), "udp-port",
         "other than 500");
  // A port where no SA uses UDP would be ignored: an error, on its own line.
  bad_gw(edit(gateway(), kTunnelA, kTunnelA + "udp_local_port = 4501 #@\n"), "udp-port",
         "neither SA of this tunnel has encap = \"udp\"");
  bad_gw(edit(gateway(), kInA, kInA + "udp_remote_port = 4501 #@\n"), "udp-port", "this SA has encap = \"none\"");
  bad_gw(edit(edit(gateway(), kTunnelA, kTunnelA + "encap = \"udp\"\n"), kInA,
              kInA + "encap = \"none\"\nudp_local_port = 4501 #@\n"),
         "udp-port", "[tunnel.in]");
  // A tunnel-level port used by one SA in UDP is fine.
  good_gw(edit(edit(gateway(), kTunnelA, kTunnelA + "udp_local_port = 4501\n"), kOutA, kOutA + "encap = \"udp\"\n"));
  bad_gw(edit(gateway(), kOutA, kOutA + "udp_port = 4500 #@\n"), "unknown-key", "udp_port");
}

TEST_F(Config, EncapWithoutSasOnlyChecksTheTunnel) {
  // meshgate-spread skips the SA tables: a tunnel's own keys are still checked, and they load.
  std::vector<Error> errs;
  const std::string ok = edit(gateway(), kTunnelA, kTunnelA + "encap = \"udp\"\nudp_local_port = 4501\n");
  EXPECT_TRUE(load_gateway(write("s.toml", ok), &errs, LoadOptions{.sas = false, .ports = false}));
  const std::string bad = edit(gateway(), kTunnelA, kTunnelA + "udp_local_port = 4501\n");
  EXPECT_FALSE(load_gateway(write("s2.toml", bad), &errs, LoadOptions{.sas = false, .ports = false}));
}

TEST_F(Config, EncapMtuFigures) {
  const Gateway g = good_gw(edit(gateway(), kOutA, kOutA + "encap = \"udp\"\n"));
  // 1500 - 20 - 8 (UDP) - 8 - 8 - 16, less the trailer, aligned to 4: 8 less than raw ESP's 1446.
  const TunnelMtu m = tunnel_mtu(g, g.tunnels[0], kDefaultPortMtu);
  EXPECT_EQ(m.path, 1438u);
  EXPECT_EQ(m.mss4, 1398);
  EXPECT_EQ(m.mss6, 1378);
  EXPECT_EQ(tunnel_mtu(g, g.tunnels[1], kDefaultPortMtu).path, 1446u) << "a raw tunnel keeps its figures";
  // Only the outbound SA's encapsulation counts: it is what makes the packets that must fit.
  const Gateway h = good_gw(edit(gateway(), kInA, kInA + "encap = \"udp\"\n"));
  EXPECT_EQ(tunnel_mtu(h, h.tunnels[0], kDefaultPortMtu).path, 1446u);
  EXPECT_EQ(min_tunnel_mtu(false, true), 1344u);
  EXPECT_EQ(min_tunnel_mtu(true, true), 1364u);
  bad_gw(edit(gateway(), kTunnelA, kTunnelA + "encap = \"udp\"\nmtu = 1343 #@\n"), "tunnel-mtu",
         "below 1344: over IPv4 in UDP");
  good_gw(edit(gateway(), kTunnelA, kTunnelA + "encap = \"udp\"\nmtu = 1344\n"));
  EXPECT_NE(describe(g).find("inner path MTU 1438"), std::string::npos);
}

}  // namespace
}  // namespace mg::config
