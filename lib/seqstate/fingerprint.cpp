#include <sodium.h>

#include "seqstate/seqstate.h"

namespace mg::seqstate {

namespace {

// The BLAKE2b key: a fingerprint is useful for nothing but naming this state (no other hash of the key, e.g. a
// key id of another tool, can equal it).
constexpr char kDomain[] = "meshgate seqstate v1: outbound ESP key material";

}  // namespace

std::string Fingerprint::hex() const {
  static const char d[] = "0123456789abcdef";
  std::string s(64, '0');
  for (size_t i = 0; i < 32; ++i) {
    s[2 * i] = d[bytes[i] >> 4];
    s[2 * i + 1] = d[bytes[i] & 15];
  }
  return s;
}

// The whole key material, salt included: the AEAD nonce is salt || IV, so (key, salt) is what must not repeat
// an IV.
Fingerprint fingerprint(std::span<const uint8_t> keymat) noexcept {
  Fingerprint f;
  crypto_generichash(f.bytes, sizeof f.bytes, keymat.data(), keymat.size(),
                     reinterpret_cast<const unsigned char*>(kDomain), sizeof kDomain - 1);
  return f;
}

}  // namespace mg::seqstate
