/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The plugin's one connection to meshgate's keying socket (lib/keying/keying_wire.h): synchronous requests
 * (send, wait for the reply with the same seq, bounded), a reader thread that also receives meshgate's
 * unsolicited EXPIRE messages, and reconnection when meshgate restarts.
 */
#ifndef KERNEL_MESHGATE_CONN_H_
#define KERNEL_MESHGATE_CONN_H_

#include <library.h>

#include "keying_wire.h" /* lib/keying/ only: meshgate's lib/ would shadow strongSwan's crypto/ headers */

typedef struct kernel_meshgate_conn_t kernel_meshgate_conn_t;

/* Called from the reader thread, without the connection's lock held. */
typedef void (*kernel_meshgate_expire_cb_t)(void *ctx, const struct mg_keying_expire *expire);
/* Called from a charon worker after every (re)connection that followed a lost one. */
typedef void (*kernel_meshgate_reconnect_cb_t)(void *ctx);

struct kernel_meshgate_conn_t {
  /*
   * Sends one request (body of body_len bytes after the header) and waits for its reply.
   * The request buffer is wiped after the send; the caller wipes body itself.
   * @return SUCCESS with *reply filled (its status may still be an error), FAILED when not connected,
   *         OUT_OF_RES on a timeout; each failure logged with what (e.g. "ADD_SA").
   */
  status_t (*request)(kernel_meshgate_conn_t *this, uint16_t type, const void *body, size_t body_len,
                      struct mg_keying_reply *reply, const char *what);

  void (*destroy)(kernel_meshgate_conn_t *this);
};

kernel_meshgate_conn_t *kernel_meshgate_conn_create(const char *path, u_int timeout_ms,
                                                    kernel_meshgate_expire_cb_t on_expire,
                                                    kernel_meshgate_reconnect_cb_t on_reconnect, void *ctx);

/* The reply's status and reason for a log line, e.g. "no tunnel (no tunnel for 10.0.0.1)". */
const char *kernel_meshgate_status_name(int32_t status);

#endif /* KERNEL_MESHGATE_CONN_H_ */
