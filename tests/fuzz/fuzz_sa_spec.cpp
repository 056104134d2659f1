// libFuzzer target: the SA spec string of meshgate-esp's --sa (esp::parse_sa_spec), then Sa::create with what it
// accepted, both directions. Checked (each failure traps):
//   - failure comes with a message, success without touching *err; a message never holds key material: no run of
//     8+ hex digits (':' separators ignored) that the spec has after "key" (a typo such as `key:HEX` or a missing
//     comma must not print the key), unless the message stays the same with other digits in their place;
//   - an accepted spec has a non-zero SPI, a key of the cipher's length + 4, an engine that has the cipher, a window
//     that is a power of two in 64..65536, and Sa::create takes it in both directions (outer addresses of one
//     version, or none for inbound).
#include <cctype>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

#include "esp/esp.h"
#include "fuzz_check.h"
#include "fuzz_eal.h"

namespace esp = mg::esp;
namespace crypto = mg::crypto;

namespace {

// Maximal runs of hex digits, ':' separators dropped, of at least `min` digits.
std::vector<std::string> hex_runs(std::string_view s, size_t min) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < s.size()) {
    if (!std::isxdigit(static_cast<unsigned char>(s[i]))) {
      ++i;
      continue;
    }
    std::string run;
    while (i < s.size() && (std::isxdigit(static_cast<unsigned char>(s[i])) || s[i] == ':')) {
      if (s[i] != ':') run.push_back(char(std::tolower(static_cast<unsigned char>(s[i]))));
      ++i;
    }
    if (run.size() >= min) out.push_back(run);
  }
  return out;
}

// Key material: hex runs that follow "key" in the spec, up to the next "key", before any other field's name
// could start (a value that ends in hex digits is not a key).
std::vector<std::string> keys_in(std::string_view spec) {
  std::vector<std::string> out;
  size_t pos = 0;
  while ((pos = spec.find("key", pos)) != std::string_view::npos) {
    pos += 3;
    size_t end = spec.find(',', pos);
    if (end == std::string_view::npos) end = spec.size();
    for (std::string& r : hex_runs(spec.substr(pos, end - pos), 8)) out.push_back(std::move(r));
  }
  // A run the spec also holds elsewhere (say, as a cipher name) may be quoted for that: only runs seen once count.
  std::vector<std::string> kept;
  const std::vector<std::string> all = hex_runs(spec, 8);
  for (std::string& k : out) {
    size_t seen = 0;
    for (const std::string& r : all) seen += r.find(k) != std::string::npos;
    if (seen == 1) kept.push_back(std::move(k));
  }
  return kept;
}

// The spec with every hex digit that follows "key" (up to the next ',') replaced by the next one (0->1, f->0, F->0;
// the 0 of a "0x" prefix kept, so hex stays hex):
// an error message that stays the same holds nothing of the key, whatever hex it shows (the product's own text,
// such as "0xffffffff" in the spi range, may equal a run of the key).
std::string rotate_key_digits(std::string_view spec) {
  std::string out(spec);
  size_t pos = 0;
  while ((pos = out.find("key", pos)) != std::string::npos) {
    pos += 3;
    for (; pos < out.size() && out[pos] != ','; ++pos) {
      char& c = out[pos];
      if (c == '0' && pos + 1 < out.size() && (out[pos + 1] == 'x' || out[pos + 1] == 'X')) continue;  // "0x" stays
      if (c >= '0' && c <= '8') ++c;
      else if (c == '9') c = 'a';
      else if ((c >= 'a' && c <= 'e') || (c >= 'A' && c <= 'E')) ++c;
      else if (c == 'f' || c == 'F') c = '0';
    }
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 4096) return 0;
  const std::string spec(reinterpret_cast<const char*>(data), size);
  esp::SaConfig cfg;
  std::string err = "untouched";
  const bool ok = esp::parse_sa_spec(spec, &cfg, &err);
  if (!ok) {
    CHECK(!err.empty() && err != "untouched");
    esp::SaConfig other;
    std::string err2;
    if (!esp::parse_sa_spec(rotate_key_digits(spec), &other, &err2) && err2 == err) return 0;
    const std::vector<std::string> shown = hex_runs(err, 8);
    // The whole run: a part of it could be the product's own text ("0xffffffff" in the spi range).
    for (const std::string& k : keys_in(spec))
      for (const std::string& r : shown) CHECK(r.find(k) == std::string::npos);
    return 0;
  }
  CHECK(err == "untouched");
  CHECK(cfg.spi != 0);
  CHECK(cfg.keymat.size() == crypto::key_len(cfg.cipher) + crypto::kSaltLen);
  CHECK(crypto::engine_supports(cfg.engine, cfg.cipher));
  CHECK(cfg.replay_window >= 64 && cfg.replay_window <= 65536 && (cfg.replay_window & (cfg.replay_window - 1)) == 0);
  mg::fuzz::fuzz_pool();  // Sa::create needs no EAL today; keep it valid if it ever does
  for (int dir = 0; dir < 2; ++dir) {
    esp::SaConfig c = cfg;
    std::string e;
    const bool out = dir == 0;
    auto sa = esp::Sa::create(c, out ? esp::Direction::kOutbound : esp::Direction::kInbound, 1, &e);
    const bool addrs = cfg.outer_src.version != 0 && cfg.outer_src.version == cfg.outer_dst.version;
    // Outbound needs both endpoints of one version; inbound keeps them for reporting only.
    if (out && !addrs) continue;
    CHECK(sa != nullptr);
    CHECK(sa->spi() == cfg.spi);
  }
  crypto::secure_wipe(cfg.keymat.data(), cfg.keymat.size());
  return 0;
}
