/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "kernel_meshgate_conn.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <daemon.h>
#include <processing/jobs/callback_job.h>
#include <threading/condvar.h>
#include <threading/mutex.h>
#include <threading/thread.h>

/* Pause between connection attempts while meshgate is away. */
#define RETRY_MS 500

typedef struct private_kernel_meshgate_conn_t private_kernel_meshgate_conn_t;

struct private_kernel_meshgate_conn_t {
  kernel_meshgate_conn_t public;
  char *path;
  u_int timeout_ms;
  kernel_meshgate_expire_cb_t on_expire;
  kernel_meshgate_reconnect_cb_t on_reconnect;
  void *ctx;

  /* Guards everything below. The reader thread only takes it to publish a connection or hand over a reply. */
  mutex_t *mutex;
  condvar_t *cond;
  int fd;              /* -1 while meshgate is away */
  u_int generation;    /* counts lost connections: a waiter whose connection was lost stops waiting */
  uint32_t seq;
  bool busy;           /* one request in flight at a time: replies come back in order anyway */
  uint32_t want_seq;
  bool have_reply;
  struct mg_keying_reply reply;

  thread_t *reader;
};

const char *kernel_meshgate_status_name(int32_t status) {
  switch (status) {
    case MG_KEY_OK: return "ok";
    case MG_KEY_E_MALFORMED: return "malformed";
    case MG_KEY_E_VERSION: return "unsupported version";
    case MG_KEY_E_NO_TUNNEL: return "no tunnel";
    case MG_KEY_E_EXISTS: return "exists";
    case MG_KEY_E_NOT_FOUND: return "not found";
    case MG_KEY_E_REFUSED: return "refused";
    case MG_KEY_E_BUSY: return "busy";
    default: return "unknown status";
  }
}

static void fill_hdr(struct mg_keying_hdr *hdr, uint16_t type, uint32_t seq, size_t len) {
  hdr->magic = MG_KEYING_MAGIC;
  hdr->version = MG_KEYING_VERSION;
  hdr->type = type;
  hdr->seq = seq;
  hdr->len = (uint32_t)len;
}

/* A message's header is one we can read at all, and it says how long it is truthfully. */
static bool hdr_ok(const struct mg_keying_hdr *hdr, ssize_t got) {
  return got >= (ssize_t)sizeof(*hdr) && hdr->magic == MG_KEYING_MAGIC && hdr->version == MG_KEYING_VERSION &&
         hdr->len == (uint32_t)got;
}

/* HELLO on a fresh socket, before anyone else can use it: a version check, and the gateway's name for the log. */
static bool hello(private_kernel_meshgate_conn_t *this, int fd) {
  uint8_t buf[MG_KEYING_MAX_MSG];
  struct mg_keying_hdr req;
  struct pollfd pfd = {.fd = fd, .events = POLLIN};
  const struct mg_keying_hdr *hdr = (const void *)buf;
  struct mg_keying_reply reply;
  ssize_t got;

  fill_hdr(&req, MG_KEY_HELLO, 0, sizeof(req));
  if (send(fd, &req, sizeof(req), MSG_NOSIGNAL) != sizeof(req) || poll(&pfd, 1, (int)this->timeout_ms) != 1) {
    DBG1(DBG_KNL, "kernel-meshgate: meshgate at %s does not answer HELLO", this->path);
    return FALSE;
  }
  got = recv(fd, buf, sizeof(buf), 0);
  if (got <= 0) {
    /* meshgate closed the connection (or died) between our HELLO and its answer: say so, not "malformed" */
    DBG1(DBG_KNL, "kernel-meshgate: meshgate at %s closed the connection before answering HELLO (%s)", this->path,
         got == 0 ? "end of file" : strerror(errno));
    return FALSE;
  }
  if (!hdr_ok(hdr, got) || hdr->type != (MG_KEY_HELLO | MG_KEY_REPLY) ||
      got != (ssize_t)(sizeof(*hdr) + sizeof(reply))) {
    DBG1(DBG_KNL, "kernel-meshgate: meshgate at %s answered HELLO with a malformed message (%zd bytes)", this->path,
         got);
    return FALSE;
  }
  memcpy(&reply, buf + sizeof(*hdr), sizeof(reply));
  reply.gateway[sizeof(reply.gateway) - 1] = '\0';
  reply.reason[sizeof(reply.reason) - 1] = '\0';
  if (reply.status != MG_KEY_OK) {
    DBG1(DBG_KNL, "kernel-meshgate: meshgate at %s refused HELLO: %s (%s)", this->path,
         kernel_meshgate_status_name(reply.status), reply.reason);
    return FALSE;
  }
  DBG1(DBG_KNL, "kernel-meshgate: connected to meshgate gateway '%s' (%u tunnels) at %s", reply.gateway,
       reply.tunnels, this->path);
  return TRUE;
}

static int try_connect(private_kernel_meshgate_conn_t *this, bool quiet) {
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  int fd;

  if (strlen(this->path) >= sizeof(addr.sun_path)) {
    DBG1(DBG_KNL, "kernel-meshgate: socket path %s is too long", this->path);
    return -1;
  }
  strncpy(addr.sun_path, this->path, sizeof(addr.sun_path) - 1);
  fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    DBG1(DBG_KNL, "kernel-meshgate: socket: %s", strerror(errno));
    return -1;
  }
  if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0) {
    if (!quiet) {
      DBG1(DBG_KNL, "kernel-meshgate: cannot connect to meshgate at %s: %s (retrying)", this->path,
           strerror(errno));
    }
    close(fd);
    return -1;
  }
  if (!hello(this, fd)) {
    close(fd);
    return -1;
  }
  return fd;
}

static job_requeue_t reconnected_job(private_kernel_meshgate_conn_t *this) {
  this->on_reconnect(this->ctx);
  return JOB_REQUEUE_NONE;
}

static void lost(private_kernel_meshgate_conn_t *this, const char *why) {
  this->mutex->lock(this->mutex);
  DBG1(DBG_KNL, "kernel-meshgate: connection to meshgate at %s lost: %s", this->path, why);
  close(this->fd);
  this->fd = -1;
  this->generation++;
  this->cond->broadcast(this->cond);
  this->mutex->unlock(this->mutex);
}

static void dispatch(private_kernel_meshgate_conn_t *this, const uint8_t *buf, ssize_t got) {
  const struct mg_keying_hdr *hdr = (const void *)buf;
  struct mg_keying_expire expire;

  if (!hdr_ok(hdr, got)) {
    DBG1(DBG_KNL, "kernel-meshgate: dropped a malformed message from meshgate (%zd bytes)", got);
    return;
  }
  if (hdr->type == MG_KEY_EXPIRE) {
    if (got != (ssize_t)(sizeof(*hdr) + sizeof(expire))) {
      DBG1(DBG_KNL, "kernel-meshgate: dropped an EXPIRE of %zd bytes", got);
      return;
    }
    memcpy(&expire, buf + sizeof(*hdr), sizeof(expire));
    this->on_expire(this->ctx, &expire);
    return;
  }
  if (!(hdr->type & MG_KEY_REPLY) || got != (ssize_t)(sizeof(*hdr) + sizeof(struct mg_keying_reply))) {
    DBG1(DBG_KNL, "kernel-meshgate: dropped a message of type %u (%zd bytes) from meshgate", hdr->type, got);
    return;
  }
  this->mutex->lock(this->mutex);
  if (this->busy && !this->have_reply && hdr->seq == this->want_seq) {
    memcpy(&this->reply, buf + sizeof(*hdr), sizeof(this->reply));
    this->have_reply = TRUE;
    this->cond->broadcast(this->cond);
  } else {
    DBG2(DBG_KNL, "kernel-meshgate: dropped a late reply (seq %u)", hdr->seq);
  }
  this->mutex->unlock(this->mutex);
}

static void *reader_main(private_kernel_meshgate_conn_t *this) {
  uint8_t buf[MG_KEYING_MAX_MSG];
  bool was_connected = FALSE, quiet = FALSE;
  ssize_t got;
  int fd;

  this->mutex->lock(this->mutex);
  was_connected = this->fd >= 0;
  this->mutex->unlock(this->mutex);
  while (TRUE) {
    this->mutex->lock(this->mutex);
    fd = this->fd;
    this->mutex->unlock(this->mutex);
    if (fd < 0) {
      fd = try_connect(this, quiet);
      if (fd < 0) {
        quiet = TRUE; /* one log line per outage, not one per attempt */
        thread_cancelability(TRUE);
        usleep(RETRY_MS * 1000);
        thread_cancelability(FALSE);
        continue;
      }
      quiet = FALSE;
      this->mutex->lock(this->mutex);
      this->fd = fd;
      this->cond->broadcast(this->cond);
      this->mutex->unlock(this->mutex);
      if (was_connected && this->on_reconnect) {
        lib->processor->queue_job(lib->processor,
                                  (job_t *)callback_job_create((callback_job_cb_t)reconnected_job, this, NULL, NULL));
      }
      was_connected = TRUE;
    }
    thread_cancelability(TRUE);
    got = recv(fd, buf, sizeof(buf), 0);
    thread_cancelability(FALSE);
    if (got < 0 && errno == EINTR) {
      continue;
    }
    if (got <= 0) {
      lost(this, got == 0 ? "closed by meshgate" : strerror(errno));
      continue;
    }
    dispatch(this, buf, got);
  }
  return NULL;
}

METHOD(kernel_meshgate_conn_t, request, status_t, private_kernel_meshgate_conn_t *this, uint16_t type,
       const void *body, size_t body_len, struct mg_keying_reply *reply, const char *what) {
  uint8_t buf[MG_KEYING_MAX_MSG];
  size_t len = sizeof(struct mg_keying_hdr) + body_len;
  timeval_t deadline;
  status_t status = SUCCESS;
  u_int generation;
  ssize_t sent;

  if (len > sizeof(buf)) {
    DBG1(DBG_KNL, "kernel-meshgate: %s request too long", what);
    return FAILED;
  }
  time_monotonic(&deadline);
  timeval_add_ms(&deadline, this->timeout_ms);

  this->mutex->lock(this->mutex);
  while (this->busy) {
    if (this->cond->timed_wait_abs(this->cond, this->mutex, deadline)) {
      this->mutex->unlock(this->mutex);
      DBG1(DBG_KNL, "kernel-meshgate: %s not sent: meshgate busy with another request for %u ms", what,
           this->timeout_ms);
      return OUT_OF_RES;
    }
  }
  if (this->fd < 0) {
    this->mutex->unlock(this->mutex);
    DBG1(DBG_KNL, "kernel-meshgate: %s failed: not connected to meshgate at %s", what, this->path);
    return FAILED;
  }
  this->busy = TRUE;
  this->have_reply = FALSE;
  if (++this->seq == 0) {
    this->seq = 1; /* 0 is meshgate's, on unsolicited messages */
  }
  this->want_seq = this->seq;
  generation = this->generation;

  fill_hdr((struct mg_keying_hdr *)buf, type, this->seq, len);
  memcpy(buf + sizeof(struct mg_keying_hdr), body, body_len);
  sent = send(this->fd, buf, len, MSG_NOSIGNAL);
  memwipe(buf, sizeof(buf));
  if (sent != (ssize_t)len) {
    DBG1(DBG_KNL, "kernel-meshgate: %s not sent to meshgate: %s", what, sent < 0 ? strerror(errno) : "short send");
    status = FAILED;
  }
  while (status == SUCCESS && !this->have_reply) {
    if (this->generation != generation) {
      DBG1(DBG_KNL, "kernel-meshgate: %s failed: connection to meshgate lost before the reply", what);
      status = FAILED;
    } else if (this->cond->timed_wait_abs(this->cond, this->mutex, deadline)) {
      DBG1(DBG_KNL, "kernel-meshgate: %s failed: no reply from meshgate within %u ms", what, this->timeout_ms);
      status = OUT_OF_RES;
    }
  }
  if (status == SUCCESS) {
    *reply = this->reply;
    reply->gateway[sizeof(reply->gateway) - 1] = '\0';
    reply->reason[sizeof(reply->reason) - 1] = '\0';
  }
  this->busy = FALSE;
  this->cond->broadcast(this->cond);
  this->mutex->unlock(this->mutex);
  return status;
}

METHOD(kernel_meshgate_conn_t, destroy, void, private_kernel_meshgate_conn_t *this) {
  if (this->reader) {
    this->reader->cancel(this->reader);
    this->reader->join(this->reader);
  }
  if (this->fd >= 0) {
    close(this->fd);
  }
  this->cond->destroy(this->cond);
  this->mutex->destroy(this->mutex);
  free(this->path);
  free(this);
}

kernel_meshgate_conn_t *kernel_meshgate_conn_create(const char *path, u_int timeout_ms,
                                                    kernel_meshgate_expire_cb_t on_expire,
                                                    kernel_meshgate_reconnect_cb_t on_reconnect, void *ctx) {
  private_kernel_meshgate_conn_t *this;

  INIT(this,
    .public = {
      .request = _request,
      .destroy = _destroy,
    },
    .path = strdup(path),
    .timeout_ms = timeout_ms,
    .on_expire = on_expire,
    .on_reconnect = on_reconnect,
    .ctx = ctx,
    .mutex = mutex_create(MUTEX_TYPE_DEFAULT),
    .cond = condvar_create(CONDVAR_TYPE_DEFAULT),
    .fd = -1,
  );
  /* A first attempt right away: charon may need an SPI before the reader thread gets to run. */
  this->fd = try_connect(this, FALSE);
  this->reader = thread_create((thread_main_t)reader_main, this);
  if (!this->reader) {
    DBG1(DBG_KNL, "kernel-meshgate: cannot start the reader thread");
    destroy(this);
    return NULL;
  }
  return &this->public;
}
