// A meshgate process for tests and benchmarks of the control path: the dual-redundancy config on the bench
// vdevs (inside net_pcap replaying a generated capture forever, instance ports net_null), its own control-block
// name and EAL file prefix, stopped with SIGTERM at the end.
//
// It lives here, outside tests/ and bench/, because both use it (tests/control/test_live.cpp, bench/ctrl's
// ctrl_storm): neither tree reaches into the other. It talks to meshgate through lib/ctrl only, like
// meshgatectl, so it links no DPDK.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>

#include "ctrl/ctrl.h"

namespace mg::harness {

// Writes an Ethernet pcap of `flows` UDP flows (IPv4, 10.0.x.y -> 10.128.0.1), one packet of `size` bytes each.
bool write_flows_pcap(const std::string& path, unsigned flows, unsigned size);

class LiveGateway {
 public:
  // Starts meshgate (binary and source root from the environment: MESHGATE_BIN, MESHGATE_SOURCE_ROOT) on a
  // capture of `flows` flows for at most `duration_s`, and waits until its control block answers a ping.
  // On failure ok() is false and `error` says why.
  LiveGateway(const std::string& tag, unsigned flows = 256, unsigned size = 128, double duration_s = 60);
  ~LiveGateway();
  LiveGateway(const LiveGateway&) = delete;
  LiveGateway& operator=(const LiveGateway&) = delete;

  // SIGTERM and wait; returns the exit status (-1 if not running).
  int stop();
  bool ok() const { return block != nullptr; }
  // Packets sent out of the instance ports so far (0 without a block).
  uint64_t forwarded() const;

  std::string name, pcap, state, error;
  pid_t pid = -1;  // tests may kill it themselves; they then set it to -1
  std::unique_ptr<ctrl::Block> block;
};

}  // namespace mg::harness
