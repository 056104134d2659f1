// `key_file` is read like a secret, not like any file: regular files only (a FIFO must not hang the loader, also
// on `instance reset`, /dev/zero must not fill its memory), at most crypto::kMaxKeyFileBytes, owned by root or by
// the user loading it, no access for group or others; each refusal names the file and says why.
//
// Readers that hang or grow without bound are run in a child process with an alarm and a memory limit, so that a
// regression fails the test instead of hanging the suite or the machine.
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <string>

#include "config/reader.h"
#include "config_fixture.h"
#include "crypto/key_file.h"

namespace mg::config {
namespace {

using namespace mg::config::test;

class KeyFile : public Config {
 protected:
  // The base gateway with tunnel gw-a-d1's outbound key read from `path`, marked for the error line.
  std::string with_key_file(const std::string& path) {
    return edit(gateway(), "key = \"" + std::string(kK1) + "\"", "key_file = \"" + path + "\" #@");
  }
  std::string write_key(const std::string& name, const std::string& text, mode_t mode) {
    const std::string p = write(name, text);
    EXPECT_EQ(::chmod(p.c_str(), mode), 0);
    return p;
  }
  using Config::write_key;
};

// Runs fn in a child with `seconds` to finish and about 256 MiB of data; true when it returned true in time.
template <class F>
bool bounded(unsigned seconds, F&& fn) {
  const pid_t pid = fork();
  if (pid == 0) {
#if !defined(__SANITIZE_ADDRESS__)  // ASan reserves far more address space than any limit that would help here
    const rlimit lim{256u << 20, 256u << 20};
    setrlimit(RLIMIT_DATA, &lim);
#endif
    alarm(seconds);
    bool ok = false;
    try {
      ok = fn();
    } catch (...) {  // e.g. bad_alloc at the memory limit: the child must never return into the test runner
      _exit(3);
    }
    _exit(ok ? 0 : 1);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  if (WIFSIGNALED(status)) ADD_FAILURE() << "child killed by signal " << WTERMSIG(status) << " (hang or crash)";
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

// The load fails with rule key-file at the marked line and a message holding every one of `what`.
bool refused(const std::string& text, const std::string& file, std::initializer_list<std::string> what) {
  std::vector<Error> errs;
  if (load_gateway(file, &errs)) return false;
  for (const Error& e : errs) {
    if (e.rule != "key-file" || e.line != marker_line(text)) continue;
    bool all = true;
    for (const auto& w : what) all &= e.message.find(w) != std::string::npos;
    if (all) return true;
    std::fprintf(stderr, "message: %s\n", e.message.c_str());
  }
  for (const Error& e : errs) std::fprintf(stderr, "  %s\n", e.format().c_str());
  return false;
}

TEST_F(KeyFile, FifoIsRefusedWithoutWaitingForAWriter) {
  const std::string fifo = (dir / "key.fifo").string();
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  const std::string text = with_key_file(fifo);
  const std::string file = write("gw.toml", text);
  EXPECT_TRUE(bounded(10, [&] { return refused(text, file, {fifo, "is a FIFO, not a regular file"}); }));
}

TEST_F(KeyFile, DevZeroIsRefusedWithoutReadingIt) {
  const std::string text = with_key_file("/dev/zero");
  const std::string file = write("gw.toml", text);
  EXPECT_TRUE(bounded(20, [&] { return refused(text, file, {"/dev/zero", "is a character device"}); }));
}

TEST_F(KeyFile, DirectoryIsRefused) {
  std::filesystem::create_directories(dir / "keys.d");
  bad_gw(with_key_file("keys.d"), "key-file", "is a directory, not a regular file");
}

TEST_F(KeyFile, TooLongIsRefused) {
  // Hex text padded with white space past the bound: a well-formed key in a file that is not a key file.
  write_key("long.key", std::string(kK1) + std::string(crypto::kMaxKeyFileBytes, ' '), 0600);
  bad_gw(with_key_file("long.key"), "key-file", "more than " + std::to_string(crypto::kMaxKeyFileBytes) + "; a key file holds one key");
  // Exactly at the bound is fine.
  std::string at = kK1;
  at.resize(crypto::kMaxKeyFileBytes, '\n');
  write_key("at.key", at, 0600);
  good_gw(edit(gateway(), "key = \"" + std::string(kK1) + "\"", "key_file = \"at.key\""));
}

TEST_F(KeyFile, GroupOrOtherAccessIsRefused) {
  for (mode_t m : {0644, 0640, 0604, 0620, 0602, 0660, 0666}) {
    char name[32];
    std::snprintf(name, sizeof name, "k%04o.key", unsigned(m));
    write_key(name, std::string(kK1) + "\n", m);
    char want[16];
    std::snprintf(want, sizeof want, "has mode %04o", unsigned(m));
    bad_gw(with_key_file(name), "key-file", std::string(want) + ": group or others may read or change it");
  }
  // The owner alone: read-write or read-only.
  for (mode_t m : {0600, 0400}) {
    write_key("ok.key", std::string(kK1) + "\n", m);
    good_gw(edit(gateway(), "key = \"" + std::string(kK1) + "\"", "key_file = \"ok.key\""));
    ::unlink((dir / "ok.key").c_str());
  }
}

TEST_F(KeyFile, AnotherUsersFileIsRefused) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to give a file to another user";
  const std::string p = write_key("nobody.key", std::string(kK1) + "\n", 0600);
  ASSERT_EQ(::chown(p.c_str(), 65534, 65534), 0);
  bad_gw(with_key_file("nobody.key"), "key-file", "is owned by uid 65534, neither root nor the user reading it");
  // The messages name the file: the path as resolved against the gateway file's directory.
  std::vector<Error> errs;
  EXPECT_FALSE(gw(with_key_file("nobody.key"), &errs));
  ASSERT_FALSE(errs.empty());
  EXPECT_NE(errs[0].message.find(p), std::string::npos) << errs[0].message;
}

TEST_F(KeyFile, SymlinkToAGoodFileIsFollowed) {
  // Secret stores (Kubernetes, systemd credentials) hand out links; the checks apply to the file reached.
  const std::string p = write_key("real.key", std::string(kK1) + "\n", 0600);
  std::filesystem::create_symlink(p, dir / "link.key");
  const Gateway g = good_gw(edit(gateway(), "key = \"" + std::string(kK1) + "\"", "key_file = \"link.key\""));
  EXPECT_EQ(g.tunnels[0].out.keymat.size(), 20u);
  // A link to a FIFO is still a FIFO.
  ASSERT_EQ(mkfifo((dir / "k.fifo").c_str(), 0600), 0);
  std::filesystem::create_symlink(dir / "k.fifo", dir / "fifo-link.key");
  const std::string text = with_key_file("fifo-link.key");
  const std::string file = write("gw.toml", text);
  EXPECT_TRUE(bounded(10, [&] { return refused(text, file, {"is a FIFO"}); }));
}

}  // namespace
}  // namespace mg::config

namespace mg::config::test {
namespace {

// A key written into the wrong field: the error quotes the value, without the key (reader.h hide_hex_runs).
TEST_F(Config, KeyInAnotherFieldIsNotQuoted) {
  const std::string key = "cac50a7dade96ed1ec61a4e4385bd81f7acb2005";
  const std::string colons = "ca:c5:0a:7d:ad:e9:6e:d1:ec:61";
  for (const std::string& k : {key, colons}) {
    std::vector<Error> errors;
    const std::string text = edit(gateway(), "cipher = \"aes-gcm-128\"", "cipher = \"" + k + "\"");
    const std::string path = write("k.toml", text);
    EXPECT_FALSE(load_gateway(path, &errors).has_value());
    ASSERT_FALSE(errors.empty());
    for (const Error& e : errors) {
      EXPECT_EQ(e.format().find(k.substr(0, 16)), std::string::npos) << e.format();
      if (e.rule == "cipher") EXPECT_NE(e.message.find("hex digits hidden"), std::string::npos) << e.message;
    }
  }
  // What stays readable: MACs, SPIs, IPv6 addresses, short hex.
  EXPECT_EQ(detail::hide_hex_runs("mac 02:00:00:00:00:01 spi 0x00001002 ip 2001:0db8:0000:0000:0000:0000:0000:0001"),
            "mac 02:00:00:00:00:01 spi 0x00001002 ip 2001:0db8:0000:0000:0000:0000:0000:0001");
  EXPECT_EQ(detail::hide_hex_runs("x 0123456789abcdef y"), "x <16 hex digits hidden> y");
  EXPECT_EQ(detail::hide_hex_runs("0123456789abcde"), "0123456789abcde");
}

}  // namespace
}  // namespace mg::config::test
