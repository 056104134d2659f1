// Internal to lib/config: reading toml++ tables with every problem turned into an Error (file, line, rule),
// and the bookkeeping that rejects keys nobody asked for (typos must not pass silently).
#pragma once

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <toml++/toml.h>

#include "config/config.h"

namespace mg::config::detail {

// A message with what could be key material taken out: every run of 16 or more hex digits, and every run of 8 or
// more hex byte pairs separated by ':', becomes "<N hex digits hidden>". Messages quote values from the file, and
// a key written into the wrong field (`cipher = "<the key>"`) must not reach a log through them. Names, SPIs,
// MACs and IPv6 addresses stay readable (IPv6 groups hold at most 4 digits).
std::string hide_hex_runs(std::string message);

// Collects errors for one file.
class Sink {
 public:
  Sink(std::string file, std::vector<Error>* out) : file_(std::move(file)), out_(out) {}
  void add(int line, std::string rule, std::string message) {
    ++count_;
    if (out_) out_->push_back(Error{file_, line, std::move(rule), hide_hex_runs(std::move(message))});
  }
  const std::string& file() const noexcept { return file_; }
  size_t count() const noexcept { return count_; }

 private:
  std::string file_;
  std::vector<Error>* out_;
  size_t count_ = 0;
};

inline int line_of(const toml::node& n) noexcept { return int(n.source().begin.line); }
inline int line_of(const toml::key& k) noexcept { return int(k.source().begin.line); }

// True for keys that ask for policy-based VPN behaviour (policy lists, traffic selectors). meshgate is
// route-based: such a key gets its own rule id and a pointer to [inside] prefixes.
bool is_policy_key(std::string_view key) noexcept;

// `where` of the top-level table.
inline constexpr const char* kTopLevel = "the file";

// Reads the keys of one table; remembers which were read so that finish() can report the rest.
class Reader {
 public:
  // `where` names the table in messages, e.g. "[[tunnel]] #2" or "[flow]".
  Reader(Sink& sink, const toml::table& t, std::string where) : sink_(sink), t_(t), where_(std::move(where)) {}

  const toml::table& table() const noexcept { return t_; }
  const std::string& where() const noexcept { return where_; }
  int line() const noexcept { return line_of(t_); }
  // Line of a key's value, or the table's line when absent.
  int line(std::string_view key) const noexcept;

  // Marks the key as known and returns its node (nullptr when absent).
  const toml::node* get(std::string_view key);
  // Typed getters: absent -> nullopt (and an error when `required`); wrong type -> error "type", nullopt.
  std::optional<std::string> str(std::string_view key, bool required = false);
  std::optional<int64_t> integer(std::string_view key, bool required = false);
  std::optional<bool> boolean(std::string_view key);
  std::optional<std::vector<std::string>> str_array(std::string_view key, bool required = false);
  // A name (of an instance, device, tunnel or port): 1..64 of A-Z a-z 0-9 _ -; otherwise "name-syntax".
  std::optional<std::string> name(std::string_view key, bool required = false);
  // Integer in [lo, hi]; outside -> error with `rule`.
  std::optional<int64_t> ranged(std::string_view key, int64_t lo, int64_t hi, const char* rule,
                                bool required = false);
  // A sub-table (a [t.sub] header or an inline table); wrong type -> error.
  const toml::table* subtable(std::string_view key, bool required = false);

  void missing(std::string_view key);
  // The table's line for table-level problems; 0 for the top level (no single line).
  int table_line() const noexcept;
  void type_error(std::string_view key, const toml::node& n, const char* expected);

  // Reports every key that was not read: "unknown-key", or "route-based-only" for policy-style keys.
  void finish();

 private:
  Sink& sink_;
  const toml::table& t_;
  std::string where_;
  std::set<std::string, std::less<>> seen_;
};

// The tables of a top-level [[kind]] array (none when absent); anything else there is a "type" error.
std::vector<const toml::table*> array_of_tables(Reader& top, Sink& sink, const char* kind);

// Where a table of an array of tables sits, for messages: "[[tunnel]] #3", or "[[port]] #1 \"inside\"" when it
// has a string `name`.
inline std::string nth(std::string_view kind, size_t i, const toml::table& t) {
  std::string s = "[[" + std::string(kind) + "]] #" + std::to_string(i + 1);
  if (const toml::node* n = t.get("name"); n && n->is_string()) s += " \"" + n->as_string()->get() + "\"";
  return s;
}

// Replaces ${VAR} with the environment's value. Unset or malformed: error naming VAR; returns false.
bool expand_env(const std::string& in, std::string* out, Sink& sink, int line, std::string_view what);

// "aa:bb:cc:dd:ee:ff" (or '-' separators) -> 6 bytes.
bool parse_mac(std::string_view s, uint8_t mac[6]) noexcept;
std::string format_mac(const uint8_t mac[6]);
bool valid_name(std::string_view s, size_t max_len) noexcept;
std::string dir_of(const std::string& path);
std::string resolve(const std::string& base_dir, const std::string& p);

// Reads a whole file; false when it cannot be read. The caller wipes secrets.
bool read_file(const std::string& path, std::string* out);

// Parses a TOML document read from `path`; on a syntax error adds "toml-syntax" and returns nullopt; an
// unreadable file gives "file-unreadable".
std::optional<toml::table> parse_toml(const std::string& path, Sink& sink);

}  // namespace mg::config::detail
