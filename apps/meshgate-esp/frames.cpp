#include "frames.h"

#include <pcap/pcap.h>

namespace mg::esptool {

int link_l2_len(int dlt) noexcept {
  switch (dlt) {
    case DLT_EN10MB: return 14;
    case DLT_RAW:
#ifdef DLT_IPV4
    case DLT_IPV4:
    case DLT_IPV6:
#endif
      return 0;
    default: return -1;
  }
}

FrameKind classify_frame(int l2len, const uint8_t* data, uint32_t caplen, uint32_t len, uint32_t max_l3,
                         Frame* out) noexcept {
  uint32_t off = uint32_t(l2len);
  // A truncated capture can be neither encrypted nor verified.
  if (caplen < off || caplen != len) return FrameKind::kNotIp;
  if (l2len == 14) {
    uint16_t et = uint16_t(data[12] << 8 | data[13]);
    if (et == 0x8100 && caplen >= 18) {  // one VLAN tag
      et = uint16_t(data[16] << 8 | data[17]);
      off = 18;
    }
    if (et != 0x0800 && et != 0x86dd) return FrameKind::kNotIp;
  }
  const uint32_t l3len = caplen - off;
  if (l3len > max_l3) return FrameKind::kTooBig;
  out->l3_off = off;
  out->l3_len = l3len;
  return FrameKind::kIp;
}

}  // namespace mg::esptool
