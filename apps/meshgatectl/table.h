// meshgatectl's aligned text tables (show.cpp, ports.cpp): columns as wide as their widest cell, numbers right-aligned.
#pragma once

#include <fmt/core.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

namespace mgctl {

class Table {
 public:
  explicit Table(std::vector<std::string> head) : head_(std::move(head)) {}
  void row(std::vector<std::string> r) { rows_.push_back(std::move(r)); }
  void print() const {
    std::vector<size_t> w(head_.size());
    std::vector<bool> numeric(head_.size(), !rows_.empty());
    for (size_t i = 0; i < head_.size(); ++i) w[i] = head_[i].size();
    for (const auto& r : rows_)
      for (size_t i = 0; i < r.size() && i < w.size(); ++i) {
        w[i] = std::max(w[i], r[i].size());
        if (r[i].empty() || r[i].find_first_not_of("0123456789") != std::string::npos) numeric[i] = false;
      }
    auto line = [&](const std::vector<std::string>& r) {
      std::string out;
      for (size_t i = 0; i < w.size(); ++i) {
        const std::string& cell = i < r.size() ? r[i] : std::string();
        const std::string pad(w[i] - cell.size(), ' ');
        out += numeric[i] ? pad + cell : (i + 1 < w.size() ? cell + pad : cell);
        if (i + 1 < w.size()) out += "  ";
      }
      fmt::print("{}\n", out);
    };
    line(head_);
    for (const auto& r : rows_) line(r);
  }

 private:
  std::vector<std::string> head_;
  std::vector<std::vector<std::string>> rows_;
};

inline std::string num(uint64_t v) { return std::to_string(v); }

}  // namespace mgctl
