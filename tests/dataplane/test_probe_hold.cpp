// Issue 15, defect 2: a probe (or reflected reply) that a full TX queue deferred must not leave on an outbound SA
// that an instance reset is replacing. The reset reads where the old SA's sequence numbers ended and the new SA
// (same key) continues from there: one more packet on the old SA would repeat a (key, IV) pair. Phase 1 of the
// reset publishes the tunnel as held; flush_ctl then drops and counts its deferred packets.
// flush_ctl is driven directly: a net_null port as the TX queue (its opackets say what it took), one worker.
#include <gtest/gtest.h>
#include <rte_dev.h>

#include "dataplane/internal.h"
#include "eal_env.h"

namespace mg::dp {
namespace {

using mg::test::in_use;
using mg::test::make_mbuf;
using mg::test::udp_packet;

struct HoldFixture : ::testing::Test {
  Dataplane::Impl d;
  Worker w;
  State st;
  std::unique_ptr<esp::Sa> sa;
  uint16_t port = 0;
  unsigned base = 0;

  void SetUp() override {
    d.pool = mg::test::pool();
    static uint16_t null_port = [] {
      uint16_t p = UINT16_MAX;
      if (rte_dev_probe("net_null_hold") != 0 || rte_eth_dev_get_port_by_name("net_null_hold", &p) != 0)
        return uint16_t(UINT16_MAX);
      rte_eth_conf conf{};
      if (rte_eth_dev_configure(p, 1, 1, &conf) != 0 ||
          rte_eth_rx_queue_setup(p, 0, 64, SOCKET_ID_ANY, nullptr, mg::test::pool()) != 0 ||
          rte_eth_tx_queue_setup(p, 0, 64, SOCKET_ID_ANY, nullptr) != 0 || rte_eth_dev_start(p) != 0)
        return uint16_t(UINT16_MAX);
      return p;
    }();
    ASSERT_NE(null_port, UINT16_MAX) << "net_null port";
    port = null_port;
    rte_eth_stats_reset(port);
    PortRt pr;
    pr.id = port;
    d.ports.push_back(pr);
    d.tsc_hz = rte_get_tsc_hz();
    d.probe_iv_ms = {20};
    w.id = 0;
    w.tctr = std::make_unique<TunnelCtr[]>(1);
    w.pctr = std::make_unique<PortCtr[]>(1);
    esp::SaConfig c;
    c.spi = 0x1003;
    c.keymat.assign(20, 0x5a);
    net::parse_ip("192.0.2.2", &c.outer_src);
    net::parse_ip("198.51.100.1", &c.outer_dst);
    std::string err;
    sa = esp::Sa::create(c, esp::Direction::kOutbound, 1, &err);
    ASSERT_NE(sa, nullptr) << err;
    st.tunnels.resize(1);
    st.tunnels[0].out = sa.get();
    st.tunnels[0].port = 0;
    base = in_use();
  }

  // One probe deferred earlier, still within its wait.
  void defer_one() {
    rte_mbuf* m = make_mbuf(udp_packet(4, 30));
    ASSERT_NE(m, nullptr);
    w.ctl[0] = Worker::CtlTx{m, rte_get_tsc_cycles() + d.tsc_hz * 10, 0, 0};
    w.nctl = 1;
  }

  // Frames the port's TX queue took (net_null frees them).
  uint64_t sent() {
    rte_eth_stats s{};
    rte_eth_stats_get(port, &s);
    return s.opackets;
  }
};

TEST_F(HoldFixture, DeferredProbeOfAHeldTunnelIsDroppedNotSentOnTheOldSa) {
  defer_one();
  st.tunnels[0].held = 1;  // a reset has read the SA's last number
  d.flush_ctl(w, st);
  EXPECT_EQ(w.nctl, 0);
  EXPECT_EQ(sent(), 0u) << "a deferred probe left on the SA being replaced";
  EXPECT_EQ(sa->last_seq(), 0u) << "a sequence number of the old SA was spent after the reset read it";
  EXPECT_EQ(w.tctr[0].probe_drops, 1u);
  EXPECT_EQ(w.tctr[0].probes_out, 0u);
  EXPECT_EQ(in_use(), base) << "the deferred mbuf is freed";
}

// The same deferred probe on a tunnel that is not held goes out (so the test above can see a send).
TEST_F(HoldFixture, DeferredProbeOfATunnelNotHeldIsSent) {
  defer_one();
  st.tunnels[0].held = 0;
  d.flush_ctl(w, st);
  EXPECT_EQ(w.nctl, 0);
  EXPECT_EQ(sent(), 1u);
  EXPECT_EQ(sa->last_seq(), 1u);
  EXPECT_EQ(w.tctr[0].probes_out, 1u);
  EXPECT_EQ(in_use(), base);
}

}  // namespace
}  // namespace mg::dp
