// load_pmd (the port, queue and lcore map) and cross_check (rules that need both files).
#include <algorithm>
#include <cctype>
#include <optional>
#include <set>
#include <string>

#include "config/config.h"
#include "config/gateway_internal.h"
#include "config/reader.h"
#include "net/limits.h"

namespace mg::config {

using detail::line_of;
using detail::Reader;
using detail::Sink;

namespace {

constexpr unsigned kMaxLcore = 1023;

bool parse_uint(std::string_view s, unsigned* out) {
  if (s.empty() || s.size() > 6) return false;
  unsigned v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + unsigned(c - '0');
  }
  *out = v;
  return true;
}

// "0-3,5" (the -l syntax).
bool parse_lcore_list(std::string_view s, std::set<unsigned>* out) {
  if (s.empty()) return false;
  size_t i = 0;
  while (i <= s.size()) {
    const size_t comma = std::min(s.find(',', i), s.size());
    const std::string_view item = s.substr(i, comma - i);
    const size_t dash = item.find('-');
    unsigned a, b;
    if (dash == std::string_view::npos) {
      if (!parse_uint(item, &a)) return false;
      b = a;
    } else if (!parse_uint(item.substr(0, dash), &a) || !parse_uint(item.substr(dash + 1), &b) || b < a) {
      return false;
    }
    if (b > kMaxLcore) return false;
    for (unsigned l = a; l <= b; ++l) out->insert(l);
    i = comma + 1;
    if (comma == s.size()) break;
  }
  return true;
}

// --lcores: elements "lcores[@cpus]" separated by commas outside parentheses; lcores is N, N-M or (list).
bool parse_lcores_map(std::string_view s, std::set<unsigned>* out) {
  if (s.empty()) return false;
  std::vector<std::string_view> elems;
  int depth = 0;
  size_t start = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '(') ++depth;
    else if (s[i] == ')') --depth;
    else if (s[i] == ',' && depth == 0) elems.push_back(s.substr(start, i - start)), start = i + 1;
    if (depth < 0) return false;
  }
  if (depth != 0) return false;
  elems.push_back(s.substr(start));
  for (std::string_view e : elems) {
    const size_t at = e.find('@');
    std::string_view l = e.substr(0, at);
    if (l.size() >= 2 && l.front() == '(' && l.back() == ')') l = l.substr(1, l.size() - 2);
    if (!parse_lcore_list(l, out)) return false;
  }
  return true;
}

bool parse_coremask(std::string_view s, std::set<unsigned>* out) {
  if (s.starts_with("0x") || s.starts_with("0X")) s.remove_prefix(2);
  if (s.empty()) return false;
  unsigned bit = 0;
  for (size_t i = s.size(); i-- > 0;) {
    const char c = char(std::tolower(static_cast<unsigned char>(s[i])));
    int v;
    if (c >= '0' && c <= '9') v = c - '0';
    else if (c >= 'a' && c <= 'f') v = c - 'a' + 10;
    else return false;
    for (int k = 0; k < 4; ++k, ++bit)
      if (v & (1 << k)) out->insert(bit);
  }
  return true;
}

struct EalLcores {
  bool listed = false;           // -l / --lcores / -c present
  std::set<unsigned> lcores;
  std::optional<unsigned> main;  // --main-lcore
};

// Takes the value of an option given as "-lX", "-l X", "--lcores=X" or "--lcores X".
bool option_value(const std::vector<std::string>& args, size_t* i, std::string_view shrt, std::string_view lng,
                  std::string* value) {
  const std::string& a = args[*i];
  auto take_next = [&]() {
    if (*i + 1 < args.size()) *value = args[++*i];
    else value->clear();
    return true;
  };
  if (!shrt.empty() && a == shrt) return take_next();
  if (!shrt.empty() && a.size() > shrt.size() && a.starts_with(shrt) && !a.starts_with("--")) {
    *value = a.substr(shrt.size());
    return true;
  }
  if (lng.empty()) return false;
  if (a == lng) return take_next();
  if (a.size() > lng.size() && a.starts_with(lng) && a[lng.size()] == '=') {
    *value = a.substr(lng.size() + 1);
    return true;
  }
  return false;
}

bool eal_lcores(const std::vector<std::string>& args, EalLcores* out, std::string* err) {
  for (size_t i = 0; i < args.size(); ++i) {
    std::string v;
    if (option_value(args, &i, "-l", "", &v)) {
      out->listed = true;
      if (!parse_lcore_list(v, &out->lcores)) return *err = "-l \"" + v + "\" is not an lcore list like 0-3,5", false;
    } else if (option_value(args, &i, "", "--lcores", &v)) {
      out->listed = true;
      if (!parse_lcores_map(v, &out->lcores)) return *err = "--lcores \"" + v + "\" cannot be parsed", false;
    } else if (option_value(args, &i, "-c", "", &v)) {
      out->listed = true;
      if (!parse_coremask(v, &out->lcores)) return *err = "-c \"" + v + "\" is not a hex core mask", false;
    } else if (option_value(args, &i, "", "--main-lcore", &v) || option_value(args, &i, "", "--master-lcore", &v)) {
      unsigned m;
      if (!parse_uint(v, &m)) return *err = "--main-lcore \"" + v + "\" is not an lcore number", false;
      out->main = m;
    }
  }
  return true;
}

}  // namespace

std::optional<PmdConfig> load_pmd(const std::string& path, std::vector<Error>* errors,
                                  std::vector<std::string>* eal_args) {
  Sink sink(path, errors);
  std::optional<toml::table> doc = detail::parse_toml(path, sink);
  if (!doc) return std::nullopt;
  const toml::table& root = *doc;
  PmdConfig p;
  p.source = path;
  Reader top(sink, root, detail::kTopLevel);

  int eal_line = 0;
  if (const toml::table* et = top.subtable("eal")) {
    Reader r(sink, *et, "[eal]");
    eal_line = r.line();
    if (const auto args = r.str_array("args")) {
      eal_line = r.line("args");
      for (const std::string& a : *args) {
        std::string v;
        if (detail::expand_env(a, &v, sink, eal_line, "[eal] `args`")) p.eal_args.push_back(v);
      }
    }
    r.finish();
  }

  EalLcores lc;
  std::string lc_err;
  const bool lc_ok = eal_lcores(p.eal_args, &lc, &lc_err);
  if (!lc_ok) sink.add(eal_line, "eal-lcores", "[eal] `args`: " + lc_err);
  // EAL's main lcore: --main-lcore, else the lowest enabled lcore (0 when no list is given: EAL takes all cores).
  const unsigned main_lcore = lc.main ? *lc.main : (lc.lcores.empty() ? 0u : *lc.lcores.begin());
  if (lc_ok && lc.main && lc.listed && !lc.lcores.count(*lc.main))
    sink.add(eal_line, "eal-lcores",
             "[eal] `args`: --main-lcore " + std::to_string(*lc.main) + " is not among the enabled lcores");

  if (const toml::table* wt = top.subtable("workers", true)) {
    Reader r(sink, *wt, "[workers]");
    if (const toml::node* n = r.get("lcores")) {
      const toml::array* a = n->as_array();
      int first_excess_line = 0;
      if (!a) {
        r.type_error("lcores", *n, "an array of lcore numbers");
      } else {
        if (a->empty()) sink.add(line_of(*n), "worker-lcores", "[workers] `lcores` is empty: give at least one worker lcore");
        for (const toml::node& e : *a) {
          if (!e.is_integer() || e.as_integer()->get() < 0 || e.as_integer()->get() > kMaxLcore) {
            sink.add(line_of(e), "worker-lcores", "[workers] `lcores`: every element must be an lcore number 0..1023");
            continue;
          }
          const unsigned l = unsigned(e.as_integer()->get());
          if (std::find(p.worker_lcores.begin(), p.worker_lcores.end(), l) != p.worker_lcores.end()) {
            sink.add(line_of(e), "worker-lcore-unique", "[workers] `lcores`: lcore " + std::to_string(l) + " is listed twice");
            continue;
          }
          if (lc_ok && l == main_lcore)
            sink.add(line_of(e), "worker-is-main",
                     "[workers] `lcores`: lcore " + std::to_string(l) +
                         " is EAL's main lcore (the lowest of -l/--lcores, or --main-lcore); main applies control "
                         "changes and must not be a worker");
          else if (lc_ok && lc.listed && !lc.lcores.count(l))
            sink.add(line_of(e), "worker-lcore-not-enabled",
                     "[workers] `lcores`: lcore " + std::to_string(l) + " is not enabled by the EAL -l/--lcores/-c argument");
          p.worker_lcores.push_back(l);
          if (p.worker_lcores.size() == kMaxWorkers + 1) first_excess_line = line_of(e);
        }
        // The product's limit (net/limits.h): per-worker tables are sized by it.
        if (p.worker_lcores.size() > kMaxWorkers)
          sink.add(first_excess_line, "limits",
                   "[workers] `lcores`: " + std::to_string(p.worker_lcores.size()) +
                       " worker lcores: this build carries at most " + std::to_string(kMaxWorkers) +
                       " (the first one too many is here)");
      }
    } else {
      r.missing("lcores");
    }
    if (const auto m = r.ranged("mbufs", 1023, int64_t(1) << 24, "mbufs")) p.mbufs = uint32_t(*m);
    r.finish();
  }

  const toml::node* pn = root.get("port");
  if (!pn) sink.add(0, "ports-required", "no [[port]]: the pmd_config must define the ports the gateway names");
  else if (pn->is_array() && pn->as_array()->empty())
    sink.add(line_of(*pn), "ports-required", "`port` is empty: define at least one [[port]]");
  {
    std::vector<std::string> devnames;
    const auto tables = detail::array_of_tables(top, sink, "port");
    for (size_t i = 0; i < tables.size(); ++i) {
      const toml::table* t = tables[i];
      Reader r(sink, *t, detail::nth("port", i, *tables[i]));
      PortSpec s;
      s.line = r.line();
      if (const auto name = r.name("name", true)) s.name = *name;
      std::string devname;
      if (const auto d = r.str("devargs", true)) {
        if (d->empty()) {
          sink.add(r.line("devargs"), "devargs", r.where() + " `devargs` is empty");
        } else if (detail::expand_env(*d, &s.devargs, sink, r.line("devargs"), r.where() + " `devargs`")) {
          devname = s.devargs.substr(0, s.devargs.find(','));
          if (devname.empty())
            sink.add(r.line("devargs"), "devargs", r.where() + " `devargs` has no device name before its first ','");
          s.vdev = devname.starts_with("net_") || devname.starts_with("crypto_") || devname.starts_with("virtio_user");
        } else {
          s.devargs = *d;
        }
      }
      if (const auto v = r.ranged("rx_queues", 0, 1024, "queues")) s.rx_queues = uint16_t(*v);
      if (const auto v = r.ranged("tx_queues", 0, 1024, "queues")) s.tx_queues = uint16_t(*v);
      if (const auto v = r.ranged("rx_desc", 32, 32768, "descriptors")) s.rx_desc = uint16_t(*v);
      if (const auto v = r.ranged("tx_desc", 32, 32768, "descriptors")) s.tx_desc = uint16_t(*v);
      if (const auto v = r.boolean("rss")) s.rss = *v;
      if (const auto v = r.boolean("ipv4_cksum_offload")) s.ipv4_cksum_offload = *v;
      if (const auto v = r.ranged("start_wait_s", 0, 3600, "start-wait")) s.start_wait_s = uint32_t(*v);
      if (const auto h = r.name("host")) s.host = *h, s.host_line = r.line("host");
      if (const auto v = r.ranged("host_pps", 1, 10000000, "host-rate")) s.host_pps = uint32_t(*v);
      if (const auto v = r.integer("mtu")) {
        if (*v != 0 && (*v < 68 || *v > 16000))
          sink.add(r.line("mtu"), "mtu", r.where() + " `mtu` = " + std::to_string(*v) + " must be 0 (device default) or 68..16000");
        else
          s.mtu = uint32_t(*v);
      }
      r.finish();
      for (const PortSpec& o : p.ports)
        if (!s.name.empty() && o.name == s.name)
          sink.add(s.line, "name-unique",
                   r.where() + ": port name \"" + s.name + "\" is already used on line " + std::to_string(o.line));
      if (!devname.empty()) {
        if (std::find(devnames.begin(), devnames.end(), devname) != devnames.end())
          sink.add(s.line, "devargs-unique",
                   r.where() + ": device \"" + devname + "\" is already used by another [[port]]");
        devnames.push_back(devname);
      }
      p.ports.push_back(std::move(s));
    }
  }
  top.finish();

  // Kernel twins: each names another port, used by one port only, and is not itself a port with a twin.
  for (PortSpec& s : p.ports) {
    if (s.host.empty()) continue;
    auto it = std::find_if(p.ports.begin(), p.ports.end(), [&](const PortSpec& o) { return o.name == s.host; });
    if (it == p.ports.end()) {
      sink.add(s.host_line, "host-port", "[[port]] \"" + s.name + "\" `host` = \"" + s.host + "\" is not a [[port]] of this file");
    } else if (&*it == &s) {
      sink.add(s.host_line, "host-port", "[[port]] \"" + s.name + "\" names itself as its `host`");
    } else if (it->is_host) {
      sink.add(s.host_line, "host-port", "[[port]] \"" + s.host + "\" is already the `host` of another port; each twin serves one port");
    } else if (!it->host.empty()) {
      sink.add(s.host_line, "host-port", "[[port]] \"" + s.host + "\" has a `host` of its own and cannot be a twin");
    } else {
      it->is_host = true;
    }
  }

  // The pool must fill every RX ring and TX ring, plus the per-lcore mempool caches and the bursts in flight;
  // fewer and a port starts with empty rings or the workers starve. Queues as the data plane sets them up
  // (0 = one per worker; a device may offer fewer RX queues, so this is an upper bound).
  if (sink.count() == 0 && !p.worker_lcores.empty()) {
    const uint64_t workers = p.worker_lcores.size();
    uint64_t need = (workers + 1) * 256 + workers * 2 * 32 * 4;
    for (const PortSpec& s : p.ports)
      need += s.is_host ? uint64_t(s.rx_desc) + s.tx_desc + 1024  // one queue each way, and the ring to it
                        : uint64_t(s.rx_queues ? s.rx_queues : workers) * s.rx_desc +
                              uint64_t(s.tx_queues ? s.tx_queues : workers) * s.tx_desc;
    if (p.mbufs < need) {
      const toml::node* w = root.get("workers");
      const toml::table* wt = w ? w->as_table() : nullptr;
      const toml::node* m = wt ? wt->get("mbufs") : nullptr;
      sink.add(m ? line_of(*m) : (wt ? line_of(*wt) : 0), "mbufs",
               "[workers] `mbufs` = " + std::to_string(p.mbufs) + " cannot fill the ports' RX and TX rings and the " +
                   "lcore caches: at least " + std::to_string(need) + " are needed (a size of 2^n - 1 suits the mempool)");
    }
  }
  if (eal_args) *eal_args = p.eal_args;
  if (sink.count() != 0) return std::nullopt;
  return p;
}

bool cross_check(const Gateway& g, const PmdConfig& p, std::vector<Error>* errors) {
  Sink gs(g.source, errors), ps(p.source, errors);
  auto find = [&](const std::string& name) -> const PortSpec* {
    for (const PortSpec& s : p.ports)
      if (s.name == name) return &s;
    return nullptr;
  };
  std::string known;
  for (const PortSpec& s : p.ports) known += (known.empty() ? "" : ", ") + s.name;
  if (!find(g.inside_port))
    gs.add(g.inside_line, "port-unknown",
           "[inside] port \"" + g.inside_port + "\" is not a [[port]] of " + p.source + " (it has: " + known + ")");
  for (const Instance& i : g.instances)
    if (!find(i.port))
      gs.add(i.line, "port-unknown",
             "instance \"" + i.name + "\" port \"" + i.port + "\" is not a [[port]] of " + p.source + " (it has: " + known + ")");
  for (const PortSpec& s : p.ports) {
    if (!s.is_host) continue;
    if (s.name == g.inside_port)
      ps.add(s.line, "host-port", "[[port]] \"" + s.name + "\" is a kernel twin (`host` of another port) and cannot be the inside port");
    for (const Instance& i : g.instances)
      if (i.port == s.name)
        ps.add(s.line, "host-port", "[[port]] \"" + s.name + "\" is a kernel twin and cannot be instance \"" + i.name + "\"'s port");
  }
  for (const PortSpec& s : p.ports) {
    if (s.host.empty()) continue;
    bool outside = false;
    for (const Instance& i : g.instances) outside |= i.port == s.name;
    if (s.name == g.inside_port) {
      // The inside twin carries the gateway's inside address: ARP/ND, BGP and BFD with the inside router.
      if (g.inside_ipv4.version == 0 && g.inside_ipv6.version == 0)
        gs.add(0, "host-port", "[[port]] \"" + s.name + "\" (the inside port) has a `host` twin, which carries the "
                               "gateway's inside address: set [inside] `ipv4` and/or `ipv6`");
    } else if (!outside) {
      ps.add(s.line, "host-port", "[[port]] \"" + s.name + "\" has a `host` twin but is neither the inside port nor an "
                                  "instance's port");
    }
  }
  const size_t workers = p.worker_lcores.size();
  for (const PortSpec& s : p.ports)
    if (s.tx_queues != 0 && s.tx_queues < workers)
      ps.add(s.line, "tx-queues",
             "[[port]] \"" + s.name + "\" has tx_queues = " + std::to_string(s.tx_queues) + " but there are " +
                 std::to_string(workers) + " workers; each worker needs its own TX queue (0 = one per worker)");
  detail::cross_check_mtu(g, p, gs);
  return gs.count() == 0 && ps.count() == 0;
}

}  // namespace mg::config
