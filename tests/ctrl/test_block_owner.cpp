// A control block is trusted only when it is the gateway's: /dev/shm is writable by every local user, so anyone can
// put a file at /dev/shm/meshgate.<name> before the gateway starts (to stop it, or to show operators a forged
// mirror) or make one writable by all. The gateway (Block::create) replaces a stale block only when it is its own
// (its uid, mode 0600) and otherwise refuses with the file, owner and mode named; clients (Block::open, and so
// meshgatectl) refuse a block not owned by root or by themselves, or writable by group or others.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <string>

#include "ctrl/ctrl.h"
#include "ctrl_test_util.h"

using namespace mg::ctrl;

namespace {

constexpr uid_t kNobody = 65534;

std::string unique_name() { return mg::ctrl::testing::unique_name('o'); }

// Removes the block at the end of a test whatever its owner (Block's destructor leaves a file it does not own).
struct Unlink {
  std::string name;
  ~Unlink() { shm_unlink(("/meshgate." + name).c_str()); }
};

void chown_block(const std::string& name, uid_t uid) {
  ASSERT_EQ(::chown(Block::path_for(name).c_str(), uid, uid), 0) << std::strerror(errno);
}
void chmod_block(const std::string& name, mode_t m) {
  ASSERT_EQ(::chmod(Block::path_for(name).c_str(), m), 0) << std::strerror(errno);
}

// A complete block whose recorded owner is a process that has exited: what a crashed gateway leaves.
void make_stale(const std::string& name) {
  const pid_t child = fork();
  if (child == 0) {
    std::string e;
    auto b = Block::create(name, &e);
    _exit(b ? 0 : 1);  // no destructor: the block stays
  }
  int st = 0;
  waitpid(child, &st, 0);
  ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

void expect_has(const std::string& s, const std::string& what) {
  EXPECT_NE(s.find(what), std::string::npos) << "\"" << what << "\" not in: " << s;
}

#define NEED_ROOT() \
  if (geteuid() != 0) GTEST_SKIP() << "needs root to give a block to another user"

}  // namespace

// Another user's block with a live owner pid (the forger's own process, here this test): clients do not read it,
// the gateway says whose file is in the way.
TEST(BlockOwner, AnotherUsersLiveBlockIsRefusedByBoth) {
  NEED_ROOT();
  const std::string name = unique_name();
  Unlink cleanup{name};
  std::string err;
  auto forged = Block::create(name, &err);
  ASSERT_TRUE(forged) << err;
  chown_block(name, kNobody);

  SubmitError code = SubmitError::kOk;
  EXPECT_EQ(Block::open(name, &err, &code), nullptr) << "a client trusted another user's block";
  EXPECT_EQ(code, SubmitError::kBadBlock);
  expect_has(err, Block::path_for(name));
  expect_has(err, "owned by uid 65534");

  err.clear();
  EXPECT_EQ(Block::create(name, &err), nullptr);
  expect_has(err, Block::path_for(name));
  expect_has(err, "owner uid 65534");
  expect_has(err, "mode 0600");
}

// Another user's block whose recorded owner is dead: before, the gateway took it for its own stale block.
TEST(BlockOwner, AnotherUsersStaleBlockIsNotReplaced) {
  NEED_ROOT();
  const std::string name = unique_name();
  Unlink cleanup{name};
  make_stale(name);
  chown_block(name, kNobody);
  struct stat before {};
  ASSERT_EQ(stat(Block::path_for(name).c_str(), &before), 0);

  std::string err;
  EXPECT_EQ(Block::create(name, &err), nullptr) << "replaced another user's file";
  expect_has(err, Block::path_for(name));
  expect_has(err, "owner uid 65534");
  expect_has(err, "mode 0600");
  struct stat after {};
  ASSERT_EQ(stat(Block::path_for(name).c_str(), &after), 0);
  EXPECT_EQ(after.st_ino, before.st_ino) << "the file was replaced";
  EXPECT_EQ(after.st_uid, kNobody);
}

// A block of ours that others may write: anyone could have changed the mirror or the header. Clients refuse it;
// the gateway refuses to take it over (it is not what it creates) even when it is stale.
TEST(BlockOwner, WorldWritableBlockIsRefusedByBoth) {
  const std::string name = unique_name();
  Unlink cleanup{name};
  std::string err;
  {
    auto owner = Block::create(name, &err);
    ASSERT_TRUE(owner) << err;
    chmod_block(name, 0666);
    SubmitError code = SubmitError::kOk;
    EXPECT_EQ(Block::open(name, &err, &code), nullptr) << "a client trusted a world-writable block";
    EXPECT_EQ(code, SubmitError::kBadBlock);
    expect_has(err, Block::path_for(name));
    expect_has(err, "mode 0666");
    // Group-writable is as bad.
    chmod_block(name, 0620);
    EXPECT_EQ(Block::open(name, &err, &code), nullptr);
    expect_has(err, "mode 0620");
    chmod_block(name, 0600);
    EXPECT_TRUE(Block::open(name, &err, &code)) << err;
  }
  make_stale(name);
  chmod_block(name, 0666);
  err.clear();
  EXPECT_EQ(Block::create(name, &err), nullptr) << "took over a world-writable block";
  expect_has(err, Block::path_for(name));
  expect_has(err, "mode 0666");
  expect_has(err, "owner uid " + std::to_string(geteuid()));
}

// Our own stale block with our mode is still replaced.
TEST(BlockOwner, OwnStaleBlockIsReplaced) {
  const std::string name = unique_name();
  Unlink cleanup{name};
  make_stale(name);
  std::string err;
  auto owner = Block::create(name, &err);
  ASSERT_TRUE(owner) << err;
  struct stat st {};
  ASSERT_EQ(stat(Block::path_for(name).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  EXPECT_EQ(st.st_uid, geteuid());
  SubmitError code = SubmitError::kOk;
  EXPECT_TRUE(Block::open(name, &err, &code)) << err;
}
