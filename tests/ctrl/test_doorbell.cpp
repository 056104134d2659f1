// Block::wait_command: the consumer sleeps on the doorbell and a producer (another thread or process) wakes it.
// Bounds are generous: the machine is shared, only "woken long before the timeout" is asserted.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <thread>

#include "ctrl/ctrl.h"
#include "ctrl_test_util.h"

using namespace mg::ctrl;
using Clock = std::chrono::steady_clock;

namespace {

std::string unique_name() { return mg::ctrl::testing::unique_name('d'); }

Command nop(Block& b) {
  Command c = make_command(Op::kNop, 0, 0, 0);
  c.request_id = b.next_request_id();
  return c;
}

// A block created by the gateway side and opened by a client, as meshgate and meshgatectl do.
void open_pair(std::unique_ptr<Block>* owner, std::unique_ptr<Block>* client) {
  const std::string name = unique_name();
  std::string err;
  *owner = Block::create(name, &err);
  ASSERT_TRUE(*owner) << err;
  SubmitError code;
  *client = Block::open(name, &err, &code);
  ASSERT_TRUE(*client) << err;
}

}  // namespace

TEST(CtrlDoorbell, NothingPendingTimesOut) {
  std::string err;
  auto owner = Block::create(unique_name(), &err);
  ASSERT_TRUE(owner) << err;
  EXPECT_FALSE(owner->wait_command(0));
  const auto t0 = Clock::now();
  EXPECT_FALSE(owner->wait_command(50000));  // 50 ms
  EXPECT_GE(Clock::now() - t0, std::chrono::milliseconds(50));
}

TEST(CtrlDoorbell, PublishedBeforeTheWaitReturnsAtOnce) {
  std::string err;
  auto owner = Block::create(unique_name(), &err);
  ASSERT_TRUE(owner) << err;
  const Command c = nop(*owner);
  ASSERT_EQ(owner->submit(c), SubmitError::kOk);
  const auto t0 = Clock::now();
  EXPECT_TRUE(owner->wait_command(5000000));
  EXPECT_TRUE(owner->wait_command(0));  // still there: waiting does not take it
  EXPECT_LT(Clock::now() - t0, std::chrono::seconds(4));
  Command out{};
  ASSERT_TRUE(owner->poll(&out));
  EXPECT_EQ(out.request_id, c.request_id);
  EXPECT_FALSE(owner->wait_command(0));
}

TEST(CtrlDoorbell, SubmitFromAnotherThreadWakesTheConsumer) {
  std::unique_ptr<Block> owner, client;
  ASSERT_NO_FATAL_FAILURE(open_pair(&owner, &client));
  for (int round = 0; round < 3; ++round) {
    SCOPED_TRACE(round);
    std::atomic<bool> woke{false};
    std::atomic<int64_t> waited_ms{-1};
    std::thread consumer([&] {
      const auto t0 = Clock::now();
      woke = owner->wait_command(5000000);  // 5 s
      waited_ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count();
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(100));  // most likely asleep by now (either way is valid)
    const Command c = nop(*client);
    ASSERT_EQ(client->submit(c), SubmitError::kOk);
    consumer.join();
    EXPECT_TRUE(woke.load());
    EXPECT_LT(waited_ms.load(), 4000) << "woken by the timeout, not by the doorbell";
    Command out{};
    ASSERT_TRUE(owner->poll(&out));
    EXPECT_EQ(out.request_id, c.request_id);
  }
}

// The producer is another process (the futex is not process-private) and dies after publishing without advancing
// the tail (submit_partial kPublished): it rang, so the consumer wakes and sees the command.
TEST(CtrlDoorbell, SubmitFromAnotherProcessWakesTheConsumer) {
  const std::string name = unique_name();
  std::string err;
  auto owner = Block::create(name, &err);
  ASSERT_TRUE(owner) << err;
  for (const bool partial : {false, true}) {
    SCOPED_TRACE(partial);
    const uint64_t id = owner->next_request_id();
    std::atomic<bool> woke{false};
    std::atomic<int64_t> waited_ms{-1};
    std::thread consumer([&] {
      const auto t0 = Clock::now();
      woke = owner->wait_command(5000000);
      waited_ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count();
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    const pid_t pid = fork();
    if (pid == 0) {
      std::string e;
      SubmitError code;
      auto client = Block::open(name, &e, &code);
      if (!client) _exit(1);
      Command c = make_command(Op::kNop, 0, 0, 0);
      c.request_id = id;
      if (partial) {
        client->submit_partial(c, Block::SubmitStop::kPublished);
        _exit(0);
      }
      _exit(client->submit(c) == SubmitError::kOk ? 0 : 2);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    consumer.join();
    EXPECT_TRUE(woke.load());
    EXPECT_LT(waited_ms.load(), 4000) << "woken by the timeout, not by the doorbell";
    Command out{};
    ASSERT_TRUE(owner->poll(&out));
    EXPECT_EQ(out.request_id, id);
  }
}

// Many wake-ups in a row, producer and consumer racing: no command is left waiting for a timeout.
TEST(CtrlDoorbell, NoLostWakeups) {
  std::unique_ptr<Block> owner, client;
  ASSERT_NO_FATAL_FAILURE(open_pair(&owner, &client));
  constexpr int kCommands = 2000;
  std::atomic<int> got{0}, slow{0};
  std::thread consumer([&] {
    Command out{};
    while (got < kCommands) {
      const auto t0 = Clock::now();
      if (!owner->wait_command(2000000)) {  // 2 s: only a lost wake-up gets here
        ++slow;
        continue;
      }
      if (Clock::now() - t0 > std::chrono::milliseconds(1500)) ++slow;
      while (owner->poll(&out)) ++got;
    }
  });
  for (int i = 0; i < kCommands; ++i) {
    while (client->submit(nop(*client)) == SubmitError::kFull) std::this_thread::yield();
    if (i % 64 == 0) std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  consumer.join();
  EXPECT_EQ(got.load(), kCommands);
  EXPECT_EQ(slow.load(), 0);
}
