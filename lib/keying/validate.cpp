// The one validation of a keying message (keying_wire.h): every field of every request type, before anything
// acts on it. Key bytes are copied only into the Request the caller wipes; no message here quotes them.
#include <cstring>
#include <string>

#include "keying/keying.h"

namespace mg::keying {

size_t key_len(uint8_t cipher) noexcept {
  switch (cipher) {
    case MG_KEY_AES_GCM_128: return 20;
    case MG_KEY_AES_GCM_256: return 36;
    case MG_KEY_CHACHA20_POLY1305: return 36;
    default: return 0;
  }
}

const char* cipher_name(uint8_t cipher) noexcept {
  switch (cipher) {
    case MG_KEY_AES_GCM_128: return "aes-gcm-128";
    case MG_KEY_AES_GCM_256: return "aes-gcm-256";
    case MG_KEY_CHACHA20_POLY1305: return "chacha20-poly1305";
    default: return "?";
  }
}

const char* type_name(uint16_t type) noexcept {
  switch (type & ~MG_KEY_REPLY) {
    case MG_KEY_HELLO: return "hello";
    case MG_KEY_GET_SPI: return "get-spi";
    case MG_KEY_ADD_SA: return "add-sa";
    case MG_KEY_UPDATE_SA: return "update-sa";
    case MG_KEY_DEL_SA: return "del-sa";
    case MG_KEY_QUERY_SA: return "query-sa";
    case MG_KEY_EXPIRE: return "expire";
    default: return "?";
  }
}

void Request::wipe() noexcept {
  volatile uint8_t* p = sa.key;
  for (size_t i = 0; i < sizeof sa.key; ++i) p[i] = 0;
  sa.keylen = 0;
}

namespace {

bool zero(const void* p, size_t n) noexcept {
  const auto* b = static_cast<const uint8_t*>(p);
  for (size_t i = 0; i < n; ++i)
    if (b[i]) return false;
  return true;
}

// The selector: if_id, or a family and two addresses (IPv4 in the first 4 bytes, the rest zero).
bool check_sel(const mg_keying_sel& s, std::string* why) {
  if (!zero(s.pad, sizeof s.pad)) return *why = "selector padding is not zero", false;
  if (s.family != 4 && s.family != 6 && !(s.family == 0 && s.if_id != 0))
    return *why = "selector family " + std::to_string(s.family) + " (4, 6, or 0 with an if_id)", false;
  if (s.family == 4 && (!zero(s.local + 4, 12) || !zero(s.remote + 4, 12)))
    return *why = "IPv4 selector addresses have bytes beyond the first 4", false;
  if (s.family == 0 && (!zero(s.local, 16) || !zero(s.remote, 16)))
    return *why = "selector addresses without a family", false;
  return true;
}

bool check_dir(uint8_t d, std::string* why) {
  if (d == MG_KEY_DIR_IN || d == MG_KEY_DIR_OUT) return true;
  *why = "direction " + std::to_string(d) + " (1 inbound, 2 outbound)";
  return false;
}

bool check_encap(uint8_t encap, uint16_t sport, uint16_t dport, std::string* why) {
  if (encap == MG_KEY_ENCAP_NONE) {
    if (sport || dport) return *why = "UDP ports without UDP encapsulation", false;
    return true;
  }
  if (encap != MG_KEY_ENCAP_UDP) return *why = "encapsulation " + std::to_string(encap) + " (0 none, 1 UDP)", false;
  if (!sport || !dport) return *why = "UDP encapsulation needs both ports", false;
  return true;
}

bool check_sa(const mg_keying_sa& s, std::string* why) {
  if (!check_sel(s.sel, why)) return false;
  if (s.spi == 0) return *why = "SPI 0 is reserved (RFC 4303)", false;
  if (!check_dir(s.dir, why)) return false;
  const size_t want = key_len(s.cipher);
  if (want == 0)
    return *why = "cipher " + std::to_string(s.cipher) + " (1 aes-gcm-128, 2 aes-gcm-256, 3 chacha20-poly1305)", false;
  if (s.keylen != want)
    return *why = std::string(cipher_name(s.cipher)) + " needs " + std::to_string(want) + " bytes of key and salt, not " +
                  std::to_string(s.keylen), false;
  if (!zero(s.key + s.keylen, sizeof s.key - s.keylen)) return *why = "bytes after the key are not zero", false;
  if (s.esn > 1) return *why = "esn " + std::to_string(s.esn) + " (0 or 1)", false;
  if (!check_encap(s.encap, s.sport, s.dport, why)) return false;
  if (!zero(s.pad, sizeof s.pad) || !zero(s.pad2, sizeof s.pad2)) return *why = "SA padding is not zero", false;
  if (s.dir == MG_KEY_DIR_OUT && s.replay_window != 0) return *why = "an outbound SA has no replay window", false;
  const uint32_t w = s.replay_window;
  if (w != 0 && (w < 64 || w > 65536 || (w & (w - 1))))
    return *why = "replay window " + std::to_string(w) + " (0 for the default, or a power of two 64..65536)", false;
  if ((s.soft_bytes && s.hard_bytes && s.soft_bytes > s.hard_bytes) ||
      (s.soft_packets && s.hard_packets && s.soft_packets > s.hard_packets))
    return *why = "a soft lifetime above its hard one", false;
  return true;
}

template <class T>
bool body(const uint8_t* msg, size_t len, T* out, std::string* why) {
  if (len != sizeof(mg_keying_hdr) + sizeof(T)) {
    *why = "length " + std::to_string(len) + " (this type is " + std::to_string(sizeof(mg_keying_hdr) + sizeof(T)) +
           " bytes)";
    return false;
  }
  std::memcpy(out, msg + sizeof(mg_keying_hdr), sizeof(T));
  return true;
}

}  // namespace

bool validate(const uint8_t* msg, size_t len, Request* out, int32_t* status, std::string* why) noexcept {
  try {
    *out = Request{};
    *status = MG_KEY_E_MALFORMED;
    mg_keying_hdr h{};
    if (len < sizeof h) return *why = "shorter than a header (" + std::to_string(len) + " bytes)", false;
    std::memcpy(&h, msg, sizeof h);
    if (h.magic != MG_KEYING_MAGIC) return *why = "not a keying message (magic)", false;
    out->seq = h.seq;
    out->type = h.type;
    if (h.version != MG_KEYING_VERSION) {
      *status = MG_KEY_E_VERSION;
      return *why = "version " + std::to_string(h.version) + " (this gateway speaks " +
                    std::to_string(MG_KEYING_VERSION) + ")", false;
    }
    if (h.len != len) return *why = "header length " + std::to_string(h.len) + " but " + std::to_string(len) + " bytes", false;
    bool ok = false;
    switch (h.type) {
      case MG_KEY_HELLO:
        ok = len == sizeof h || (*why = "hello has no body", false);
        break;
      case MG_KEY_GET_SPI:
        ok = body(msg, len, &out->spi, why) && check_sel(out->spi.sel, why);
        break;
      case MG_KEY_ADD_SA:
        ok = body(msg, len, &out->sa, why) && check_sa(out->sa, why);
        break;
      case MG_KEY_UPDATE_SA: {
        const mg_keying_update& u = out->update;
        if (!body(msg, len, &out->update, why)) break;
        if (u.spi == 0) {
          *why = "SPI 0 is reserved (RFC 4303)";
        } else if (!check_dir(u.dir, why) || !check_encap(u.encap, u.sport, u.dport, why)) {
        } else if ((u.family != 4 && u.family != 6) || u.pad[0]) {
          *why = "update family " + std::to_string(u.family) + " (4 or 6), or padding not zero";
        } else if (u.family == 4 && (!zero(u.local + 4, 12) || !zero(u.remote + 4, 12))) {
          *why = "IPv4 addresses have bytes beyond the first 4";
        } else {
          ok = true;
        }
        break;
      }
      case MG_KEY_DEL_SA:
      case MG_KEY_QUERY_SA:
        ok = body(msg, len, &out->ref, why) && check_dir(out->ref.dir, why);
        if (ok && out->ref.spi == 0) ok = (*why = "SPI 0 is reserved (RFC 4303)", false);
        if (ok && !zero(out->ref.pad, sizeof out->ref.pad)) ok = (*why = "padding is not zero", false);
        break;
      default:
        *why = "type " + std::to_string(h.type) + " is not a request";
        return false;
    }
    if (!ok) {
      if (why->empty()) *why = "malformed";
      out->wipe();
      return false;
    }
    *status = MG_KEY_OK;
    return true;
  } catch (...) {  // std::string allocation
    out->wipe();
    *status = MG_KEY_E_MALFORMED;
    return false;
  }
}

mg_keying_reply reply(int32_t status, uint32_t spi, const std::string& reason) {
  mg_keying_reply r{};
  r.status = status;
  r.spi = spi;
  r.last_use_ms_ago = UINT64_MAX;
  const size_t n = std::min(reason.size(), sizeof r.reason - 1);
  std::memcpy(r.reason, reason.data(), n);
  return r;
}

std::vector<uint8_t> encode_reply(uint16_t type, uint32_t seq, const mg_keying_reply& r) {
  mg_keying_hdr h{MG_KEYING_MAGIC, uint16_t(MG_KEYING_VERSION), uint16_t(type | MG_KEY_REPLY), seq,
                  uint32_t(sizeof h + sizeof r)};
  std::vector<uint8_t> out(sizeof h + sizeof r);
  std::memcpy(out.data(), &h, sizeof h);
  std::memcpy(out.data() + sizeof h, &r, sizeof r);
  return out;
}

std::vector<uint8_t> encode_expire(const mg_keying_expire& e) {
  mg_keying_hdr h{MG_KEYING_MAGIC, uint16_t(MG_KEYING_VERSION), uint16_t(MG_KEY_EXPIRE), 0, uint32_t(sizeof h + sizeof e)};
  std::vector<uint8_t> out(sizeof h + sizeof e);
  std::memcpy(out.data(), &h, sizeof h);
  std::memcpy(out.data() + sizeof h, &e, sizeof e);
  return out;
}

}  // namespace mg::keying
