// meshgatectl `show ports`, `show rates` and --watch: the views that look at the mirror more than once or per port.
// Rates come from two mirror reads and the data plane's own refresh times (GatewayInfo::updated_ns), not from
// meshgatectl's clock, so a slow or descheduled CLI does not skew them.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/core.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <nlohmann/json.hpp>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "cli.h"
#include "table.h"

using nlohmann::json;

namespace mgctl {

namespace {

// A counter's growth between two reads; a counter that went back (`clear counters`) counts from 0.
uint64_t grew(uint64_t before, uint64_t after) { return after >= before ? after - before : after; }

std::string rate(double v) {
  if (v >= 1e9) return fmt::format("{:.2f}G", v / 1e9);
  if (v >= 1e6) return fmt::format("{:.2f}M", v / 1e6);
  if (v >= 1e3) return fmt::format("{:.2f}k", v / 1e3);
  return fmt::format("{:.0f}", v);
}

}  // namespace

void show_ports(const Snapshot& s, const Options& o) {
  const auto& g = s.gw;
  auto pc = [&](const c::PortInfo& p, const char* n) { return c::counter(g, p, n); };
  if (o.json) {
    json j = json::array();
    for (uint32_t i = 0; i < s.ports.size(); ++i) {
      const auto& p = s.ports[i];
      json e = json::object();
      for (uint32_t k = 0; k < std::min(g.n_port_counters, c::kMaxCounters); ++k)
        e[c::counter_name(g.port_counter_names, g.n_port_counters, k)] = p.counters[k];
      e.update({{"index", i}, {"name", FIELD(p.name)}, {"port_id", p.port_id}, {"host", FIELD(p.host)}});
      j.push_back(e);
    }
    fmt::print("{}\n", j.dump(2));
    return;
  }
  // The driver's counters, then the workers' own (exact, and kept when a driver zeroes its own).
  Table t({"PORT", "ID", "IPACKETS", "IMISSED", "IERRORS", "RX_NOMBUF", "OPACKETS", "OERRORS", "RX", "TX",
           "TX_REFUSED", "TO_HOST", "FROM_HOST", "TWIN"});
  for (const auto& p : s.ports)
    t.row({FIELD(p.name), num(p.port_id), num(pc(p, "ipackets")), num(pc(p, "imissed")), num(pc(p, "ierrors")),
           num(pc(p, "rx_nombuf")), num(pc(p, "opackets")), num(pc(p, "oerrors")), num(pc(p, "rx_packets")),
           num(pc(p, "tx_packets")), num(pc(p, "tx_refused")), num(pc(p, "to_host")), num(pc(p, "from_host")),
           FIELD(p.host).empty() ? "-" : FIELD(p.host)});
  t.print();
}

void show_rates(const Snapshot& a, const Snapshot& b, const Options& o) {
  const double dt = b.gw.updated_ns > a.gw.updated_ns ? double(b.gw.updated_ns - a.gw.updated_ns) / 1e9 : 0;
  auto per_s = [&](uint64_t before, uint64_t after) { return dt > 0 ? double(grew(before, after)) / dt : 0.0; };
  json tj = json::array(), pj = json::array();
  Table tt({"TUNNEL", "STATE", "PKTS_OUT/S", "BITS_OUT/S", "PKTS_IN/S", "BITS_IN/S"});
  for (size_t i = 0; i < b.tunnels.size() && i < a.tunnels.size(); ++i) {
    const auto &x = a.tunnels[i], &y = b.tunnels[i];
    auto d = [&](const char* n, double scale) {
      return scale * per_s(c::counter(a.gw, x, n), c::counter(b.gw, y, n));
    };
    const double po = d("packets_out", 1), bo = d("bytes_out", 8), pi = d("packets_in", 1), bi = d("bytes_in", 8);
    tj.push_back({{"name", FIELD(y.name)}, {"packets_out_per_s", po}, {"bits_out_per_s", bo},
                  {"packets_in_per_s", pi}, {"bits_in_per_s", bi}});
    tt.row({FIELD(y.name), y.state == 0 ? "up" : y.state == 1 ? "draining" : "down", rate(po), rate(bo), rate(pi),
            rate(bi)});
  }
  Table pt({"PORT", "RX_PKTS/S", "RX_BITS/S", "TX_PKTS/S", "TX_BITS/S", "DROPS/S"});
  for (size_t i = 0; i < b.ports.size() && i < a.ports.size(); ++i) {
    const auto &x = a.ports[i], &y = b.ports[i];
    auto d = [&](const char* n, double scale) {
      return scale * per_s(c::counter(a.gw, x, n), c::counter(b.gw, y, n));
    };
    // Packets: the workers' own counts; bits: the driver's byte counters (the workers count no bytes per port).
    const double rp = d("rx_packets", 1), rb = d("ibytes", 8), tp = d("tx_packets", 1), tb = d("obytes", 8);
    const double dr = d("imissed", 1) + d("rx_nombuf", 1) + d("tx_refused", 1);
    pj.push_back({{"name", FIELD(y.name)}, {"rx_packets_per_s", rp}, {"rx_bits_per_s", rb},
                  {"tx_packets_per_s", tp}, {"tx_bits_per_s", tb}, {"drops_per_s", dr}});
    pt.row({FIELD(y.name), rate(rp), rate(rb), rate(tp), rate(tb), rate(dr)});
  }
  if (o.json) {
    // One line per frame, so `--watch` output is JSON lines.
    fmt::print("{}\n", json{{"interval_s", dt}, {"updated_ns", b.gw.updated_ns}, {"tunnels", tj}, {"ports", pj}}.dump());
    return;
  }
  if (dt <= 0) fmt::print("the mirror was not refreshed between the two reads: no rates\n");
  fmt::print("rates over {:.3f} s\n", dt);
  tt.print();
  fmt::print("\n");
  pt.print();
}

void write_atomically(const std::string& path, const std::string& text) {
  const size_t slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
  std::string tmp = path + ".tmp.XXXXXX";
  std::vector<char> buf(tmp.begin(), tmp.end());
  buf.push_back('\0');
  const int fd = mkstemp(buf.data());
  if (fd < 0) throw Fail{kExitRefused, fmt::format("cannot create a temporary file beside {}: {}", path, strerror(errno))};
  tmp = buf.data();
  size_t off = 0;
  bool ok = fchmod(fd, 0644) == 0;  // node-exporter runs as another user and must read it
  while (ok && off < text.size()) {
    const ssize_t n = write(fd, text.data() + off, text.size() - off);
    if (n < 0 && errno == EINTR) continue;
    ok = n > 0;
    if (ok) off += size_t(n);
  }
  ok = ok && fsync(fd) == 0;
  const int err = errno;
  close(fd);
  if (!ok || rename(tmp.c_str(), path.c_str()) != 0) {
    const int e = ok ? errno : err;
    unlink(tmp.c_str());
    throw Fail{kExitRefused, fmt::format("cannot write {} (in {}): {}", path, dir, strerror(e))};
  }
}

int run_show(const c::Block& b, const Options& o, const std::string& what) {
  const auto every = std::chrono::duration<double>(o.watch_s > 0 ? o.watch_s : 1.0);
  auto alive_read = [&] {
    if (!b.owner_alive()) throw Fail{kExitNoGateway, fmt::format("no gateway is running: pid {} is gone", b.owner_pid())};
    return read_mirror(b);
  };
  Snapshot cur = read_mirror(b);
  for (uint32_t frame = 1;; ++frame) {
    if (what == "rates") {
      std::this_thread::sleep_for(every);
      Snapshot next = alive_read();
      show_rates(cur, next, o);
      cur = std::move(next);
    } else {
      if (frame > 1) {
        std::this_thread::sleep_for(every);
        cur = alive_read();
      }
      if (what == "metrics") {
        auto help = std::make_unique<c::CounterHelp>();
        if (!b.read_counter_help(help.get())) throw Fail{kExitBusy, "the counter descriptions kept changing"};
        const std::string text = metrics_text(cur, *help, o.format == "openmetrics", o.gateway);
        if (o.output.empty()) fmt::print("{}", text);
        else write_atomically(o.output, text);
      } else if (what == "ports") {
        show_ports(cur, o);
      } else {
        show(b, o, what, cur);
      }
    }
    if (o.watch_s <= 0 || (o.count && frame >= o.count)) return kExitOk;
    if (!o.json && o.output.empty() && what != "metrics") {
      const std::time_t now = std::time(nullptr);
      char when[32];
      std::strftime(when, sizeof when, "%H:%M:%S", std::localtime(&now));
      fmt::print("\n--- {} (every {} s) ---\n", when, o.watch_s);
    }
    std::fflush(stdout);
  }
}

std::string suggest(const std::string& word, const std::vector<std::string>& known) {
  auto distance = [](const std::string& x, const std::string& y) {
    std::vector<size_t> row(y.size() + 1);
    for (size_t j = 0; j <= y.size(); ++j) row[j] = j;
    for (size_t i = 1; i <= x.size(); ++i) {
      size_t diag = row[0];
      row[0] = i;
      for (size_t j = 1; j <= y.size(); ++j) {
        const size_t up = row[j];
        row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (x[i - 1] == y[j - 1] ? 0 : 1)});
        diag = up;
      }
    }
    return row[y.size()];
  };
  std::string best;
  size_t best_d = 3;
  for (const auto& k : known) {
    const size_t d = !word.empty() && k.rfind(word, 0) == 0 ? 1 : distance(word, k);
    if (d < best_d) {
      best_d = d;
      best = k;
    }
  }
  return best;
}

}  // namespace mgctl
