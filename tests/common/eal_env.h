// Shared test fixture: one EAL per test process (no hugepages, no PCI, in memory), a packet pool, and
// helpers to build mbufs and check that a test gave back every mbuf it took.
#pragma once

#include <rte_mbuf.h>
#include <rte_mempool.h>

#include <cstdint>
#include <string>
#include <vector>

namespace mg::test {

// Initialises the EAL once (idempotent); returns the shared pool (8191 mbufs, 2048 B data room +
// headroom). Aborts the test program on failure with the EAL's message.
rte_mempool* pool();

// Mbufs of the pool currently handed out.
unsigned in_use();

// A one-segment mbuf holding `bytes` (at the default headroom). Fails the current test if none is free.
rte_mbuf* make_mbuf(const std::vector<uint8_t>& bytes);
std::vector<uint8_t> mbuf_bytes(const rte_mbuf* m);
void free_all(rte_mbuf** pkts, uint16_t n);

// Inner packets for tests: IPv4 or IPv6 UDP packets with `payload` bytes of a pattern that depends on
// `salt`, valid lengths and (for IPv4) a valid header checksum.
std::vector<uint8_t> udp_packet(int ip_version, uint32_t payload, uint32_t salt = 0);

std::vector<uint8_t> from_hex(const std::string& hex);
std::string to_hex(const uint8_t* p, size_t n);

}  // namespace mg::test
