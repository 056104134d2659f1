// load_gateway: the gateway file -> Gateway, every rule of DESIGN.md "Config" checked with a rule id.
#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstring>
#include <map>
#include <string>

#include "config/config.h"
#include "config/reader.h"
#include "crypto/aead.h"

namespace mg::config {

using detail::line_of;
using detail::Reader;
using detail::Sink;

namespace {

constexpr size_t kGatewayNameMax = 32;
constexpr int64_t kWeightMax = 1000000;

std::string fmt_spi(uint32_t spi) {
  char b[16];
  std::snprintf(b, sizeof b, "0x%08x", spi);
  return b;
}

std::string ip_text(const net::IpAddr& a) {
  char b[64];
  return net::format_ip(a, b, sizeof b);
}

// An address that cannot be a tunnel endpoint: unspecified, loopback, multicast, limited broadcast.
const char* unusable_endpoint(const net::IpAddr& a) noexcept {
  if (a.version == 4) {
    const uint8_t* b = a.bytes;
    if (b[0] == 0) return "in 0.0.0.0/8 (this network)";
    if (b[0] == 127) return "a loopback address";
    if (b[0] >= 224 && b[0] <= 239) return "a multicast address";
    if (b[0] == 255 && b[1] == 255 && b[2] == 255 && b[3] == 255) return "the broadcast address";
    return nullptr;
  }
  static const uint8_t zero[16] = {};
  if (std::memcmp(a.bytes, zero, 16) == 0) return "the unspecified address";
  if (std::memcmp(a.bytes, zero, 15) == 0 && a.bytes[15] == 1) return "the loopback address";
  if (a.bytes[0] == 0xff) return "a multicast address";
  return nullptr;
}

// "ipv4"/"ipv6" of an instance or device.
void read_ips(Reader& r, Sink& sink, net::IpAddr* v4, net::IpAddr* v6) {
  for (int ver : {4, 6}) {
    const char* key = ver == 4 ? "ipv4" : "ipv6";
    const std::optional<std::string> s = r.str(key);
    if (!s) continue;
    net::IpAddr a;
    if (!net::parse_ip(s->c_str(), &a) || a.version != ver) {
      sink.add(r.line(key), "ip-address",
               r.where() + " `" + key + "` = \"" + *s + "\" is not an IPv" + std::to_string(ver) + " address");
      continue;
    }
    if (const char* why = unusable_endpoint(a)) {
      sink.add(r.line(key), "ip-address",
               r.where() + " `" + key + "` = \"" + *s + "\" is " + why + " and cannot be a tunnel endpoint");
      continue;
    }
    *(ver == 4 ? v4 : v6) = a;
  }
}

// A key written in a table where it does not apply: "unknown-key", but saying where it goes, since the key
// itself is right.
void misplaced(Reader& r, Sink& sink, std::string_view key, const std::string& where_it_belongs) {
  if (!r.table().get(key)) return;
  r.get(key);
  sink.add(r.line(key), "unknown-key", r.where() + " has `" + std::string(key) + "`, which " + where_it_belongs);
}

void read_mac(Reader& r, Sink& sink, const char* key, uint8_t mac[6], std::string* text) {
  const std::optional<std::string> s = r.str(key);
  if (!s) return;
  if (!detail::parse_mac(*s, mac)) {
    sink.add(r.line(key), "mac",
             r.where() + " `" + key + "` = \"" + *s + "\" is not a MAC address (aa:bb:cc:dd:ee:ff)");
    return;
  }
  if (text) *text = detail::format_mac(mac);
}

bool parse_prefix(const std::string& s, Prefix* out, std::string* why) {
  const size_t slash = s.find('/');
  if (slash == std::string::npos) {
    *why = "has no /length (write e.g. \"10.0.0.0/8\" or \"192.0.2.7/32\")";
    return false;
  }
  const std::string addr = s.substr(0, slash), len = s.substr(slash + 1);
  net::IpAddr a;
  if (!net::parse_ip(addr.c_str(), &a)) {
    *why = "does not start with an IP address";
    return false;
  }
  const int max = a.version == 4 ? 32 : 128;
  if (len.empty() || len.size() > 3 || !std::all_of(len.begin(), len.end(), [](char c) { return c >= '0' && c <= '9'; }) ||
      std::stoi(len) > max) {
    *why = "has a length that is not 0.." + std::to_string(max);
    return false;
  }
  const int l = std::stoi(len);
  for (int bit = l; bit < max; ++bit) {
    if (a.bytes[bit / 8] & (0x80 >> (bit % 8))) {
      Prefix base;
      base.addr = a;
      for (int b2 = l; b2 < max; ++b2) base.addr.bytes[b2 / 8] &= uint8_t(~(0x80 >> (b2 % 8)));
      *why = "has host bits set (did you mean " + ip_text(base.addr) + "/" + std::to_string(l) + "?)";
      return false;
    }
  }
  out->addr = a;
  out->len = uint8_t(l);
  return true;
}

bool is_prime(uint64_t n) noexcept {
  if (n < 2) return false;
  for (uint64_t d = 2; d * d <= n; ++d)
    if (n % d == 0) return false;
  return true;
}

// Cipher names of other products that carry a truncated ICV (aes128gcm8, ...-icv12): meshgate's is 16 bytes.
bool looks_truncated_icv(std::string_view c) {
  std::string s;
  for (char ch : c)
    if (std::isalnum(static_cast<unsigned char>(ch))) s.push_back(char(std::tolower(static_cast<unsigned char>(ch))));
  for (std::string_view suf : {"gcm8", "gcm12", "gcm64", "gcm96", "icv8", "icv12", "icv64", "icv96"})
    if (s.ends_with(suf)) return true;
  return false;
}

std::vector<uint8_t> to_bytes_and_wipe(std::string* s) {
  std::vector<uint8_t> v(s->begin(), s->end());
  crypto::secure_wipe(s->data(), s->size());
  s->clear();
  return v;
}

// Reads [tunnel.out] / [tunnel.in].
void read_sa(Reader& r, Sink& sink, const std::string& base_dir, bool inbound, SaSpec* sa) {
  sa->line = r.line();
  if (const auto spi = r.integer("spi", true)) {
    if (*spi == 0) {
      sink.add(r.line("spi"), "spi-zero", r.where() + " `spi` is 0; SPI 0 is never valid on the wire");
    } else if (*spi < 256 || *spi > 0xffffffffll) {
      sink.add(r.line("spi"), "spi-range",
               r.where() + " `spi` = " + std::to_string(*spi) +
                   " is outside 256..0xffffffff (1..255 are reserved by IANA, RFC 4303)");
    } else {
      sa->spi = uint32_t(*spi);
    }
  }
  bool cipher_ok = false;
  if (const auto c = r.str("cipher", true)) {
    if (crypto::parse_cipher(*c, &sa->cipher)) {
      cipher_ok = true;
    } else if (looks_truncated_icv(*c)) {
      sink.add(r.line("cipher"), "icv-length",
               r.where() + " `cipher` = \"" + *c +
                   "\" asks for a truncated ICV; meshgate always uses a 16-byte ICV: aes-gcm-128, aes-gcm-256 or "
                   "chacha20-poly1305");
    } else {
      sink.add(r.line("cipher"), "cipher",
               r.where() + " `cipher` = \"" + *c + "\" is not one of aes-gcm-128, aes-gcm-256, chacha20-poly1305");
    }
  }
  if (const auto e = r.str("engine")) {
    if (!crypto::parse_engine(*e, &sa->engine)) {
      sink.add(r.line("engine"), "engine", r.where() + " `engine` = \"" + *e + "\" is not ipsecmb or sodium");
    } else if (cipher_ok && !crypto::engine_supports(sa->engine, sa->cipher)) {
      sink.add(r.line("engine"), "engine-cipher",
               r.where() + " engine " + crypto::to_string(sa->engine) + " does not implement " +
                   crypto::to_string(sa->cipher) + " (sodium: chacha20-poly1305 only)");
    }
  }
  if (const auto esn = r.boolean("esn")) sa->esn = *esn;
  if (!inbound)
    misplaced(r, sink, "replay_window", "belongs in [tunnel.in]: only an inbound SA has a replay window");
  if (inbound) {
    if (const auto w = r.integer("replay_window")) {
      if (*w < 64 || *w > 65536 || (*w & (*w - 1)) != 0) {
        sink.add(r.line("replay_window"), "replay-window",
                 r.where() + " `replay_window` = " + std::to_string(*w) + " must be a power of two in 64..65536");
      } else {
        sa->replay_window = uint32_t(*w);
      }
    }
  }

  // Key material: exactly one of key / key_file. Values are never echoed in messages.
  const toml::node* key_node = r.get("key");
  const toml::node* file_node = r.get("key_file");
  const size_t want = cipher_ok ? crypto::key_len(sa->cipher) + crypto::kSaltLen : 0;
  const std::string want_text =
      cipher_ok ? std::to_string(want) + " bytes (" + std::to_string(crypto::key_len(sa->cipher)) +
                      "-byte key + 4-byte salt) for " + crypto::to_string(sa->cipher)
                : std::string();
  if (key_node && file_node) {
    sink.add(line_of(*file_node), "key-source", r.where() + " has both `key` and `key_file`; give one");
    return;
  }
  if (!key_node && !file_node) {
    sink.add(r.line(), "key-source", r.where() + " needs `key` (hex of key || salt) or `key_file`");
    return;
  }
  std::string bytes;
  if (key_node) {
    if (!key_node->is_string()) {
      r.type_error("key", *key_node, "a string of hex digits");
      return;
    }
    const std::string& hex = key_node->as_string()->get();
    if (!crypto::parse_hex(hex, &bytes)) {
      crypto::secure_wipe(bytes.data(), bytes.size());
      sink.add(line_of(*key_node), "key-hex",
               r.where() + " `key` is not valid hex (pairs of 0-9a-f, optionally separated by ':')");
      return;
    }
    if (cipher_ok && bytes.size() != want) {
      sink.add(line_of(*key_node), "key-length",
               r.where() + " `key` has " + std::to_string(bytes.size()) + " bytes; it must be " + want_text);
      crypto::secure_wipe(bytes.data(), bytes.size());
      return;
    }
  } else {
    if (!file_node->is_string()) {
      r.type_error("key_file", *file_node, "a string (a path)");
      return;
    }
    const std::string path = detail::resolve(base_dir, file_node->as_string()->get());
    std::string raw;
    if (!detail::read_file(path, &raw)) {
      sink.add(line_of(*file_node), "key-file", r.where() + " `key_file` " + path + " cannot be read");
      return;
    }
    // Raw bytes of the exact length, unless they are all hex digits: that is hex text of a too short key
    // (a random raw key is all hex digits with probability (22/256)^20, i.e. never).
    const bool all_hex = std::all_of(raw.begin(), raw.end(), [](char c) {
      return std::isxdigit(static_cast<unsigned char>(c)) || std::isspace(static_cast<unsigned char>(c));
    });
    if (cipher_ok && raw.size() == want && !all_hex) {
      bytes.swap(raw);
    } else {
      std::string text;
      for (char c : raw)
        if (!std::isspace(static_cast<unsigned char>(c))) text.push_back(c);
      const bool ok = crypto::parse_hex(text, &bytes);
      crypto::secure_wipe(text.data(), text.size());
      crypto::secure_wipe(raw.data(), raw.size());
      if (!ok) {
        crypto::secure_wipe(bytes.data(), bytes.size());
        sink.add(line_of(*file_node), "key-hex",
                 r.where() + " `key_file` " + path + " holds neither " +
                     (cipher_ok ? std::to_string(want) + " raw bytes" : std::string("raw key bytes")) +
                     " nor hex text");
        return;
      }
      if (cipher_ok && bytes.size() != want) {
        sink.add(line_of(*file_node), "key-length",
                 r.where() + " `key_file` " + path + " holds " + std::to_string(bytes.size()) +
                     " bytes of hex; it must be " + want_text);
        crypto::secure_wipe(bytes.data(), bytes.size());
        return;
      }
    }
  }
  sa->keymat = SecretBytes(to_bytes_and_wipe(&bytes));
}

// Wipes the hex keys held by the parsed document before it is freed.
void wipe_document_keys(toml::table& root) {
  toml::array* tunnels = root["tunnel"].as_array();
  if (!tunnels) return;
  for (toml::node& t : *tunnels) {
    toml::table* tt = t.as_table();
    if (!tt) continue;
    for (const char* dir : {"out", "in"}) {
      toml::table* sa = (*tt)[dir].as_table();
      if (!sa) continue;
      if (toml::value<std::string>* k = (*sa)["key"].as_string()) {
        std::string& s = k->get();
        crypto::secure_wipe(s.data(), s.size());
      }
    }
  }
}

// What one liveness table says. Unset = not written, so that resolution can fall through to the next level
// even when a level writes the default value.
struct LivenessKeys {
  std::optional<bool> enabled, probes;
  std::optional<uint32_t> interval_ms, multiplier, hold_down_ms;
  std::optional<net::IpAddr> probe_source, probe_address;  // [tunnel.liveness] only
  bool bad_address = false;  // one was written but is not usable (already reported)
  int probe_source_line = 0;
  int line = 0;  // the table's; 0 when absent
};

// A [tunnel.liveness] with what resolution needs to know about its tunnel.
struct TunnelLiveness {
  LivenessKeys keys;
  bool refs_ok = false;  // instance and device exist (otherwise there are no addresses to resolve from)
};

// probe_address / probe_source: an inner address, so either IP version, but one an ICMP echo can be sent from or
// to: the same addresses as a tunnel endpoint are unusable. *bad is set when the key is there but unusable, so
// that resolution does not pile a second, misleading error on top of this one.
std::optional<net::IpAddr> read_probe_ip(Reader& r, Sink& sink, const char* key, bool* bad) {
  if (r.table().get(key)) *bad = true;
  const std::optional<std::string> s = r.str(key);
  if (!s) return std::nullopt;
  net::IpAddr a;
  if (!net::parse_ip(s->c_str(), &a)) {
    sink.add(r.line(key), "probe-address",
             r.where() + " `" + key + "` = \"" + *s + "\" is not an IPv4 or IPv6 address");
    return std::nullopt;
  }
  if (const char* why = unusable_endpoint(a)) {
    sink.add(r.line(key), "probe-address",
             r.where() + " `" + key + "` = \"" + *s + "\" is " + why +
                 "; liveness probes need a unicast address");
    return std::nullopt;
  }
  *bad = false;
  return a;
}

// The keys [liveness] and [tunnel.liveness] share.
void read_liveness_common(Reader& r, LivenessKeys* k) {
  k->line = r.line();
  k->enabled = r.boolean("enabled");
  // Same bounds as meshgate --liveness: an interval longer than a minute is no longer failure detection.
  if (const auto v = r.ranged("interval_ms", 1, 60000, "liveness-range")) k->interval_ms = uint32_t(*v);
  if (const auto v = r.ranged("multiplier", 1, 100, "liveness-range")) k->multiplier = uint32_t(*v);
  if (const auto v = r.ranged("hold_down_ms", 0, 3600000, "liveness-range")) k->hold_down_ms = uint32_t(*v);
  k->probes = r.boolean("probes");
}

// [liveness]: the defaults of every tunnel, and what is not per tunnel.
void read_liveness_global(Reader& r, Sink& sink, LivenessKeys* k, LivenessGlobal* lg) {
  read_liveness_common(r, k);
  lg->present = true;
  lg->line = r.line();
  if (const auto v = r.boolean("damping")) lg->damping = *v;
  if (const auto v = r.boolean("monitor")) lg->monitor = *v;
  if (const auto v = r.boolean("reflect")) lg->reflect = *v;
  misplaced(r, sink, "probe_source",
            "belongs in [tunnel.liveness]: it is our inner address on one tunnel, different for every tunnel");
  misplaced(r, sink, "probe_address",
            "belongs in [[device]] (for all the device's tunnels) or in [tunnel.liveness] (for one tunnel)");
}

// [tunnel.liveness]: one tunnel's overrides of [liveness].
void read_liveness_tunnel(Reader& r, Sink& sink, LivenessKeys* k) {
  read_liveness_common(r, k);
  bool bad_source = false, bad_address = false;
  k->probe_source = read_probe_ip(r, sink, "probe_source", &bad_source);
  k->probe_source_line = r.line("probe_source");
  k->probe_address = read_probe_ip(r, sink, "probe_address", &bad_address);
  k->bad_address = bad_source || bad_address;
  for (const char* key : {"damping", "monitor", "reflect"})
    misplaced(r, sink, key, "belongs in [liveness]: it applies to the whole gateway, not to one tunnel");
}

std::string ip_version_text(const net::IpAddr& a) { return "IPv" + std::to_string(a.version); }

// Every tunnel's LivenessSettings from its [tunnel.liveness], [liveness] and the defaults. Address problems are
// reported only for tunnels that use the addresses: probing ones, or all of them when the gateway reflects.
void resolve_liveness(Gateway& g, const LivenessKeys& global, const std::vector<TunnelLiveness>& per,
                      const std::vector<bool>& device_bad_probe, Sink& sink) {
  for (size_t i = 0; i < g.tunnels.size() && i < per.size(); ++i) {
    Tunnel& t = g.tunnels[i];
    const LivenessKeys& k = per[i].keys;
    LivenessSettings& s = t.liveness;
    s.enabled = k.enabled.value_or(global.enabled.value_or(g.liveness.present));
    s.interval_ms = k.interval_ms.value_or(global.interval_ms.value_or(s.interval_ms));
    s.multiplier = k.multiplier.value_or(global.multiplier.value_or(s.multiplier));
    s.hold_down_ms = k.hold_down_ms.value_or(global.hold_down_ms.value_or(s.hold_down_ms));
    s.probes = k.probes.value_or(global.probes.value_or(s.probes));
    if (!per[i].refs_ok || k.bad_address || device_bad_probe[t.device]) continue;

    const Instance& in = g.instances[t.instance];
    const Device& d = g.devices[t.device];
    const bool needed = (s.enabled && s.probes) || g.liveness.reflect;
    std::string from;  // where probe_address came from, so that a message points at the line to change
    if (k.probe_address) {
      s.probe_address = *k.probe_address;
      from = "its [tunnel.liveness] `probe_address`";
    } else if (d.probe_address.version != 0) {
      s.probe_address = d.probe_address;
      from = "device \"" + d.name + "\" `probe_address` (line " + std::to_string(d.line) + ")";
    } else if (const int v = tunnel_ip_version(g, t); v != 0) {
      s.probe_address = v == 4 ? d.ipv4 : d.ipv6;
      from = "device \"" + d.name + "\"'s outer address";
    }
    // Without a probe_address the tunnel has no IP version in common, which tunnel-ip-version reports.
    if (s.probe_address.version == 0) continue;

    if (k.probe_source) {
      s.probe_source = *k.probe_source;
      if (needed && s.probe_source.version != s.probe_address.version)
        sink.add(k.probe_source_line, "probe-version",
                 "tunnel \"" + t.name + "\" [tunnel.liveness] `probe_source` " + ip_text(s.probe_source) + " is " +
                     ip_version_text(s.probe_source) + " but its probe_address " + ip_text(s.probe_address) +
                     " (from " + from + ") is " + ip_version_text(s.probe_address) +
                     "; a probe goes from one to the other, so both must be of the same IP version");
      continue;
    }
    s.probe_source = s.probe_address.version == 4 ? in.ipv4 : in.ipv6;
    if (needed && s.probe_source.version == 0)
      sink.add(k.line ? k.line : t.line, "probe-source",
               "tunnel \"" + t.name + "\" probes " + ip_text(s.probe_address) + " (from " + from +
                   "), but instance \"" + in.name + "\" has no " + ip_version_text(s.probe_address) +
                   " address to send them from; set probe_source in [tunnel.liveness] (our inner " +
                   ip_version_text(s.probe_address) + " address on this tunnel)");
  }
}

}  // namespace

std::optional<Gateway> load_gateway(const std::string& path, std::vector<Error>* errors) {
  Sink sink(path, errors);
  std::optional<toml::table> doc = detail::parse_toml(path, sink);
  if (!doc) return std::nullopt;
  const toml::table& root = *doc;
  const std::string base_dir = detail::dir_of(path);

  Gateway g;
  g.source = path;
  Reader top(sink, root, detail::kTopLevel);

  // [gateway]
  int mode_line = 0;
  if (const toml::table* gt = top.subtable("gateway", true)) {
    Reader r(sink, *gt, "[gateway]");
    mode_line = r.line();
    if (const auto name = r.str("name", true)) {
      if (!detail::valid_name(*name, kGatewayNameMax)) {
        sink.add(r.line("name"), "gateway-name",
                 "[gateway] `name` = \"" + *name + "\" must be 1..32 of A-Z a-z 0-9 _ - (it names /dev/shm/meshgate.<name>)");
      } else {
        g.name = *name;
      }
    }
    if (const auto mode = r.str("mode")) {
      mode_line = r.line("mode");
      if (*mode == "active-active") g.mode = Mode::kActiveActive;
      else if (*mode == "active-standby") g.mode = Mode::kActiveStandby;
      else
        sink.add(r.line("mode"), "mode", "[gateway] `mode` = \"" + *mode + "\" is not active-active or active-standby");
    }
    if (const auto pmd = r.str("pmd_config")) {
      if (pmd->empty()) sink.add(r.line("pmd_config"), "pmd-config", "[gateway] `pmd_config` is empty");
      else g.pmd_config = detail::resolve(base_dir, *pmd);
    }
    r.finish();
  }

  // [inside]
  if (const toml::table* it = top.subtable("inside", true)) {
    Reader r(sink, *it, "[inside]");
    g.inside_line = r.line();
    if (const auto port = r.name("port", true)) g.inside_port = *port;
    if (r.str_array("prefixes", true)) {
      // Each element's own line, for prefix lists written over several lines.
      const toml::array& arr = *r.table().get("prefixes")->as_array();
      if (arr.empty())
        sink.add(r.line("prefixes"), "inside-prefixes",
                 "[inside] `prefixes` is empty: list at least one inner destination prefix to route into the tunnels");
      for (const toml::node& e : arr) {
        const std::string& s = e.as_string()->get();
        Prefix p;
        std::string why;
        if (!parse_prefix(s, &p, &why)) {
          sink.add(line_of(e), "prefix", "[inside] prefix \"" + s + "\" " + why);
          continue;
        }
        const bool dup = std::any_of(g.inside_prefixes.begin(), g.inside_prefixes.end(), [&](const Prefix& q) {
          return q.len == p.len && q.addr == p.addr;
        });
        if (dup) sink.add(line_of(e), "prefix", "[inside] prefix \"" + s + "\" is listed twice");
        else g.inside_prefixes.push_back(p);
      }
    }
    read_mac(r, sink, "next_hop_mac", g.inside_mac, nullptr);
    r.finish();
  }

  // [flow]
  if (const toml::table* ft = top.subtable("flow")) {
    Reader r(sink, *ft, "[flow]");
    // Seeds are 64-bit; TOML integers are signed 64-bit, so a negative value stands for its two's complement
    // (as in meshgate-spread).
    if (const auto seed = r.integer("seed")) g.flow.seed = uint64_t(*seed);
    if (const auto ts = r.integer("table_size")) {
      if (*ts < 65537 || *ts > 16777216 || !is_prime(uint64_t(*ts)))
        sink.add(r.line("table_size"), "flow-table-size",
                 "[flow] `table_size` = " + std::to_string(*ts) + " must be a prime in 65537..16777216");
      else
        g.flow.table_size = uint32_t(*ts);
    }
    if (const auto v = r.ranged("pin_idle_timeout_ms", 1, 0xffffffffll, "flow-range"))
      g.flow.pin_idle_timeout_ms = uint32_t(*v);
    if (const auto v = r.ranged("pin_capacity", 1, int64_t(1) << 30, "flow-range")) g.flow.pin_capacity = uint32_t(*v);
    r.finish();
  }

  // [liveness]: resolved into every tunnel once all tunnels are read.
  LivenessKeys live_global;
  std::vector<TunnelLiveness> live_tunnels;
  std::vector<bool> device_bad_probe;  // per device: probe_address written but unusable
  if (const toml::table* lt = top.subtable("liveness")) {
    Reader r(sink, *lt, "[liveness]");
    read_liveness_global(r, sink, &live_global, &g.liveness);
    r.finish();
  }

  // [[instance]]
  std::vector<bool> role_given;
  {
    const auto tables = detail::array_of_tables(top, sink, "instance");
    for (size_t i = 0; i < tables.size(); ++i) {
      Reader r(sink, *tables[i], detail::nth("instance", i, *tables[i]));
      Instance in;
      in.line = r.line();
      if (const auto name = r.name("name", true)) in.name = *name;
      read_ips(r, sink, &in.ipv4, &in.ipv6);
      if (!r.table().get("ipv4") && !r.table().get("ipv6"))
        sink.add(r.line(), "instance-ip", r.where() + " needs a static public `ipv4` and/or `ipv6`");
      if (const auto port = r.name("port", true)) in.port = *port;
      bool given = false;
      if (const auto role = r.str("role")) {
        given = true;
        if (*role == "active") in.standby = false;
        else if (*role == "standby") in.standby = true;
        else sink.add(r.line("role"), "instance-role", r.where() + " `role` = \"" + *role + "\" is not active or standby");
      }
      r.finish();
      for (const Instance& o : g.instances)
        if (!in.name.empty() && o.name == in.name)
          sink.add(in.line, "name-unique",
                   r.where() + ": instance name \"" + in.name + "\" is already used on line " + std::to_string(o.line));
      role_given.push_back(given);
      g.instances.push_back(std::move(in));
    }
    // Default roles: the first instance active, the others standby.
    for (size_t i = 0; i < g.instances.size(); ++i)
      if (!role_given[i]) g.instances[i].standby = i != 0;
  }

  // [[device]]
  {
    const auto tables = detail::array_of_tables(top, sink, "device");
    for (size_t i = 0; i < tables.size(); ++i) {
      Reader r(sink, *tables[i], detail::nth("device", i, *tables[i]));
      Device d;
      d.line = r.line();
      if (const auto name = r.name("name", true)) d.name = *name;
      read_ips(r, sink, &d.ipv4, &d.ipv6);
      if (!r.table().get("ipv4") && !r.table().get("ipv6"))
        sink.add(r.line(), "device-ip", r.where() + " needs an `ipv4` and/or `ipv6` address");
      d.next_hop_mac = detail::format_mac(d.mac);
      read_mac(r, sink, "next_hop_mac", d.mac, &d.next_hop_mac);
      bool bad_probe = false;
      if (const auto a = read_probe_ip(r, sink, "probe_address", &bad_probe)) d.probe_address = *a;
      device_bad_probe.push_back(bad_probe);
      r.finish();
      for (const Device& o : g.devices)
        if (!d.name.empty() && o.name == d.name)
          sink.add(d.line, "name-unique",
                   r.where() + ": device name \"" + d.name + "\" is already used on line " + std::to_string(o.line));
      g.devices.push_back(std::move(d));
    }
  }

  // [[tunnel]]
  {
    const auto tables = detail::array_of_tables(top, sink, "tunnel");
    for (size_t i = 0; i < tables.size(); ++i) {
      Reader r(sink, *tables[i], detail::nth("tunnel", i, *tables[i]));
      Tunnel t;
      t.line = r.line();
      bool inst_ok = false, dev_ok = false;
      std::string inst_name, dev_name;
      if (const auto s = r.str("instance", true)) {
        inst_name = *s;
        for (size_t k = 0; k < g.instances.size(); ++k)
          if (g.instances[k].name == *s) t.instance = uint32_t(k), inst_ok = true;
        if (!inst_ok)
          sink.add(r.line("instance"), "tunnel-reference", r.where() + " names instance \"" + *s + "\", which is not defined");
      }
      if (const auto s = r.str("device", true)) {
        dev_name = *s;
        for (size_t k = 0; k < g.devices.size(); ++k)
          if (g.devices[k].name == *s) t.device = uint32_t(k), dev_ok = true;
        if (!dev_ok)
          sink.add(r.line("device"), "tunnel-reference", r.where() + " names device \"" + *s + "\", which is not defined");
      }
      if (r.table().get("name")) {
        if (const auto name = r.name("name")) t.name = *name;
      } else {
        t.name = inst_name + "-" + dev_name;
      }
      if (const auto w = r.integer("weight")) {
        if (*w < 0 || *w > kWeightMax)
          sink.add(r.line("weight"), "weight",
                   r.where() + " `weight` = " + std::to_string(*w) + " must be an integer in 0..1000000 (0 = no new flows)");
        else
          t.weight = uint32_t(*w);
      }
      if (const auto ttl = r.ranged("ttl", 1, 255, "ttl")) t.ttl = uint8_t(*ttl);
      if (const auto df = r.str("df")) {
        if (*df == "copy") t.df = net::DfPolicy::kCopy;
        else if (*df == "set") t.df = net::DfPolicy::kSet;
        else if (*df == "clear") t.df = net::DfPolicy::kClear;
        else sink.add(r.line("df"), "df", r.where() + " `df` = \"" + *df + "\" is not copy, set or clear");
      }
      if (const toml::node* dn = r.get("dscp")) {
        if (dn->is_string() && dn->as_string()->get() == "copy") {
          t.dscp_policy = net::DscpPolicy::kCopy;
        } else if (dn->is_integer() && dn->as_integer()->get() >= 0 && dn->as_integer()->get() <= 63) {
          t.dscp_policy = net::DscpPolicy::kSet;
          t.tos = uint8_t(dn->as_integer()->get() << 2);
        } else {
          sink.add(line_of(*dn), "dscp", r.where() + " `dscp` must be \"copy\" or an integer 0..63");
        }
      }
      if (const toml::table* o = r.subtable("out", true)) {
        Reader sr(sink, *o, r.where() + " [tunnel.out]");
        read_sa(sr, sink, base_dir, false, &t.out);
        sr.finish();
      }
      if (const toml::table* in = r.subtable("in", true)) {
        Reader sr(sink, *in, r.where() + " [tunnel.in]");
        read_sa(sr, sink, base_dir, true, &t.in);
        sr.finish();
      }
      TunnelLiveness tl;
      tl.refs_ok = inst_ok && dev_ok;
      if (const toml::table* lt = r.subtable("liveness")) {
        Reader lr(sink, *lt, r.where() + " [tunnel.liveness]");
        read_liveness_tunnel(lr, sink, &tl.keys);
        lr.finish();
      }
      live_tunnels.push_back(std::move(tl));
      r.finish();

      for (const Tunnel& o : g.tunnels) {
        if (!t.name.empty() && o.name == t.name)
          sink.add(t.line, "name-unique",
                   r.where() + ": tunnel name \"" + t.name + "\" is already used on line " + std::to_string(o.line));
        if (inst_ok && dev_ok && o.instance == t.instance && o.device == t.device)
          sink.add(t.line, "tunnel-pair-unique",
                   r.where() + ": instance \"" + inst_name + "\" and device \"" + dev_name +
                       "\" already have a tunnel (line " + std::to_string(o.line) + "); at most one per pair");
      }
      if (inst_ok && dev_ok && tunnel_ip_version(g, t) == 0)
        sink.add(t.line, "tunnel-ip-version",
                 r.where() + ": instance \"" + inst_name + "\" and device \"" + dev_name +
                     "\" have no IP version in common (both need ipv4, or both ipv6)");
      g.tunnels.push_back(std::move(t));
    }
  }

  resolve_liveness(g, live_global, live_tunnels, device_bad_probe, sink);

  // Anything else at the top level (policy lists included) is an error.
  top.finish();

  // Rules across sections.
  if (g.mode == Mode::kActiveActive) {
    if (g.instances.size() < 2) {
      sink.add(mode_line, "active-active-two-instances",
               "active-active needs at least two [[instance]] entries with distinct static public IPs; found " +
                   std::to_string(g.instances.size()));
    }
    for (size_t i = 0; i < g.instances.size(); ++i)
      for (size_t j = 0; j < i; ++j) {
        const Instance &a = g.instances[i], &b = g.instances[j];
        for (const net::IpAddr* ip : {&a.ipv4, &a.ipv6}) {
          if (ip->version == 0) continue;
          if (*ip == b.ipv4 || *ip == b.ipv6)
            sink.add(a.line, "active-active-distinct-ips",
                     "instance \"" + a.name + "\" shares " + ip_text(*ip) + " with instance \"" + b.name + "\" (line " +
                         std::to_string(b.line) + "); active-active instances need their own static public IPs");
        }
      }
  } else {
    const size_t standby = size_t(std::count_if(g.instances.begin(), g.instances.end(),
                                                [](const Instance& in) { return in.standby; }));
    const size_t active = g.instances.size() - standby;
    if (g.instances.size() < 2 || active == 0 || standby == 0)
      sink.add(mode_line, "active-standby-roles",
               "active-standby needs at least two instances, at least one active and one standby; found " +
                   std::to_string(active) + " active and " + std::to_string(standby) + " standby");
  }
  for (size_t i = 0; i < g.instances.size(); ++i) {
    const Instance& a = g.instances[i];
    if (a.port.empty()) continue;
    if (a.port == g.inside_port)
      sink.add(a.line, "port-shared",
               "instance \"" + a.name + "\" uses port \"" + a.port + "\", which is the inside port; each instance needs its own outside port");
    for (size_t j = 0; j < i; ++j)
      if (g.instances[j].port == a.port)
        sink.add(a.line, "port-shared",
                 "instance \"" + a.name + "\" uses port \"" + a.port + "\", as does instance \"" + g.instances[j].name +
                     "\" (line " + std::to_string(g.instances[j].line) + "); each instance needs its own port");
  }
  if (g.tunnels.empty() && !root.get("tunnel"))
    sink.add(0, "tunnels-required", "no [[tunnel]]: define at least one instance <-> device tunnel");

  // SPIs: unique per direction over all tunnels (an inbound SPI may equal an outbound one).
  for (size_t i = 0; i < g.tunnels.size(); ++i)
    for (size_t j = 0; j < i; ++j) {
      const Tunnel &a = g.tunnels[i], &b = g.tunnels[j];
      if (a.out.spi != 0 && a.out.spi == b.out.spi)
        sink.add(a.out.line, "spi-unique",
                 "tunnel \"" + a.name + "\" outbound SPI " + fmt_spi(a.out.spi) + " is already the outbound SPI of tunnel \"" +
                     b.name + "\" (line " + std::to_string(b.out.line) + ")");
      if (a.in.spi != 0 && a.in.spi == b.in.spi)
        sink.add(a.in.line, "spi-unique",
                 "tunnel \"" + a.name + "\" inbound SPI " + fmt_spi(a.in.spi) + " is already the inbound SPI of tunnel \"" +
                     b.name + "\" (line " + std::to_string(b.in.line) + ")");
    }

  // Keys: the same AEAD key in two SAs repeats nonces (IV = sequence number, which every SA starts at 1).
  // The one exception is a tunnel whose in and out SA are the same SA (same SPI): a loopback arrangement.
  {
    struct Ref { const Tunnel* t; const SaSpec* sa; const char* dir; };
    std::vector<Ref> refs;
    for (const Tunnel& t : g.tunnels) {
      refs.push_back({&t, &t.out, "outbound"});
      refs.push_back({&t, &t.in, "inbound"});
    }
    for (size_t i = 0; i < refs.size(); ++i)
      for (size_t j = 0; j < i; ++j) {
        const SaSpec &a = *refs[i].sa, &b = *refs[j].sa;
        if (a.keymat.size() < crypto::kSaltLen + 16 || a.keymat.size() != b.keymat.size()) continue;
        const size_t klen = a.keymat.size() - crypto::kSaltLen;
        if (!crypto::ct_equal(a.keymat.bytes().data(), b.keymat.bytes().data(), klen)) continue;
        if (refs[i].t == refs[j].t && a.spi == b.spi) continue;
        sink.add(a.line, "key-reuse",
                 "tunnel \"" + refs[i].t->name + "\" " + refs[i].dir + " SA uses the same key as tunnel \"" +
                     refs[j].t->name + "\" " + refs[j].dir + " SA (line " + std::to_string(b.line) +
                     "); every SA needs its own key, or AES-GCM/ChaCha20 nonces repeat");
      }
  }

  wipe_document_keys(*doc);
  if (sink.count() != 0) return std::nullopt;
  return g;
}

}  // namespace mg::config
