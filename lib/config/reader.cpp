#include "config/reader.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstring>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "crypto/aead.h"

namespace mg::config::detail {

std::string hide_hex_runs(std::string m) {
  auto hex = [&](size_t i) { return i < m.size() && std::isxdigit(static_cast<unsigned char>(m[i])) != 0; };
  std::string out;
  size_t i = 0;
  while (i < m.size()) {
    if (!hex(i)) {
      out += m[i++];
      continue;
    }
    // A plain run of hex digits, or byte pairs "aa:bb:..." (counted in digits).
    size_t j = i;
    while (hex(j)) ++j;
    size_t digits = j - i, k = j;
    if (digits == 2) {
      size_t pairs = 1;
      while (k < m.size() && m[k] == ':' && hex(k + 1) && hex(k + 2) && !hex(k + 3)) {
        k += 3;
        ++pairs;
      }
      if (pairs >= 8) {
        out += "<" + std::to_string(pairs * 2) + " hex digits hidden>";
        i = k;
        continue;
      }
    }
    if (digits >= 16) out += "<" + std::to_string(digits) + " hex digits hidden>";
    else out.append(m, i, digits);
    i = j;
  }
  return out;
}

namespace {

const char* type_name(const toml::node& n) noexcept {
  switch (n.type()) {
    case toml::node_type::table: return "a table";
    case toml::node_type::array: return "an array";
    case toml::node_type::string: return "a string";
    case toml::node_type::integer: return "an integer";
    case toml::node_type::floating_point: return "a float";
    case toml::node_type::boolean: return "a boolean";
    case toml::node_type::date: return "a date";
    case toml::node_type::time: return "a time";
    case toml::node_type::date_time: return "a date-time";
    default: return "nothing";
  }
}

std::string lower_underscored(std::string_view k) {
  std::string s;
  for (char c : k) {
    if (c >= 'A' && c <= 'Z') c = char(c - 'A' + 'a');
    if (c == '-' || c == '.' || c == ' ') c = '_';
    s.push_back(c);
  }
  return s;
}

}  // namespace

bool is_policy_key(std::string_view key) noexcept {
  const std::string k = lower_underscored(key);
  if (k.find("polic") != std::string::npos || k.find("selector") != std::string::npos) return true;
  static constexpr std::string_view kExact[] = {
      "ts", "tsi", "tsr", "local_ts", "remote_ts", "spd", "acl", "acls", "leftsubnet", "rightsubnet",
      "left_subnet", "right_subnet", "local_subnet", "remote_subnet", "local_subnets", "remote_subnets",
      "local_addrs", "remote_addrs", "protected_subnets", "encryption_domain", "crypto_map", "crypto_acl"};
  for (std::string_view e : kExact)
    if (k == e) return true;
  return false;
}

int Reader::line(std::string_view key) const noexcept {
  if (const toml::node* n = t_.get(key)) return line_of(*n);
  return line_of(t_);
}

const toml::node* Reader::get(std::string_view key) {
  seen_.emplace(key);
  return t_.get(key);
}

int Reader::table_line() const noexcept { return where_ == kTopLevel ? 0 : line_of(t_); }

void Reader::missing(std::string_view key) {
  sink_.add(table_line(), "missing-key", where_ + " needs `" + std::string(key) + "`");
}

void Reader::type_error(std::string_view key, const toml::node& n, const char* expected) {
  sink_.add(line_of(n), "type",
            where_ + " `" + std::string(key) + "` must be " + expected + ", not " + type_name(n));
}

std::optional<std::string> Reader::str(std::string_view key, bool required) {
  const toml::node* n = get(key);
  if (!n) {
    if (required) missing(key);
    return std::nullopt;
  }
  if (!n->is_string()) {
    type_error(key, *n, "a string");
    return std::nullopt;
  }
  return n->as_string()->get();
}

std::optional<int64_t> Reader::integer(std::string_view key, bool required) {
  const toml::node* n = get(key);
  if (!n) {
    if (required) missing(key);
    return std::nullopt;
  }
  if (!n->is_integer()) {
    type_error(key, *n, "an integer");
    return std::nullopt;
  }
  return n->as_integer()->get();
}

std::optional<bool> Reader::boolean(std::string_view key) {
  const toml::node* n = get(key);
  if (!n) return std::nullopt;
  if (!n->is_boolean()) {
    type_error(key, *n, "true or false");
    return std::nullopt;
  }
  return n->as_boolean()->get();
}

std::optional<std::vector<std::string>> Reader::str_array(std::string_view key, bool required) {
  const toml::node* n = get(key);
  if (!n) {
    if (required) missing(key);
    return std::nullopt;
  }
  const toml::array* a = n->as_array();
  if (!a) {
    type_error(key, *n, "an array of strings");
    return std::nullopt;
  }
  std::vector<std::string> out;
  bool ok = true;
  for (const toml::node& e : *a) {
    if (!e.is_string()) {
      type_error(key, e, "an array of strings (every element a string)");
      ok = false;
      continue;
    }
    out.push_back(e.as_string()->get());
  }
  if (!ok) return std::nullopt;
  return out;
}

std::optional<std::string> Reader::name(std::string_view key, bool required) {
  std::optional<std::string> s = str(key, required);
  if (s && !valid_name(*s, 64)) {
    sink_.add(line(key), "name-syntax",
              where_ + " `" + std::string(key) + "` = \"" + *s + "\" must be 1..64 of A-Z a-z 0-9 _ -");
    return std::nullopt;
  }
  return s;
}

std::optional<int64_t> Reader::ranged(std::string_view key, int64_t lo, int64_t hi, const char* rule,
                                      bool required) {
  const std::optional<int64_t> v = integer(key, required);
  if (!v) return std::nullopt;
  if (*v < lo || *v > hi) {
    sink_.add(line(key), rule,
              where_ + " `" + std::string(key) + "` = " + std::to_string(*v) + " is out of range " +
                  std::to_string(lo) + ".." + std::to_string(hi));
    return std::nullopt;
  }
  return v;
}

const toml::table* Reader::subtable(std::string_view key, bool required) {
  const toml::node* n = get(key);
  if (!n) {
    if (required) sink_.add(table_line(), "missing-key", where_ + " needs a `[" + std::string(key) + "]` table");
    return nullptr;
  }
  if (!n->is_table()) {
    type_error(key, *n, "a table");
    return nullptr;
  }
  return n->as_table();
}

namespace {

// Levenshtein distance, for "did you mean" (keys are short: quadratic is fine).
size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

}  // namespace

void Reader::finish() {
  for (auto&& [k, v] : t_) {
    if (seen_.count(k.str())) continue;
    const int ln = line_of(k) ? line_of(k) : line_of(v);
    if (is_policy_key(k.str())) {
      sink_.add(ln, "route-based-only",
                where_ + " `" + std::string(k.str()) +
                    "`: meshgate is route-based and has no policy lists or traffic selectors; list the inner "
                    "destinations that go into the tunnels in `[inside] prefixes`");
    } else {
      // The known key it most resembles: a typo (edit distance <= 2), or one it is the start of (an old
      // name without its unit, e.g. pin_idle_timeout for pin_idle_timeout_ms).
      std::string hint;
      size_t best = 3;
      for (const std::string& known : seen_) {
        size_t d = edit_distance(k.str(), known);
        if (known.starts_with(k.str()) && k.str().size() >= 4) d = std::min<size_t>(d, 1);
        if (d < best) best = d, hint = known;
      }
      sink_.add(ln, "unknown-key",
                where_ + " has an unknown key `" + std::string(k.str()) + "`" +
                    (hint.empty() ? std::string() : " (did you mean `" + hint + "`?)"));
    }
  }
}

std::vector<const toml::table*> array_of_tables(Reader& top, Sink& sink, const char* kind) {
  std::vector<const toml::table*> out;
  const toml::node* n = top.get(kind);
  if (!n) return out;
  const toml::array* a = n->as_array();
  if (!a) {
    sink.add(line_of(*n), "type",
             std::string("`") + kind + "` must be an array of tables: write [[" + kind + "]] for each one");
    return out;
  }
  for (const toml::node& e : *a) {
    if (const toml::table* t = e.as_table()) {
      out.push_back(t);
    } else {
      sink.add(line_of(e), "type", std::string("every `") + kind + "` entry must be a table ([[" + kind + "]])");
    }
  }
  return out;
}

bool expand_env(const std::string& in, std::string* out, Sink& sink, int line, std::string_view what) {
  out->clear();
  bool ok = true;
  size_t i = 0;
  while (i < in.size()) {
    if (in[i] == '$' && i + 1 < in.size() && in[i + 1] == '{') {
      const size_t end = in.find('}', i + 2);
      if (end == std::string::npos) {
        sink.add(line, "env-syntax", std::string(what) + ": `${` without a closing `}`");
        return false;
      }
      const std::string var = in.substr(i + 2, end - i - 2);
      bool good = !var.empty();
      for (char c : var)
        if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_')) good = false;
      if (!good) {
        sink.add(line, "env-syntax", std::string(what) + ": `${" + var + "}` is not a variable name");
        ok = false;
      } else if (const char* val = std::getenv(var.c_str())) {
        out->append(val);
      } else {
        sink.add(line, "env-unset",
                 std::string(what) + " uses ${" + var + "} but the environment variable " + var + " is not set");
        ok = false;
      }
      i = end + 1;
      continue;
    }
    out->push_back(in[i++]);
  }
  return ok;
}

bool parse_mac(std::string_view s, uint8_t mac[6]) noexcept {
  if (s.size() != 17) return false;
  uint8_t m[6];
  const char sep = s[2];
  if (sep != ':' && sep != '-') return false;
  for (int i = 0; i < 6; ++i) {
    if (i > 0 && s[size_t(i * 3 - 1)] != sep) return false;
    int v = 0;
    for (int j = 0; j < 2; ++j) {
      const char c = s[size_t(i * 3 + j)];
      int d;
      if (c >= '0' && c <= '9') d = c - '0';
      else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
      else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
      else return false;
      v = v * 16 + d;
    }
    m[i] = uint8_t(v);
  }
  std::memcpy(mac, m, 6);
  return true;
}

std::string format_mac(const uint8_t mac[6]) {
  char b[18];
  std::snprintf(b, sizeof b, "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]);
  return b;
}

bool valid_name(std::string_view s, size_t max_len) noexcept {
  if (s.empty() || s.size() > max_len) return false;
  for (char c : s)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-')) return false;
  return true;
}

std::string dir_of(const std::string& path) {
  const std::filesystem::path p(path);
  const std::filesystem::path d = p.parent_path();
  return d.empty() ? std::string(".") : d.string();
}

std::string resolve(const std::string& base_dir, const std::string& p) {
  const std::filesystem::path q(p);
  if (q.is_absolute()) return q.lexically_normal().string();
  return (std::filesystem::path(base_dir) / q).lexically_normal().string();
}

bool read_file(const std::string& path, std::string* out) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) return false;
  std::ifstream f(path, std::ios::binary);
  if (!f) return false;
  std::ostringstream ss;
  ss << f.rdbuf();
  if (f.bad()) return false;
  *out = std::move(ss).str();
  return true;
}

// toml++ quotes the text it failed on in some messages (e.g. a 0x-prefixed key that overflows an integer):
// quoted spans that hold a run of 8 or more hex digits are replaced, so no key material reaches a message.
std::string redact_quoted_hex(std::string_view d) {
  std::string out;
  size_t i = 0;
  while (i < d.size()) {
    const char q = d[i];
    const size_t end = (q == '\'' || q == '"' || q == '`') ? d.find(q, i + 1) : std::string_view::npos;
    if (end == std::string_view::npos) {
      out.push_back(d[i++]);
      continue;
    }
    const std::string_view span = d.substr(i + 1, end - i - 1);
    size_t run = 0, best = 0;
    for (char c : span) {
      run = std::isxdigit(static_cast<unsigned char>(c)) ? run + 1 : 0;
      best = std::max(best, run);
    }
    out.push_back(q);
    out += best >= 8 ? std::string("<redacted>") : std::string(span);
    out.push_back(q);
    i = end + 1;
  }
  return out;
}

std::optional<toml::table> parse_toml(const std::string& path, Sink& sink) {
  std::string text;
  if (!read_file(path, &text)) {
    sink.add(0, "file-unreadable", "cannot read the file");
    return std::nullopt;
  }
  std::optional<toml::table> out;
  try {
    out = toml::parse(text, path);
  } catch (const toml::parse_error& e) {
    sink.add(int(e.source().begin.line), "toml-syntax",
             "TOML syntax error at column " + std::to_string(e.source().begin.column) + ": " +
                 redact_quoted_hex(e.description()));
  }
  // The text may hold keys in hex: wipe it before it goes back to the allocator.
  crypto::secure_wipe(text.data(), text.size());
  return out;
}

}  // namespace mg::config::detail
