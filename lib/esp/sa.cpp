#include <cctype>
#include <charconv>
#include <cstring>
#include <string>
#include <string_view>

#include "crypto/key_file.h"
#include "esp/esp.h"

namespace mg::esp {

const char* to_string(Drop d) noexcept {
  switch (d) {
    case Drop::kOutChained: return "out_chained";
    case Drop::kOutBadInner: return "out_bad_inner";
    case Drop::kOutNoHeadroom: return "out_no_headroom";
    case Drop::kOutNoTailroom: return "out_no_tailroom";
    case Drop::kOutTooBig: return "out_too_big";
    case Drop::kOutSeqOverflow: return "out_seq_overflow";
    case Drop::kOutSeqUnreserved: return "out_seq_unreserved";
    case Drop::kInChained: return "in_chained";
    case Drop::kInTruncated: return "in_truncated";
    case Drop::kInBadOuter: return "in_bad_outer";
    case Drop::kInFragment: return "in_fragment";
    case Drop::kInNotEsp: return "in_not_esp";
    case Drop::kInNatKeepalive: return "in_nat_keepalive";
    case Drop::kInIke: return "in_ike";
    case Drop::kInZeroSpi: return "in_zero_spi";
    case Drop::kInUnknownSpi: return "in_unknown_spi";
    case Drop::kInEncapMismatch: return "in_encap_mismatch";
    case Drop::kInUdpPort: return "in_udp_port";
    case Drop::kInRunt: return "in_runt";
    case Drop::kInSeqZero: return "in_seq_zero";
    case Drop::kInReplay: return "in_replay";
    case Drop::kInTooOld: return "in_too_old";
    case Drop::kInAuth: return "in_auth";
    case Drop::kInBadPadLen: return "in_bad_pad_len";
    case Drop::kInBadPadding: return "in_bad_padding";
    case Drop::kInDummy: return "in_dummy";
    case Drop::kInBadNextHeader: return "in_bad_next_header";
    case Drop::kInBadInner: return "in_bad_inner";
    case Drop::kInCeNotEct: return "in_ce_not_ect";
    case Drop::kCount: break;
  }
  return "unknown";
}

uint64_t SaStats::total_drops() const noexcept {
  uint64_t t = 0;
  for (uint64_t d : drops) t += d;
  return t;
}

static SaCounters* alloc_counters(uint16_t n) {
  auto* c = new SaCounters[n];
  std::memset(static_cast<void*>(c), 0, sizeof(SaCounters) * n);
  return c;
}

static SaStats sum_counters(const SaCounters* c, uint16_t n) noexcept {
  SaStats s;
  for (uint16_t w = 0; w < n; ++w) {
    s.packets += c[w].packets;
    s.bytes += c[w].bytes;
    for (size_t d = 0; d < kDropCount; ++d) s.drops[d] += c[w].drops[d];
  }
  return s;
}

Sa::Sa(const SaConfig& cfg, Direction dir, uint16_t max_workers)
    : replay_(cfg.replay_window), max_workers_(max_workers), dir_(dir) {
  counters_ = alloc_counters(max_workers);
  cfg_.spi = cfg.spi;
  cfg_.cipher = cfg.cipher;
  cfg_.engine = cfg.engine;
  cfg_.esn = cfg.esn;
  cfg_.replay_window = cfg.replay_window;
  cfg_.outer_src = cfg.outer_src;
  cfg_.outer_dst = cfg.outer_dst;
  cfg_.ttl = cfg.ttl;
  cfg_.dscp_policy = cfg.dscp_policy;
  cfg_.tos = cfg.tos;
  cfg_.df = cfg.df;
  cfg_.user_id = cfg.user_id;
  cfg_.encap = cfg.encap;
  cfg_.udp_sport = cfg.udp_sport;
  cfg_.udp_dport = cfg.udp_dport;
}

Sa::~Sa() {
  delete[] counters_;
  // aead_'s deleter wipes the key schedule; the runtime copy holds only a pointer to it.
  crypto::secure_wipe(&rt_, sizeof(rt_));
}

static bool is_pow2_in(uint32_t v, uint32_t lo, uint32_t hi) { return v >= lo && v <= hi && (v & (v - 1)) == 0; }

std::unique_ptr<Sa> Sa::create(SaConfig& cfg, Direction dir, uint16_t max_workers, std::string* err) {
  struct Wipe {
    std::vector<uint8_t>& k;
    ~Wipe() {
      if (!k.empty()) crypto::secure_wipe(k.data(), k.size());
      k.clear();
    }
  } wipe{cfg.keymat};
  auto fail = [&](std::string m) -> std::unique_ptr<Sa> {
    if (err) *err = std::move(m);
    return nullptr;
  };
  if (cfg.spi == 0) return fail("spi: must not be 0 (RFC 4303 reserves it)");
  if (max_workers == 0) return fail("max_workers: must be at least 1");
  if (dir == Direction::kInbound && !is_pow2_in(cfg.replay_window, 64, 65536))
    return fail("window: replay window must be a power of two from 64 to 65536, got " +
                std::to_string(cfg.replay_window));
  if (dir == Direction::kOutbound) {
    if (cfg.outer_src.version == 0 || cfg.outer_dst.version == 0)
      return fail("src/dst: an outbound SA needs outer tunnel addresses");
    if (cfg.outer_src.version != cfg.outer_dst.version)
      return fail("src/dst: outer addresses must be of one IP version");
    if (cfg.ttl == 0) return fail("ttl: must be at least 1");
  }
  const bool udp = cfg.encap == net::Encap::kUdp;
  if (cfg.encap != net::Encap::kNone && !udp) return fail("encap: none or udp");
  if (udp) {
    for (uint16_t port : {cfg.udp_sport, cfg.udp_dport}) {
      if (port == 0) return fail("sport/dport: UDP port 0 is not a port");
      // A receiver takes UDP to 500 for IKE whatever it holds (RFC 7296 2.23), so ESP sent there is lost.
      if (port == net::kIkePort) return fail("sport/dport: port 500 is IKE's; ESP in UDP uses 4500 or another");
    }
  }
  if (dir == Direction::kOutbound) cfg.replay_window = 64;  // unused: the smallest allocation
  std::string aerr;
  crypto::AeadPtr aead = crypto::make_aead(cfg.cipher, cfg.engine, cfg.keymat, &aerr);
  if (!aead) return fail("key: " + aerr);

  std::unique_ptr<Sa> sa(new Sa(cfg, dir, max_workers));
  sa->aead_ = std::move(aead);
  SaRuntime& rt = sa->rt_;
  std::memset(&rt, 0, sizeof(rt));
  rt.aead = sa->aead_.get();
  rt.spi = cfg.spi;
  rt.esn = cfg.esn ? 1 : 0;
  sa->end_.store(cfg.esn ? UINT64_MAX : 0xffffffffull, std::memory_order_relaxed);
  rt.encap = uint8_t(cfg.encap);
  if (dir == Direction::kInbound) {
    rt.in.user_id = cfg.user_id;
    rt.in.udp_port = udp ? cfg.udp_dport : 0;
    return sa;
  }
  rt.flags = uint8_t((cfg.outer_src.version == 6 ? SaRuntime::kOuterV6 : 0) |
                     (cfg.dscp_policy == DscpPolicy::kCopy ? SaRuntime::kDscpCopy : 0) |
                     (cfg.df == DfPolicy::kCopy ? SaRuntime::kDfCopy : 0));
  const uint8_t tos = cfg.dscp_policy == DscpPolicy::kSet ? cfg.tos : 0;
  const uint8_t proto = udp ? net::kProtoUdp : net::kProtoEsp;
  uint8_t* t = rt.tmpl;
  uint32_t ip_len;
  if (cfg.outer_src.version == 4) {
    ip_len = 20;
    t[0] = 0x45;
    t[1] = tos;
    if (cfg.df == DfPolicy::kSet) t[6] = 0x40;
    t[8] = cfg.ttl;
    t[9] = proto;
    std::memcpy(t + 12, cfg.outer_src.bytes, 4);
    std::memcpy(t + 16, cfg.outer_dst.bytes, 4);
    uint32_t sum = 0;
    for (int i = 0; i < 20; i += 2) sum += net::load_be16(t + i);
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
    net::store_be16(t + 10, uint16_t(sum));  // not yet a checksum: the sum the burst adds the per-packet fields to
  } else {
    ip_len = 40;
    t[0] = uint8_t(0x60 | (tos >> 4));
    t[1] = uint8_t(tos << 4);
    t[6] = proto;
    t[7] = cfg.ttl;
    std::memcpy(t + 8, cfg.outer_src.bytes, 16);
    std::memcpy(t + 24, cfg.outer_dst.bytes, 16);
  }
  if (udp) {
    net::store_be16(t + ip_len, cfg.udp_sport);
    net::store_be16(t + ip_len + 2, cfg.udp_dport);
  }
  rt.hdr_len = uint8_t(ip_len + (udp ? net::kUdpHdrLen : 0));
  return sa;
}

bool Sa::resume_after(uint64_t seq) noexcept {
  uint64_t cur = seq_.load(std::memory_order_relaxed);
  while (cur < seq) {
    if (seq_.compare_exchange_weak(cur, seq, std::memory_order_relaxed)) return true;
  }
  return cur == seq;
}

void Sa::set_seq_end(uint64_t last) noexcept {
  uint64_t cur = end_.load(std::memory_order_relaxed);
  while (last < cur && !end_.compare_exchange_weak(cur, last, std::memory_order_relaxed)) {
  }
}

bool Sa::adopt_replay(const Sa& old) { return replay_.assign(old.replay_); }

SaStats Sa::stats() const noexcept { return sum_counters(counters_, max_workers_); }

void Sa::clear_counters() noexcept {
  std::memset(static_cast<void*>(counters_), 0, sizeof(SaCounters) * max_workers_);
}

std::unique_ptr<SaTable> SaTable::build(std::span<Sa* const> sas, uint16_t max_workers, std::string* err) {
  auto fail = [&](std::string m) -> std::unique_ptr<SaTable> {
    if (err) *err = std::move(m);
    return nullptr;
  };
  if (max_workers == 0) return fail("max_workers: must be at least 1");
  uint32_t size = 8;
  while (size < sas.size() * 2) size <<= 1;  // load factor <= 1/2 keeps probes short
  std::unique_ptr<SaTable> t(new SaTable());
  t->slots_.assign(size, Slot{0, nullptr});
  t->mask_ = size - 1;
  for (Sa* sa : sas) {
    if (sa == nullptr) return fail("null SA");
    if (sa->direction() != Direction::kInbound)
      return fail("spi " + std::to_string(sa->spi()) + ": not an inbound SA");
    if (sa->max_workers() < max_workers)
      return fail("spi " + std::to_string(sa->spi()) + ": has counters for fewer workers than the table");
    if (t->find(sa->spi()) != nullptr) return fail("spi " + std::to_string(sa->spi()) + ": duplicate");
    uint32_t i = hash(sa->spi()) & t->mask_;
    while (t->slots_[i].sa != nullptr) i = (i + 1) & t->mask_;
    t->slots_[i] = Slot{sa->spi(), sa};
    const SaConfig& c = sa->config();
    if (c.encap == net::Encap::kUdp && c.udp_dport != net::kNatTPort) {
      if (!t->ports_) {
        t->ports_.reset(new uint64_t[65536 / 64]);
        std::memset(t->ports_.get(), 0, 65536 / 8);
      }
      t->ports_[c.udp_dport >> 6] |= uint64_t(1) << (c.udp_dport & 63);
    }
  }
  t->max_workers_ = max_workers;
  t->counters_ = alloc_counters(max_workers);
  return t;
}

SaTable::~SaTable() { delete[] counters_; }

SaStats SaTable::stats() const noexcept { return sum_counters(counters_, max_workers_); }

// Text of the spec for an error message, unless it may hold key material.
static std::string shown(std::string_view s) { return crypto::quotable(s); }

bool parse_sa_spec(const std::string& spec, SaConfig* out, std::string* err, SpecInputs* in) {
  SaConfig c;
  bool have_spi = false, have_cipher = false, have_key = false, have_port = false;
  std::string from;  // key_file=PATH or key=-: what was read there, decoded once the cipher is known
  std::string from_what;
  auto fail = [&](const std::string& m) {
    if (err) *err = m;
    if (!c.keymat.empty()) crypto::secure_wipe(c.keymat.data(), c.keymat.size());
    crypto::secure_wipe(from.data(), from.size());
    return false;
  };
  auto num = [](std::string_view v, uint64_t* o) {
    int base = 10;
    if (v.starts_with("0x") || v.starts_with("0X")) {
      v.remove_prefix(2);
      base = 16;
    }
    if (v.empty()) return false;
    auto r = std::from_chars(v.data(), v.data() + v.size(), *o, base);
    return r.ec == std::errc() && r.ptr == v.data() + v.size();
  };
  std::string_view rest(spec);
  while (!rest.empty()) {
    const size_t comma = rest.find(',');
    std::string_view item = rest.substr(0, comma);
    rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
    if (item.empty()) continue;
    const size_t eq = item.find('=');
    if (eq == std::string_view::npos) return fail("sa spec: '" + shown(item) + "' is not key=value");
    const std::string_view k = item.substr(0, eq), v = item.substr(eq + 1);
    uint64_t n = 0;
    if (k == "spi") {
      if (!num(v, &n) || n == 0 || n > 0xffffffffull) return fail("spi: must be 1..0xffffffff");
      c.spi = uint32_t(n);
      have_spi = true;
    } else if (k == "cipher") {
      if (!crypto::parse_cipher(v, &c.cipher))
        return fail("cipher: '" + shown(v) + "' (aes-gcm-128, aes-gcm-256, chacha20-poly1305)");
      have_cipher = true;
    } else if (k == "engine") {
      if (!crypto::parse_engine(v, &c.engine)) return fail("engine: '" + shown(v) + "' (ipsecmb, sodium)");
    } else if (k == "key" || k == "key_file") {
      if (have_key) return fail("sa spec: give the key once (key=HEX, key=- or key_file=PATH)");
      have_key = true;
      std::string why;
      if (k == "key_file") {
        from_what = "key_file " + shown(v);
        if (v.empty()) return fail("key_file: a path is missing");
        if (!crypto::read_key_file(std::string(v), &from, &why)) return fail(from_what + " " + why);
      } else if (v == "-") {
        from_what = "key=- (standard input)";
        if (in == nullptr || in->stdin_fd < 0) return fail("key=-: no standard input to read a key from here");
        if (in->stdin_taken) return fail("key=-: standard input holds one key, and another SA took it");
        in->stdin_taken = true;
        if (!crypto::read_key_stream(in->stdin_fd, &from, &why)) return fail("key=-: standard input " + why);
      } else {
        std::string bytes;
        if (!crypto::parse_hex(v, &bytes)) return fail("key: not a hex string");
        c.keymat.assign(bytes.begin(), bytes.end());
        crypto::secure_wipe(bytes.data(), bytes.size());
        if (in != nullptr) in->key_in_spec = true;
      }
    } else if (k == "src" || k == "dst") {
      net::IpAddr a;
      if (!net::parse_ip(std::string(v).c_str(), &a)) return fail(std::string(k) + ": not an IP address");
      (k == "src" ? c.outer_src : c.outer_dst) = a;
    } else if (k == "esn") {
      if (v == "1" || v == "true" || v == "yes") c.esn = true;
      else if (v == "0" || v == "false" || v == "no") c.esn = false;
      else return fail("esn: 0 or 1");
    } else if (k == "window") {
      if (!num(v, &n) || n > 65536 || !is_pow2_in(uint32_t(n), 64, 65536))
        return fail("window: a power of two from 64 to 65536");
      c.replay_window = uint32_t(n);
    } else if (k == "ttl") {
      if (!num(v, &n) || n == 0 || n > 255) return fail("ttl: 1..255");
      c.ttl = uint8_t(n);
    } else if (k == "df") {
      if (v == "copy") c.df = DfPolicy::kCopy;
      else if (v == "set") c.df = DfPolicy::kSet;
      else if (v == "clear") c.df = DfPolicy::kClear;
      else return fail("df: copy, set or clear");
    } else if (k == "dscp") {
      if (v == "copy") {
        c.dscp_policy = DscpPolicy::kCopy;
      } else if (num(v, &n) && n <= 63) {
        c.dscp_policy = DscpPolicy::kSet;
        c.tos = uint8_t(n << 2);
      } else {
        return fail("dscp: copy or 0..63");
      }
    } else if (k == "encap") {
      if (v == "udp") c.encap = net::Encap::kUdp;
      else if (v == "none") c.encap = net::Encap::kNone;
      else return fail("encap: none or udp");
    } else if (k == "sport" || k == "dport") {
      if (!num(v, &n) || n == 0 || n > 65535 || n == net::kIkePort)
        return fail(std::string(k) + ": a UDP port 1..65535 other than 500 (IKE's)");
      (k == "sport" ? c.udp_sport : c.udp_dport) = uint16_t(n);
      have_port = true;
    } else {
      return fail("sa spec: unknown field '" + shown(k) + "'");
    }
  }
  if (have_port && c.encap != net::Encap::kUdp) return fail("sport/dport: only with encap=udp");
  if (!have_spi) return fail("sa spec: spi is missing");
  if (!have_cipher) return fail("sa spec: cipher is missing");
  if (!have_key) return fail("sa spec: key is missing (key=HEX, key=- or key_file=PATH)");
  const uint32_t want = crypto::key_len(c.cipher) + crypto::kSaltLen;
  if (!from_what.empty()) {
    std::string bytes;
    const crypto::KeyText kt = crypto::decode_key_text(from, want, &bytes);
    crypto::secure_wipe(from.data(), from.size());
    if (kt == crypto::KeyText::kNotHex)
      return fail(from_what + ": holds neither " + std::to_string(want) + " raw bytes nor hex text");
    c.keymat.assign(bytes.begin(), bytes.end());
    crypto::secure_wipe(bytes.data(), bytes.size());
  }
  if (c.keymat.size() != want)
    return fail("key: " + std::string(crypto::to_string(c.cipher)) + " needs " + std::to_string(want) +
                " bytes (key + 4-byte salt), got " + std::to_string(c.keymat.size()));
  if (!crypto::engine_supports(c.engine, c.cipher))
    return fail(std::string("engine: ") + crypto::to_string(c.engine) + " has no " + crypto::to_string(c.cipher));
  if (!out->keymat.empty()) crypto::secure_wipe(out->keymat.data(), out->keymat.size());
  *out = std::move(c);
  return true;
}

}  // namespace mg::esp
