#include "crypto/aead.h"

#include <intel-ipsec-mb.h>
#include <sodium.h>

#include <cstring>
#include <mutex>
#include <new>

namespace mg::crypto {

namespace {

using SealFn = void (*)(const AeadCtx&, AeadOp*, uint16_t) noexcept;
using OpenFn = uint16_t (*)(const AeadCtx&, AeadOp*, uint16_t) noexcept;

// IPsec-MB's direct API goes through function pointers in an IMB_MGR chosen for this CPU (SSE, AVX2,
// AVX-512/VAES). One manager serves every thread: the direct GCM and ChaCha calls keep all their state in
// the caller's context structs, and the manager itself is only read.
IMB_MGR* imb_manager() {
  static IMB_MGR* mgr = [] {
    IMB_MGR* m = alloc_mb_mgr(0);
    if (m != nullptr) init_mb_mgr_auto(m, nullptr);
    return m;
  }();
  return mgr;
}

bool sodium_ready() {
  static const bool ok = sodium_init() >= 0;
  return ok;
}

}  // namespace

// 64-byte alignment: IPsec-MB's AVX-512 code wants the expanded key on a cache line.
class alignas(64) AeadCtx {
 public:
  SealFn seal;
  OpenFn open;
  Cipher cipher;
  Engine engine;
  uint8_t salt[kSaltLen];
  aes_gcm_enc_dec_t gcm_enc;
  aes_gcm_enc_dec_t gcm_dec;
  chacha_poly_init_t cp_init;
  chacha_poly_enc_dec_update_t cp_enc;
  chacha_poly_enc_dec_update_t cp_dec;
  chacha_poly_finalize_t cp_final;
  alignas(64) union {
    gcm_key_data gcm;
    uint8_t raw[32];
  } key;

  void nonce(uint8_t out[kNonceLen], const uint8_t iv[kIvLen]) const noexcept {
    std::memcpy(out, salt, kSaltLen);
    std::memcpy(out + kSaltLen, iv, kIvLen);
  }
};

namespace {

void gcm_seal(const AeadCtx& c, AeadOp* ops, uint16_t n) noexcept {
  gcm_context_data gctx;
  alignas(16) uint8_t nonce[16];
  for (uint16_t i = 0; i < n; ++i) {
    AeadOp& o = ops[i];
    c.nonce(nonce, o.iv);
    c.gcm_enc(&c.key.gcm, &gctx, o.data, o.data, o.len, nonce, o.aad, o.aad_len, o.icv, kIcvLen);
  }
}

uint16_t gcm_open(const AeadCtx& c, AeadOp* ops, uint16_t n) noexcept {
  gcm_context_data gctx;
  alignas(16) uint8_t nonce[16];
  alignas(16) uint8_t tag[kIcvLen];
  uint16_t good = 0;
  for (uint16_t i = 0; i < n; ++i) {
    AeadOp& o = ops[i];
    c.nonce(nonce, o.iv);
    c.gcm_dec(&c.key.gcm, &gctx, o.data, o.data, o.len, nonce, o.aad, o.aad_len, tag, kIcvLen);
    o.ok = ct_equal(tag, o.icv, kIcvLen) ? 1 : 0;
    good += o.ok;
  }
  return good;
}

void imb_cp_seal(const AeadCtx& c, AeadOp* ops, uint16_t n) noexcept {
  chacha20_poly1305_context_data cctx;
  uint8_t nonce[kNonceLen];
  for (uint16_t i = 0; i < n; ++i) {
    AeadOp& o = ops[i];
    c.nonce(nonce, o.iv);
    c.cp_init(c.key.raw, &cctx, nonce, o.aad, o.aad_len);
    c.cp_enc(c.key.raw, &cctx, o.data, o.data, o.len);
    c.cp_final(&cctx, o.icv, kIcvLen);
  }
}

uint16_t imb_cp_open(const AeadCtx& c, AeadOp* ops, uint16_t n) noexcept {
  chacha20_poly1305_context_data cctx;
  uint8_t nonce[kNonceLen];
  uint8_t tag[kIcvLen];
  uint16_t good = 0;
  for (uint16_t i = 0; i < n; ++i) {
    AeadOp& o = ops[i];
    c.nonce(nonce, o.iv);
    c.cp_init(c.key.raw, &cctx, nonce, o.aad, o.aad_len);
    c.cp_dec(c.key.raw, &cctx, o.data, o.data, o.len);
    c.cp_final(&cctx, tag, kIcvLen);
    o.ok = ct_equal(tag, o.icv, kIcvLen) ? 1 : 0;
    good += o.ok;
  }
  return good;
}

void sodium_seal(const AeadCtx& c, AeadOp* ops, uint16_t n) noexcept {
  uint8_t nonce[kNonceLen];
  for (uint16_t i = 0; i < n; ++i) {
    AeadOp& o = ops[i];
    c.nonce(nonce, o.iv);
    crypto_aead_chacha20poly1305_ietf_encrypt_detached(o.data, o.icv, nullptr, o.data, o.len, o.aad,
                                                       o.aad_len, nullptr, nonce, c.key.raw);
  }
}

uint16_t sodium_open(const AeadCtx& c, AeadOp* ops, uint16_t n) noexcept {
  uint8_t nonce[kNonceLen];
  uint16_t good = 0;
  for (uint16_t i = 0; i < n; ++i) {
    AeadOp& o = ops[i];
    c.nonce(nonce, o.iv);
    // libsodium checks the tag before it decrypts and compares in constant time.
    o.ok = crypto_aead_chacha20poly1305_ietf_decrypt_detached(o.data, nullptr, o.data, o.len, o.icv, o.aad,
                                                              o.aad_len, nonce, c.key.raw) == 0;
    good += o.ok;
  }
  return good;
}

}  // namespace

uint32_t key_len(Cipher c) noexcept {
  switch (c) {
    case Cipher::kAesGcm128: return 16;
    case Cipher::kAesGcm256: return 32;
    case Cipher::kChacha20Poly1305: return 32;
  }
  return 0;
}

const char* to_string(Cipher c) noexcept {
  switch (c) {
    case Cipher::kAesGcm128: return "aes-gcm-128";
    case Cipher::kAesGcm256: return "aes-gcm-256";
    case Cipher::kChacha20Poly1305: return "chacha20-poly1305";
  }
  return "?";
}

const char* to_string(Engine e) noexcept {
  return e == Engine::kIpsecMb ? "ipsecmb" : "sodium";
}

bool parse_cipher(std::string_view s, Cipher* out) noexcept {
  if (s == "aes-gcm-128" || s == "aes128gcm16") { *out = Cipher::kAesGcm128; return true; }
  if (s == "aes-gcm-256" || s == "aes256gcm16") { *out = Cipher::kAesGcm256; return true; }
  if (s == "chacha20-poly1305" || s == "chacha20poly1305") { *out = Cipher::kChacha20Poly1305; return true; }
  return false;
}

bool parse_engine(std::string_view s, Engine* out) noexcept {
  if (s == "ipsecmb" || s == "ipsec-mb") { *out = Engine::kIpsecMb; return true; }
  if (s == "sodium" || s == "libsodium") { *out = Engine::kSodium; return true; }
  return false;
}

bool engine_supports(Engine e, Cipher c) noexcept {
  return e == Engine::kIpsecMb || c == Cipher::kChacha20Poly1305;
}

void AeadCtxDeleter::operator()(AeadCtx* c) const noexcept {
  if (c == nullptr) return;
  secure_wipe(c, sizeof(*c));  // expanded key schedule, hash subkeys, raw key and salt
  c->~AeadCtx();
  ::operator delete(c, std::align_val_t{alignof(AeadCtx)});
}

AeadPtr make_aead(Cipher c, Engine e, std::span<const uint8_t> keymat, std::string* err) {
  const uint32_t klen = key_len(c);
  if (keymat.size() != klen + kSaltLen) {
    if (err) *err = std::string("key for ") + to_string(c) + " must be " + std::to_string(klen + kSaltLen) +
                    " bytes (key + 4-byte salt), got " + std::to_string(keymat.size());
    return nullptr;
  }
  if (!engine_supports(e, c)) {
    if (err) *err = std::string("engine ") + to_string(e) + " does not implement " + to_string(c);
    return nullptr;
  }
  if (e == Engine::kSodium && !sodium_ready()) {
    if (err) *err = "libsodium failed to initialise";
    return nullptr;
  }
  IMB_MGR* mgr = nullptr;
  if (e == Engine::kIpsecMb) {
    mgr = imb_manager();
    if (mgr == nullptr) {
      if (err) *err = "intel-ipsec-mb: cannot allocate a manager";
      return nullptr;
    }
  }
  void* mem = ::operator new(sizeof(AeadCtx), std::align_val_t{alignof(AeadCtx)}, std::nothrow);
  if (mem == nullptr) {
    if (err) *err = "out of memory";
    return nullptr;
  }
  std::memset(mem, 0, sizeof(AeadCtx));
  AeadPtr ctx(new (mem) AeadCtx());
  ctx->cipher = c;
  ctx->engine = e;
  std::memcpy(ctx->salt, keymat.data() + klen, kSaltLen);
  if (e == Engine::kSodium) {
    std::memcpy(ctx->key.raw, keymat.data(), klen);
    ctx->seal = sodium_seal;
    ctx->open = sodium_open;
  } else if (c == Cipher::kChacha20Poly1305) {
    std::memcpy(ctx->key.raw, keymat.data(), klen);
    ctx->cp_init = mgr->chacha20_poly1305_init;
    ctx->cp_enc = mgr->chacha20_poly1305_enc_update;
    ctx->cp_dec = mgr->chacha20_poly1305_dec_update;
    ctx->cp_final = mgr->chacha20_poly1305_finalize;
    ctx->seal = imb_cp_seal;
    ctx->open = imb_cp_open;
  } else {
    if (c == Cipher::kAesGcm128) {
      IMB_AES128_GCM_PRE(mgr, keymat.data(), &ctx->key.gcm);
      ctx->gcm_enc = mgr->gcm128_enc;
      ctx->gcm_dec = mgr->gcm128_dec;
    } else {
      IMB_AES256_GCM_PRE(mgr, keymat.data(), &ctx->key.gcm);
      ctx->gcm_enc = mgr->gcm256_enc;
      ctx->gcm_dec = mgr->gcm256_dec;
    }
    ctx->seal = gcm_seal;
    ctx->open = gcm_open;
  }
  return ctx;
}

void seal_burst(const AeadCtx& ctx, AeadOp* ops, uint16_t n) noexcept { ctx.seal(ctx, ops, n); }
uint16_t open_burst(const AeadCtx& ctx, AeadOp* ops, uint16_t n) noexcept { return ctx.open(ctx, ops, n); }
Cipher cipher_of(const AeadCtx& ctx) noexcept { return ctx.cipher; }
Engine engine_of(const AeadCtx& ctx) noexcept { return ctx.engine; }

bool ct_equal(const uint8_t* a, const uint8_t* b, size_t n) noexcept {
  // Word-wise in registers (a volatile byte accumulator cost ~30 ns per packet); the empty asm hides the
  // value from the optimiser so it cannot add an early exit.
  uint64_t acc = 0;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t x, y;
    std::memcpy(&x, a + i, 8);
    std::memcpy(&y, b + i, 8);
    acc |= x ^ y;
  }
  for (; i < n; ++i) acc |= uint8_t(a[i] ^ b[i]);
  __asm__("" : "+r"(acc));
  return acc == 0;
}

void secure_wipe(void* p, size_t n) noexcept { sodium_memzero(p, n); }

bool parse_hex(std::string_view hex, std::string* out) noexcept {
  auto nib = [](char ch) -> int {
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
  };
  if (hex.starts_with("0x") || hex.starts_with("0X")) hex.remove_prefix(2);
  out->clear();
  size_t i = 0;
  while (i < hex.size()) {
    if (hex[i] == ':' && !out->empty()) { ++i; continue; }
    if (i + 1 >= hex.size()) return false;
    const int hi = nib(hex[i]), lo = nib(hex[i + 1]);
    if (hi < 0 || lo < 0) return false;
    out->push_back(char(hi << 4 | lo));
    i += 2;
  }
  return !out->empty();
}

}  // namespace mg::crypto
