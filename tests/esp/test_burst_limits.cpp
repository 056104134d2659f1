// The largest burst a caller can hand over (n = 65535, a uint16_t): every chunk is visited once and the burst ends.
// One mbuf stands for all of them, marked as chained so that each is refused before anything is written to it.
#include <gtest/gtest.h>

#include <vector>

#include "esp_fixture.h"

using mg::esp::Direction;
using mg::esp::Drop;
using namespace mg::test;

TEST(BurstLimits, LargestBurstEndsAndCountsEachPacketOnce) {
  MbufGuard guard;
  auto out = make_sa(SaParams{}, Direction::kOutbound);
  auto in = make_sa(SaParams{}, Direction::kInbound);
  mg::esp::Sa* list[] = {in.get()};
  std::string err;
  auto table = mg::esp::SaTable::build(list, 2, &err);
  ASSERT_TRUE(out && in && table) << err;
  rte_mbuf* m = make_mbuf(udp_packet(4, 10));
  ASSERT_NE(m, nullptr);
  m->nb_segs = 2;  // only read, never followed: the bursts refuse chained mbufs first
  std::vector<rte_mbuf*> pkts(65535, m);
  EXPECT_EQ(mg::esp::encap_burst(*out, 0, pkts.data(), 65535), 0);
  EXPECT_EQ(drops(*out, Drop::kOutChained), 65535u);
  EXPECT_EQ(mg::esp::decap_burst(*table, 0, pkts.data(), 65535), 0);
  EXPECT_EQ(table->stats().drops[size_t(Drop::kInChained)], 65535u);
  m->nb_segs = 1;
  rte_pktmbuf_free(m);
}
