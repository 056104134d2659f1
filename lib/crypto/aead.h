// mg::crypto — AEAD engines behind one burst interface, for ESP (RFC 4106 AES-GCM, RFC 7634
// ChaCha20-Poly1305): 16-byte ICV, 4-byte salt from the keying material, 8-byte explicit IV,
// nonce = salt || IV.
//
// The engine (Intel IPsec-MB direct API or libsodium) and the cipher are chosen once when an AeadCtx is
// made; a burst costs one indirect call, never one per packet.
//
// Ownership and threads: an AeadCtx owns its (expanded) key and wipes it in its destructor. It is
// immutable after make_aead(), so any number of workers may seal/open with it at once.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

namespace mg::crypto {

enum class Cipher : uint8_t { kAesGcm128, kAesGcm256, kChacha20Poly1305 };
enum class Engine : uint8_t { kIpsecMb, kSodium };

inline constexpr uint32_t kIcvLen = 16;
inline constexpr uint32_t kSaltLen = 4;
inline constexpr uint32_t kIvLen = 8;
inline constexpr uint32_t kNonceLen = kSaltLen + kIvLen;
inline constexpr uint32_t kMaxAadLen = 12;  // SPI + ESN high + ESN low

// Key length without the salt: 16, 32, 32.
uint32_t key_len(Cipher c) noexcept;
const char* to_string(Cipher c) noexcept;
const char* to_string(Engine e) noexcept;
bool parse_cipher(std::string_view s, Cipher* out) noexcept;  // "aes-gcm-128", "aes-gcm-256", "chacha20-poly1305"
bool parse_engine(std::string_view s, Engine* out) noexcept;  // "ipsecmb", "sodium"
bool engine_supports(Engine e, Cipher c) noexcept;            // libsodium: ChaCha20-Poly1305 only

// One in-place AEAD operation over contiguous bytes.
struct AeadOp {
  uint8_t* data;        // seal: plaintext in, ciphertext out; open: the reverse
  uint32_t len;
  uint32_t aad_len;     // 8 (SPI, seq) or 12 (SPI, ESN high, ESN low)
  const uint8_t* aad;
  uint8_t* icv;         // seal: written; open: the received ICV, compared in constant time
  uint8_t iv[kIvLen];   // explicit IV as on the wire
  uint8_t ok;           // open: 1 when the ICV verified (set by open_burst)
};

class AeadCtx;

struct AeadCtxDeleter {
  void operator()(AeadCtx* c) const noexcept;
};
using AeadPtr = std::unique_ptr<AeadCtx, AeadCtxDeleter>;

// keymat = key || 4-byte salt (RFC 4106 / 7634 keying material). Returns null and sets *err on a wrong
// length or an engine that lacks the cipher. The keymat buffer is the caller's (wipe it after).
AeadPtr make_aead(Cipher c, Engine e, std::span<const uint8_t> keymat, std::string* err);

// Seals ops[0..n). Never fails for valid ops.
void seal_burst(const AeadCtx& ctx, AeadOp* ops, uint16_t n) noexcept;
// Opens ops[0..n); sets ops[i].ok; returns the number that verified. With IPsec-MB the data is
// decrypted in place even when the ICV fails (the caller drops such a packet); libsodium leaves it as is.
uint16_t open_burst(const AeadCtx& ctx, AeadOp* ops, uint16_t n) noexcept;

Cipher cipher_of(const AeadCtx& ctx) noexcept;
Engine engine_of(const AeadCtx& ctx) noexcept;

// Constant-time equality of n bytes.
bool ct_equal(const uint8_t* a, const uint8_t* b, size_t n) noexcept;
// Zeroes memory in a way the compiler may not elide.
void secure_wipe(void* p, size_t n) noexcept;

// Hex of "aabb.." (no separators, or ':' allowed between bytes) into bytes; false on bad input.
bool parse_hex(std::string_view hex, std::string* out_bytes) noexcept;

}  // namespace mg::crypto
