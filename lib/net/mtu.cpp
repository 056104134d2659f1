#include "net/mtu.h"

#include <algorithm>
#include <cstring>

#include "net/net.h"

namespace mg::net {

namespace {

constexpr uint8_t kOptEnd = 0, kOptNop = 1;
constexpr uint8_t kOptCopied = 0x80;  // RFC 791: the option goes into every fragment
constexpr uint8_t kTcpSyn = 0x02;
constexpr uint8_t kTcpOptMss = 2;

// Walks IPv4 options opt[0..len): calls f(offset, length) for each option with a type/length pair and returns
// false on a length that runs past the header. End-of-list stops the walk; NOP is one byte.
template <class F>
bool walk_ipv4_options(const uint8_t* opt, uint32_t len, F&& f) noexcept {
  for (uint32_t o = 0; o < len;) {
    if (opt[o] == kOptEnd) return true;
    if (opt[o] == kOptNop) {
      ++o;
      continue;
    }
    if (o + 1 >= len || opt[o + 1] < 2 || o + opt[o + 1] > len) return false;
    f(o, uint32_t(opt[o + 1]));
    o += opt[o + 1];
  }
  return true;
}

}  // namespace

uint16_t csum_replace16(uint16_t csum, uint32_t off, uint16_t old_v, uint16_t new_v) noexcept {
  if (off & 1) {
    old_v = uint16_t(old_v << 8 | old_v >> 8);
    new_v = uint16_t(new_v << 8 | new_v >> 8);
  }
  uint32_t s = uint32_t(uint16_t(~csum)) + uint16_t(~old_v) + new_v;
  s = (s & 0xffff) + (s >> 16);
  s = (s & 0xffff) + (s >> 16);
  return uint16_t(~s);
}

MssResult clamp_mss(uint8_t* ip, uint32_t len, uint16_t mss) noexcept {
  L3Info li;
  if (parse_l3(ip, len, &li) != ParseStatus::kOk) return MssResult::kMalformed;
  if (li.proto != kProtoTcp || li.later_fragment || mss == 0) return MssResult::kNotSyn;
  const uint32_t t = li.l4_off, end = li.ip_len;
  if (t + 20 > end) return li.fragment ? MssResult::kNotSyn : MssResult::kMalformed;
  uint8_t* tcp = ip + t;
  if (!(tcp[13] & kTcpSyn)) return MssResult::kNotSyn;
  const uint32_t doff = uint32_t(tcp[12] >> 4) * 4;
  if (doff < 20 || t + doff > end) return MssResult::kMalformed;
  for (uint32_t o = 20; o < doff;) {
    const uint8_t kind = tcp[o];
    if (kind == kOptEnd) break;
    if (kind == kOptNop) {
      ++o;
      continue;
    }
    if (o + 1 >= doff || tcp[o + 1] < 2 || o + tcp[o + 1] > doff) return MssResult::kMalformed;
    if (kind == kTcpOptMss) {
      if (tcp[o + 1] != 4) return MssResult::kMalformed;
      const uint16_t cur = load_be16(tcp + o + 2);
      if (cur <= mss) return MssResult::kUnchanged;
      store_be16(tcp + o + 2, mss);
      store_be16(tcp + 16, csum_replace16(load_be16(tcp + 16), o + 2, cur, mss));
      return MssResult::kClamped;
    }
    o += tcp[o + 1];
  }
  return MssResult::kNoOption;
}

bool ipv4_frag_plan(const uint8_t* ip, uint32_t len, uint32_t mtu, Ipv4FragPlan* p) noexcept {
  if (len < 20 || (ip[0] >> 4) != 4) return false;
  const uint32_t hl = uint32_t(ip[0] & 0x0f) * 4, total = load_be16(ip + 2);
  if (hl < 20 || hl > len || total < hl || total > len) return false;
  const uint16_t fo = load_be16(ip + 6);
  if (fo & kIpv4Df) return false;
  uint32_t copied = 0;
  if (!walk_ipv4_options(ip + 20, hl - 20, [&](uint32_t o, uint32_t l) {
        if (ip[20 + o] & kOptCopied) copied += l;
      }))
    return false;
  const uint32_t hl_rest = 20 + (copied + 3) / 4 * 4;
  const uint32_t payload = total - hl;
  // The fragments' offsets must stay inside the 13-bit field, as the original's end must.
  if (uint32_t(fo & kIpv4OffMask) * 8 + payload > 0xffff) return false;
  if (mtu < hl + 8 || mtu < hl_rest + 8) return false;
  Ipv4FragPlan r;
  r.hl_first = uint16_t(hl);
  r.hl_rest = uint16_t(hl_rest);
  r.payload = uint16_t(payload);
  r.data_first = uint16_t(std::min<uint32_t>((mtu - hl) & ~7u, payload));
  r.data_rest = uint16_t((mtu - hl_rest) & ~7u);
  r.count = uint16_t(1 + (payload - r.data_first + r.data_rest - 1) / r.data_rest);
  *p = r;
  return true;
}

uint16_t ipv4_frag_header(const uint8_t* ip, const Ipv4FragPlan& p, uint16_t i, uint8_t* out) noexcept {
  uint32_t h;
  if (i == 0) {
    h = p.hl_first;
    std::memcpy(out, ip, h);
  } else {
    std::memcpy(out, ip, 20);
    uint32_t w = 20;
    walk_ipv4_options(ip + 20, p.hl_first - 20u, [&](uint32_t o, uint32_t l) {
      if (ip[20 + o] & kOptCopied) {
        std::memcpy(out + w, ip + 20 + o, l);
        w += l;
      }
    });
    while (w < p.hl_rest) out[w++] = kOptEnd;
    h = p.hl_rest;
    out[0] = uint8_t(0x40 | h / 4);
  }
  const uint16_t fo = load_be16(ip + 6);
  const bool mf = i + 1 < p.count || (fo & kIpv4Mf) != 0;
  const uint32_t off8 = uint32_t(fo & kIpv4OffMask) + ipv4_frag_offset(p, i) / 8;
  store_be16(out + 2, uint16_t(h + ipv4_frag_len(p, i)));
  store_be16(out + 6, uint16_t((fo & 0x8000) | (mf ? kIpv4Mf : 0) | off8));
  out[10] = out[11] = 0;
  store_be16(out + 10, ipv4_header_checksum(out, h));
  return uint16_t(h);
}

}  // namespace mg::net
