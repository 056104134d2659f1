// libFuzzer target: the TOML loaders of lib/config, through their public API (a file path, as meshgate, --check
// and meshgate-spread use them). The input is written to gw.toml in a private directory that also holds a valid
// pmd_config (pmd.toml) and two key files (key20.hex: hex text, key36.bin: raw bytes), so `key_file = "..."` and
// `pmd_config = "pmd.toml"` lead somewhere. Each input goes through:
//   load_gateway (everything, and the meshgate-spread options: no SAs, no ports), load_pmd, cross_check of a
//   loaded gateway against pmd.toml (and against the input's own pmd model when both load), describe().
// Checked (each failure traps): success comes with no error and failure with at least one, each with a rule id,
// a message and a sane line; no message and no description holds key material: not the key files' bytes, not a
// run of 8+ hex digits (or 16+ with ':' separators) written after `key =` or `key_file =` in the input.
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.h"
#include "fuzz_check.h"

namespace cfg = mg::config;

namespace {

constexpr char kSecretHex[] = "c0ffee5eed1e55f00dfacade0b5e55ed5ca1ab1e";  // 20 bytes: an aes-gcm-128 key + salt

constexpr char kPmd[] = R"([eal]
args = ["--no-huge", "-m", "256", "--no-pci", "-l", "0-1"]
[workers]
lcores = [1]
[[port]]
name = "inside"
devargs = "net_null0"
[[port]]
name = "out-a"
devargs = "net_null1"
[[port]]
name = "out-b"
devargs = "net_null2"
)";

struct Dir {
  std::string path;
  std::string gw;
  std::string raw_secret;  // key36.bin's bytes
  Dir() {
    char tmpl[] = "/dev/shm/mg-fuzz-config-XXXXXX";
    if (mkdtemp(tmpl) == nullptr) std::abort();
    path = tmpl;
    gw = path + "/gw.toml";
    write(path + "/pmd.toml", kPmd);
    write(path + "/key20.hex", std::string(kSecretHex) + "\n");
    for (int i = 0; i < 36; ++i) raw_secret.push_back(char(0x80 + i * 3));  // not hex text: read as raw bytes
    write(path + "/key36.bin", raw_secret);
    // The shipped pmd_configs name these; unset, they are an error (env-unset), set, the files load.
    setenv("MESHGATE_INSIDE_PCAP", "/nonexistent/in.pcap", 0);
    setenv("MESHGATE_OUT", "/nonexistent", 0);
    setenv("MESHGATE_OUT_A_RX", "/nonexistent/a.pcap", 0);
    setenv("MESHGATE_OUT_B_RX", "/nonexistent/b.pcap", 0);
  }
  ~Dir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  static void write(const std::string& p, std::string_view s) {
    const int fd = ::open(p.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) std::abort();
    size_t off = 0;
    while (off < s.size()) {
      const ssize_t k = ::write(fd, s.data() + off, s.size() - off);
      if (k <= 0) std::abort();
      off += size_t(k);
    }
    ::close(fd);
  }
};

Dir& dir() {
  static Dir d;
  return d;
}

bool contains(std::string_view hay, std::string_view needle) { return hay.find(needle) != std::string_view::npos; }

std::string strip(std::string_view s, char c) {
  std::string o;
  for (char x : s)
    if (x != c) o.push_back(x);
  return o;
}

// Hex runs written after `key =` or `key_file =` in the input (8+ digits, or 16+ with ':' separators): key material.
std::vector<std::string> input_keys(std::string_view input) {
  std::vector<std::string> out;
  size_t pos = 0;
  while ((pos = input.find("key", pos)) != std::string_view::npos) {
    const size_t at = pos;
    pos += 3;
    if (at > 0 && (std::isalnum(static_cast<unsigned char>(input[at - 1])) || input[at - 1] == '_' ||
                   input[at - 1] == '-'))
      continue;
    // In a comment ('#' earlier on its line) it is prose: "key_file = ... 00000000s" there is no key, and the
    // all-zero SPI that describe() prints for an SA never read would look like one.
    const size_t bol = input.rfind('\n', at) == std::string_view::npos ? 0 : input.rfind('\n', at) + 1;
    const std::string_view before = input.substr(bol, at - bol);
    if (before.find('#') != std::string_view::npos) continue;
    // Inside a string (an odd number of quotes before it on its line: `prefixes = ["x:key=..."]`) it is text of
    // another value, which errors may quote; a key of that value's own is caught by its hex-run rule.
    if (std::count(before.begin(), before.end(), '"') % 2 == 1 || std::count(before.begin(), before.end(), '\'') % 2 == 1)
      continue;
    if (input.substr(pos).starts_with("_file")) pos += 5;  // a key written where its file's path belongs
    size_t i = pos;
    while (i < input.size() && (input[i] == ' ' || input[i] == '\t')) ++i;
    if (i >= input.size() || input[i] != '=') continue;
    const size_t eol = std::min(input.find('\n', i), input.size());
    const std::string_view value = input.substr(i + 1, eol - i - 1);
    size_t j = 0;
    while (j < value.size()) {
      size_t k = j;
      while (k < value.size() && (std::isxdigit(static_cast<unsigned char>(value[k])) || value[k] == ':')) ++k;
      const std::string run = strip(value.substr(j, k - j), ':');
      if (run.size() >= (k - j != run.size() ? 16u : 8u)) out.push_back(run);
      j = k + 1;
    }
  }
  // A run the input also holds elsewhere (a name, a comment) may legitimately be quoted: only runs seen once count.
  std::vector<std::string> kept;
  for (std::string& s : out) {
    const size_t first = input.find(s);
    if (input.find(s, first + 1) == std::string_view::npos) kept.push_back(std::move(s));
  }
  return kept;
}

std::string_view g_input;  // the current input: what it holds itself may be quoted back
std::string g_input_plain;  // the same, lower case without ':', as check_text reads a run (a quoted MAC
                            // "02eed1e55f:00" holds the window "ed1e55f0" only once its ':' is gone)

// No key material in `text`: each run of hex digits in it (':' separators ignored) is checked against the key
// file's hex (any 8 digits of it) and the input's keys; the raw key file's bytes are all >= 0x80.
void check_text(const std::string& text, const std::vector<std::string>& keys) {
  const std::string_view secret_hex(kSecretHex);
  bool high = false;
  size_t i = 0;
  while (i < text.size()) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    high |= c >= 0x80;
    if (!std::isxdigit(c)) {
      ++i;
      continue;
    }
    size_t k = i;
    while (k < text.size() && (std::isxdigit(static_cast<unsigned char>(text[k])) || text[k] == ':')) ++k;
    const std::string run = strip(std::string_view(text).substr(i, k - i), ':');
    if (run.size() >= 8) {
      std::string lower = run;
      for (char& x : lower) x = char(std::tolower(static_cast<unsigned char>(x)));
      for (size_t w = 0; w + 8 <= lower.size(); ++w) {
        const std::string_view win = std::string_view(lower).substr(w, 8);
        CHECK(!contains(secret_hex, win) || contains(g_input_plain, win));
      }
      for (const std::string& key : keys) CHECK(!contains(run, key));
    }
    i = k;
  }
  if (high) {
    const std::string& raw = dir().raw_secret;
    for (size_t w = 0; w + 8 <= raw.size(); w += 4) {
      const std::string_view win = std::string_view(raw).substr(w, 8);
      CHECK(!contains(text, win) || contains(g_input, win));
    }
  }
}

void check_errors(bool ok, const std::vector<cfg::Error>& errors, const std::vector<std::string>& secret) {
  CHECK(ok == errors.empty());
  for (const cfg::Error& e : errors) {
    CHECK(!e.rule.empty() && !e.message.empty() && e.line >= 0);
    check_text(e.message, secret);
    check_text(e.format(), secret);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  Dir& d = dir();
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  g_input = input;
  g_input_plain.clear();
  for (const char c : input)
    if (c != ':') g_input_plain.push_back(char(std::tolower(static_cast<unsigned char>(c))));
  Dir::write(d.gw, input);
  const std::vector<std::string> secret = input_keys(input);

  std::vector<cfg::Error> errors;
  const auto gw = cfg::load_gateway(d.gw, &errors);
  check_errors(gw.has_value(), errors, secret);

  // The meshgate-spread options on every loadable file (skipping rules never turns it into a failing one) and
  // on a quarter of the rest: each load costs as much as the first.
  std::optional<cfg::Gateway> gw_spread;
  if (gw || (data[size / 2] & 3) == 0) {
    errors.clear();
    cfg::LoadOptions spread;
    spread.sas = false;
    spread.ports = false;
    gw_spread = cfg::load_gateway(d.gw, &errors, spread);
    check_errors(gw_spread.has_value(), errors, secret);
    if (gw) CHECK(gw_spread.has_value());
  }

  errors.clear();
  const auto pmd = cfg::load_pmd(d.gw, &errors);
  check_errors(pmd.has_value(), errors, secret);
  if (pmd) check_text(cfg::describe(*pmd), secret);

  if (gw) {
    check_text(cfg::describe(*gw), secret);
    static const cfg::PmdConfig fixed = [&d] {
      std::vector<cfg::Error> e;
      auto p = cfg::load_pmd(d.path + "/pmd.toml", &e);
      CHECK(p.has_value());
      return std::move(*p);
    }();
    errors.clear();
    check_errors(cfg::cross_check(*gw, fixed, &errors), errors, secret);
    if (pmd) {
      errors.clear();
      check_errors(cfg::cross_check(*gw, *pmd, &errors), errors, secret);
    }
    for (const cfg::Tunnel& t : gw->tunnels) {
      const size_t want = mg::crypto::key_len(t.out.cipher) + mg::crypto::kSaltLen;
      CHECK(t.out.keymat.size() == want && t.in.keymat.size() == mg::crypto::key_len(t.in.cipher) + 4);
      CHECK(t.out.spi != 0 && t.in.spi != 0);
      CHECK(t.instance < gw->instances.size() && t.device < gw->devices.size());
    }
  }
  if (gw_spread) check_text(cfg::describe(*gw_spread), secret);
  return 0;
}
