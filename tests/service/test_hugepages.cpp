// config::hugepage_need / read_huge_host / check_hugepages: what `meshgate --check` says about hugepages, on a fake
// /proc and /sys in a temp dir (this host's own state must not decide a test).
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "config/hugepages.h"

namespace mg::config {
namespace {

namespace fs = std::filesystem;

TEST(HugeNeed, EalArgsInEveryForm) {
  EXPECT_FALSE(hugepage_need({"--no-huge", "-m", "1024", "-l", "0-1"}).needed);
  const HugeNeed nic = hugepage_need({"-l", "0-4", "-n", "4", "--socket-mem", "2048", "--file-prefix", "meshgate"});
  EXPECT_TRUE(nic.needed);
  EXPECT_TRUE(nic.mount);
  EXPECT_EQ(nic.mem_mb, 2048u);
  EXPECT_EQ(hugepage_need({"--socket-mem=1024,512"}).mem_mb, 1536u);
  EXPECT_EQ(hugepage_need({"-m", "300"}).mem_mb, 300u);
  EXPECT_EQ(hugepage_need({"-m300"}).mem_mb, 300u);
  EXPECT_EQ(hugepage_need({"--memory=64"}).mem_mb, 64u);
  EXPECT_EQ(hugepage_need({"-l", "0-1"}).mem_mb, 0u);
  EXPECT_FALSE(hugepage_need({"--in-memory"}).mount);
  EXPECT_EQ(hugepage_need({"--huge-dir", "/mnt/huge"}).huge_dir, "/mnt/huge");
  EXPECT_EQ(hugepage_need({"--huge-dir=/mnt/huge"}).huge_dir, "/mnt/huge");
  // Another option's value is not taken for one of these ("-l" with "-m" as its argument is not EAL's form, but
  // "--file-prefix m" must not become -m).
  EXPECT_EQ(hugepage_need({"--file-prefix", "mx"}).mem_mb, 0u);
}

TEST(HugeHost, ParsesMountsAndMeminfo) {
  const auto m = hugetlbfs_mounts(
      "proc /proc proc rw 0 0\nhugetlbfs /dev/hugepages hugetlbfs rw,relatime,pagesize=2M 0 0\n"
      "none /mnt/huge1G hugetlbfs rw,pagesize=1024M 0 0\ntmpfs /dev/shm tmpfs rw 0 0\n");
  ASSERT_EQ(m.size(), 2u);
  EXPECT_EQ(m[0], "/dev/hugepages");
  EXPECT_EQ(m[1], "/mnt/huge1G");
  const auto p = meminfo_pool("MemTotal: 1000 kB\nHugePages_Total:     512\nHugePages_Free:      500\n"
                              "HugePages_Rsvd:        0\nHugepagesize:       2048 kB\n");
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->total, 512u);
  EXPECT_EQ(p->free, 500u);
  EXPECT_EQ(p->page_kb, 2048u);
  EXPECT_FALSE(meminfo_pool("MemTotal: 1000 kB\n").has_value());
}

// A fake root: /proc/mounts, /proc/meminfo and sysfs pools as given.
class FakeRoot : public ::testing::Test {
 protected:
  void SetUp() override {
    root = fs::temp_directory_path() / ("mg-huge-" + std::to_string(getpid()) + "-" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root);
    fs::create_directories(root / "proc");
    write("proc/mounts", "proc /proc proc rw 0 0\n");
    write("proc/meminfo", "HugePages_Total: 0\nHugePages_Free: 0\nHugepagesize: 2048 kB\n");
  }
  void TearDown() override { fs::remove_all(root); }
  void write(const std::string& rel, const std::string& text) {
    fs::create_directories((root / rel).parent_path());
    std::ofstream(root / rel) << text;
  }
  void pool(uint64_t kb, uint64_t total, uint64_t free) {
    const std::string d = "sys/kernel/mm/hugepages/hugepages-" + std::to_string(kb) + "kB/";
    write(d + "nr_hugepages", std::to_string(total) + "\n");
    write(d + "free_hugepages", std::to_string(free) + "\n");
  }
  void mount_2m() { write("proc/mounts", "hugetlbfs /dev/hugepages hugetlbfs rw,relatime,pagesize=2M 0 0\n"); }
  fs::path root;
};

TEST_F(FakeRoot, NoHugeNeedsNothing) {
  const auto host = read_huge_host(root);
  EXPECT_FALSE(check_hugepages(hugepage_need({"--no-huge", "-m", "1024"}), host).has_value());
  EXPECT_NE(describe_hugepages(hugepage_need({"--no-huge"}), host).find("not used"), std::string::npos);
}

TEST_F(FakeRoot, NothingMountedNamesTheFix) {
  pool(2048, 1024, 1024);
  const auto err = check_hugepages(hugepage_need({"--socket-mem", "1024"}), read_huge_host(root));
  ASSERT_TRUE(err.has_value());
  EXPECT_NE(err->find("no hugetlbfs is mounted"), std::string::npos) << *err;
  EXPECT_NE(err->find("dpdk-hugepages.py --setup 2G"), std::string::npos) << *err;
  EXPECT_NE(err->find("NR_2M_PAGES"), std::string::npos) << *err;
}

TEST_F(FakeRoot, MountedButNoneFree) {
  mount_2m();
  pool(2048, 0, 0);
  pool(1048576, 0, 0);
  const auto err = check_hugepages(hugepage_need({"-l", "0-1"}), read_huge_host(root));
  ASSERT_TRUE(err.has_value());
  EXPECT_NE(err->find("none is free"), std::string::npos) << *err;
}

TEST_F(FakeRoot, EnoughOrTooFew) {
  mount_2m();
  pool(2048, 1024, 600);  // 1200 MB free
  pool(1048576, 1, 1);    // + 1024 MB
  const auto host = read_huge_host(root);
  EXPECT_EQ(host.free_mb(), 2224u);
  EXPECT_FALSE(check_hugepages(hugepage_need({"--socket-mem", "2048"}), host).has_value());
  const auto err = check_hugepages(hugepage_need({"--socket-mem", "4096"}), host);
  ASSERT_TRUE(err.has_value());
  EXPECT_NE(err->find("4096 MB"), std::string::npos) << *err;
  EXPECT_NE(err->find("2224 MB are free"), std::string::npos) << *err;
  const std::string d = describe_hugepages(hugepage_need({"--socket-mem", "2048"}), host);
  EXPECT_NE(d.find("600 x 2048 kB"), std::string::npos) << d;
  EXPECT_NE(d.find("/dev/hugepages"), std::string::npos) << d;
}

TEST_F(FakeRoot, HugeDirMustBeAMount) {
  mount_2m();
  pool(2048, 512, 512);
  const auto host = read_huge_host(root);
  EXPECT_FALSE(check_hugepages(hugepage_need({"--huge-dir", "/dev/hugepages"}), host).has_value());
  const auto err = check_hugepages(hugepage_need({"--huge-dir", "/mnt/huge"}), host);
  ASSERT_TRUE(err.has_value());
  EXPECT_NE(err->find("/mnt/huge"), std::string::npos) << *err;
  // --in-memory takes its pages through memfd: no mount needed, free pages still are.
  write("proc/mounts", "proc /proc proc rw 0 0\n");
  EXPECT_FALSE(check_hugepages(hugepage_need({"--in-memory"}), read_huge_host(root)).has_value());
}

TEST_F(FakeRoot, MeminfoWhenSysfsHasNothing) {
  mount_2m();
  write("proc/meminfo", "HugePages_Total: 256\nHugePages_Free: 128\nHugepagesize: 2048 kB\n");
  const auto host = read_huge_host(root);
  ASSERT_EQ(host.pools.size(), 1u);
  EXPECT_EQ(host.free_mb(), 256u);
  EXPECT_FALSE(check_hugepages(hugepage_need({"-m", "256"}), host).has_value());
  EXPECT_TRUE(check_hugepages(hugepage_need({"-m", "257"}), host).has_value());
}

}  // namespace
}  // namespace mg::config
