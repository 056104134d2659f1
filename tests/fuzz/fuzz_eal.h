// The EAL once per fuzzing process: no hugepages, no PCI, no shared files, so parallel jobs never meet.
#pragma once

#include <rte_eal.h>
#include <rte_mbuf.h>

#include <cstdlib>

namespace mg::fuzz {

// A pool for the mbuf headers; the packet bytes themselves live in exact-size heap buffers (exact_mbuf.h).
inline rte_mempool* fuzz_pool() {
  static rte_mempool* mp = [] {
    const char* argv[] = {"fuzz", "--no-huge", "-m", "128", "--no-pci", "--no-shconf", "--no-telemetry",
                          "--log-level=*:error", "-l", "0"};
    if (rte_eal_init(int(sizeof(argv) / sizeof(argv[0])), const_cast<char**>(argv)) < 0) std::abort();
    rte_mempool* p = rte_pktmbuf_pool_create("fuzz", 1023, 0, 0, RTE_MBUF_DEFAULT_BUF_SIZE, SOCKET_ID_ANY);
    if (p == nullptr) std::abort();
    return p;
  }();
  return mp;
}

}  // namespace mg::fuzz
