// Control-path benchmark against a live meshgate forwarding on the bench vdevs (1 worker):
//   latency from submitting a command to its reply, which main sends only after every worker has passed an RCU
//   quiescent state on the new state (p50/p99 over N weight changes), and
//   the forwarding rate during a storm of C commands per second as a share of the rate without it, measured
//   side by side in alternating windows.
// Usage: ctrl_storm [commands=1000] [storm_per_s=1000] [window_s=3] [rounds=3]; MESHGATE_BIN, MESHGATE_SOURCE_ROOT.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

#include "live_gateway.h"

using Clock = std::chrono::steady_clock;

int main(int argc, char** argv) {
  const int n = argc > 1 ? std::atoi(argv[1]) : 1000;
  const int storm = argc > 2 ? std::atoi(argv[2]) : 1000;
  const double window = argc > 3 ? std::atof(argv[3]) : 3.0;
  const int rounds = argc > 4 ? std::atoi(argv[4]) : 3;
  mg::harness::LiveGateway g("mgbench", 1024, 128, 3600);
  if (!g.ok()) {
    std::fprintf(stderr, "ctrl_storm: %s\n", g.error.c_str());
    return 1;
  }
  auto& b = *g.block;
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  auto call = [&](uint32_t w) {
    mg::ctrl::SubmitError se;
    return b.call(mg::ctrl::Op::kTunnelWeight, 0, w, 0, 5000, &se);
  };
  std::vector<double> lat;
  for (int i = 0; i < n; ++i) {
    const auto t0 = Clock::now();
    auto r = call(1 + i % 2);
    const auto t1 = Clock::now();
    if (!r || r->status != mg::ctrl::Status::kOk) {
      std::fprintf(stderr, "ctrl_storm: command %d failed\n", i);
      return 1;
    }
    lat.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
  }
  std::sort(lat.begin(), lat.end());
  const double p50 = lat[lat.size() / 2], p99 = lat[lat.size() * 99 / 100], mx = lat.back();

  auto rate = [&](bool with_storm) {
    const uint64_t a = g.forwarded();
    const auto t0 = Clock::now();
    const auto period = std::chrono::duration<double>(1.0 / std::max(1, storm));
    auto next = t0;
    uint32_t i = 0;
    while (Clock::now() - t0 < std::chrono::duration<double>(window)) {
      if (with_storm && Clock::now() >= next) {
        call(1 + (i++ % 2));
        next += std::chrono::duration_cast<Clock::duration>(period);
      } else {
        std::this_thread::sleep_for(std::chrono::microseconds(100));
      }
    }
    // The mirror is refreshed every 100 ms and after each command: let it catch up before reading.
    std::this_thread::sleep_for(std::chrono::milliseconds(150));
    const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
    return double(g.forwarded() - a) / secs / 1e6;
  };
  std::vector<double> quiet, busy;
  for (int r = 0; r < rounds; ++r) {
    quiet.push_back(rate(false));
    busy.push_back(rate(true));
  }
  std::sort(quiet.begin(), quiet.end());
  std::sort(busy.begin(), busy.end());
  const double q = quiet[quiet.size() / 2], s = busy[busy.size() / 2];
  std::printf("command -> every worker on the new state (reply after RCU quiescence), %d weight changes:\n", n);
  std::printf("  p50 %.0f us   p99 %.0f us   max %.0f us\n", p50, p99, mx);
  std::printf("forwarding (median of %d alternating %.0f s windows): quiet %.2f Mpps, storm of %d cmd/s %.2f Mpps "
              "= %.1f %% of quiet\n", rounds, window, q, storm, s, 100.0 * s / q);
  return g.stop() == 0 ? 0 : 1;
}
