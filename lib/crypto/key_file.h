// mg::crypto key files: the one reader of key material from files and streams, shared by the gateway config
// (`key_file`, also on `instance reset`) and meshgate-esp (`key_file=`, `key=-`), so that every reader refuses
// the same things with the same words.
//
// A key file must be a regular file (a FIFO would hang the reader, /dev/zero would fill its memory), at most
// kMaxKeyFileBytes long, owned by root or by the user reading it (anyone else could replace the key), and neither
// readable nor writable by group or others (mode 0600 or 0400). Symbolic links are followed (secret stores link
// their files), the checks apply to the file reached.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace mg::crypto {

// The largest key file: a 36-byte key || salt in hex with separators and a newline is about 110 characters.
inline constexpr size_t kMaxKeyFileBytes = 512;

// Reads the whole key file at path into *raw (the caller wipes it). On failure *why says what is wrong with the
// file, in words that follow its name: "is a FIFO, not a regular file", "has mode 0644: ...".
bool read_key_file(const std::string& path, std::string* raw, std::string* why);

// Reads fd (standard input for `key=-`) to its end, at most kMaxKeyFileBytes, into *raw. A terminal is refused:
// the key would be echoed on screen.
bool read_key_stream(int fd, std::string* raw, std::string* why);

enum class KeyText { kOk, kNotHex, kWrongLength };
// Key material as a file holds it: exactly `want` raw bytes, unless they are all hex digits and white space (a
// random raw key is that with probability (22/256)^20, i.e. never); otherwise hex text, white space ignored
// (crypto::parse_hex: optional 0x, ':' between bytes). want 0: hex text only. *bytes gets the decoded bytes
// (kOk, and kWrongLength so a message can say how many there were).
KeyText decode_key_text(std::string_view raw, size_t want, std::string* bytes);

// `text` as an error message may quote it (an item, a value, a key_file path), or "<hidden: may hold a key>" when
// it holds a run of 8 or more hex digits (':' separators ignored): a typo such as `key:HEX`, a missing comma, or a
// key written where its file's path belongs must not print the key.
std::string quotable(std::string_view text);

}  // namespace mg::crypto
