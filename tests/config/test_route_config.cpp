// [[route]] tables (config.h RouteCfg): which tunnels reach which prefixes, and every way to get one wrong.
#include "config_fixture.h"

namespace mg::config::test {
namespace {

// The base gateway's tunnels: gw-a-d1 (0) and gw-b-d1 (1), both to device d1; d2 has none.
std::string with_routes(const std::string& routes) {
  return gateway() + "\n[[device]]\nname = \"d2\"\nipv4 = \"198.51.100.2\"\n" + routes;
}

TEST_F(Config, RoutesByTunnelOrDevice) {
  const Gateway g = good_gw(with_routes(
      "[[route]]\nprefixes = [\"10.128.0.0/16\", \"2001:db8:b::/48\"]\ntunnels = [\"gw-b-d1\"]\n"
      "[[route]]\nprefixes = [\"10.129.0.0/16\"]\ndevices = [\"d1\"]\n"));
  ASSERT_EQ(g.routes.size(), 2u);
  EXPECT_EQ(g.routes[0].prefixes.size(), 2u);
  EXPECT_EQ(g.routes[0].tunnels, std::vector<uint32_t>{1});
  EXPECT_EQ(g.routes[1].tunnels, (std::vector<uint32_t>{0, 1}));
  EXPECT_GT(g.routes[1].line, g.routes[0].line);
  const std::string d = describe(g, nullptr);
  EXPECT_NE(d.find("route 10.128.0.0/16 2001:db8:b::/48 via gw-b-d1\n"), std::string::npos) << d;
  EXPECT_NE(d.find("route 10.129.0.0/16 via gw-a-d1 gw-b-d1\n"), std::string::npos) << d;
  EXPECT_TRUE(good_gw(gateway()).routes.empty());
}

TEST_F(Config, RouteErrors) {
  bad_gw(with_routes("[[route]] #@\nprefixes = [\"10.128.0.0/16\"]\ntunnels = [\"gw-a-d1\"]\ndevices = [\"d1\"]\n"),
         "route-reference", "not both");
  bad_gw(with_routes("[[route]] #@\nprefixes = [\"10.128.0.0/16\"]\n"), "route-reference", "not neither");
  bad_gw(with_routes("[[route]]\nprefixes = [\"10.128.0.0/16\"]\ndevices = [\"d9\"] #@\n"), "route-reference",
         "no [[device]] named \"d9\"");
  bad_gw(with_routes("[[route]]\nprefixes = [\"10.128.0.0/16\"]\ndevices = [\"d2\"] #@\n"), "route-reference",
         "device \"d2\" has no [[tunnel]]");
  bad_gw(with_routes("[[route]]\nprefixes = [\"10.128.0.0/16\"]\ntunnels = [\"gw-c-d1\"] #@\n"), "route-reference",
         "no [[tunnel]] named \"gw-c-d1\"");
  bad_gw(with_routes("[[route]]\nprefixes = [\"10.128.0.0/16\"]\ntunnels = [\"gw-a-d1\", \"gw-a-d1\"] #@\n"),
         "route-reference", "listed twice");
  bad_gw(with_routes("[[route]]\nprefixes = [] #@\ntunnels = [\"gw-a-d1\"]\n"), "route-prefix", "empty");
  bad_gw(with_routes("[[route]]\nprefixes = [\"10.128.0.1/16\"] #@\ntunnels = [\"gw-a-d1\"]\n"), "route-prefix",
         "did you mean 10.128.0.0/16?");
  bad_gw(with_routes("[[route]]\nprefixes = [\"10.128.0.0/16\"]\ntunnels = [\"gw-a-d1\"]\n"
                     "[[route]]\nprefixes = [\"10.128.0.0/16\"] #@\ntunnels = [\"gw-b-d1\"]\n"),
         "route-prefix", "also routed on line");
  bad_gw(with_routes("[[route]]\nprefixes = [\"10.128.0.0/16\"]\ntunnels = [\"gw-a-d1\"]\nvia = \"x\" #@\n"),
         "unknown-key", "via");
  bad_gw(with_routes("[[route]]\nprefixes = \"10.128.0.0/16\" #@\ntunnels = [\"gw-a-d1\"]\n"), "type", "prefixes");
}

}  // namespace
}  // namespace mg::config::test
