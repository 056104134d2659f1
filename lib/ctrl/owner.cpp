#include "ctrl/owner.h"

#include <pwd.h>
#include <unistd.h>

#include <cstdio>

namespace mg::ctrl::detail {

namespace {

std::string user_text(uid_t uid) {
  std::string s = "uid " + std::to_string(uid);
  passwd pw{};
  passwd* found = nullptr;
  char buf[1024];
  if (getpwuid_r(uid, &pw, buf, sizeof buf, &found) == 0 && found != nullptr) s += std::string(" (") + pw.pw_name + ")";
  return s;
}

std::string mode_text(mode_t m) {
  char b[8];
  std::snprintf(b, sizeof b, "%04o", unsigned(m & 07777));
  return b;
}

}  // namespace

std::string foreign_block(const struct stat& st, const std::string& path) {
  if (S_ISREG(st.st_mode) && st.st_uid == geteuid() && (st.st_mode & 07777) == kBlockMode) return {};
  return path + " is in the way and is not a block this gateway made: " +
         (S_ISREG(st.st_mode) ? std::string() : std::string("not a regular file, ")) + "owner " +
         user_text(st.st_uid) + ", mode " + mode_text(st.st_mode) + " (meshgate makes it as " + user_text(geteuid()) +
         " with mode " + mode_text(kBlockMode) +
         "); another user may have put it there: check it, remove it, then start again (or use another "
         "--control-name)";
}

std::string untrusted_block(const struct stat& st, const std::string& path) {
  if (!S_ISREG(st.st_mode)) return path + " is not a regular file: not a gateway's block";
  if (st.st_uid != 0 && st.st_uid != geteuid() && st.st_uid != getuid())
    return path + " is owned by " + user_text(st.st_uid) + ", not by root or you (" + user_text(geteuid()) +
           "): not a gateway's block, not trusted";
  if ((st.st_mode & 022) != 0)
    return path + " has mode " + mode_text(st.st_mode) + ": others may write it, so what it says cannot be trusted " +
           "(a gateway makes it " + mode_text(kBlockMode) + ")";
  return {};
}

}  // namespace mg::ctrl::detail
