// mg::log — the gateway process's messages on DPDK's rte_log (README "Logs and audit").
//
// One rte_log type per subsystem (meshgate.main, meshgate.ctrl, ...), registered by start() right after
// rte_eal_init, so EAL's `--log-level=meshgate.*:debug` and `--syslog` reach them like DPDK's own types. start()
// also puts a line formatter in front of the stream every rte_log message goes through (DPDK's too): a wall-clock
// timestamp, the level and the type on a terminal or file; under journald (JOURNAL_STREAM set) a `<N>` syslog
// priority prefix instead, which journald turns into the entry's priority.
//
// Before start() (config errors, usage) and in processes that never call it, a message is the plain
// "meshgate: TEXT" line on stderr that meshgate printed before it had levels.
//
// Not for the per-packet path: every call formats a string. Main lcore and start-up code only.
#pragma once

#include <fmt/core.h>

#include <cstdint>
#include <string_view>
#include <utility>

namespace mg::log {

// The subsystems, each its own rte_log type "meshgate.<name>" (type_name()).
enum class Type : uint8_t {
  kMain,      // start, stop, ports, stats
  kCtrl,      // the control block and the commands it carries
  kLiveness,  // probes and verdicts' details (the verdicts themselves are audited)
  kKeying,    // the keying socket
  kSeq,       // sequence-number state
  kHost,      // the exception path
  kPort,      // ports and drivers
  kAudit,     // operator commands, liveness verdicts, SA changes: one NOTICE line each
  kCount
};
// rte_log's levels, same numbers (RTE_LOG_EMERG .. RTE_LOG_DEBUG): syslog priority = level - 1.
enum class Level : uint32_t { kEmerg = 1, kAlert, kCrit, kError, kWarning, kNotice, kInfo, kDebug };

const char* type_name(Type t) noexcept;   // "main", "ctrl", ... (the rte_log name without "meshgate.")
const char* level_name(Level l) noexcept; // "EMERG" .. "DEBUG"

struct StartOptions {
  Level default_level = Level::kInfo;  // before EAL's --log-level patterns, which win
  bool journald = false;               // `<N>` prefixes, no timestamp (journal_stream_is_stderr())
  bool syslog = true;                  // also to syslog(3), as EAL's own stream does
};
// True when stderr is the stream journald gave us ($JOURNAL_STREAM names stderr's device and inode).
bool journal_stream_is_stderr() noexcept;

// Registers the types and installs the formatter. After rte_eal_init; once. False (and messages stay plain) if
// DPDK refuses.
bool start(const StartOptions& o);
bool started() noexcept;

bool enabled(Type t, Level l) noexcept;
// One message (no trailing newline needed): rte_log after start(), else "meshgate: TEXT" on stderr.
void write(Type t, Level l, std::string_view text) noexcept;

// Why the process exits (its last line): always the plain "meshgate: TEXT" that scripts look for, with an error
// priority ("<3>") when stderr is the journal.
void exit_reason(std::string_view text) noexcept;

template <class... A>
void log(Level l, Type t, fmt::format_string<A...> f, A&&... a) {
  if (!enabled(t, l)) return;
  write(t, l, fmt::format(f, std::forward<A>(a)...));
}
template <class... A>
void error(Type t, fmt::format_string<A...> f, A&&... a) { log(Level::kError, t, f, std::forward<A>(a)...); }
template <class... A>
void warning(Type t, fmt::format_string<A...> f, A&&... a) { log(Level::kWarning, t, f, std::forward<A>(a)...); }
template <class... A>
void notice(Type t, fmt::format_string<A...> f, A&&... a) { log(Level::kNotice, t, f, std::forward<A>(a)...); }
template <class... A>
void info(Type t, fmt::format_string<A...> f, A&&... a) { log(Level::kInfo, t, f, std::forward<A>(a)...); }
template <class... A>
void debug(Type t, fmt::format_string<A...> f, A&&... a) { log(Level::kDebug, t, f, std::forward<A>(a)...); }
// The audit trail: always NOTICE on meshgate.audit.
template <class... A>
void audit(fmt::format_string<A...> f, A&&... a) { log(Level::kNotice, Type::kAudit, f, std::forward<A>(a)...); }

}  // namespace mg::log
