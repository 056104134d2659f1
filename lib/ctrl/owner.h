// Private to lib/ctrl: whose a control block file is, and whether that makes it trustworthy. /dev/shm is writable
// by every local user, so a file at the block's name may be anyone's: a forged mirror for operators to read, or a
// file that keeps the gateway from starting.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <string>

namespace mg::ctrl::detail {

inline constexpr mode_t kBlockMode = 0600;  // what Block::create makes, whatever the umask

// For the gateway: "" when an existing file at `path` is one it could have made itself (a regular file of its
// effective uid with kBlockMode), so that a stale one may be replaced; otherwise why not, naming the file, its
// owner and mode. Anything else was put there or changed by someone else: not ours to delete or reuse.
std::string foreign_block(const struct stat& st, const std::string& path);

// For clients: "" when no one but root or this user can have written the block (owned by root or by the caller,
// not writable by group or others); otherwise why it is not trusted.
std::string untrusted_block(const struct stat& st, const std::string& path);

}  // namespace mg::ctrl::detail
