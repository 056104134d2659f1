// mg::ctrl: block lifecycle, ring protocol (full, many producers, killed producers), replies, mirror seqlock.
#include "ctrl/ctrl.h"
#include "ctrl_test_util.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <fstream>
#include <sstream>
#include <set>
#include <string>
#include <thread>
#include <vector>

using namespace mg::ctrl;

namespace {

std::string unique_name() { return mg::ctrl::testing::unique_name('t'); }

Command make_cmd(Block& b, Op op, uint32_t target, uint32_t value, uint32_t deadline = 0) {
  Command c{};
  c.version = kLayoutVersion;
  c.length = sizeof(Command);
  c.request_id = b.next_request_id();
  c.op = uint16_t(op);
  c.target = target;
  c.value = value;
  c.deadline_ms = deadline;
  return c;
}

// Forks a child that runs f() and _exits without any cleanup; returns its exit status.
template <class F>
int in_child(F f) {
  const pid_t pid = fork();
  if (pid == 0) {
    f();
    _exit(0);
  }
  int st = 0;
  waitpid(pid, &st, 0);
  return st;
}

// The data plane's block and one client's view of it.
struct OwnerAndClient {
  std::unique_ptr<Block> owner, client;
  ::testing::AssertionResult make(const std::string& name) {
    std::string err;
    SubmitError code;
    owner = Block::create(name, &err);
    if (owner) client = Block::open(name, &err, &code);
    if (!owner || !client) return ::testing::AssertionFailure() << err;
    return ::testing::AssertionSuccess();
  }
};

bool file_exists(const std::string& p) {
  struct stat st{};
  return stat(p.c_str(), &st) == 0;
}

void pwrite_at(const std::string& path, off_t off, const void* p, size_t n) {
  const int fd = ::open(path.c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(pwrite(fd, p, n, off), ssize_t(n));
  close(fd);
}

}  // namespace

TEST(CtrlBlock, NamesAndPaths) {
  EXPECT_EQ(Block::path_for("gw-1_A"), "/dev/shm/meshgate.gw-1_A");
  EXPECT_EQ(Block::path_for(""), "");
  EXPECT_EQ(Block::path_for("a/b"), "");
  EXPECT_EQ(Block::path_for("../x"), "");
  EXPECT_EQ(Block::path_for("a b"), "");
  EXPECT_EQ(Block::path_for(std::string(32, 'x')), "/dev/shm/meshgate." + std::string(32, 'x'));
  EXPECT_EQ(Block::path_for(std::string(33, 'x')), "");
  std::string err;
  EXPECT_EQ(Block::create("bad/name", &err), nullptr);
  EXPECT_NE(err.find("bad gateway name"), std::string::npos);
  SubmitError code = SubmitError::kOk;
  EXPECT_EQ(Block::open("bad name", &err, &code), nullptr);
  EXPECT_EQ(code, SubmitError::kBadBlock);
}

TEST(CtrlBlock, CreateOpenOwner) {
  const std::string name = unique_name();
  std::string err;
  auto owner = Block::create(name, &err);
  ASSERT_TRUE(owner) << err;
  EXPECT_TRUE(owner->owner());
  EXPECT_EQ(owner->owner_pid(), getpid());
  EXPECT_TRUE(owner->owner_alive());
  struct stat st{};
  ASSERT_EQ(stat(Block::path_for(name).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  SubmitError code = SubmitError::kFull;
  auto client = Block::open(name, &err, &code);
  ASSERT_TRUE(client) << err;
  EXPECT_EQ(code, SubmitError::kOk);
  EXPECT_FALSE(client->owner());
  EXPECT_EQ(client->owner_pid(), getpid());
  EXPECT_TRUE(client->owner_alive());
  owner->set_generation(42);
  EXPECT_EQ(client->generation(), 42u);
  EXPECT_GT(client->start_time_ns(), 0u);

  // A second create while the owner lives is refused, naming the path and the pid.
  auto second = Block::create(name, &err);
  EXPECT_EQ(second, nullptr);
  EXPECT_NE(err.find(Block::path_for(name)), std::string::npos) << err;
  EXPECT_NE(err.find(std::to_string(getpid())), std::string::npos) << err;
  EXPECT_TRUE(owner->owner_alive());

  // The owner unlinks on destruction; a client still mapped sees the gateway gone.
  owner.reset();
  EXPECT_FALSE(file_exists(Block::path_for(name)));
  EXPECT_FALSE(client->owner_alive());
  EXPECT_EQ(client->submit(make_cmd(*client, Op::kNop, 0, 0)), SubmitError::kNoGateway);
  client.reset();
  EXPECT_EQ(Block::open(name, &err, &code), nullptr);
  EXPECT_EQ(code, SubmitError::kNoGateway);
  EXPECT_NE(err.find("no gateway is running"), std::string::npos) << err;
}

TEST(CtrlBlock, StaleBlockReplacedAndReportedAsNoGateway) {
  const std::string name = unique_name();
  pid_t child = fork();
  if (child == 0) {
    std::string e;
    auto b = Block::create(name, &e);
    if (!b) _exit(1);
    _exit(0);  // no destructor: the block stays behind with a dead owner
  }
  int st = 0;
  waitpid(child, &st, 0);
  ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  ASSERT_TRUE(file_exists(Block::path_for(name)));

  std::string err;
  SubmitError code = SubmitError::kOk;
  EXPECT_EQ(Block::open(name, &err, &code), nullptr);
  EXPECT_EQ(code, SubmitError::kNoGateway);
  EXPECT_EQ(err, "no gateway is running: " + Block::path_for(name) + " is stale (pid " + std::to_string(child) +
                     ")");

  auto owner = Block::create(name, &err);
  ASSERT_TRUE(owner) << err;
  EXPECT_EQ(owner->owner_pid(), getpid());
  auto client = Block::open(name, &err, &code);
  ASSERT_TRUE(client) << err;
  EXPECT_EQ(client->owner_pid(), getpid());
}

// The owner pid is alive but is another process now (pid reuse, e.g. a restarted container): stale.
TEST(CtrlBlock, ReusedPidIsStale) {
  const std::string name = unique_name();
  const std::string path = Block::path_for(name);
  std::string err;
  auto old_owner = Block::create(name, &err);
  ASSERT_TRUE(old_owner) << err;
  uint32_t ticks = 0;
  {
    const int fd = ::open(path.c_str(), O_RDONLY);
    ASSERT_EQ(pread(fd, &ticks, 4, 28), 4);
    close(fd);
  }
  ASSERT_NE(ticks, 0u) << "no /proc start time for this process";
  {
    std::ifstream f("/proc/self/stat");
    std::string all((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    std::istringstream rest(all.substr(all.rfind(')') + 2));
    std::vector<std::string> fields;
    for (std::string x; rest >> x;) fields.push_back(x);
    ASSERT_GT(fields.size(), 19u);
    EXPECT_EQ(ticks, uint32_t(std::stoull(fields[19])));  // field 22, starttime
  }
  const uint32_t other = ticks + 1;
  pwrite_at(path, 28, &other, 4);
  EXPECT_FALSE(old_owner->owner_alive());
  SubmitError code = SubmitError::kOk;
  EXPECT_EQ(Block::open(name, &err, &code), nullptr);
  EXPECT_EQ(code, SubmitError::kNoGateway);
  EXPECT_NE(err.find("is stale (pid " + std::to_string(getpid()) + ")"), std::string::npos) << err;
  auto owner = Block::create(name, &err);
  ASSERT_TRUE(owner) << err;
  auto client = Block::open(name, &err, &code);
  ASSERT_TRUE(client) << err;
  EXPECT_TRUE(client->owner_alive());
  old_owner.reset();  // must not unlink the new block
  EXPECT_TRUE(file_exists(path));
}

TEST(CtrlBlock, StaleEmptyFileIsReplaced) {
  const std::string name = unique_name();
  const std::string path = Block::path_for(name);
  const int fd = ::open(path.c_str(), O_CREAT | O_RDWR | O_EXCL, 0600);  // a creator killed before ftruncate
  ASSERT_GE(fd, 0);
  close(fd);
  std::string err;
  SubmitError code = SubmitError::kOk;
  EXPECT_EQ(Block::open(name, &err, &code), nullptr);
  EXPECT_EQ(code, SubmitError::kNoGateway);
  auto owner = Block::create(name, &err);
  ASSERT_TRUE(owner) << err;
}

TEST(CtrlBlock, BadMagicVersionSize) {
  const std::string name = unique_name();
  const std::string path = Block::path_for(name);
  std::string err;
  auto owner = Block::create(name, &err);
  ASSERT_TRUE(owner) << err;
  SubmitError code = SubmitError::kOk;

  const uint64_t bad_magic = 0x1122334455667788ull;
  pwrite_at(path, 0, &bad_magic, 8);
  EXPECT_EQ(Block::open(name, &err, &code), nullptr);
  EXPECT_EQ(code, SubmitError::kBadBlock);
  EXPECT_NE(err.find("magic"), std::string::npos) << err;
  pwrite_at(path, 0, &kMagic, 8);

  const uint32_t bad_version = kLayoutVersion + 1;
  pwrite_at(path, 8, &bad_version, 4);
  code = SubmitError::kOk;
  EXPECT_EQ(Block::open(name, &err, &code), nullptr);
  EXPECT_EQ(code, SubmitError::kBadBlock);
  EXPECT_NE(err.find("layout version " + std::to_string(bad_version)), std::string::npos) << err;
  pwrite_at(path, 8, &kLayoutVersion, 4);

  uint64_t size = 0;
  {
    const int fd = ::open(path.c_str(), O_RDONLY);
    ASSERT_EQ(pread(fd, &size, 8, 16), 8);
    close(fd);
  }
  const uint64_t bad_size = size + 64;
  pwrite_at(path, 16, &bad_size, 8);
  code = SubmitError::kOk;
  EXPECT_EQ(Block::open(name, &err, &code), nullptr);
  EXPECT_EQ(code, SubmitError::kBadBlock);
  EXPECT_NE(err.find("size"), std::string::npos) << err;
  pwrite_at(path, 16, &size, 8);

  auto client = Block::open(name, &err, &code);
  EXPECT_TRUE(client) << err;
}

TEST(CtrlRing, RoundTripPreservesEveryField) {
  OwnerAndClient oc;
  ASSERT_TRUE(oc.make(unique_name()));
  auto& owner = oc.owner;
  auto& client = oc.client;

  Command c{};
  c.version = 0xdeadbeef;
  c.length = 12345;
  c.request_id = client->next_request_id();
  c.op = 0xabcd;
  c.flags = 0x1234;
  c.target = 77;
  c.value = 0xfffffffe;
  c.deadline_ms = 3600000;
  for (size_t i = 0; i < sizeof c.reserved; ++i) c.reserved[i] = uint8_t(i * 7 + 1);
  c.client_pid = -5;  // claims travel as they are
  c.client_uid = 0xfffffffe;
  Command out{};
  EXPECT_FALSE(owner->poll(&out));
  ASSERT_EQ(client->submit(c), SubmitError::kOk);
  EXPECT_EQ(owner->pending(), 1u);
  ASSERT_TRUE(owner->poll(&out));
  EXPECT_EQ(std::memcmp(&out, &c, sizeof c), 0);
  EXPECT_FALSE(owner->poll(&out));
  EXPECT_EQ(owner->pending(), 0u);

  Reply r{};
  r.request_id = c.request_id;
  r.status = Status::kRefused;
  r.generation = 9;
  copy_name(r.message, sizeof r.message, "not now");
  owner->reply(r);
  auto got = client->wait_reply(c.request_id, 100);
  ASSERT_TRUE(got);
  EXPECT_EQ(got->request_id, c.request_id);
  EXPECT_EQ(got->status, Status::kRefused);
  EXPECT_EQ(got->generation, 9u);
  EXPECT_STREQ(got->message, "not now");
  EXPECT_STREQ(to_string(Status::kRefused), "refused");
}

TEST(CtrlRing, FullIsImmediateThenUsableAgain) {
  const std::string name = unique_name();
  std::string err;
  auto owner = Block::create(name, &err);
  ASSERT_TRUE(owner) << err;
  std::vector<uint64_t> ids;
  for (uint32_t i = 0; i < kRingSlots; ++i) {
    auto c = make_cmd(*owner, Op::kTunnelWeight, i, i);
    ids.push_back(c.request_id);
    ASSERT_EQ(owner->submit(c), SubmitError::kOk) << i;
  }
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(owner->submit(make_cmd(*owner, Op::kNop, 0, 0)), SubmitError::kFull);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(50));
  SubmitError e = SubmitError::kOk;
  EXPECT_FALSE(owner->call(Op::kNop, 0, 0, 0, 1000, &e));
  EXPECT_EQ(e, SubmitError::kFull);

  Command out{};
  ASSERT_TRUE(owner->poll(&out));
  EXPECT_EQ(out.request_id, ids[0]);
  auto c = make_cmd(*owner, Op::kNop, 0, 0);
  EXPECT_EQ(owner->submit(c), SubmitError::kOk);
  EXPECT_EQ(owner->submit(make_cmd(*owner, Op::kNop, 0, 0)), SubmitError::kFull);
  for (uint32_t i = 1; i < kRingSlots; ++i) {
    ASSERT_TRUE(owner->poll(&out));
    EXPECT_EQ(out.request_id, ids[i]);
    EXPECT_EQ(out.target, i);
  }
  ASSERT_TRUE(owner->poll(&out));
  EXPECT_EQ(out.request_id, c.request_id);
  EXPECT_FALSE(owner->poll(&out));
  // Several more laps.
  for (uint32_t i = 0; i < 5 * kRingSlots; ++i) {
    auto d = make_cmd(*owner, Op::kNop, i, 0);
    ASSERT_EQ(owner->submit(d), SubmitError::kOk);
    ASSERT_TRUE(owner->poll(&out));
    EXPECT_EQ(out.request_id, d.request_id);
  }
}

TEST(CtrlRing, ManyProducersEveryCommandOnce) {
  const std::string name = unique_name();
  std::string err;
  auto owner = Block::create(name, &err);
  ASSERT_TRUE(owner) << err;
  constexpr uint32_t kThreads = 4, kPer = 10000;
  std::vector<std::unique_ptr<Block>> clients;
  for (uint32_t t = 0; t < kThreads; ++t) {
    SubmitError code;
    clients.push_back(Block::open(name, &err, &code));
    ASSERT_TRUE(clients.back()) << err;
  }
  std::atomic<bool> stop{false};
  std::vector<uint8_t> seen(kThreads * kPer, 0);
  std::atomic<uint64_t> dup{0}, bad{0}, full{0};
  std::thread consumer([&] {
    Command c{};
    uint64_t got = 0;
    while (got < kThreads * kPer) {
      if (!owner->poll(&c)) {
        if (stop.load()) break;
        std::this_thread::yield();
        continue;
      }
      ++got;
      const uint64_t k = uint64_t(c.target) * kPer + c.value;
      if (c.target >= kThreads || c.value >= kPer || c.deadline_ms != c.target * 7 + c.value) {
        ++bad;
        continue;
      }
      if (seen[k]++) ++dup;
    }
  });
  std::vector<std::thread> producers;
  for (uint32_t t = 0; t < kThreads; ++t)
    producers.emplace_back([&, t] {
      for (uint32_t i = 0; i < kPer; ++i) {
        auto c = make_cmd(*clients[t], Op::kTunnelWeight, t, i, t * 7 + i);
        while (clients[t]->submit(c) == SubmitError::kFull) {
          ++full;
          std::this_thread::yield();
        }
      }
    });
  for (auto& p : producers) p.join();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (owner->pending() && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
  stop = true;
  consumer.join();
  EXPECT_EQ(dup.load(), 0u);
  EXPECT_EQ(bad.load(), 0u);
  size_t missing = 0;
  for (auto s : seen) missing += s == 0;
  EXPECT_EQ(missing, 0u);
  RecordProperty("full_retries", std::to_string(full.load()));
}

TEST(CtrlRing, RepliesKeyedByIdAndUncollectedRepliesHarmless) {
  OwnerAndClient oc;
  ASSERT_TRUE(oc.make(unique_name()));
  auto& owner = oc.owner;
  auto& client = oc.client;
  // Replies nobody collects, many laps of the reply slots.
  for (uint32_t i = 0; i < 3 * kReplySlots; ++i) {
    Reply r{};
    r.request_id = client->next_request_id();
    r.generation = i;
    owner->reply(r);
  }
  // Two requests in flight, answered in reverse order: each caller gets its own.
  const uint64_t a = client->next_request_id(), b = client->next_request_id();
  EXPECT_FALSE(client->wait_reply(a, 1));
  Reply rb{};
  rb.request_id = b;
  rb.generation = 2;
  owner->reply(rb);
  EXPECT_FALSE(client->wait_reply(a, 5));
  Reply ra{};
  ra.request_id = a;
  ra.generation = 1;
  ra.status = Status::kBadTarget;
  owner->reply(ra);
  auto got_a = client->wait_reply(a, 10);
  auto got_b = client->wait_reply(b, 10);
  ASSERT_TRUE(got_a && got_b);
  EXPECT_EQ(got_a->generation, 1u);
  EXPECT_EQ(got_a->status, Status::kBadTarget);
  EXPECT_EQ(got_b->generation, 2u);
  // A reply overwritten kReplySlots requests later is gone, not confused with the newer one.
  Reply late{};
  do late.request_id = client->next_request_id();  // the consumer only answers ids that were handed out
  while (late.request_id < a + kReplySlots);
  ASSERT_EQ(late.request_id, a + kReplySlots);
  owner->reply(late);
  EXPECT_FALSE(client->wait_reply(a, 2));
  EXPECT_TRUE(client->wait_reply(a + kReplySlots, 2));
  // wait_reply honours the timeout.
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_FALSE(client->wait_reply(client->next_request_id(), 30));
  const auto dt = std::chrono::steady_clock::now() - t0;
  EXPECT_GE(dt, std::chrono::milliseconds(30));
  EXPECT_LT(dt, std::chrono::milliseconds(500));

  // call(): round trip through a consumer thread.
  std::atomic<bool> stop{false};
  std::thread consumer([&] {
    Command c{};
    while (!stop) {
      if (!owner->poll(&c)) {
        std::this_thread::sleep_for(std::chrono::microseconds(50));
        continue;
      }
      Reply r{};
      r.request_id = c.request_id;
      r.generation = c.value + 1000;
      owner->reply(r);
    }
  });
  for (uint32_t i = 0; i < 200; ++i) {
    SubmitError e = SubmitError::kFull;
    auto r = client->call(Op::kTunnelWeight, 1, i, 0, 1000, &e);
    ASSERT_TRUE(r) << i;
    EXPECT_EQ(e, SubmitError::kOk);
    EXPECT_EQ(r->generation, i + 1000);
  }
  stop = true;
  consumer.join();
}

// A producer killed holding the mutex (robust recovery), killed after writing but before publishing, and killed
// after publishing but before advancing the tail: the next submit works and nothing is lost or duplicated.
TEST(CtrlRing, KilledProducers) {
  const std::string name = unique_name();
  std::string err;
  auto owner = Block::create(name, &err);
  ASSERT_TRUE(owner) << err;
  std::vector<uint64_t> expect;  // request ids the consumer must see, in order

  auto submit_ok = [&](uint32_t target) {
    SubmitError code;
    auto client = Block::open(name, &err, &code);
    ASSERT_TRUE(client) << err;
    auto c = make_cmd(*client, Op::kTunnelState, target, 0);
    ASSERT_EQ(client->submit(c), SubmitError::kOk);
    expect.push_back(c.request_id);
  };
  auto killed_at = [&](Block::SubmitStop stop, bool counts) {
    uint64_t id = 0;
    {
      SubmitError code;
      auto client = Block::open(name, &err, &code);
      ASSERT_TRUE(client) << err;
      id = client->next_request_id();  // reserved here so the test knows it
    }
    const int st = in_child([&] {
      SubmitError code;
      std::string e;
      auto client = Block::open(name, &e, &code);
      if (!client) _exit(1);
      Command c{};
      c.version = kLayoutVersion;
      c.length = sizeof(Command);
      c.request_id = id;
      c.op = uint16_t(Op::kTunnelState);
      client->submit_partial(c, stop);
      _exit(0);  // dies holding the producer mutex
    });
    ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    if (counts) expect.push_back(id);
  };

  submit_ok(1);
  killed_at(Block::SubmitStop::kLocked, false);
  submit_ok(2);
  killed_at(Block::SubmitStop::kWritten, false);
  submit_ok(3);
  killed_at(Block::SubmitStop::kPublished, true);
  submit_ok(4);
  // Published-not-advanced after the consumer already took that cell: the tail repair skips a freed cell too.
  Command out{};
  std::vector<uint64_t> got;
  while (owner->poll(&out)) got.push_back(out.request_id);
  killed_at(Block::SubmitStop::kPublished, true);
  while (owner->poll(&out)) got.push_back(out.request_id);
  submit_ok(5);
  killed_at(Block::SubmitStop::kWritten, false);
  killed_at(Block::SubmitStop::kLocked, false);
  submit_ok(6);
  while (owner->poll(&out)) got.push_back(out.request_id);
  EXPECT_EQ(got, expect);

  // And the ring still fills to exactly kRingSlots and drains.
  SubmitError code;
  auto client = Block::open(name, &err, &code);
  ASSERT_TRUE(client);
  uint32_t n = 0;
  while (client->submit(make_cmd(*client, Op::kNop, 0, 0)) == SubmitError::kOk) ++n;
  EXPECT_EQ(n, kRingSlots);
  n = 0;
  while (owner->poll(&out)) ++n;
  EXPECT_EQ(n, kRingSlots);
}

// A producer stopped while holding the lock: others get kFull after a bounded wait, not a hang; once it dies the
// lock is recovered.
TEST(CtrlRing, StoppedProducerDoesNotHangOthers) {
  OwnerAndClient oc;
  ASSERT_TRUE(oc.make(unique_name()));
  auto& owner = oc.owner;
  int ready[2];
  ASSERT_EQ(pipe(ready), 0);
  const pid_t child = fork();
  if (child == 0) {
    owner->submit_partial(make_cmd(*owner, Op::kNop, 0, 0), Block::SubmitStop::kLocked);
    char x = 1;
    (void)!write(ready[1], &x, 1);
    pause();
    _exit(0);
  }
  char x;
  ASSERT_EQ(read(ready[0], &x, 1), 1);
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(oc.client->submit(make_cmd(*oc.client, Op::kNop, 0, 0)), SubmitError::kFull);
  const auto dt = std::chrono::steady_clock::now() - t0;
  EXPECT_GE(dt, std::chrono::milliseconds(400));
  EXPECT_LT(dt, std::chrono::seconds(3));
  kill(child, SIGKILL);
  int st;
  waitpid(child, &st, 0);
  close(ready[0]);
  close(ready[1]);
  auto c = make_cmd(*oc.client, Op::kNop, 0, 0);
  EXPECT_EQ(oc.client->submit(c), SubmitError::kOk);
  Command out{};
  ASSERT_TRUE(owner->poll(&out));
  EXPECT_EQ(out.request_id, c.request_id);
  EXPECT_FALSE(owner->poll(&out));
}

TEST(CtrlMirror, SeqlockNeverTorn) {
  OwnerAndClient oc;
  ASSERT_TRUE(oc.make(unique_name()));
  auto& owner = oc.owner;
  auto& client = oc.client;

  auto fill = [](uint64_t v) {
    TunnelInfo t{};
    copy_name(t.name, sizeof t.name, "tun-" + std::to_string(v % 1000));
    t.weight = t.effective_weight = t.out_spi = t.in_spi = uint32_t(v);
    t.last_seq_out = v;
    for (uint64_t& c : t.counters) c = v;  // the first and last words of the record move together
    return t;
  };
  auto consistent = [](const TunnelInfo& t) {
    const uint64_t v = t.counters[0];
    bool same = true;
    for (uint64_t c : t.counters) same &= c == v;
    return same && t.last_seq_out == v && t.weight == uint32_t(v) &&
           t.in_spi == uint32_t(v) && std::string(t.name) == "tun-" + std::to_string(v % 1000);
  };
  owner->write_tunnel(3, fill(0));
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    for (uint64_t v = 1; !stop.load(std::memory_order_relaxed); ++v) {
      owner->write_tunnel(3, fill(v));
      GatewayInfo g{};
      for (uint64_t& c : g.counters) c = v;
      g.generation = v;
      owner->write_gateway(g);
    }
  });
  std::atomic<uint64_t> torn{0}, reads{0}, busy{0};
  std::vector<std::thread> readers;
  for (int r = 0; r < 2; ++r)
    readers.emplace_back([&] {
      const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(500);
      uint64_t last = 0;
      while (std::chrono::steady_clock::now() < end) {
        TunnelInfo t;
        if (!client->read_tunnel(3, &t)) {
          ++busy;
          continue;
        }
        if (!consistent(t) || t.counters[0] < last) ++torn;
        last = t.counters[0];
        GatewayInfo g;
        if (client->read_gateway(&g) && !(g.counters[1] == g.counters[0] && g.counters[2] == g.counters[0] &&
                                          g.counters[kMaxCounters - 1] == g.counters[0] && g.generation == g.counters[0]))
          ++torn;
        ++reads;
      }
    });
  for (auto& r : readers) r.join();
  stop = true;
  writer.join();
  EXPECT_EQ(torn.load(), 0u);
  EXPECT_GT(reads.load(), 100u);
  TunnelInfo t;
  ASSERT_TRUE(client->read_tunnel(3, &t));
  EXPECT_TRUE(consistent(t));
  EXPECT_FALSE(client->read_tunnel(kMaxTunnels, &t));
}

TEST(CtrlMirror, RecordsRoundTrip) {
  OwnerAndClient oc;
  ASSERT_TRUE(oc.make(unique_name()));
  auto& owner = oc.owner;
  auto& client = oc.client;
  GatewayInfo g{};
  copy_name(g.name, sizeof g.name, "gw");
  g.n_tunnels = 4;
  g.drops[5] = 17;
  copy_name(g.drop_names[5], sizeof g.drop_names[5], "no-route");
  mg::ctrl::testing::declare(g.counter_names, &g.n_counters, mg::ctrl::testing::kGatewayCounters);
  mg::ctrl::testing::declare(g.worker_counter_names, &g.n_worker_counters, mg::ctrl::testing::kWorkerCounters);
  g.counters[3] = 1234;
  owner->write_gateway(g);
  InstanceInfo in{};
  copy_name(in.name, sizeof in.name, "inst-b");
  copy_name(in.ip, sizeof in.ip, "2001:db8::1");
  in.admin = uint32_t(State::kDrain);
  owner->write_instance(1, in);
  WorkerInfo w{};
  w.lcore = 5;
  mg::ctrl::testing::slot(g.worker_counter_names, g.n_worker_counters, w.counters, "outside_tx") = 99;
  owner->write_worker(2, w);
  GatewayInfo g2;
  InstanceInfo in2;
  WorkerInfo w2;
  ASSERT_TRUE(client->read_gateway(&g2));
  ASSERT_TRUE(client->read_instance(1, &in2));
  ASSERT_TRUE(client->read_worker(2, &w2));
  EXPECT_EQ(std::memcmp(&g, &g2, sizeof g), 0);
  EXPECT_EQ(std::memcmp(&in, &in2, sizeof in), 0);
  EXPECT_EQ(std::memcmp(&w, &w2, sizeof w), 0);
  EXPECT_FALSE(client->read_instance(kMaxInstances, &in2));
  EXPECT_FALSE(client->read_worker(kMaxWorkers, &w2));
  // copy_name truncates and terminates.
  char small[4];
  copy_name(small, sizeof small, "abcdef");
  EXPECT_STREQ(small, "abc");
}
