// meshgate-esp: runs a pcap through meshgate's ESP engine, to make ESP captures for pktgen or to check
// one. Same SA spec syntax as the gateway config (see mg::esp::parse_sa_spec).
//
//   meshgate-esp encrypt --sa SPEC IN.pcap OUT.pcap
//   meshgate-esp decrypt --sa SPEC [--sa SPEC ...] IN.pcap OUT.pcap
//
// Keys: key_file=PATH (checked like the gateway's key files) or key=- (one key on standard input) keep the key off
// the command line; key=HEX still works but warns, since other users can read a command line.
//
// Link types: Ethernet (L2 header kept, EtherType set to the new IP version) and raw IP.
// Exit codes: 0 ok, 1 runtime failure (pcap, EAL), 2 usage or bad SA spec.
#include <CLI/CLI.hpp>
#include <fmt/core.h>
#include <pcap/pcap.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>

#include <unistd.h>

#include <charconv>
#include <cstring>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "esp/esp.h"
#include "frames.h"
#include "mg_version.h"

namespace {

constexpr uint16_t kBurst = 32;
constexpr uint16_t kDataRoom = 10240;  // jumbo frames fit one segment

struct Frame {
  std::vector<uint8_t> l2;  // Ethernet header, empty for raw IP
  pcap_pkthdr hdr;
};

bool init_eal(const char* prog) {
  const char* argv[] = {prog, "--no-huge", "-m", "256", "--no-pci", "--no-shconf", "--no-telemetry",
                        "--log-level=*:error", "-l", "0"};
  int argc = int(sizeof(argv) / sizeof(argv[0]));
  rte_errno = 0;
  if (rte_eal_init(argc, const_cast<char**>(argv)) < 0) {
    // rte_errno 0 would read "Success": some EAL failures do not set it.
    fmt::print(stderr, "meshgate-esp: EAL init failed: {}\n",
               rte_errno ? rte_strerror(rte_errno) : "DPDK gave no reason (see the EAL lines above)");
    return false;
  }
  return true;
}

// Overwrites the value of every key= in the command line (what /proc/PID/cmdline shows) once the options hold their
// own copies: it shortens the time the key is visible to other users; it cannot undo it, hence the warning.
void hide_keys(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    char* a = argv[i];
    for (char* k = std::strstr(a, "key="); k != nullptr; k = std::strstr(k + 4, "key=")) {
      if (k != a && k[-1] != ',' && k[-1] != '=') continue;  // the end of another field's name
      char* v = k + 4;
      if (v[0] == '-' && (v[1] == '\0' || v[1] == ',')) continue;  // key=-: nothing to hide
      for (; *v != '\0' && *v != ','; ++v) *v = '*';
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"meshgate-esp: encrypt or decrypt a pcap with meshgate's ESP engine (tunnel mode)"};
  std::string mode, in_path, out_path;
  std::vector<std::string> specs;
  bool json = false;
  uint64_t start_seq = 1;
  app.add_option("mode", mode, "encrypt | decrypt")->required()->check(CLI::IsMember({"encrypt", "decrypt"}));
  app.add_option("in", in_path, "input pcap")->required();
  app.add_option("out", out_path, "output pcap")->required();
  app.add_option("--sa", specs,
                 "SA spec: spi=0x1001,cipher=aes-gcm-128|aes-gcm-256|chacha20-poly1305,"
                 "key_file=PATH|key=-|key=HEX (key+salt: a file of mode 0600, standard input, or the command line, "
                 "where others can read it),src=IP,dst=IP[,esn=1][,window=N][,engine=ipsecmb|sodium][,ttl=N]"
                 "[,df=copy|set|clear][,dscp=copy|N]; decrypt takes several")
      ->required()
      ->allow_extra_args(false);  // one spec per --sa, so the pcap paths stay positional
  // Checked as text first: CLI11 turns "-1" and numbers past 2^64 into large values that a range cannot tell apart.
  app.add_option("--start-seq", start_seq, "encrypt: first sequence number (default 1)")
      ->check(CLI::Validator(
          [](std::string& v) {
            uint64_t n = 0;
            const auto r = std::from_chars(v.data(), v.data() + v.size(), n);
            const bool ok = !v.empty() && r.ec == std::errc() && r.ptr == v.data() + v.size() && n >= 1;
            return ok ? std::string() : "'" + v + "' is not a number in 1.." + std::to_string(UINT64_MAX);
          },
          "1..2^64-1"));
  app.add_flag("--json", json, "print the counters as JSON");
  app.set_version_flag("--version", std::string("meshgate-esp ") + MG_VERSION, "print the version and exit");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  const bool encrypt = mode == "encrypt";
  if (encrypt && specs.size() != 1) {
    fmt::print(stderr, "meshgate-esp: encrypt takes exactly one --sa\n");
    return 2;
  }

  hide_keys(argc, argv);
  std::vector<std::unique_ptr<mg::esp::Sa>> sas;
  mg::esp::SpecInputs inputs;
  inputs.stdin_fd = STDIN_FILENO;
  for (std::string& s : specs) {
    mg::esp::SaConfig cfg;
    std::string err;
    const bool ok = mg::esp::parse_sa_spec(s, &cfg, &err, &inputs);
    mg::crypto::secure_wipe(s.data(), s.size());  // the spec holds the key
    if (!ok) {
      fmt::print(stderr, "meshgate-esp: --sa: {}\n", err);
      return 2;
    }
    auto sa = mg::esp::Sa::create(cfg, encrypt ? mg::esp::Direction::kOutbound : mg::esp::Direction::kInbound, 1,
                                  &err);
    if (!sa) {
      fmt::print(stderr, "meshgate-esp: --sa: {}\n", err);
      return 2;
    }
    sas.push_back(std::move(sa));
  }
  if (inputs.key_in_spec)
    fmt::print(stderr,
               "meshgate-esp: warning: a key given as --sa key=HEX was on the command line, where other users can "
               "read it (ps, /proc/PID/cmdline) until it was hidden; use key_file=PATH (mode 0600) or key=- "
               "(standard input)\n");
  if (encrypt && start_seq > 1) sas[0]->resume_after(start_seq - 1);
  std::unique_ptr<mg::esp::SaTable> table;
  if (!encrypt) {
    std::vector<mg::esp::Sa*> raw;
    for (auto& s : sas) raw.push_back(s.get());
    std::string err;
    table = mg::esp::SaTable::build(raw, 1, &err);
    if (!table) {
      fmt::print(stderr, "meshgate-esp: --sa: {}\n", err);
      return 2;
    }
  }

  char errbuf[PCAP_ERRBUF_SIZE];
  pcap_t* in = pcap_open_offline(in_path.c_str(), errbuf);
  if (in == nullptr) {
    fmt::print(stderr, "meshgate-esp: {}: {}\n", in_path, errbuf);
    return 1;
  }
  const int dlt = pcap_datalink(in);
  const int l2len = mg::esptool::link_l2_len(dlt);
  if (l2len < 0) {
    fmt::print(stderr, "meshgate-esp: {}: link type {} not supported (Ethernet or raw IP)\n", in_path, dlt);
    pcap_close(in);
    return 1;
  }
  pcap_t* dead = pcap_open_dead(dlt, 65535);
  pcap_dumper_t* out = pcap_dump_open(dead, out_path.c_str());
  if (out == nullptr) {
    fmt::print(stderr, "meshgate-esp: {}: {}\n", out_path, pcap_geterr(dead));
    pcap_close(in);
    pcap_close(dead);
    return 1;
  }
  if (!init_eal(argv[0])) return 1;
  rte_mempool* mp = rte_pktmbuf_pool_create("mg_esp_tool", 1023, 0, 0, kDataRoom + RTE_PKTMBUF_HEADROOM,
                                            SOCKET_ID_ANY);
  if (mp == nullptr) {
    fmt::print(stderr, "meshgate-esp: mempool: {}\n", rte_strerror(rte_errno));
    return 1;
  }

  uint64_t frames_in = 0, frames_out = 0, skipped = 0, too_big = 0;
  rte_mbuf* pkts[kBurst];
  Frame meta[kBurst];
  uint16_t n = 0;
  auto flush = [&] {
    // Both bursts keep the order of the survivors, so meta[] follows them by pointer identity.
    rte_mbuf* orig[kBurst];
    std::memcpy(orig, pkts, sizeof(rte_mbuf*) * n);
    const uint16_t k = encrypt ? mg::esp::encap_burst(*sas[0], 0, pkts, n) : mg::esp::decap_burst(*table, 0, pkts, n);
    uint16_t j = 0;
    for (uint16_t i = 0; i < k; ++i) {
      while (orig[j] != pkts[i]) ++j;
      rte_mbuf* m = pkts[i];
      Frame& f = meta[j];
      const uint8_t* ip = rte_pktmbuf_mtod(m, const uint8_t*);
      std::vector<uint8_t> buf(f.l2);
      if (!buf.empty()) {
        const uint16_t et = (ip[0] >> 4) == 6 ? 0x86dd : 0x0800;
        buf[12] = uint8_t(et >> 8);
        buf[13] = uint8_t(et);
      }
      buf.insert(buf.end(), ip, ip + rte_pktmbuf_pkt_len(m));
      pcap_pkthdr h = f.hdr;
      h.caplen = h.len = uint32_t(buf.size());
      pcap_dump(reinterpret_cast<u_char*>(out), &h, buf.data());
      ++frames_out;
    }
    for (uint16_t i = 0; i < n; ++i) rte_pktmbuf_free(pkts[i]);
    n = 0;
  };

  pcap_pkthdr* h;
  const u_char* data;
  int rc;
  while ((rc = pcap_next_ex(in, &h, &data)) == 1) {
    ++frames_in;
    mg::esptool::Frame fr;
    const auto kind =
        mg::esptool::classify_frame(l2len, data, h->caplen, h->len, kDataRoom - mg::esp::kMaxOverhead, &fr);
    if (kind == mg::esptool::FrameKind::kNotIp) {
      ++skipped;
      continue;
    }
    if (kind == mg::esptool::FrameKind::kTooBig) {
      ++too_big;
      continue;
    }
    const uint32_t off = fr.l3_off, l3len = fr.l3_len;
    rte_mbuf* m = rte_pktmbuf_alloc(mp);
    if (m == nullptr) {
      fmt::print(stderr, "meshgate-esp: out of mbufs\n");
      return 1;
    }
    std::memcpy(rte_pktmbuf_append(m, uint16_t(l3len)), data + off, l3len);
    meta[n].l2.assign(data, data + off);
    meta[n].hdr = *h;
    pkts[n++] = m;
    if (n == kBurst) flush();
  }
  if (n) flush();
  if (rc == -1) fmt::print(stderr, "meshgate-esp: {}: {}\n", in_path, pcap_geterr(in));
  pcap_dump_close(out);
  pcap_close(dead);
  pcap_close(in);

  mg::esp::SaStats total;
  std::vector<std::pair<uint32_t, mg::esp::SaStats>> per_sa;
  for (auto& s : sas) per_sa.emplace_back(s->spi(), s->stats());
  if (table) per_sa.emplace_back(0, table->stats());  // drops before an SA was known
  for (auto& [spi, st] : per_sa) {
    total.packets += st.packets;
    total.bytes += st.bytes;
    for (size_t d = 0; d < mg::esp::kDropCount; ++d) total.drops[d] += st.drops[d];
  }
  if (json) {
    nlohmann::json j;
    j["mode"] = mode;
    j["frames_in"] = frames_in;
    j["frames_out"] = frames_out;
    j["skipped_not_ip"] = skipped;
    j["skipped_too_big"] = too_big;
    nlohmann::json d = nlohmann::json::object();
    for (size_t r = 0; r < mg::esp::kDropCount; ++r)
      if (total.drops[r]) d[mg::esp::to_string(mg::esp::Drop(r))] = total.drops[r];
    j["drops"] = d;
    nlohmann::json arr = nlohmann::json::array();
    for (auto& s : sas) {
      const auto st = s->stats();
      arr.push_back({{"spi", s->spi()}, {"packets", st.packets}, {"bytes", st.bytes}, {"drops", st.total_drops()},
                     {"last_seq", s->last_seq()}, {"needs_rekey", s->needs_rekey()}});
    }
    j["sa"] = arr;
    fmt::print("{}\n", j.dump(2));
  } else {
    fmt::print("{}: {} frames in, {} out, {} not IP, {} too big\n", mode, frames_in, frames_out, skipped, too_big);
    for (size_t r = 0; r < mg::esp::kDropCount; ++r)
      if (total.drops[r]) fmt::print("  drop {:<22} {}\n", mg::esp::to_string(mg::esp::Drop(r)), total.drops[r]);
    for (auto& s : sas) {
      const auto st = s->stats();
      fmt::print("  sa spi 0x{:08x}: {} packets, {} bytes{}\n", s->spi(), st.packets, st.bytes,
                 s->needs_rekey() ? ", needs rekey" : "");
    }
  }
  sas.clear();  // wipes keys before the EAL goes away
  table.reset();
  rte_eal_cleanup();
  return rc == -1 ? 1 : 0;
}
