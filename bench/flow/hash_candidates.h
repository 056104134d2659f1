// The flow-hash candidates that were measured against XXH3 (flow_bench.cpp, test_hash_choice.cpp), kept so the
// choice can be re-checked on other CPUs. NOT used by the data plane: flow.h's flow_hash() is XXH3-64.
// Header-only; needs the DPDK include path (rte_thash) and librte_hash for Toeplitz, and SSE4.2 for CRC32-C.
//
// Each candidate maps a FlowKey's hashed prefix and a 64-bit seed to 64 bits, as the pin table and selection
// table need. CRC32-C and Toeplitz give only 32 bits; they are spread over 64 with a multiply so that the bits
// the selection table reads (upper 32) and the pin table reads (lower) both vary, but the entropy stays 32 bits.
#pragma once

#ifndef ALLOW_EXPERIMENTAL_API
#define ALLOW_EXPERIMENTAL_API  // rte_thash_gfni is experimental in DPDK 22.11
#endif

#include <nmmintrin.h>
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // inside GCC's AVX-512 intrinsics, via rte_thash_gfni
#include <rte_thash.h>
#pragma GCC diagnostic pop

#include <array>
#include <cstdint>
#include <cstring>

#include "net/flow_key.h"

#define XXH_INLINE_ALL
#include <xxhash.h>

namespace mg::flow::candidates {

inline uint64_t widen32(uint32_t h) noexcept { return (uint64_t(h) * 0x9e3779b97f4a7c15ull) ^ h; }

inline uint64_t xxh3(const net::FlowKey& k, uint64_t seed) noexcept {
  return XXH3_64bits_withSeed(&k, k.hash_len(), seed);
}

// Hardware CRC32-C, 8 bytes per instruction; the seed is the initial CRC value.
inline uint64_t crc32c(const net::FlowKey& k, uint64_t seed) noexcept {
  const uint8_t* p = reinterpret_cast<const uint8_t*>(&k);
  uint64_t c = uint32_t(seed);
  for (uint32_t off = 0; off < k.hash_len(); off += 8) {
    uint64_t w;
    std::memcpy(&w, p + off, 8);
    c = _mm_crc32_u64(c, w);
  }
  return widen32(uint32_t(c));
}

// Toeplitz as NICs compute RSS: the seed expands into a 52-byte key (40 hashed bytes + 4, rounded up).
class Toeplitz {
 public:
  static constexpr int kKeyLen = 52;
  explicit Toeplitz(uint64_t seed) noexcept {
    uint64_t x = seed;
    for (int i = 0; i < kKeyLen; i += 4) {
      x = x * 6364136223846793005ull + 1442695040888963407ull;
      const uint32_t v = uint32_t(x >> 32);
      std::memcpy(&key_[size_t(i)], &v, 4);
    }
    rte_convert_rss_key(reinterpret_cast<const uint32_t*>(key_.data()), reinterpret_cast<uint32_t*>(be_key_.data()),
                        kKeyLen);
#if defined(__GFNI__) && defined(__AVX512F__)
    rte_thash_complete_matrix(matrix_.data(), key_.data(), kKeyLen);
#endif
  }
  // Bit-serial software Toeplitz (rte_softrss_be): what a CPU without GFNI pays.
  uint64_t soft(const net::FlowKey& k) const noexcept {
    uint32_t w[sizeof(net::FlowKey) / 4];  // rte_softrss* take the tuple as host-order words
    const uint32_t n = k.hash_len() / 4;
    for (uint32_t i = 0; i < n; ++i) {
      std::memcpy(&w[i], reinterpret_cast<const uint8_t*>(&k) + 4 * i, 4);
      w[i] = __builtin_bswap32(w[i]);
    }
    return widen32(rte_softrss_be(w, n, be_key_.data()));
  }
  static constexpr bool has_gfni() noexcept {
#if defined(__GFNI__) && defined(__AVX512F__)
    return true;
#else
    return false;
#endif
  }
  // GFNI + AVX-512 Toeplitz (rte_thash_gfni); 0 where the CPU or build lacks them.
  uint64_t gfni(const net::FlowKey& k) const noexcept {
#if defined(__GFNI__) && defined(__AVX512F__)
    return widen32(rte_thash_gfni(matrix_.data(), reinterpret_cast<const uint8_t*>(&k), int(k.hash_len())));
#else
    (void)k;
    return 0;
#endif
  }

 private:
  alignas(64) std::array<uint64_t, kKeyLen * 8> matrix_{};
  std::array<uint8_t, kKeyLen> key_{};
  std::array<uint8_t, kKeyLen> be_key_{};
};

}  // namespace mg::flow::candidates
