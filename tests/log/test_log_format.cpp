// lib/log's line formatter (plain: wall clock, level, type; journald: syslog priority) and the liveness verdicts'
// damping flag that the audit line reports.
#include <gtest/gtest.h>

#include <regex>
#include <string>

#include "dataplane/liveness.h"
#include "log/format.h"
#include "log/log.h"

using mg::log::Level;
using mg::log::LineFormatter;
using mg::log::Style;

namespace {

const timespec kWall{1796044801, 123999999};  // 2026-11-30T13:20:01.123999999Z: milliseconds truncate

std::string feed_all(LineFormatter& f, std::initializer_list<std::string_view> chunks, Level l = Level::kInfo,
                     std::string_view type = "ctrl") {
  std::string out;
  for (auto c : chunks) f.feed(c, l, type, kWall, &out);
  return out;
}

}  // namespace

TEST(LogFormat, PlainPrefixIsIsoUtcWithMillisecondsLevelAndType) {
  EXPECT_EQ(mg::log::line_prefix(Style::kPlain, Level::kInfo, "ctrl", kWall), "2026-11-30T13:20:01.123Z INFO ctrl: ");
  EXPECT_EQ(mg::log::line_prefix(Style::kPlain, Level::kNotice, "audit", timespec{0, 5000000}),
            "1970-01-01T00:00:00.005Z NOTICE audit: ");
  // DPDK's own types name themselves ("EAL: ..."): no type in the prefix.
  EXPECT_EQ(mg::log::line_prefix(Style::kPlain, Level::kError, "", kWall), "2026-11-30T13:20:01.123Z ERROR ");
}

TEST(LogFormat, JournaldPrefixIsTheSyslogPriorityAndNoTime) {
  // sd-daemon(3): "<N>" with N = syslog priority; rte_log's levels are syslog's plus one.
  EXPECT_EQ(mg::log::line_prefix(Style::kJournal, Level::kEmerg, "main", kWall), "<0>main: ");
  EXPECT_EQ(mg::log::line_prefix(Style::kJournal, Level::kError, "keying", kWall), "<3>keying: ");
  EXPECT_EQ(mg::log::line_prefix(Style::kJournal, Level::kWarning, "seq", kWall), "<4>seq: ");
  EXPECT_EQ(mg::log::line_prefix(Style::kJournal, Level::kNotice, "audit", kWall), "<5>audit: ");
  EXPECT_EQ(mg::log::line_prefix(Style::kJournal, Level::kInfo, "", kWall), "<6>");
  EXPECT_EQ(mg::log::line_prefix(Style::kJournal, Level::kDebug, "port", kWall), "<7>port: ");
}

TEST(LogFormat, EveryLevelHasItsName) {
  const char* want[] = {"EMERG", "ALERT", "CRIT", "ERROR", "WARNING", "NOTICE", "INFO", "DEBUG"};
  for (uint32_t l = 1; l <= 8; ++l) EXPECT_STREQ(mg::log::level_name(Level(l)), want[l - 1]);
  // A level rte_log never sets (a stale per-thread value) is shown as INFO, not out of bounds.
  EXPECT_STREQ(mg::log::level_name(Level(0)), "INFO");
  EXPECT_STREQ(mg::log::level_name(Level(9)), "INFO");
}

TEST(LogFormat, EachLineGetsOnePrefixWhateverTheChunks) {
  LineFormatter plain(Style::kPlain);
  // One message in three writes: one prefix.
  EXPECT_EQ(feed_all(plain, {"control ", "command: ", "ok\n"}),
            "2026-11-30T13:20:01.123Z INFO ctrl: control command: ok\n");
  // Two lines in one write: two prefixes.
  EXPECT_EQ(feed_all(plain, {"a\nb\n"}, Level::kWarning, "seq"),
            "2026-11-30T13:20:01.123Z WARNING seq: a\n2026-11-30T13:20:01.123Z WARNING seq: b\n");
  // A line left open is continued, not prefixed again.
  EXPECT_EQ(feed_all(plain, {"open"}), "2026-11-30T13:20:01.123Z INFO ctrl: open");
  EXPECT_EQ(feed_all(plain, {" end\n"}), " end\n");
  LineFormatter journal(Style::kJournal);
  EXPECT_EQ(feed_all(journal, {"uid=0 ", "pid=1\nsecond\n"}, Level::kNotice, "audit"),
            "<5>audit: uid=0 pid=1\n<5>audit: second\n");
  std::string empty;
  journal.feed("", Level::kInfo, "x", kWall, &empty);
  EXPECT_EQ(empty, "");
}

TEST(LogTypes, NamesAreTheSubsystems) {
  using mg::log::Type;
  const char* want[] = {"main", "ctrl", "liveness", "keying", "seq", "host", "port", "audit"};
  for (size_t t = 0; t < size_t(Type::kCount); ++t) EXPECT_STREQ(mg::log::type_name(Type(t)), want[t]);
}

TEST(LogFallback, BeforeStartAMessageIsThePlainLineOnStderr) {
  ASSERT_FALSE(mg::log::started());
  testing::internal::CaptureStderr();
  mg::log::warning(mg::log::Type::kSeq, "WARNING: {} {}", "unsafe", 1);
  mg::log::debug(mg::log::Type::kSeq, "not shown: no level was chosen yet");
  EXPECT_EQ(testing::internal::GetCapturedStderr(), "meshgate: WARNING: unsafe 1\n");
}

// The audit line says why a verdict was damped: the down that suppressed the tunnel, and the up after release.
TEST(LivenessDamped, TheVerdictsSayWhenDampingActed) {
  mg::dp::LivenessConfig c;
  c.enabled = true;
  c.interval_ms = 10;
  c.multiplier = 3;  // down after 30 ms of silence
  c.hold_down_ms = 20;
  c.penalty = 1000;
  c.suppress = 2500;  // the third flap in quick succession suppresses
  c.reuse = 1000;
  c.half_life_ms = 1000;
  mg::dp::Liveness lv(1);
  uint32_t now = 1000;
  lv.configure(0, c, now);
  std::vector<mg::dp::Liveness::Change> ch;
  std::vector<bool> damped_downs;
  // Flap: silence until down, then proof every ms until up again (or for at most 2 s).
  for (int flap = 0; flap < 3; ++flap) {
    for (int i = 0; i < 100 && ch.empty(); ++i) lv.tick(++now, &ch);
    ASSERT_EQ(ch.size(), 1u);
    EXPECT_FALSE(ch[0].up);
    damped_downs.push_back(ch[0].damped);
    ch.clear();
    for (int i = 0; i < 2000 && ch.empty(); ++i) {
      lv.proof(0, ++now);
      lv.tick(now, &ch);
    }
    ASSERT_EQ(ch.size(), 1u) << "flap " << flap;
    EXPECT_TRUE(ch[0].up);
    EXPECT_EQ(ch[0].damped, flap == 2) << "up of flap " << flap << ": released from a suppression only the last";
    ch.clear();
  }
  EXPECT_EQ(damped_downs, (std::vector<bool>{false, false, true}));
  EXPECT_EQ(lv.suppressions(0), 1u);
}
