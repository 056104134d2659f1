/* The keying interface's wire format: messages between a keying daemon (strongSwan's charon with the
 * kernel-meshgate plugin in ike/) and meshgate's main lcore.
 *
 * Transport: a UNIX SOCK_SEQPACKET socket that meshgate listens on (mode 0600, owner checked with SO_PEERCRED:
 * root or meshgate's own user). One message per datagram, at most MG_KEYING_MAX_MSG bytes. Keys travel through
 * the kernel, never through shared memory (the control block is readable by operators) or a command line.
 *
 * Every request gets exactly one reply (type | MG_KEY_REPLY, same seq). meshgate also sends unsolicited
 * MG_KEY_EXPIRE messages (seq 0) on the same connection when an outbound SA must be rekeyed.
 *
 * Layout: fixed-size little-endian structs (x86-64 and every target DPDK runs on), no implicit padding (each
 * struct's size is pinned below). Plain C: the plugin is C, meshgate C++. Numbers are host-order integers, SPIs
 * included (the value, not the wire bytes of an ESP header). Addresses: 16 bytes, IPv4 in the first 4.
 * Validation lives next to this definition: keying.h, mg::keying::validate().
 */
#ifndef MG_KEYING_WIRE_H
#define MG_KEYING_WIRE_H

#include <stdint.h>

#define MG_KEYING_MAGIC 0x594b474du /* "MGKY" as little-endian bytes */
#define MG_KEYING_VERSION 1u
#define MG_KEYING_MAX_MSG 512u
#define MG_KEYING_MAX_KEY 36u /* key || salt: AES-256-GCM and ChaCha20-Poly1305 32 + 4 */
#define MG_KEYING_REASON 112u

enum mg_keying_type {
  MG_KEY_HELLO = 1,     /* client: version check; reply: gateway name and tunnel count */
  MG_KEY_GET_SPI = 2,   /* client: an inbound SPI for a tunnel, unused on its port; reply: spi */
  MG_KEY_ADD_SA = 3,    /* client: install an SA (body mg_keying_sa) */
  MG_KEY_UPDATE_SA = 4, /* client: new outer addresses / UDP ports of an installed SA (NAT-T rebinding) */
  MG_KEY_DEL_SA = 5,    /* client: delete an SA by (direction, spi); its key is wiped */
  MG_KEY_QUERY_SA = 6,  /* client: counters and last use of an SA by (direction, spi) */
  MG_KEY_EXPIRE = 7,    /* meshgate, unsolicited: an outbound SA must be rekeyed (hard: it stopped) */
  MG_KEY_REPLY = 0x80
};

enum mg_keying_dir { MG_KEY_DIR_IN = 1, MG_KEY_DIR_OUT = 2 };

enum mg_keying_cipher {
  MG_KEY_AES_GCM_128 = 1, /* 16 + 4 bytes (RFC 4106) */
  MG_KEY_AES_GCM_256 = 2, /* 32 + 4 bytes */
  MG_KEY_CHACHA20_POLY1305 = 3 /* 32 + 4 bytes (RFC 7634) */
};

enum mg_keying_encap { MG_KEY_ENCAP_NONE = 0, MG_KEY_ENCAP_UDP = 1 /* RFC 3948 */ };

/* Reply status: 0 ok, else one of these; the reply's reason says more (never key material). */
enum mg_keying_status {
  MG_KEY_OK = 0,
  MG_KEY_E_MALFORMED = 1,   /* bad magic, length, field value */
  MG_KEY_E_VERSION = 2,     /* unsupported version */
  MG_KEY_E_NO_TUNNEL = 3,   /* no tunnel matches the selector, or it is not keyed by IKE */
  MG_KEY_E_EXISTS = 4,      /* SPI already installed (inbound: on that port) */
  MG_KEY_E_NOT_FOUND = 5,   /* no SA with that (direction, spi) */
  MG_KEY_E_REFUSED = 6,     /* valid but not acceptable now (key reuse, sequence state unusable, ...) */
  MG_KEY_E_BUSY = 7         /* try again (e.g. a reset in progress) */
};

struct mg_keying_hdr {
  uint32_t magic;
  uint16_t version;
  uint16_t type;
  uint32_t seq;  /* chosen by the requester; echoed in the reply */
  uint32_t len;  /* whole message, header included */
};

/* Which tunnel: if_id when non-zero (a tunnel's `if_id` in the gateway file, swanctl's if_id_in/if_id_out),
 * else the outer address pair (local = an instance's address, remote = a device's): each (instance, device)
 * pair is one tunnel. */
struct mg_keying_sel {
  uint32_t if_id;
  uint8_t family; /* 4 or 6 */
  uint8_t pad[3];
  uint8_t local[16];
  uint8_t remote[16];
};

struct mg_keying_sa {
  struct mg_keying_sel sel;
  uint32_t spi;
  uint8_t dir;     /* mg_keying_dir */
  uint8_t cipher;  /* mg_keying_cipher */
  uint8_t esn;     /* 0 or 1 */
  uint8_t encap;   /* mg_keying_encap */
  uint16_t sport;  /* UDP source port of the ESP packets this SA sends or receives (encap only) */
  uint16_t dport;
  uint8_t keylen;  /* bytes of key || salt */
  uint8_t pad[3];
  uint32_t replay_window; /* inbound: packets, 0 = the gateway's default; outbound: 0 */
  uint32_t reqid;         /* charon's, reported back in EXPIRE */
  uint64_t soft_bytes, hard_bytes;     /* lifetimes, 0 = none */
  uint64_t soft_packets, hard_packets;
  uint8_t key[MG_KEYING_MAX_KEY];      /* keylen bytes used; the receiver wipes its copy */
  uint8_t pad2[4];
};

struct mg_keying_spi_req {
  struct mg_keying_sel sel;
};

struct mg_keying_update {
  uint32_t spi;
  uint8_t dir;
  uint8_t encap;
  uint16_t sport, dport;
  uint8_t family;
  uint8_t pad[1];
  uint8_t local[16], remote[16];
};

struct mg_keying_ref {
  uint32_t spi;
  uint8_t dir;
  uint8_t pad[3];
};

struct mg_keying_reply {
  int32_t status;   /* mg_keying_status */
  uint32_t spi;     /* GET_SPI: the SPI; otherwise the request's */
  /* QUERY_SA */
  uint64_t packets, bytes;
  uint64_t last_use_ms_ago; /* UINT64_MAX: never used */
  uint64_t seq;             /* outbound: last sequence number used; inbound: highest accepted */
  /* HELLO */
  uint32_t tunnels;
  char gateway[32];         /* NUL-terminated */
  char reason[MG_KEYING_REASON]; /* NUL-terminated */
  uint8_t pad[4];
};

struct mg_keying_expire {
  uint32_t spi;     /* the outbound SA */
  uint32_t reqid;
  uint8_t hard;     /* 1: it stopped (sequence numbers or hard limit), 0: soft limit reached */
  uint8_t pad[7];
};

#ifdef __cplusplus
static_assert(sizeof(struct mg_keying_hdr) == 16, "keying wire layout");
static_assert(sizeof(struct mg_keying_sel) == 40, "keying wire layout");
static_assert(sizeof(struct mg_keying_sa) == 136, "keying wire layout");
static_assert(sizeof(struct mg_keying_spi_req) == 40, "keying wire layout");
static_assert(sizeof(struct mg_keying_update) == 44, "keying wire layout");
static_assert(sizeof(struct mg_keying_ref) == 8, "keying wire layout");
static_assert(sizeof(struct mg_keying_reply) == 192, "keying wire layout");
static_assert(sizeof(struct mg_keying_expire) == 16, "keying wire layout");
#else
_Static_assert(sizeof(struct mg_keying_hdr) == 16, "keying wire layout");
_Static_assert(sizeof(struct mg_keying_sa) == 136, "keying wire layout");
_Static_assert(sizeof(struct mg_keying_reply) == 192, "keying wire layout");
#endif

#endif /* MG_KEYING_WIRE_H */
