// The state directory: one small text file per key, replaced atomically and durably; a lock file per key.
#include <fcntl.h>
#include <sodium.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <string_view>

#include "seqstate/seqstate.h"

namespace mg::seqstate {

namespace {

constexpr char kMagic[] = "meshgate-seqstate 1";
constexpr size_t kMaxFile = 512;  // the format needs ~130 bytes; anything longer is not ours

std::string sys_error(const std::string& what) { return what + ": " + std::strerror(errno); }

std::string parent_of(const std::string& dir) {
  std::string d = dir;
  while (d.size() > 1 && d.back() == '/') d.pop_back();
  const size_t slash = d.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : d.substr(0, slash);
}

// A check over the lines before it: a torn or edited file is told from a valid one.
std::string check_of(std::string_view body) {
  uint8_t h[8];
  crypto_generichash(h, sizeof h, reinterpret_cast<const unsigned char*>(body.data()), body.size(), nullptr, 0);
  static const char d[] = "0123456789abcdef";
  std::string s;
  for (uint8_t b : h) {
    s += d[b >> 4];
    s += d[b & 15];
  }
  return s;
}

std::string body_of(const Fingerprint& fp, uint64_t high) {
  return std::string(kMagic) + "\nkey " + fp.hex() + "\nhigh " + std::to_string(high) + "\n";
}

bool write_all(int fd, std::string_view s) {
  while (!s.empty()) {
    const ssize_t n = ::write(fd, s.data(), s.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    s.remove_prefix(size_t(n));
  }
  return true;
}

// Parses a state file; false with *why on anything but the exact format.
bool parse(std::string_view text, const Fingerprint& fp, uint64_t* high, std::string* why) {
  const size_t cpos = text.rfind("check ");
  if (cpos == std::string_view::npos || text.empty() || text.back() != '\n') {
    *why = "incomplete (no check line)";
    return false;
  }
  const std::string_view body = text.substr(0, cpos);
  const std::string_view check = text.substr(cpos + 6, text.size() - cpos - 7);
  if (check != check_of(body)) {
    *why = "its check does not match its content (torn or edited)";
    return false;
  }
  const std::string head = std::string(kMagic) + "\nkey " + fp.hex() + "\nhigh ";
  if (!body.starts_with(head) || body.size() < head.size() + 2) {
    *why = "not a state file of this key";
    return false;
  }
  const std::string_view num = body.substr(head.size(), body.size() - head.size() - 1);
  const auto r = std::from_chars(num.data(), num.data() + num.size(), *high);
  if (r.ec != std::errc() || r.ptr != num.data() + num.size()) {
    *why = "the high-water mark is not a number";
    return false;
  }
  return true;
}

}  // namespace

std::unique_ptr<Store> Store::open(const std::string& dir, bool create_missing, std::string* err) {
  const std::string what = "state directory " + dir;
  if (dir.empty()) {
    *err = "state directory: no path given";
    return nullptr;
  }
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0) {
    if (errno != ENOENT) {
      *err = sys_error(what);
      return nullptr;
    }
    if (!create_missing) {
      *err = what + " does not exist";
      return nullptr;
    }
    const std::string parent = parent_of(dir);
    struct stat pst {};
    if (::stat(parent.c_str(), &pst) != 0 || !S_ISDIR(pst.st_mode)) {
      *err = what + " does not exist, nor does its parent " + parent;
      return nullptr;
    }
    if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
      *err = sys_error("cannot create " + what);
      return nullptr;
    }
    if (::stat(dir.c_str(), &st) != 0) {
      *err = sys_error(what);
      return nullptr;
    }
  }
  if (!S_ISDIR(st.st_mode)) {
    *err = what + " is not a directory";
    return nullptr;
  }
  if (::access(dir.c_str(), R_OK | W_OK | X_OK) != 0) {
    *err = sys_error(what + " is not readable and writable");
    return nullptr;
  }
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    *err = sys_error(what);
    return nullptr;
  }
  std::unique_ptr<Store> s(new Store());
  s->dir_ = dir;
  s->dir_fd_ = fd;
  return s;
}

Store::~Store() {
  for (auto& [fp, fd] : locks_) ::close(fd);  // releases the keys
  if (dir_fd_ >= 0) ::close(dir_fd_);
}

std::string Store::path(const Fingerprint& fp) const { return dir_ + "/" + fp.hex() + ".seq"; }

bool Store::load(const Fingerprint& fp, uint64_t* high, std::string* err) {
  std::lock_guard lk(mu_);
  const std::string name = fp.hex() + ".seq";
  if (!locks_.contains(fp)) {
    const std::string lname = fp.hex() + ".lock";
    const int lfd = ::openat(dir_fd_, lname.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (lfd < 0) {
      *err = sys_error(dir_ + "/" + lname);
      return false;
    }
    if (::flock(lfd, LOCK_EX | LOCK_NB) != 0) {
      *err = dir_ + "/" + lname + ": this key is in use by another process (two senders with one key would "
             "repeat its IVs)";
      ::close(lfd);
      return false;
    }
    locks_.emplace(fp, lfd);
  }
  const int fd = ::openat(dir_fd_, name.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) {
    if (errno == ENOENT) {  // a key seen for the first time
      *high = 0;
      return true;
    }
    *err = sys_error(dir_ + "/" + name);
    return false;
  }
  char buf[kMaxFile + 1];
  size_t got = 0;
  bool ok = true;
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) ok = false;
  while (ok && got < sizeof buf) {
    const ssize_t n = ::read(fd, buf + got, sizeof buf - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) ok = false;
    if (n <= 0) break;
    got += size_t(n);
  }
  ::close(fd);
  std::string why = "not a regular file, or unreadable";
  if (ok && got > kMaxFile) {
    why = "longer than a state file can be";
    ok = false;
  }
  if (!ok || !parse(std::string_view(buf, got), fp, high, &why)) {
    *err = dir_ + "/" + name + " is corrupt (" + why + "): the sequence numbers already used with this key are "
           "unknown. Replace the key (a new key starts afresh), or restore the file from a backup";
    return false;
  }
  return true;
}

bool Store::save(const Fingerprint& fp, uint64_t high, std::string* err) {
  std::lock_guard lk(mu_);
  const std::string name = fp.hex() + ".seq", tmp = name + ".tmp";
  const std::string body = body_of(fp, high);
  const std::string text = body + "check " + check_of(body) + "\n";
  const int fd = ::openat(dir_fd_, tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) {
    *err = sys_error("cannot write " + dir_ + "/" + tmp);
    return false;
  }
  const bool ok = write_all(fd, text) && ::fsync(fd) == 0;
  const int saved = errno;
  ::close(fd);
  errno = saved;
  if (!ok) {
    *err = sys_error("cannot write " + dir_ + "/" + tmp);
    return false;
  }
  // The rename makes the new mark the file's content at once; the directory's fsync makes the rename durable.
  if (::renameat(dir_fd_, tmp.c_str(), dir_fd_, name.c_str()) != 0 || ::fsync(dir_fd_) != 0) {
    *err = sys_error("cannot replace " + dir_ + "/" + name);
    return false;
  }
  return true;
}

}  // namespace mg::seqstate
