// Shared by the ctrl tests.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <string>

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

}  // namespace mg::ctrl::testing
