// Whether a pmd_config's EAL can get its memory on this host, for `meshgate --check`: EAL without `--no-huge` needs
// hugetlbfs mounted and enough free hugepages, and without them fails late with a message about memory segments that
// says nothing of the fix. Pure: the host is read into a HugeHost (from any root directory, so tests give a fake
// /proc and /sys), and the verdict is a function of the EAL args and that. No DPDK.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mg::config {

// What the EAL args ask for.
struct HugeNeed {
  bool needed = true;      // false with --no-huge
  bool mount = true;       // false with --in-memory (memfd, no hugetlbfs file needed)
  uint64_t mem_mb = 0;     // -m N or the sum of --socket-mem; 0: not said (EAL takes what it needs)
  std::string huge_dir;    // --huge-dir DIR: that mount and no other
};
HugeNeed hugepage_need(const std::vector<std::string>& eal_args);

struct HugeHost {
  struct Pool {
    uint64_t page_kb = 0, total = 0, free = 0;
  };
  std::vector<Pool> pools;            // one per page size (sysfs), else the default size (/proc/meminfo)
  std::vector<std::string> mounts;    // hugetlbfs mount points
  uint64_t free_mb() const noexcept;
};
// The text of /proc/mounts -> its hugetlbfs mount points.
std::vector<std::string> hugetlbfs_mounts(std::string_view proc_mounts);
// HugePages_Total / HugePages_Free / Hugepagesize of /proc/meminfo (the default page size only).
std::optional<HugeHost::Pool> meminfo_pool(std::string_view proc_meminfo);
// Reads ROOT/proc/mounts, ROOT/sys/kernel/mm/hugepages/hugepages-*kB/{nr,free}_hugepages, and ROOT/proc/meminfo
// when sysfs has nothing. root "" is the host itself.
HugeHost read_huge_host(const std::string& root = "");

// nullopt when the EAL can have its memory; else a sentence naming what is missing and the fix.
std::optional<std::string> check_hugepages(const HugeNeed& need, const HugeHost& host);
// One line for --check: what is needed and what the host has.
std::string describe_hugepages(const HugeNeed& need, const HugeHost& host);

}  // namespace mg::config
