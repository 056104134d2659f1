// Shared by the ctrl tests.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <stdexcept>
#include <string>
#include <string_view>

#include "ctrl/ctrl.h"

namespace mg::ctrl::testing {

// A gateway name unique to this process and test: <prefix><pid>-<test name>, cut to a valid name.
inline std::string unique_name(char prefix) {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string n(1, prefix);
  n += std::to_string(getpid());
  n += '-';
  n += info->name();
  std::string out;
  for (char ch : n)
    if (valid_name(std::string(1, ch))) out += ch;
  return out.substr(0, 32);
}

// The value slot of a named counter in a record whose names are `names` (n rows): for filling records in tests.
inline uint64_t& slot(const CounterNames& names, uint32_t n, uint64_t* values, std::string_view name) {
  const auto i = counter_index(names, n, name);
  if (!i) throw std::logic_error("no counter named " + std::string(name));
  return values[*i];
}

// Appends every name to a list.
inline void declare(CounterNames& names, uint32_t* n, std::initializer_list<const char*> list) {
  for (const char* name : list)
    if (!add_counter_name(names, n, name)) throw std::logic_error("counter list full");
}

// The counter names the data plane writes (its counter table), per record kind.
inline constexpr std::initializer_list<const char*> kGatewayCounters = {
    "inside_rx", "inside_tx", "outside_rx", "outside_tx", "esp_out_drops", "esp_in_drops", "flows_new",
    "moved_down", "moved_drain", "moved_idle", "evicted", "commands_ok", "commands_rejected"};
inline constexpr std::initializer_list<const char*> kWorkerCounters = {"inside_rx", "inside_tx", "outside_rx",
                                                                       "outside_tx"};

}  // namespace mg::ctrl::testing
