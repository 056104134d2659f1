// Internal to lib/esp: what the encapsulation and decapsulation bursts (encap.cpp, decap.cpp) share. Each burst runs
// in stages over chunks of up to kChunk packets: checks and header work per packet, then one AEAD burst per SA, then
// the verdicts. Failed mbufs are moved behind the successful ones with std::rotate, which keeps both groups in order
// without allocating.
#pragma once

#include <rte_mbuf.h>

#include <algorithm>
#include <cstring>

#include "esp/esp.h"

namespace mg::esp::detail {


constexpr uint16_t kChunk = 64;
constexpr uint32_t kEspHdr = 8;
constexpr uint32_t kIv = crypto::kIvLen;
constexpr uint32_t kIcv = crypto::kIcvLen;
constexpr uint32_t kMinEsp = kEspHdr + kIv + 2 + kIcv;  // header, IV, pad length + next header, ICV

inline void count_drop(uint64_t* drops, Drop d) noexcept { ++drops[size_t(d)]; }

inline uint8_t* mtod(rte_mbuf* m) noexcept { return rte_pktmbuf_mtod(m, uint8_t*); }

inline uint8_t inner_tos(const uint8_t* ip, uint8_t ver) noexcept {
  return ver == 4 ? ip[1] : uint8_t((ip[0] & 0x0f) << 4 | ip[1] >> 4);
}

// Verdicts of a chunk's packets.
constexpr uint8_t kGood = 0, kFailed = 1, kTaken = 2;  // kTaken: handed to the host list, no longer in pkts

// Where a burst's survivors are: pkts[0..good) decapsulated or encrypted, pkts[good..kept) failed, in order.
struct Kept {
  uint16_t good = 0, kept = 0;
};

// Compacts chunk[0..c) by verdict: goods first, then failures, each group in its original order; taken ones are
// left out. Returns the goods and the total kept.
inline Kept compact(rte_mbuf** chunk, const uint8_t* bad, uint16_t c) noexcept {
  rte_mbuf* fails[kChunk];
  uint16_t g = 0, f = 0;
  for (uint16_t i = 0; i < c; ++i) {
    if (bad[i] == kGood) chunk[g++] = chunk[i];
    else if (bad[i] == kFailed) fails[f++] = chunk[i];
  }
  std::memcpy(chunk + g, fails, f * sizeof(rte_mbuf*));
  return Kept{g, uint16_t(g + f)};
}

// Appends a compacted chunk at pkts + off to the earlier chunks' survivors *k (off >= k->kept): its goods behind
// their goods, its failures behind their failures.
inline void merge_chunk(rte_mbuf** pkts, Kept* k, uint32_t off, Kept chunk) noexcept {
  if (k->kept != off) std::memmove(pkts + k->kept, pkts + off, chunk.kept * sizeof(rte_mbuf*));
  if (k->good != k->kept && chunk.good != 0)
    std::rotate(pkts + k->good, pkts + k->kept, pkts + k->kept + chunk.good);
  k->good = uint16_t(k->good + chunk.good);
  k->kept = uint16_t(k->kept + chunk.kept);
}

inline void write_aad(uint8_t* aad, uint32_t spi, uint64_t seq, bool esn, uint32_t* aad_len) noexcept {
  net::store_be32(aad, spi);
  if (esn) {
    net::store_be32(aad + 4, uint32_t(seq >> 32));
    net::store_be32(aad + 8, uint32_t(seq));
    *aad_len = 12;
  } else {
    net::store_be32(aad + 4, uint32_t(seq));
    *aad_len = 8;
  }
}

}  // namespace mg::esp::detail
