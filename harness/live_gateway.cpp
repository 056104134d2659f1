#include "live_gateway.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <thread>
#include <vector>

namespace mg::harness {

bool write_flows_pcap(const std::string& path, unsigned flows, unsigned size) {
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) return false;
  const uint32_t gh[6] = {0xa1b2c3d4, 0x00040002, 0, 0, 65535, 1};
  std::fwrite(gh, 4, 6, f);
  std::vector<uint8_t> p(size, 0);
  for (unsigned i = 0; i < flows; ++i) {
    std::fill(p.begin(), p.end(), 0);
    const uint8_t mac[12] = {2, 0, 0, 0, 0, 0xa, 2, 0, 0, 0, 0, 9};
    std::memcpy(p.data(), mac, 12);
    p[12] = 0x08;
    uint8_t* ip = p.data() + 14;
    const unsigned len = size - 14;
    ip[0] = 0x45;
    ip[2] = uint8_t(len >> 8);
    ip[3] = uint8_t(len);
    ip[8] = 64;
    ip[9] = 17;
    ip[12] = 10; ip[13] = 0; ip[14] = uint8_t(i >> 8); ip[15] = uint8_t(i);
    ip[16] = 10; ip[17] = 128; ip[18] = 0; ip[19] = 1;
    uint32_t sum = 0;
    for (int k = 0; k < 20; k += 2) sum += uint32_t(ip[k] << 8 | ip[k + 1]);
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
    ip[10] = uint8_t(~sum >> 8);
    ip[11] = uint8_t(~sum);
    uint8_t* u = ip + 20;
    u[0] = uint8_t((1000 + i) >> 8); u[1] = uint8_t(1000 + i); u[2] = 0x13; u[3] = 0x89;
    u[4] = uint8_t((len - 20) >> 8); u[5] = uint8_t(len - 20);
    const uint32_t rh[4] = {0, 0, size, size};
    std::fwrite(rh, 4, 4, f);
    std::fwrite(p.data(), 1, size, f);
  }
  return std::fclose(f) == 0;
}

LiveGateway::LiveGateway(const std::string& tag, unsigned flows, unsigned size, double duration_s) {
  const char* bin = std::getenv("MESHGATE_BIN");
  const char* root = std::getenv("MESHGATE_SOURCE_ROOT");
  if (!bin || !root) {
    error = "MESHGATE_BIN / MESHGATE_SOURCE_ROOT not set";
    return;
  }
  name = tag + std::to_string(getpid());
  pcap = "/tmp/" + name + ".pcap";
  state = "/tmp/" + name + ".state";  // its own sequence-number state (made by meshgate), removed with it
  if (!write_flows_pcap(pcap, flows, size)) {
    error = "cannot write " + pcap;
    return;
  }
  const std::string cfg = std::string(root) + "/configs/gateway-dual.toml";
  const std::string pmd = std::string(root) + "/pmd_config/vdev-bench.toml";
  const std::string dur = std::to_string(duration_s);
  pid = fork();
  if (pid == 0) {
    setenv("MESHGATE_INSIDE_PCAP", pcap.c_str(), 1);
    setenv("STATE_DIRECTORY", state.c_str(), 1);
    const std::string cn = "--control-name=" + name, fp = "--eal=--file-prefix=" + name;
    execl(bin, bin, "-c", cfg.c_str(), "--pmd", pmd.c_str(), cn.c_str(), fp.c_str(),
          "--eal=--log-level=lib.eal:error", "--duration", dur.c_str(), "-q", (char*)nullptr);
    _exit(127);
  }
  // Up once the block answers a ping.
  for (int i = 0; i < 200 && !block; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    std::string e;
    ctrl::SubmitError code;
    auto b = ctrl::Block::open(name, &e, &code);
    if (b) {
      ctrl::SubmitError se;
      if (b->call(ctrl::Op::kNop, 0, 0, 0, 2000, &se)) block = std::move(b);
    }
    int st;
    if (waitpid(pid, &st, WNOHANG) == pid) {
      error = "meshgate exited early with status " + std::to_string(st);
      pid = -1;
      return;
    }
  }
  if (!block) error = "meshgate did not answer on its control block";
}

LiveGateway::~LiveGateway() {
  block.reset();
  stop();
  std::remove(pcap.c_str());
  std::error_code ec;
  std::filesystem::remove_all(state, ec);
  std::filesystem::remove_all("/var/run/dpdk/" + name, ec);  // the EAL runtime directory of its --file-prefix
}

int LiveGateway::stop() {
  if (pid <= 0) return -1;
  kill(pid, SIGTERM);
  int st = 0;
  waitpid(pid, &st, 0);
  pid = -1;
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

uint64_t LiveGateway::forwarded() const {
  ctrl::GatewayInfo g;
  return block && block->read_gateway(&g) ? ctrl::counter(g, "outside_tx") : 0;
}

}  // namespace mg::harness
