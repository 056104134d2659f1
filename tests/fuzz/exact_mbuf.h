// Mbufs whose data lives in a malloc'd buffer of exactly the packet's size (plus the head- and tailroom asked for),
// for the fuzz targets. DPDK mempool memory is invisible to AddressSanitizer: a parser that reads one byte past
// a packet in a pool mbuf reads the next bytes of the same buffer and nothing notices. Attached as an external
// buffer, the same read lands outside a heap block and ASan stops the run.
#pragma once

#include <rte_mbuf.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>

namespace mg::fuzz {

// Heap buffers handed out and not yet freed through an mbuf: 0 after every input, or something kept an mbuf.
inline long& exact_live() {
  static long n = 0;
  return n;
}

inline void exact_free_cb(void* addr, void* opaque) {
  std::free(addr);
  delete static_cast<rte_mbuf_ext_shared_info*>(opaque);
  --exact_live();
}

// An mbuf from `mp` holding bytes[0..len) with exactly `head` bytes before and `tail` bytes after them in a heap
// block of head + len + tail bytes. Null when head + len + tail does not fit an mbuf's 16-bit buffer length.
inline rte_mbuf* exact_mbuf(rte_mempool* mp, const uint8_t* bytes, size_t len, size_t head = 0, size_t tail = 0) {
  const size_t total = head + len + tail;
  if (total > UINT16_MAX) return nullptr;
  rte_mbuf* m = rte_pktmbuf_alloc(mp);
  if (m == nullptr) std::abort();
  // malloc(0) still returns a distinct block: any read of an empty packet is caught.
  auto* buf = static_cast<uint8_t*>(std::malloc(total));
  if (buf == nullptr) std::abort();
  if (len != 0) std::memcpy(buf + head, bytes, len);
  auto* sh = new rte_mbuf_ext_shared_info{};
  sh->free_cb = exact_free_cb;
  sh->fcb_opaque = sh;
  rte_mbuf_ext_refcnt_set(sh, 1);
  rte_pktmbuf_attach_extbuf(m, buf, rte_iova_t(reinterpret_cast<uintptr_t>(buf)), uint16_t(total), sh);
  m->data_off = uint16_t(head);
  m->data_len = uint16_t(len);
  m->pkt_len = uint32_t(len);
  ++exact_live();
  return m;
}

}  // namespace mg::fuzz
