// The line formatter behind mg::log's stream (log.cpp), apart so that tests run it without EAL. Internal to
// lib/log and its tests.
#pragma once

#include <ctime>
#include <string>
#include <string_view>

#include "log/log.h"

namespace mg::log {

enum class Style {
  kPlain,    // "2026-11-30T13:20:01.123Z INFO ctrl: TEXT": wall clock (UTC, ms), level, type
  kJournal,  // "<6>ctrl: TEXT": journald reads the syslog priority and stamps the time itself
};

// What goes before one line. `type` is empty for a type that is not meshgate's (DPDK's lines name their own,
// "EAL: ..."). A level outside EMERG..DEBUG is shown as INFO.
std::string line_prefix(Style s, Level l, std::string_view type, const timespec& wall);

// Prefixes every line of a stream of chunks: a message may arrive in pieces (rte_log prints long ones in several
// writes) or hold several lines; only a line's start gets a prefix, each line its own.
class LineFormatter {
 public:
  explicit LineFormatter(Style s) : style_(s) {}
  void feed(std::string_view chunk, Level l, std::string_view type, const timespec& wall, std::string* out);
  Style style() const noexcept { return style_; }

 private:
  Style style_;
  bool at_start_ = true;
};

}  // namespace mg::log
