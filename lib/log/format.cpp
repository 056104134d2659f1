#include "log/format.h"

#include <fmt/core.h>

namespace mg::log {

namespace {

Level clamp(Level l) noexcept {
  return uint32_t(l) >= uint32_t(Level::kEmerg) && uint32_t(l) <= uint32_t(Level::kDebug) ? l : Level::kInfo;
}

}  // namespace

const char* level_name(Level l) noexcept {
  static constexpr const char* kNames[] = {"EMERG", "ALERT", "CRIT", "ERROR", "WARNING", "NOTICE", "INFO", "DEBUG"};
  return kNames[uint32_t(clamp(l)) - 1];
}

std::string line_prefix(Style s, Level l, std::string_view type, const timespec& wall) {
  l = clamp(l);
  const std::string t = type.empty() ? std::string() : fmt::format("{}: ", type);
  if (s == Style::kJournal) return fmt::format("<{}>{}", uint32_t(l) - 1, t);
  tm u{};
  const time_t sec = wall.tv_sec;
  gmtime_r(&sec, &u);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z {} {}", u.tm_year + 1900, u.tm_mon + 1, u.tm_mday,
                     u.tm_hour, u.tm_min, u.tm_sec, wall.tv_nsec / 1000000, level_name(l), t);
}

void LineFormatter::feed(std::string_view chunk, Level l, std::string_view type, const timespec& wall,
                         std::string* out) {
  while (!chunk.empty()) {
    if (at_start_) *out += line_prefix(style_, l, type, wall);
    const size_t nl = chunk.find('\n');
    const size_t n = nl == std::string_view::npos ? chunk.size() : nl + 1;
    out->append(chunk.substr(0, n));
    at_start_ = nl != std::string_view::npos;
    chunk.remove_prefix(n);
  }
}

}  // namespace mg::log
