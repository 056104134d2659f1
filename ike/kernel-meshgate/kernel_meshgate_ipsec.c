/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "kernel_meshgate_ipsec.h"

#include <string.h>

#include <daemon.h>

#include "kernel_meshgate_conn.h"
#include "kernel_meshgate_sas.h"

#define DEFAULT_SOCKET "/run/meshgate/keying.sock"
#define DEFAULT_TIMEOUT_MS 3000

typedef struct private_kernel_meshgate_ipsec_t private_kernel_meshgate_ipsec_t;

struct private_kernel_meshgate_ipsec_t {
  kernel_ipsec_t public;
  kernel_meshgate_conn_t *conn;
  kernel_meshgate_sas_t *sas;
};

static bool fill_addr(uint8_t out[16], host_t *host) {
  chunk_t addr = host->get_address(host);

  if (addr.len != 4 && addr.len != 16) {
    return FALSE;
  }
  memset(out, 0, 16);
  memcpy(out, addr.ptr, addr.len);
  return TRUE;
}

/* local/remote from the SA's outer addresses: an inbound SA comes from the remote end to us. */
static bool fill_sel(struct mg_keying_sel *sel, uint32_t if_id, host_t *src, host_t *dst, bool inbound) {
  memset(sel, 0, sizeof(*sel));
  sel->if_id = if_id;
  sel->family = src->get_family(src) == AF_INET6 ? 6 : 4;
  return src->get_family(src) == dst->get_family(dst) && fill_addr(sel->local, inbound ? dst : src) &&
         fill_addr(sel->remote, inbound ? src : dst);
}

/* A request whose reply must be MG_KEY_OK; anything else is logged with meshgate's reason. */
static status_t call(private_kernel_meshgate_ipsec_t *this, uint16_t type, const void *body, size_t len,
                     struct mg_keying_reply *reply, const char *what, uint32_t spi) {
  status_t status = this->conn->request(this->conn, type, body, len, reply, what);

  if (status != SUCCESS) {
    return status;
  }
  if (reply->status != MG_KEY_OK) {
    DBG1(DBG_KNL, "kernel-meshgate: meshgate refused %s of SPI %.8x: %s (%s)", what, spi,
         kernel_meshgate_status_name(reply->status), reply->reason);
    return reply->status == MG_KEY_E_NOT_FOUND ? NOT_FOUND : FAILED;
  }
  return SUCCESS;
}

METHOD(kernel_ipsec_t, get_features, kernel_feature_t, private_kernel_meshgate_ipsec_t *this) {
  /* No policies to reinstall when an SA changes: meshgate keeps none of charon's. */
  return KERNEL_NO_POLICY_UPDATES;
}

METHOD(kernel_ipsec_t, get_spi, status_t, private_kernel_meshgate_ipsec_t *this, host_t *src, host_t *dst,
       uint8_t protocol, uint32_t *spi) {
  struct mg_keying_spi_req req;
  struct mg_keying_reply reply;
  status_t status;

  if (protocol != IPPROTO_ESP) {
    DBG1(DBG_KNL, "kernel-meshgate: only ESP SAs, refused an SPI for protocol %u", protocol);
    return NOT_SUPPORTED;
  }
  /* charon gives no if_id here: meshgate finds the tunnel by the outer addresses. */
  if (!fill_sel(&req.sel, 0, src, dst, TRUE)) {
    DBG1(DBG_KNL, "kernel-meshgate: cannot name a tunnel for %H -> %H", src, dst);
    return FAILED;
  }
  status = call(this, MG_KEY_GET_SPI, &req, sizeof(req), &reply, "GET_SPI", 0);
  if (status != SUCCESS) {
    return status;
  }
  if (reply.spi < 256) { /* RFC 4303: 1-255 reserved, 0 never on the wire */
    DBG1(DBG_KNL, "kernel-meshgate: meshgate allocated the reserved SPI %u", reply.spi);
    return FAILED;
  }
  *spi = htonl(reply.spi);
  DBG2(DBG_KNL, "kernel-meshgate: SPI %.8x for %H -> %H", reply.spi, src, dst);
  return SUCCESS;
}

METHOD(kernel_ipsec_t, get_cpi, status_t, private_kernel_meshgate_ipsec_t *this, host_t *src, host_t *dst,
       uint16_t *cpi) {
  return NOT_SUPPORTED;
}

/* The cipher and key length meshgate takes, or FALSE with a log line (never the key). */
static bool map_cipher(kernel_ipsec_add_sa_t *data, uint32_t spi, uint8_t *cipher) {
  if (data->int_alg != AUTH_UNDEFINED) {
    DBG1(DBG_KNL, "kernel-meshgate: SA %.8x refused: meshgate takes AEAD only, not %N + %N", spi,
         encryption_algorithm_names, data->enc_alg, integrity_algorithm_names, data->int_alg);
    return FALSE;
  }
  if (data->enc_alg == ENCR_AES_GCM_ICV16 && data->enc_key.len == 16 + 4) {
    *cipher = MG_KEY_AES_GCM_128;
  } else if (data->enc_alg == ENCR_AES_GCM_ICV16 && data->enc_key.len == 32 + 4) {
    *cipher = MG_KEY_AES_GCM_256;
  } else if (data->enc_alg == ENCR_CHACHA20_POLY1305 && data->enc_key.len == 32 + 4) {
    *cipher = MG_KEY_CHACHA20_POLY1305;
  } else {
    DBG1(DBG_KNL, "kernel-meshgate: SA %.8x refused: %N with a %zu-byte key is not one of meshgate's ciphers "
         "(aes128gcm16, aes256gcm16, chacha20poly1305)", spi, encryption_algorithm_names, data->enc_alg,
         data->enc_key.len);
    return FALSE;
  }
  return TRUE;
}

/* The replay window meshgate takes: 0 (its default) or a power of two from 64 to 65536. The window is the
 * receiver's own choice (RFC 4303 3.4.3, nothing negotiates it), so charon's is rounded up to one meshgate has;
 * charon's default is 32. charon's 0 means no replay check, which meshgate never offers: its default then. */
static uint32_t replay_window(uint32_t charon_window, uint32_t spi) {
  uint32_t w = 64;

  if (charon_window == 0) {
    DBG1(DBG_KNL, "kernel-meshgate: SA %.8x: meshgate always checks replay, window left to its default", spi);
    return 0;
  }
  while (w < charon_window && w < 65536) {
    w <<= 1;
  }
  return w;
}

METHOD(kernel_ipsec_t, add_sa, status_t, private_kernel_meshgate_ipsec_t *this, kernel_ipsec_sa_id_t *id,
       kernel_ipsec_add_sa_t *data) {
  uint32_t spi = ntohl(id->spi);
  struct mg_keying_sa sa;
  struct mg_keying_reply reply;
  status_t status;

  memset(&sa, 0, sizeof(sa));
  if (id->proto != IPPROTO_ESP || data->mode != MODE_TUNNEL || data->ipcomp != IPCOMP_NONE) {
    DBG1(DBG_KNL, "kernel-meshgate: SA %.8x refused: meshgate takes ESP in tunnel mode without IPComp", spi);
    return NOT_SUPPORTED;
  }
  if (!map_cipher(data, spi, &sa.cipher)) {
    return NOT_SUPPORTED;
  }
  if (!fill_sel(&sa.sel, id->if_id, id->src, id->dst, data->inbound)) {
    DBG1(DBG_KNL, "kernel-meshgate: SA %.8x refused: cannot name a tunnel for %H -> %H", spi, id->src, id->dst);
    return FAILED;
  }
  sa.spi = spi;
  sa.dir = data->inbound ? MG_KEY_DIR_IN : MG_KEY_DIR_OUT;
  sa.esn = data->esn ? 1 : 0;
  sa.encap = data->encap ? MG_KEY_ENCAP_UDP : MG_KEY_ENCAP_NONE;
  if (data->encap) {
    sa.sport = id->src->get_port(id->src);
    sa.dport = id->dst->get_port(id->dst);
  }
  sa.replay_window = data->inbound ? replay_window(data->replay_window, spi) : 0;
  sa.reqid = data->reqid;
  if (data->lifetime) {
    sa.soft_bytes = data->lifetime->bytes.rekey;
    sa.hard_bytes = data->lifetime->bytes.life;
    sa.soft_packets = data->lifetime->packets.rekey;
    sa.hard_packets = data->lifetime->packets.life;
  }
  sa.keylen = (uint8_t)data->enc_key.len;
  memcpy(sa.key, data->enc_key.ptr, data->enc_key.len);
  status = call(this, MG_KEY_ADD_SA, &sa, sizeof(sa), &reply, "ADD_SA", spi);
  memwipe(&sa, sizeof(sa));
  if (status != SUCCESS) {
    return status;
  }
  this->sas->add(this->sas, spi, data->inbound ? MG_KEY_DIR_IN : MG_KEY_DIR_OUT, data->reqid, id->src, id->dst);
  DBG2(DBG_KNL, "kernel-meshgate: installed %s SA %.8x (reqid %u) %H -> %H", data->inbound ? "inbound" : "outbound",
       spi, data->reqid, id->src, id->dst);
  return SUCCESS;
}

METHOD(kernel_ipsec_t, update_sa, status_t, private_kernel_meshgate_ipsec_t *this, kernel_ipsec_sa_id_t *id,
       kernel_ipsec_update_sa_t *data) {
  uint32_t spi = ntohl(id->spi);
  struct mg_keying_update up;
  struct mg_keying_reply reply;
  struct mg_keying_sel sel;
  uint8_t dir = this->sas->dir(this->sas, spi, id->dst);
  status_t status;

  if (!dir) {
    DBG1(DBG_KNL, "kernel-meshgate: update of unknown SA %.8x to %H", spi, id->dst);
    return NOT_FOUND;
  }
  if (!fill_sel(&sel, 0, data->new_src, data->new_dst, dir == MG_KEY_DIR_IN)) {
    return FAILED;
  }
  memset(&up, 0, sizeof(up));
  up.spi = spi;
  up.dir = dir;
  up.encap = data->new_encap ? MG_KEY_ENCAP_UDP : MG_KEY_ENCAP_NONE;
  if (data->new_encap) {
    up.sport = data->new_src->get_port(data->new_src);
    up.dport = data->new_dst->get_port(data->new_dst);
  }
  up.family = sel.family;
  memcpy(up.local, sel.local, sizeof(up.local));
  memcpy(up.remote, sel.remote, sizeof(up.remote));
  memset(&reply, 0, sizeof(reply));
  status = call(this, MG_KEY_UPDATE_SA, &up, sizeof(up), &reply, "UPDATE_SA", spi);
  if (status == FAILED && reply.status == MG_KEY_E_REFUSED) {
    /* meshgate cannot move an installed SA (its outer header is precomputed, its key gone): NOT_SUPPORTED is what
     * makes charon rekey the CHILD_SA with the new addresses and ports instead (ike_sa.c update_hosts); FAILED
     * would leave the SA sending to the old NAT mapping. */
    DBG1(DBG_KNL, "kernel-meshgate: SPI %.8x moved to %H / %H: charon rekeys the CHILD_SA", spi, data->new_src,
         data->new_dst);
    return NOT_SUPPORTED;
  }
  if (status != SUCCESS) {
    return status;
  }
  this->sas->update(this->sas, spi, id->dst, data->new_src, data->new_dst, data->new_reqid);
  return SUCCESS;
}

METHOD(kernel_ipsec_t, query_sa, status_t, private_kernel_meshgate_ipsec_t *this, kernel_ipsec_sa_id_t *id,
       kernel_ipsec_query_sa_t *data, uint64_t *bytes, uint64_t *packets, time_t *time) {
  uint32_t spi = ntohl(id->spi);
  struct mg_keying_ref ref = {.spi = spi, .dir = this->sas->dir(this->sas, spi, id->dst)};
  struct mg_keying_reply reply;
  status_t status;

  if (!ref.dir) {
    return NOT_FOUND;
  }
  status = call(this, MG_KEY_QUERY_SA, &ref, sizeof(ref), &reply, "QUERY_SA", spi);
  if (status != SUCCESS) {
    return status;
  }
  if (bytes) {
    *bytes = reply.bytes;
  }
  if (packets) {
    *packets = reply.packets;
  }
  if (time) {
    /* charon wants the monotonic time of last use; 0 when never used, as the kernel backends report it */
    *time = reply.last_use_ms_ago == UINT64_MAX ? 0 : time_monotonic(NULL) - (time_t)(reply.last_use_ms_ago / 1000);
  }
  return SUCCESS;
}

METHOD(kernel_ipsec_t, del_sa, status_t, private_kernel_meshgate_ipsec_t *this, kernel_ipsec_sa_id_t *id,
       kernel_ipsec_del_sa_t *data) {
  uint32_t spi = ntohl(id->spi);
  struct mg_keying_ref ref = {.spi = spi};
  struct mg_keying_reply reply;

  /* charon forgets the SA whatever meshgate answers, so the map does too */
  ref.dir = this->sas->remove(this->sas, spi, id->dst);
  if (!ref.dir) {
    DBG1(DBG_KNL, "kernel-meshgate: delete of unknown SA %.8x to %H", spi, id->dst);
    return NOT_FOUND;
  }
  return call(this, MG_KEY_DEL_SA, &ref, sizeof(ref), &reply, "DEL_SA", spi);
}

METHOD(kernel_ipsec_t, flush_sas, status_t, private_kernel_meshgate_ipsec_t *this) {
  /* meshgate's SAs of tunnels charon no longer keys expire by their lifetimes; nothing to flush here */
  return SUCCESS;
}

METHOD(kernel_ipsec_t, add_policy, status_t, private_kernel_meshgate_ipsec_t *this, kernel_ipsec_policy_id_t *id,
       kernel_ipsec_manage_policy_t *data) {
  return SUCCESS;
}

METHOD(kernel_ipsec_t, query_policy, status_t, private_kernel_meshgate_ipsec_t *this, kernel_ipsec_policy_id_t *id,
       kernel_ipsec_query_policy_t *data, time_t *use_time) {
  return NOT_SUPPORTED;
}

METHOD(kernel_ipsec_t, del_policy, status_t, private_kernel_meshgate_ipsec_t *this, kernel_ipsec_policy_id_t *id,
       kernel_ipsec_manage_policy_t *data) {
  return SUCCESS;
}

METHOD(kernel_ipsec_t, flush_policies, status_t, private_kernel_meshgate_ipsec_t *this) {
  return SUCCESS;
}

METHOD(kernel_ipsec_t, bypass_socket, bool, private_kernel_meshgate_ipsec_t *this, int fd, int family) {
  return TRUE; /* meshgate never applies IPsec to the kernel's own sockets */
}

METHOD(kernel_ipsec_t, enable_udp_decap, bool, private_kernel_meshgate_ipsec_t *this, int fd, int family,
       uint16_t port) {
  return TRUE; /* ESP in UDP is decapsulated by meshgate's data plane, never by this kernel */
}

/* meshgate wants an outbound SA rekeyed (soft) or says it stopped (hard): charon names it by (spi, dst). */
static void on_expire(private_kernel_meshgate_ipsec_t *this, const struct mg_keying_expire *expire) {
  host_t *dst = this->sas->out_dst(this->sas, expire->spi, expire->reqid);

  if (!dst) {
    DBG1(DBG_KNL, "kernel-meshgate: meshgate expired outbound SA %.8x (reqid %u), unknown to charon", expire->spi,
         expire->reqid);
    return;
  }
  DBG1(DBG_KNL, "kernel-meshgate: meshgate expired outbound SA %.8x (reqid %u, %s)", expire->spi, expire->reqid,
       expire->hard ? "hard" : "soft");
  charon->kernel->expire(charon->kernel, IPPROTO_ESP, htonl(expire->spi), dst, expire->hard != 0);
  dst->destroy(dst);
}

/* After meshgate came back: every outbound SA it no longer has gets its CHILD_SA rekeyed, so nothing keeps
 * running on keys only charon remembers. */
static void on_reconnect(private_kernel_meshgate_ipsec_t *this) {
  struct mg_keying_expire expire = {.hard = 0};
  struct mg_keying_reply reply;
  struct mg_keying_ref ref;
  u_int n, i;
  uint32_t *pairs = this->sas->list_out(this->sas, &n);

  for (i = 0; i < n; i++) {
    expire.reqid = pairs[2 * i];
    expire.spi = pairs[2 * i + 1];
    ref = (struct mg_keying_ref){.spi = expire.spi, .dir = MG_KEY_DIR_OUT};
    if (this->conn->request(this->conn, MG_KEY_QUERY_SA, &ref, sizeof(ref), &reply, "QUERY_SA") == SUCCESS &&
        reply.status == MG_KEY_E_NOT_FOUND) {
      DBG1(DBG_KNL, "kernel-meshgate: meshgate lost outbound SA %.8x, rekeying its CHILD_SA", expire.spi);
      on_expire(this, &expire);
    }
  }
  free(pairs);
}

METHOD(kernel_ipsec_t, destroy, void, private_kernel_meshgate_ipsec_t *this) {
  if (this->conn) {
    this->conn->destroy(this->conn);
  }
  this->sas->destroy(this->sas);
  free(this);
}

kernel_ipsec_t *kernel_meshgate_ipsec_create(void) {
  private_kernel_meshgate_ipsec_t *this;
  char *path = lib->settings->get_str(lib->settings, "%s.plugins.kernel-meshgate.socket", DEFAULT_SOCKET, lib->ns);
  u_int timeout = lib->settings->get_int(lib->settings, "%s.plugins.kernel-meshgate.timeout", DEFAULT_TIMEOUT_MS,
                                         lib->ns);

  INIT(this,
    .public = {
      .get_features = _get_features,
      .get_spi = _get_spi,
      .get_cpi = _get_cpi,
      .add_sa = _add_sa,
      .update_sa = _update_sa,
      .query_sa = _query_sa,
      .del_sa = _del_sa,
      .flush_sas = _flush_sas,
      .add_policy = _add_policy,
      .query_policy = _query_policy,
      .del_policy = _del_policy,
      .flush_policies = _flush_policies,
      .bypass_socket = _bypass_socket,
      .enable_udp_decap = _enable_udp_decap,
      .destroy = _destroy,
    },
    .sas = kernel_meshgate_sas_create(),
  );
  this->conn = kernel_meshgate_conn_create(path, timeout, (kernel_meshgate_expire_cb_t)on_expire,
                                           (kernel_meshgate_reconnect_cb_t)on_reconnect, this);
  if (!this->conn) {
    destroy(this);
    return NULL;
  }
  return &this->public;
}
