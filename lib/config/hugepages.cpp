#include "config/hugepages.h"

#include <dirent.h>

#include <charconv>
#include <fstream>
#include <sstream>

namespace mg::config {

namespace {

// EAL parses its options with getopt_long: "--opt=V" and "--opt V" alike, short ones as "-m V" or "-mV".
std::optional<std::string> value_of(const std::vector<std::string>& a, size_t* i, std::string_view longname,
                                    std::string_view shortname = {}) {
  const std::string& s = a[*i];
  if (s == longname || (!shortname.empty() && s == shortname)) {
    if (*i + 1 >= a.size()) return std::string();
    return a[++*i];
  }
  if (s.size() > longname.size() && s.compare(0, longname.size(), longname) == 0 && s[longname.size()] == '=')
    return s.substr(longname.size() + 1);
  if (!shortname.empty() && s.size() > shortname.size() && s.compare(0, shortname.size(), shortname) == 0)
    return s.substr(shortname.size());
  return std::nullopt;
}

uint64_t to_u64(std::string_view s) {
  uint64_t v = 0;
  std::from_chars(s.data(), s.data() + s.size(), v);
  return v;
}

std::string slurp(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

const char* kFix =
    "reserve and mount them: `dpdk-hugepages.py --setup 2G`, or with Debian's dpdk package NR_2M_PAGES in "
    "/etc/dpdk/dpdk.conf and `systemctl restart dpdk` (README \"Install and run as a service\")";

}  // namespace

HugeNeed hugepage_need(const std::vector<std::string>& eal_args) {
  HugeNeed n;
  for (size_t i = 0; i < eal_args.size(); ++i) {
    const std::string& s = eal_args[i];
    if (s == "--no-huge") {
      n.needed = false;
    } else if (s == "--in-memory") {
      n.mount = false;
    } else if (auto v = value_of(eal_args, &i, "--memory", "-m")) {
      n.mem_mb = to_u64(*v);
    } else if (auto v = value_of(eal_args, &i, "--socket-mem")) {
      uint64_t sum = 0;
      std::stringstream ss(*v);
      for (std::string part; std::getline(ss, part, ',');) sum += to_u64(part);
      n.mem_mb = sum;
    } else if (auto v = value_of(eal_args, &i, "--huge-dir")) {
      n.huge_dir = *v;
    }
  }
  return n;
}

uint64_t HugeHost::free_mb() const noexcept {
  uint64_t kb = 0;
  for (const Pool& p : pools) kb += p.free * p.page_kb;
  return kb / 1024;
}

std::vector<std::string> hugetlbfs_mounts(std::string_view proc_mounts) {
  std::vector<std::string> out;
  std::stringstream ss{std::string(proc_mounts)};
  for (std::string line; std::getline(ss, line);) {
    std::stringstream ls(line);
    std::string dev, dir, type;
    if (ls >> dev >> dir >> type && type == "hugetlbfs") out.push_back(dir);
  }
  return out;
}

std::optional<HugeHost::Pool> meminfo_pool(std::string_view proc_meminfo) {
  HugeHost::Pool p;
  bool total = false, size = false;
  std::stringstream ss{std::string(proc_meminfo)};
  for (std::string line; std::getline(ss, line);) {
    std::stringstream ls(line);
    std::string key;
    uint64_t v = 0;
    if (!(ls >> key >> v)) continue;
    if (key == "HugePages_Total:") total = true, p.total = v;
    else if (key == "HugePages_Free:") p.free = v;
    else if (key == "Hugepagesize:") size = true, p.page_kb = v;
  }
  if (!total || !size) return std::nullopt;
  return p;
}

HugeHost read_huge_host(const std::string& root) {
  HugeHost h;
  h.mounts = hugetlbfs_mounts(slurp(root + "/proc/mounts"));
  const std::string dir = root + "/sys/kernel/mm/hugepages";
  if (DIR* d = opendir(dir.c_str())) {
    while (dirent* e = readdir(d)) {
      const std::string name = e->d_name;  // hugepages-2048kB
      if (name.rfind("hugepages-", 0) != 0) continue;
      HugeHost::Pool p;
      p.page_kb = to_u64(std::string_view(name).substr(10));
      p.total = to_u64(slurp(dir + "/" + name + "/nr_hugepages"));
      p.free = to_u64(slurp(dir + "/" + name + "/free_hugepages"));
      if (p.page_kb) h.pools.push_back(p);
    }
    closedir(d);
  }
  if (h.pools.empty())
    if (auto p = meminfo_pool(slurp(root + "/proc/meminfo"))) h.pools.push_back(*p);
  return h;
}

std::optional<std::string> check_hugepages(const HugeNeed& need, const HugeHost& host) {
  if (!need.needed) return std::nullopt;
  const std::string what = "hugepages: the pmd_config's [eal] args need hugepages (no --no-huge)";
  if (need.mount) {
    if (host.mounts.empty()) return what + " but no hugetlbfs is mounted; " + kFix;
    if (!need.huge_dir.empty()) {
      bool found = false;
      for (const auto& m : host.mounts) found |= m == need.huge_dir;
      if (!found) return what + " from --huge-dir " + need.huge_dir + ", which is not a hugetlbfs mount; " + kFix;
    }
  }
  if (host.free_mb() == 0) return what + " but none is free; " + kFix;
  if (need.mem_mb > host.free_mb())
    return what + ": " + std::to_string(need.mem_mb) + " MB (-m / --socket-mem) but only " +
           std::to_string(host.free_mb()) + " MB are free; " + kFix;
  return std::nullopt;
}

std::string describe_hugepages(const HugeNeed& need, const HugeHost& host) {
  if (!need.needed) return "hugepages: not used (--no-huge)\n";
  std::string s = "hugepages: needed";
  if (need.mem_mb) s += " (" + std::to_string(need.mem_mb) + " MB)";
  s += "; free:";
  for (const auto& p : host.pools) s += " " + std::to_string(p.free) + " x " + std::to_string(p.page_kb) + " kB";
  if (host.pools.empty()) s += " none";
  s += "; hugetlbfs:";
  for (const auto& m : host.mounts) s += " " + m;
  if (host.mounts.empty()) s += " none mounted";
  return s + "\n";
}

}  // namespace mg::config
