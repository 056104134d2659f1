// libFuzzer target for the keying interface's messages (lib/keying): keying::validate() on the raw datagram, with
// the rules of keying_wire.h restated here independently. Inputs shorter than a header are also tried with a
// valid header prepended (type from the first byte), so the fuzzer reaches every body check.
// Checked (each failure traps): validate says ok exactly for messages that satisfy the restated rules; a refusal
// has a status and a reason that holds no run of the key bytes; a refused request keeps no key bytes; the reply
// encodes to exactly header + reply.
#include <cstdint>
#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "fuzz_check.h"
#include "keying/keying.h"

namespace k = mg::keying;

namespace {

bool zero(const uint8_t* p, size_t n) {
  for (size_t i = 0; i < n; ++i)
    if (p[i]) return false;
  return true;
}

bool sel_ok(const mg_keying_sel& s) {
  if (!zero(s.pad, 3)) return false;
  if (s.family == 4) return zero(s.local + 4, 12) && zero(s.remote + 4, 12);
  if (s.family == 6) return true;
  return s.family == 0 && s.if_id != 0 && zero(s.local, 16) && zero(s.remote, 16);
}

bool encap_ok(uint8_t e, uint16_t sp, uint16_t dp) { return e == 0 ? (!sp && !dp) : e == 1 && sp && dp; }

bool satisfies(const uint8_t* d, size_t n) {
  if (n < sizeof(mg_keying_hdr)) return false;
  mg_keying_hdr h;
  std::memcpy(&h, d, sizeof h);
  if (h.magic != MG_KEYING_MAGIC || h.version != MG_KEYING_VERSION || h.len != n) return false;
  const uint8_t* b = d + sizeof h;
  const size_t bl = n - sizeof h;
  switch (h.type) {
    case MG_KEY_HELLO: return bl == 0;
    case MG_KEY_GET_SPI: {
      if (bl != sizeof(mg_keying_spi_req)) return false;
      mg_keying_spi_req r;
      std::memcpy(&r, b, sizeof r);
      return sel_ok(r.sel);
    }
    case MG_KEY_ADD_SA: {
      if (bl != sizeof(mg_keying_sa)) return false;
      mg_keying_sa s;
      std::memcpy(&s, b, sizeof s);
      const size_t want = s.cipher == 1 ? 20 : (s.cipher == 2 || s.cipher == 3) ? 36 : 0;
      const uint32_t w = s.replay_window;
      const bool window = s.dir == 2 ? w == 0 : (w == 0 || (w >= 64 && w <= 65536 && !(w & (w - 1))));
      const bool life = !(s.soft_bytes && s.hard_bytes && s.soft_bytes > s.hard_bytes) &&
                        !(s.soft_packets && s.hard_packets && s.soft_packets > s.hard_packets);
      return sel_ok(s.sel) && s.spi != 0 && (s.dir == 1 || s.dir == 2) && want != 0 && s.keylen == want &&
             zero(s.key + want, sizeof s.key - want) && s.esn <= 1 && encap_ok(s.encap, s.sport, s.dport) &&
             zero(s.pad, 3) && zero(s.pad2, 4) && window && life;
    }
    case MG_KEY_UPDATE_SA: {
      if (bl != sizeof(mg_keying_update)) return false;
      mg_keying_update u;
      std::memcpy(&u, b, sizeof u);
      return u.spi != 0 && (u.dir == 1 || u.dir == 2) && encap_ok(u.encap, u.sport, u.dport) && !u.pad[0] &&
             (u.family == 6 || (u.family == 4 && zero(u.local + 4, 12) && zero(u.remote + 4, 12)));
    }
    case MG_KEY_DEL_SA:
    case MG_KEY_QUERY_SA: {
      if (bl != sizeof(mg_keying_ref)) return false;
      mg_keying_ref r;
      std::memcpy(&r, b, sizeof r);
      return r.spi != 0 && (r.dir == 1 || r.dir == 2) && zero(r.pad, 3);
    }
    default: return false;
  }
}

void one(const uint8_t* d, size_t n) {
  k::Request r;
  int32_t status = -1;
  std::string why;
  const bool ok = k::validate(d, n, &r, &status, &why);
  CHECK(ok == satisfies(d, n));
  CHECK(ok == (status == MG_KEY_OK));
  if (!ok) {
    CHECK(!why.empty() && status > 0 && status <= MG_KEY_E_BUSY);
    CHECK(zero(r.sa.key, sizeof r.sa.key));
    // The key bytes of an ADD_SA-shaped body never appear in the reason -- unless the reason stays the same with
    // other key bytes (it is then the product's own text, such as "(magic)", that the key happens to hold).
    if (n >= sizeof(mg_keying_hdr) + sizeof(mg_keying_sa)) {
      const size_t at = sizeof(mg_keying_hdr) + offsetof(mg_keying_sa, key);
      std::vector<uint8_t> other(d, d + n);
      // The key proper (keylen bytes): flipping the zero tail after it would change which rule fails.
      const size_t klen = std::min<size_t>(d[sizeof(mg_keying_hdr) + offsetof(mg_keying_sa, keylen)], MG_KEYING_MAX_KEY);
      for (size_t i = 0; i < klen; ++i) other[at + i] ^= 0x5a;
      k::Request r2;
      int32_t st2 = 0;
      std::string why2;
      k::validate(other.data(), other.size(), &r2, &st2, &why2);
      r2.wipe();
      const uint8_t* key = why2 == why ? nullptr : d + at;
      for (size_t i = 0; key != nullptr && i + 6 <= klen; ++i) {
        bool printable = true;
        for (size_t j = 0; j < 6; ++j) printable &= key[i + j] >= 0x21 && key[i + j] < 0x7f && key[i + j] != ' ';
        if (printable) CHECK(why.find(std::string(reinterpret_cast<const char*>(key + i), 6)) == std::string::npos);
      }
    }
  }
  const mg_keying_reply rep = k::reply(status, r.type == MG_KEY_ADD_SA ? r.sa.spi : 0, why);
  CHECK(rep.reason[sizeof rep.reason - 1] == 0);
  CHECK(k::encode_reply(r.type, r.seq, rep).size() == sizeof(mg_keying_hdr) + sizeof(mg_keying_reply));
  r.wipe();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > MG_KEYING_MAX_MSG) return 0;
  // As received: heap buffer of exactly the datagram's size.
  std::vector<uint8_t> exact(data, data + size);
  one(exact.data(), exact.size());
  // With a valid header in front: input byte 0 picks the type, the rest is the body.
  if (size >= 1) {
    const size_t body = size - 1;
    std::vector<uint8_t> m(sizeof(mg_keying_hdr) + body);
    const mg_keying_hdr h{MG_KEYING_MAGIC, uint16_t(MG_KEYING_VERSION), uint16_t(data[0] % 8), 1,
                          uint32_t(m.size())};
    std::memcpy(m.data(), &h, sizeof h);
    if (body) std::memcpy(m.data() + sizeof h, data + 1, body);
    one(m.data(), m.size());
  }
  return 0;
}
