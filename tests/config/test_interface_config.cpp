// [[tunnel]] `interface` (config.h Tunnel::interface): a tunnel's kernel interface and its inner addresses.
#include "config_fixture.h"

namespace mg::config::test {
namespace {

const std::string kFirst = "[[tunnel]]\ninstance = \"gw-a\"\ndevice = \"d1\"\n";
const std::string kSecond = "[[tunnel]]\ninstance = \"gw-b\"\ndevice = \"d1\"\n";

// The first tunnel with these keys and this [tunnel.liveness] body.
std::string first(const std::string& keys, const std::string& liveness) {
  return edit(gateway(), kFirst, kFirst + keys + (liveness.empty() ? "" : "[tunnel.liveness]\n" + liveness));
}
const std::string kInner = "probe_source = \"169.254.10.1\"\nprobe_address = \"169.254.10.2\"\n";

TEST_F(Config, TunnelInterface) {
  const Gateway g = good_gw(first("interface = \"mg-a1\"\n", kInner));
  EXPECT_EQ(g.tunnels[0].interface, "mg-a1");
  EXPECT_EQ(g.tunnels[0].interface_pps, 10000u);
  EXPECT_TRUE(g.tunnels[1].interface.empty());
  const std::string d = describe(g, nullptr);
  EXPECT_NE(d.find("interface mg-a1  169.254.10.1 peer 169.254.10.2  up to 10000 pps per worker\n"),
            std::string::npos) << d;
  // The device's probe_address is the far end too; IPv6 inner addresses; a rate.
  const Gateway g6 = good_gw(edit(
      edit(gateway(), "name = \"d1\"\n", "name = \"d1\"\nprobe_address = \"fe80::2\"\n"), kFirst,
      kFirst + "interface = \"mg.a_1-x\"\ninterface_pps = 200\n[tunnel.liveness]\nprobe_source = \"fe80::1\"\n"));
  EXPECT_EQ(g6.tunnels[0].interface_pps, 200u);
  EXPECT_EQ(g6.tunnels[0].liveness.probe_address.version, 6);
}

TEST_F(Config, TunnelInterfaceErrors) {
  bad_gw(first("interface = \"mg a1\" #@\n", kInner), "tunnel-interface", "not a kernel interface name");
  bad_gw(first("interface = \"mg-0123456789abc\" #@\n", kInner), "tunnel-interface", "1 to 15");
  bad_gw(first("interface = \"..\" #@\n", kInner), "tunnel-interface", "not a kernel interface name");
  // Both inner addresses must be written: the outer ones they would fall back to are not the tunnel's inside.
  bad_gw(first("interface = \"mg-a1\" #@\n", "probe_address = \"169.254.10.2\"\n"), "tunnel-interface",
         "set [tunnel.liveness] `probe_source`");
  bad_gw(first("interface = \"mg-a1\" #@\n", "probe_source = \"169.254.10.1\"\n"), "tunnel-interface",
         "`probe_address`");
  bad_gw(first("interface = \"mg-a1\" #@\n", ""), "tunnel-interface", "`probe_source`");
  bad_gw(first("interface = \"mg-a1\" #@\n", "probe_source = \"169.254.10.1\"\nprobe_address = \"fe80::2\"\n"),
         "tunnel-interface", "different IP versions");
  bad_gw(first("interface = \"mg-a1\" #@\n", "probe_source = \"169.254.10.1\"\nprobe_address = \"169.254.10.1\"\n"),
         "tunnel-interface", "are both 169.254.10.1");
  bad_gw(edit(first("interface = \"mg-a1\"\n", kInner), kSecond,
              kSecond + "interface = \"mg-a1\" #@\n[tunnel.liveness]\n" + kInner),
         "tunnel-interface", "is already tunnel \"gw-a-d1\"'s");
  bad_gw(first("interface_pps = 100 #@\n", kInner), "tunnel-interface", "which it has not");
  bad_gw(first("interface = \"mg-a1\"\ninterface_pps = 0 #@\n", kInner), "tunnel-interface", "interface_pps");
  bad_gw(first("interface = 7 #@\n", kInner), "type", "interface");
}

TEST_F(Config, RoutingKernelTable) {
  const Gateway g = good_gw(first("interface = \"mg-a1\"\n", kInner) + "[routing]\nkernel_table = 100\n");
  EXPECT_EQ(g.routing.kernel_table, 100u);
  EXPECT_EQ(g.routing.update_interval_ms, 20u);
  EXPECT_NE(describe(g, nullptr).find("routes learned from kernel table 100"), std::string::npos);
  EXPECT_EQ(good_gw(gateway()).routing.kernel_table, 0u);
  bad_gw(gateway() + "[routing]\nkernel_table = 100 #@\n", "routing", "no [[tunnel]] has an `interface`");
  bad_gw(first("interface = \"mg-a1\"\n", kInner) + "[routing]\nkernel_table = 255 #@\n", "routing", "local table");
  bad_gw(first("interface = \"mg-a1\"\n", kInner) + "[routing]\nkernel_table = 0 #@\n", "routing", "kernel_table");
  bad_gw(first("interface = \"mg-a1\"\n", kInner) + "[routing]\nkernel_table = 100\nupdate_interval_ms = 0 #@\n",
         "routing", "update_interval_ms");
  bad_gw(first("interface = \"mg-a1\"\n", kInner) + "[routing]\nkernel_table = 100\nlearn = true #@\n",
         "unknown-key", "learn");
}

TEST_F(Config, RoutingAnnounceTable) {
  const Gateway g = good_gw(first("interface = \"mg-a1\"\n", kInner) + "[routing]\nannounce_table = 101\n");
  EXPECT_EQ(g.routing.announce_table, 101u);
  EXPECT_NE(describe(g, nullptr).find("routes announced in kernel table 101"), std::string::npos);
  bad_gw(gateway() + "[routing]\nannounce_table = 101 #@\n", "routing", "no [[tunnel]] has an `interface`");
  bad_gw(first("interface = \"mg-a1\"\n", kInner) + "[routing]\nannounce_table = 254 #@\n", "routing",
         "the kernel's own tables");
  bad_gw(first("interface = \"mg-a1\"\n", kInner) + "[routing]\nkernel_table = 100\nannounce_table = 100 #@\n",
         "routing", "would learn its own announcements");
}

TEST_F(Config, TunnelAnnounceTable) {
  const std::string routing = "[routing]\ndevice_prefixes = [\"172.16.0.0/12\"]\n";
  const Gateway g = good_gw(first("interface = \"mg-a1\"\nannounce_table = 1001\n", kInner) + routing);
  EXPECT_EQ(g.tunnels[0].announce_table, 1001u);
  ASSERT_EQ(g.routing.device_prefixes.size(), 1u);
  EXPECT_EQ(g.routing.device_prefixes[0].len, 12);
  EXPECT_NE(describe(g, nullptr).find("device prefixes in table 1001"), std::string::npos);
  bad_gw(first("announce_table = 1001 #@\n", kInner) + routing, "tunnel-interface", "which it has not");
  bad_gw(first("interface = \"mg-a1\"\nannounce_table = 254 #@\n", kInner) + routing, "tunnel-interface",
         "the kernel's own tables");
  bad_gw(first("interface = \"mg-a1\"\nannounce_table = 1001 #@\n", kInner), "routing", "`device_prefixes`");
  bad_gw(first("interface = \"mg-a1\"\nannounce_table = 101 #@\n", kInner) + routing + "announce_table = 101\n",
         "routing", "one table per purpose");
  bad_gw(first("interface = \"mg-a1\"\n", kInner) + "[routing]\ndevice_prefixes = [\"172.16.0.1/12\"] #@\n",
         "route-prefix", "device_prefixes");
}

}  // namespace
}  // namespace mg::config::test
