/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "kernel_meshgate_sas.h"

#include <collections/linked_list.h>
#include <threading/mutex.h>

#include "keying_wire.h"

typedef struct {
  uint32_t spi;
  uint8_t dir;
  uint32_t reqid;
  host_t *src;
  host_t *dst;
} known_sa_t;

typedef struct {
  kernel_meshgate_sas_t public;
  mutex_t *mutex;
  /* A list: a charon keys a few thousand SAs at most, and every lookup here is beside a socket round trip. */
  linked_list_t *list;
} private_kernel_meshgate_sas_t;

static void known_sa_destroy(known_sa_t *sa) {
  sa->src->destroy(sa->src);
  sa->dst->destroy(sa->dst);
  free(sa);
}

/* Caller holds the mutex. */
static known_sa_t *find(private_kernel_meshgate_sas_t *this, uint32_t spi, host_t *dst, bool remove) {
  enumerator_t *enumerator = this->list->create_enumerator(this->list);
  known_sa_t *sa, *found = NULL;

  while (enumerator->enumerate(enumerator, &sa)) {
    if (sa->spi == spi && sa->dst->ip_equals(sa->dst, dst)) {
      found = sa;
      if (remove) {
        this->list->remove_at(this->list, enumerator);
      }
      break;
    }
  }
  enumerator->destroy(enumerator);
  return found;
}

METHOD(kernel_meshgate_sas_t, add, void, private_kernel_meshgate_sas_t *this, uint32_t spi, uint8_t dir,
       uint32_t reqid, host_t *src, host_t *dst) {
  known_sa_t *sa;

  INIT(sa,
    .spi = spi,
    .dir = dir,
    .reqid = reqid,
    .src = src->clone(src),
    .dst = dst->clone(dst),
  );
  this->mutex->lock(this->mutex);
  this->list->insert_last(this->list, sa);
  this->mutex->unlock(this->mutex);
}

METHOD(kernel_meshgate_sas_t, dir, uint8_t, private_kernel_meshgate_sas_t *this, uint32_t spi, host_t *dst) {
  known_sa_t *sa;
  uint8_t d = 0;

  this->mutex->lock(this->mutex);
  sa = find(this, spi, dst, FALSE);
  if (sa) {
    d = sa->dir;
  }
  this->mutex->unlock(this->mutex);
  return d;
}

METHOD(kernel_meshgate_sas_t, remove_, uint8_t, private_kernel_meshgate_sas_t *this, uint32_t spi, host_t *dst) {
  known_sa_t *sa;
  uint8_t d = 0;

  this->mutex->lock(this->mutex);
  sa = find(this, spi, dst, TRUE);
  this->mutex->unlock(this->mutex);
  if (sa) {
    d = sa->dir;
    known_sa_destroy(sa);
  }
  return d;
}

METHOD(kernel_meshgate_sas_t, update, void, private_kernel_meshgate_sas_t *this, uint32_t spi, host_t *dst,
       host_t *new_src, host_t *new_dst, uint32_t new_reqid) {
  known_sa_t *sa;

  this->mutex->lock(this->mutex);
  sa = find(this, spi, dst, FALSE);
  if (sa) {
    sa->src->destroy(sa->src);
    sa->dst->destroy(sa->dst);
    sa->src = new_src->clone(new_src);
    sa->dst = new_dst->clone(new_dst);
    if (new_reqid) {
      sa->reqid = new_reqid;
    }
  }
  this->mutex->unlock(this->mutex);
}

METHOD(kernel_meshgate_sas_t, out_dst, host_t *, private_kernel_meshgate_sas_t *this, uint32_t spi,
       uint32_t reqid) {
  enumerator_t *enumerator;
  known_sa_t *sa;
  host_t *dst = NULL;

  this->mutex->lock(this->mutex);
  enumerator = this->list->create_enumerator(this->list);
  while (enumerator->enumerate(enumerator, &sa)) {
    if (sa->dir == MG_KEY_DIR_OUT && sa->spi == spi && sa->reqid == reqid) {
      dst = sa->dst->clone(sa->dst);
      break;
    }
  }
  enumerator->destroy(enumerator);
  this->mutex->unlock(this->mutex);
  return dst;
}

METHOD(kernel_meshgate_sas_t, list_out, uint32_t *, private_kernel_meshgate_sas_t *this, u_int *n) {
  enumerator_t *enumerator;
  known_sa_t *sa;
  uint32_t *pairs;

  this->mutex->lock(this->mutex);
  pairs = calloc(2 * (size_t)this->list->get_count(this->list) + 1, sizeof(*pairs));
  *n = 0;
  enumerator = this->list->create_enumerator(this->list);
  while (enumerator->enumerate(enumerator, &sa)) {
    if (sa->dir == MG_KEY_DIR_OUT) {
      pairs[2 * *n] = sa->reqid;
      pairs[2 * *n + 1] = sa->spi;
      (*n)++;
    }
  }
  enumerator->destroy(enumerator);
  this->mutex->unlock(this->mutex);
  return pairs;
}

METHOD(kernel_meshgate_sas_t, destroy, void, private_kernel_meshgate_sas_t *this) {
  this->list->destroy_function(this->list, (void *)known_sa_destroy);
  this->mutex->destroy(this->mutex);
  free(this);
}

kernel_meshgate_sas_t *kernel_meshgate_sas_create(void) {
  private_kernel_meshgate_sas_t *this;

  INIT(this,
    .public = {
      .add = _add,
      .dir = _dir,
      .remove = _remove_,
      .update = _update,
      .out_dst = _out_dst,
      .list_out = _list_out,
      .destroy = _destroy,
    },
    .mutex = mutex_create(MUTEX_TYPE_DEFAULT),
    .list = linked_list_create(),
  );
  return &this->public;
}
