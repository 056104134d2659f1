// The fixture of the lib/config tests, shared with tests that build on a loaded gateway (tests/dataplane's SA
// builders): a good base gateway and pmd_config as strings, edit() to break one thing, and Config, which writes
// files to a temp dir and checks an expected error's rule, file, line (the "#@" marker) and message.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "config/config.h"

namespace mg::config::test {

namespace fs = std::filesystem;

// Demo keys for the tests: 20 bytes each (aes-gcm-128), all different.
inline constexpr const char* kK1 = "00112233445566778899aabbccddeeff01020304";
inline constexpr const char* kK2 = "102132435465768798a9bacbdcedfe0f11121314";
inline constexpr const char* kK3 = "2031425364758697a8b9cadbecfd0e1f21222324";
inline constexpr const char* kK4 = "30415263748596a7b8c9daebfc0d1e2f31323334";

inline std::string base_gateway() {
  return std::string(R"([gateway]
name = "t"
mode = "active-active"
pmd_config = "pmd.toml"

[inside]
port = "inside"
prefixes = ["10.0.0.0/8", "2001:db8:a::/48"]

[[instance]]
name = "gw-a"
ipv4 = "192.0.2.1"
port = "out-a"

[[instance]]
name = "gw-b"
ipv4 = "192.0.2.2"
port = "out-b"

[[device]]
name = "d1"
ipv4 = "198.51.100.1"

[[tunnel]]
instance = "gw-a"
device = "d1"
[tunnel.out]
spi = 0x1001
cipher = "aes-gcm-128"
key = "K1"
[tunnel.in]
spi = 0x2001
cipher = "aes-gcm-128"
key = "K2"

[[tunnel]]
instance = "gw-b"
device = "d1"
[tunnel.out]
spi = 0x1002
cipher = "aes-gcm-128"
key = "K3"
[tunnel.in]
spi = 0x2002
cipher = "aes-gcm-128"
key = "K4"
)");
}

inline std::string base_pmd() {
  return R"([eal]
args = ["--no-huge", "-l", "0-1"]

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
}

inline std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (size_t p = s.find(from); p != std::string::npos; p = s.find(from, p + to.size())) s.replace(p, from.size(), to);
  return s;
}

// The base gateway with the demo keys filled in.
inline std::string gateway() {
  std::string s = base_gateway();
  s = replace_all(s, "\"K1\"", std::string("\"") + kK1 + "\"");
  s = replace_all(s, "\"K2\"", std::string("\"") + kK2 + "\"");
  s = replace_all(s, "\"K3\"", std::string("\"") + kK3 + "\"");
  s = replace_all(s, "\"K4\"", std::string("\"") + kK4 + "\"");
  return s;
}

// Replaces the first occurrence of `from` (which must be there: a test that edits nothing could not fail).
inline std::string edit(const std::string& s, const std::string& from, const std::string& to) {
  const size_t p = s.find(from);
  if (p == std::string::npos) {
    ADD_FAILURE() << "edit: \"" << from << "\" not in the config";
    return s;
  }
  std::string o = s;
  o.replace(p, from.size(), to);
  return o;
}

// 1-based line of the "#@" marker, 0 when there is none.
inline int marker_line(const std::string& s) {
  const size_t p = s.find("#@");
  if (p == std::string::npos) return 0;
  return 1 + int(std::count(s.begin(), s.begin() + long(p), '\n'));
}

class Config : public ::testing::Test {
 protected:
  void SetUp() override {
    dir = fs::temp_directory_path() /
          ("mg-config-test-" + std::to_string(::getpid()) + "-" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir);
    write("pmd.toml", base_pmd());
  }
  void TearDown() override { fs::remove_all(dir); }

  std::string write(const std::string& name, const std::string& text) {
    const std::string p = (dir / name).string();
    fs::create_directories(fs::path(p).parent_path());
    std::ofstream(p, std::ios::binary) << text;
    return p;
  }
  // A key file as the loader accepts one: no access for group or others.
  std::string write_key(const std::string& name, const std::string& text, fs::perms mode = fs::perms::owner_read |
                                                                                          fs::perms::owner_write) {
    const std::string p = write(name, text);
    fs::permissions(p, mode);
    return p;
  }

  std::optional<Gateway> gw(const std::string& text, std::vector<Error>* errs, const std::string& name = "gw.toml") {
    return load_gateway(write(name, text), errs);
  }
  std::optional<PmdConfig> pmd(const std::string& text, std::vector<Error>* errs, const std::string& name = "p.toml") {
    return load_pmd(write(name, text), errs);
  }

  // The error of `rule` in errs; checks its file, the marked line and that the message says `what`.
  void expect_rule(const std::vector<Error>& errs, const std::string& rule, const std::string& file,
                   const std::string& text, const std::string& what) {
    std::string all;
    for (const Error& e : errs) all += "  " + e.format() + "\n";
    const int want_line = marker_line(text);
    const Error* hit = nullptr;
    for (const Error& e : errs)
      if (e.rule == rule && (want_line == 0 || e.line == want_line)) hit = &e;
    ASSERT_NE(hit, nullptr) << "no [" << rule << "] error at line " << want_line << "; got:\n" << all;
    EXPECT_EQ(hit->file, file);
    EXPECT_NE(hit->message.find(what), std::string::npos) << "message: " << hit->message;
    const std::string f = hit->format();
    // Without a marker: any line (the test did not pin one); a problem with no single line has none ("file: ").
    const std::string where =
        want_line ? file + ":" + std::to_string(want_line) + ": " : file + (hit->line ? ":" : ": ");
    EXPECT_EQ(f.rfind(where, 0), 0u) << f;
    EXPECT_NE(f.find("[" + rule + "]"), std::string::npos) << f;
  }

  // Loads a bad gateway file and expects the rule.
  void bad_gw(const std::string& text, const std::string& rule, const std::string& what) {
    std::vector<Error> errs;
    const auto g = gw(text, &errs);
    EXPECT_FALSE(g.has_value()) << "loaded although [" << rule << "] was expected";
    expect_rule(errs, rule, (dir / "gw.toml").string(), text, what);
  }
  void bad_pmd(const std::string& text, const std::string& rule, const std::string& what) {
    std::vector<Error> errs;
    const auto p = pmd(text, &errs);
    EXPECT_FALSE(p.has_value()) << "loaded although [" << rule << "] was expected";
    expect_rule(errs, rule, (dir / "p.toml").string(), text, what);
  }
  Gateway good_gw(const std::string& text) {
    std::vector<Error> errs;
    auto g = gw(text, &errs);
    std::string all;
    for (const Error& e : errs) all += "  " + e.format() + "\n";
    EXPECT_TRUE(g.has_value()) << all;
    EXPECT_TRUE(errs.empty()) << all;
    return g ? std::move(*g) : Gateway{};
  }

  fs::path dir;
};

}  // namespace mg::config::test
