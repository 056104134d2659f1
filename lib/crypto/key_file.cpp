#include "crypto/key_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "crypto/aead.h"

namespace mg::crypto {

namespace {

const char* kind_of(mode_t m) {
  if (S_ISFIFO(m)) return "a FIFO";
  if (S_ISDIR(m)) return "a directory";
  if (S_ISCHR(m)) return "a character device";
  if (S_ISBLK(m)) return "a block device";
  if (S_ISSOCK(m)) return "a socket";
  return "not a plain file";
}

std::string octal(mode_t m) {
  char b[8];
  std::snprintf(b, sizeof b, "%04o", unsigned(m & 07777));
  return b;
}

// Reads at most kMaxKeyFileBytes + 1 bytes (one more than allowed tells "too long" from "exactly full") into a
// buffer that is wiped before it goes, so that no partial copy of a key stays behind.
bool read_bounded(int fd, std::string* raw, std::string* why) {
  char buf[kMaxKeyFileBytes + 1];
  size_t got = 0;
  while (got < sizeof buf) {
    const ssize_t n = ::read(fd, buf + got, sizeof buf - got);
    if (n == 0) break;
    if (n < 0) {
      if (errno == EINTR) continue;
      *why = std::string("cannot be read: ") + std::strerror(errno);
      secure_wipe(buf, got);
      return false;
    }
    got += size_t(n);
  }
  if (got > kMaxKeyFileBytes) {
    *why = "holds more than " + std::to_string(kMaxKeyFileBytes) + " bytes; a key file holds one key";
    secure_wipe(buf, got);
    return false;
  }
  raw->assign(buf, got);
  secure_wipe(buf, got);
  return true;
}

}  // namespace

bool read_key_file(const std::string& path, std::string* raw, std::string* why) {
  // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer; regular files ignore it.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd < 0) {
    *why = std::string("cannot be read: ") + std::strerror(errno);
    return false;
  }
  // Every check on the open file itself, so the file that passed is the file that is read.
  struct stat st {};
  bool ok = false;
  if (fstat(fd, &st) != 0) {
    *why = std::string("cannot be read: ") + std::strerror(errno);
  } else if (!S_ISREG(st.st_mode)) {
    *why = std::string("is ") + kind_of(st.st_mode) + ", not a regular file";
  } else if (st.st_uid != 0 && st.st_uid != geteuid()) {
    *why = "is owned by uid " + std::to_string(st.st_uid) + ", neither root nor the user reading it (uid " +
           std::to_string(geteuid()) + "): that user could change the key";
  } else if ((st.st_mode & 077) != 0) {
    *why = "has mode " + octal(st.st_mode) +
           ": group or others may read or change it; a key file must be 0600 or 0400 (chmod 600)";
  } else if (st.st_size > off_t(kMaxKeyFileBytes)) {
    *why = "has " + std::to_string(st.st_size) + " bytes, more than " + std::to_string(kMaxKeyFileBytes) +
           "; a key file holds one key";
  } else {
    ok = read_bounded(fd, raw, why);  // bounded again: the file may grow after fstat
  }
  ::close(fd);
  return ok;
}

bool read_key_stream(int fd, std::string* raw, std::string* why) {
  if (isatty(fd)) {
    *why = "is a terminal: the key would be echoed; pipe or redirect it in";
    return false;
  }
  return read_bounded(fd, raw, why);
}

KeyText decode_key_text(std::string_view raw, size_t want, std::string* bytes) {
  const bool all_hex = std::all_of(raw.begin(), raw.end(), [](char c) {
    return std::isxdigit(static_cast<unsigned char>(c)) || std::isspace(static_cast<unsigned char>(c));
  });
  if (want != 0 && raw.size() == want && !all_hex) {
    bytes->assign(raw.begin(), raw.end());
    return KeyText::kOk;
  }
  std::string text;
  text.reserve(raw.size());
  for (char c : raw)
    if (!std::isspace(static_cast<unsigned char>(c))) text.push_back(c);
  bytes->reserve(text.size() / 2 + 1);
  const bool ok = parse_hex(text, bytes);
  secure_wipe(text.data(), text.size());
  if (!ok) {
    secure_wipe(bytes->data(), bytes->size());
    bytes->clear();
    return KeyText::kNotHex;
  }
  return want != 0 && bytes->size() != want ? KeyText::kWrongLength : KeyText::kOk;
}

std::string quotable(std::string_view text) {
  size_t run = 0;
  for (char ch : text) {
    run = std::isxdigit(static_cast<unsigned char>(ch)) ? run + 1 : ch == ':' ? run : 0;
    if (run >= 8) return "<hidden: may hold a key>";
  }
  return std::string(text);
}

}  // namespace mg::crypto
