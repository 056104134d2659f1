// load_gateway's SAs and keys: [tunnel.out] / [tunnel.in] (SPI, cipher, engine, ESN, replay window, key or
// key_file), SPIs unique, no key in two SAs, and the wiping of key text in the parsed document.
#include <algorithm>
#include <cctype>
#include <cstdio>
#include <string>

#include "config/gateway_internal.h"
#include "crypto/aead.h"
#include "crypto/key_file.h"

namespace mg::config::detail {

namespace {

std::string fmt_spi(uint32_t spi) {
  char b[16];
  std::snprintf(b, sizeof b, "0x%08x", spi);
  return b;
}

// Cipher names of other products that carry a truncated ICV (aes128gcm8, ...-icv12): meshgate's is 16 bytes.
bool looks_truncated_icv(std::string_view c) {
  std::string s;
  for (char ch : c)
    if (std::isalnum(static_cast<unsigned char>(ch))) s.push_back(char(std::tolower(static_cast<unsigned char>(ch))));
  for (std::string_view suf : {"gcm8", "gcm12", "gcm64", "gcm96", "icv8", "icv12", "icv64", "icv96"})
    if (s.ends_with(suf)) return true;
  return false;
}

std::vector<uint8_t> to_bytes_and_wipe(std::string* s) {
  std::vector<uint8_t> v(s->begin(), s->end());
  crypto::secure_wipe(s->data(), s->size());
  s->clear();
  return v;
}

}  // namespace

// Reads [tunnel.out] / [tunnel.in].
void read_sa(Reader& r, Sink& sink, const std::string& base_dir, bool inbound, SaSpec* sa, EncapKeys* encap) {
  sa->line = r.line();
  *encap = read_encap(r, sink);
  if (const auto spi = r.integer("spi", true)) {
    if (*spi == 0) {
      sink.add(r.line("spi"), "spi-zero", r.where() + " `spi` is 0; SPI 0 is never valid on the wire");
    } else if (*spi < 256 || *spi > 0xffffffffll) {
      sink.add(r.line("spi"), "spi-range",
               r.where() + " `spi` = " + std::to_string(*spi) +
                   " is outside 256..0xffffffff (1..255 are reserved by IANA, RFC 4303)");
    } else {
      sa->spi = uint32_t(*spi);
    }
  }
  bool cipher_ok = false;
  if (const auto c = r.str("cipher", true)) {
    if (crypto::parse_cipher(*c, &sa->cipher)) {
      cipher_ok = true;
    } else if (looks_truncated_icv(*c)) {
      sink.add(r.line("cipher"), "icv-length",
               r.where() + " `cipher` = \"" + *c +
                   "\" asks for a truncated ICV; meshgate always uses a 16-byte ICV: aes-gcm-128, aes-gcm-256 or "
                   "chacha20-poly1305");
    } else {
      sink.add(r.line("cipher"), "cipher",
               r.where() + " `cipher` = \"" + *c + "\" is not one of aes-gcm-128, aes-gcm-256, chacha20-poly1305");
    }
  }
  if (const auto e = r.str("engine")) {
    if (!crypto::parse_engine(*e, &sa->engine)) {
      sink.add(r.line("engine"), "engine", r.where() + " `engine` = \"" + *e + "\" is not ipsecmb or sodium");
    } else if (cipher_ok && !crypto::engine_supports(sa->engine, sa->cipher)) {
      sink.add(r.line("engine"), "engine-cipher",
               r.where() + " engine " + crypto::to_string(sa->engine) + " does not implement " +
                   crypto::to_string(sa->cipher) + " (sodium: chacha20-poly1305 only)");
    }
  }
  if (const auto esn = r.boolean("esn")) sa->esn = *esn;
  if (!inbound)
    misplaced(r, sink, "replay_window", "belongs in [tunnel.in]: only an inbound SA has a replay window");
  if (inbound) {
    if (const auto w = r.integer("replay_window")) {
      if (*w < 64 || *w > 65536 || (*w & (*w - 1)) != 0) {
        sink.add(r.line("replay_window"), "replay-window",
                 r.where() + " `replay_window` = " + std::to_string(*w) + " must be a power of two in 64..65536");
      } else {
        sa->replay_window = uint32_t(*w);
      }
    }
  }

  // Key material: exactly one of key / key_file. Values are never echoed in messages.
  const toml::node* key_node = r.get("key");
  const toml::node* file_node = r.get("key_file");
  const size_t want = cipher_ok ? crypto::key_len(sa->cipher) + crypto::kSaltLen : 0;
  const std::string want_text =
      cipher_ok ? std::to_string(want) + " bytes (" + std::to_string(crypto::key_len(sa->cipher)) +
                      "-byte key + 4-byte salt) for " + crypto::to_string(sa->cipher)
                : std::string();
  if (key_node && file_node) {
    sink.add(line_of(*file_node), "key-source", r.where() + " has both `key` and `key_file`; give one");
    return;
  }
  if (!key_node && !file_node) {
    sink.add(r.line(), "key-source", r.where() + " needs `key` (hex of key || salt) or `key_file`");
    return;
  }
  std::string bytes;
  if (key_node) {
    if (!key_node->is_string()) {
      r.type_error("key", *key_node, "a string of hex digits");
      return;
    }
    const std::string& hex = key_node->as_string()->get();
    if (!crypto::parse_hex(hex, &bytes)) {
      crypto::secure_wipe(bytes.data(), bytes.size());
      sink.add(line_of(*key_node), "key-hex",
               r.where() + " `key` is not valid hex (pairs of 0-9a-f, optionally separated by ':')");
      return;
    }
    if (cipher_ok && bytes.size() != want) {
      sink.add(line_of(*key_node), "key-length",
               r.where() + " `key` has " + std::to_string(bytes.size()) + " bytes; it must be " + want_text);
      crypto::secure_wipe(bytes.data(), bytes.size());
      return;
    }
  } else {
    if (!file_node->is_string()) {
      r.type_error("key_file", *file_node, "a string (a path)");
      return;
    }
    const std::string path = detail::resolve(base_dir, file_node->as_string()->get());
    std::string raw, why;
    if (!crypto::read_key_file(path, &raw, &why)) {
      sink.add(line_of(*file_node), "key-file", r.where() + " `key_file` " + crypto::quotable(path) + " " + why);
      return;
    }
    const crypto::KeyText kt = crypto::decode_key_text(raw, want, &bytes);
    crypto::secure_wipe(raw.data(), raw.size());
    if (kt == crypto::KeyText::kNotHex) {
      sink.add(line_of(*file_node), "key-hex",
               r.where() + " `key_file` " + crypto::quotable(path) + " holds neither " +
                   (cipher_ok ? std::to_string(want) + " raw bytes" : std::string("raw key bytes")) + " nor hex text");
      return;
    }
    if (kt == crypto::KeyText::kWrongLength) {
      sink.add(line_of(*file_node), "key-length",
               r.where() + " `key_file` " + crypto::quotable(path) + " holds " + std::to_string(bytes.size()) +
                   " bytes of hex; it must be " + want_text);
      crypto::secure_wipe(bytes.data(), bytes.size());
      return;
    }
  }
  sa->keymat = SecretBytes(to_bytes_and_wipe(&bytes));
}

// Wipes the hex keys held by the parsed document before it is freed.
void wipe_document_keys(toml::table& root) {
  toml::array* tunnels = root["tunnel"].as_array();
  if (!tunnels) return;
  for (toml::node& t : *tunnels) {
    toml::table* tt = t.as_table();
    if (!tt) continue;
    for (const char* dir : {"out", "in"}) {
      toml::table* sa = (*tt)[dir].as_table();
      if (!sa) continue;
      if (toml::value<std::string>* k = (*sa)["key"].as_string()) {
        std::string& s = k->get();
        crypto::secure_wipe(s.data(), s.size());
      }
    }
  }
}

void check_sas(const Gateway& g, Sink& sink) {
  // SPIs: unique per direction over all tunnels (an inbound SPI may equal an outbound one).
  for (size_t i = 0; i < g.tunnels.size(); ++i)
    for (size_t j = 0; j < i; ++j) {
      const Tunnel &a = g.tunnels[i], &b = g.tunnels[j];
      if (a.out.spi != 0 && a.out.spi == b.out.spi)
        sink.add(a.out.line, "spi-unique",
                 "tunnel \"" + a.name + "\" outbound SPI " + fmt_spi(a.out.spi) + " is already the outbound SPI of tunnel \"" +
                     b.name + "\" (line " + std::to_string(b.out.line) + ")");
      if (a.in.spi != 0 && a.in.spi == b.in.spi)
        sink.add(a.in.line, "spi-unique",
                 "tunnel \"" + a.name + "\" inbound SPI " + fmt_spi(a.in.spi) + " is already the inbound SPI of tunnel \"" +
                     b.name + "\" (line " + std::to_string(b.in.line) + ")");
    }

  // Keys: the same AEAD key in two SAs repeats nonces (IV = sequence number, which every SA starts at 1). Also
  // both directions of one tunnel with the same SPI: the peer encrypts with that key from sequence 1 as we do.
  {
    struct Ref { const Tunnel* t; const SaSpec* sa; const char* dir; };
    std::vector<Ref> refs;
    for (const Tunnel& t : g.tunnels) {
      refs.push_back({&t, &t.out, "outbound"});
      refs.push_back({&t, &t.in, "inbound"});
    }
    for (size_t i = 0; i < refs.size(); ++i)
      for (size_t j = 0; j < i; ++j) {
        const SaSpec &a = *refs[i].sa, &b = *refs[j].sa;
        if (a.keymat.size() < crypto::kSaltLen + 16 || a.keymat.size() != b.keymat.size()) continue;
        const size_t klen = a.keymat.size() - crypto::kSaltLen;
        if (!crypto::ct_equal(a.keymat.bytes().data(), b.keymat.bytes().data(), klen)) continue;
        sink.add(a.line, "key-reuse",
                 "tunnel \"" + refs[i].t->name + "\" " + refs[i].dir + " SA uses the same key as tunnel \"" +
                     refs[j].t->name + "\" " + refs[j].dir + " SA (line " + std::to_string(b.line) +
                     "); every SA needs its own key, or AES-GCM/ChaCha20 nonces repeat");
      }
  }
}

}  // namespace mg::config::detail
