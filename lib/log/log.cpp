// mg::log on rte_log: the types, and the stream every rte_log message goes through once start() ran.
#include "log/log.h"

#include <rte_log.h>
#include <sys/stat.h>
#include <syslog.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "log/format.h"

namespace mg::log {

namespace {

constexpr const char* kTypeNames[] = {"main", "ctrl", "liveness", "keying", "seq", "host", "port", "audit"};
static_assert(std::size(kTypeNames) == size_t(Type::kCount));

int g_id[size_t(Type::kCount)];
std::atomic<bool> g_started{false};

struct Sink {
  LineFormatter lines;
  bool syslog;
  std::string buf;  // reused: a message costs no allocation once it has grown
};

std::string_view ours(int rte_type) noexcept {
  for (size_t t = 0; t < size_t(Type::kCount); ++t)
    if (g_id[t] == rte_type) return kTypeNames[t];
  return {};
}

// rte_vlog sets the current message's level and type (per thread) before it prints, so the writer knows them.
// Calls are serialised by the stream's own lock.
ssize_t sink_write(void* cookie, const char* data, size_t n) {
  Sink& s = *static_cast<Sink*>(cookie);
  const int lvl = rte_log_cur_msg_loglevel();
  const std::string_view type = ours(rte_log_cur_msg_logtype());
  timespec now{};
  clock_gettime(CLOCK_REALTIME, &now);
  s.buf.clear();
  s.lines.feed({data, n}, Level(lvl), type, now, &s.buf);
  fwrite(s.buf.data(), 1, s.buf.size(), stderr);
  fflush(stderr);
  // As EAL's own stream does (openlog with --syslog's facility was EAL's); syslog stamps its own time.
  if (s.syslog && lvl >= 1 && lvl <= 8)
    ::syslog(lvl - 1, "%.*s%s%.*s", int(type.size()), type.data(), type.empty() ? "" : ": ", int(n), data);
  return ssize_t(n);  // glibc: the bytes taken, never negative
}

}  // namespace

const char* type_name(Type t) noexcept { return t < Type::kCount ? kTypeNames[size_t(t)] : "?"; }

bool journal_stream_is_stderr() noexcept {
  const char* js = std::getenv("JOURNAL_STREAM");
  if (js == nullptr) return false;
  unsigned long long dev = 0, ino = 0;
  if (std::sscanf(js, "%llu:%llu", &dev, &ino) != 2) return false;
  struct stat st {};
  if (fstat(2, &st) != 0) return false;
  return st.st_dev == dev && st.st_ino == ino;
}

bool start(const StartOptions& o) {
  if (g_started.load()) return true;
  for (size_t t = 0; t < size_t(Type::kCount); ++t) {
    const std::string name = std::string("meshgate.") + kTypeNames[t];
    // The audit trail is never quieter than notice by default (-q lowers the others): a refused command or a
    // liveness verdict must leave its line. An explicit --log-level still wins.
    const Level lvl = Type(t) == Type::kAudit ? std::max(o.default_level, Level::kNotice) : o.default_level;
    g_id[t] = rte_log_register_type_and_pick_level(name.c_str(), uint32_t(lvl));
    if (g_id[t] < 0) return false;
  }
  // Lives as long as the process: rte_log may print until its very end.
  static Sink sink{LineFormatter(o.journald ? Style::kJournal : Style::kPlain), o.syslog, {}};
  FILE* f = fopencookie(&sink, "w", cookie_io_functions_t{nullptr, sink_write, nullptr, nullptr});
  if (f == nullptr) return false;
  setvbuf(f, nullptr, _IONBF, 0);  // one write per message (glibc formats an unbuffered stream's output in one go)
  if (rte_openlog_stream(f) != 0) return false;
  g_started.store(true);
  return true;
}

bool started() noexcept { return g_started.load(std::memory_order_relaxed); }

bool enabled(Type t, Level l) noexcept {
  if (!started()) return l <= Level::kInfo;
  return rte_log_can_log(uint32_t(g_id[size_t(t)]), uint32_t(l));
}

void write(Type t, Level l, std::string_view text) noexcept {
  if (!started()) {
    std::fprintf(stderr, "meshgate: %.*s\n", int(text.size()), text.data());
    return;
  }
  rte_log(uint32_t(l), uint32_t(g_id[size_t(t)]), "%.*s\n", int(text.size()), text.data());
}

void exit_reason(std::string_view text) noexcept {
  std::fprintf(stderr, "%smeshgate: %.*s\n", journal_stream_is_stderr() ? "<3>" : "", int(text.size()), text.data());
}

}  // namespace mg::log
