/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The SAs charon installed through the plugin, without their keys. charon names an SA by (spi, dst) while the
 * keying interface names it by (direction, spi), and meshgate's EXPIRE gives (spi, reqid) where charon wants
 * (spi, dst): this map translates. Thread-safe.
 */
#ifndef KERNEL_MESHGATE_SAS_H_
#define KERNEL_MESHGATE_SAS_H_

#include <library.h>
#include <networking/host.h>

typedef struct kernel_meshgate_sas_t kernel_meshgate_sas_t;

struct kernel_meshgate_sas_t {
  /* spi in host order; dir an mg_keying_dir. */
  void (*add)(kernel_meshgate_sas_t *this, uint32_t spi, uint8_t dir, uint32_t reqid, host_t *src, host_t *dst);
  /* The direction of (spi, dst), 0 if unknown; remove takes it out of the map. */
  uint8_t (*dir)(kernel_meshgate_sas_t *this, uint32_t spi, host_t *dst);
  uint8_t (*remove)(kernel_meshgate_sas_t *this, uint32_t spi, host_t *dst);
  /* New outer addresses of (spi, dst) after a successful UPDATE_SA; reqid 0: unchanged. */
  void (*update)(kernel_meshgate_sas_t *this, uint32_t spi, host_t *dst, host_t *new_src, host_t *new_dst,
                 uint32_t new_reqid);
  /* A clone of the destination of the outbound SA (spi, reqid), NULL if unknown. */
  host_t *(*out_dst)(kernel_meshgate_sas_t *this, uint32_t spi, uint32_t reqid);
  /* The outbound SAs as (reqid, spi) pairs: *n pairs in a malloc'd array the caller frees. */
  uint32_t *(*list_out)(kernel_meshgate_sas_t *this, u_int *n);
  void (*destroy)(kernel_meshgate_sas_t *this);
};

kernel_meshgate_sas_t *kernel_meshgate_sas_create(void);

#endif /* KERNEL_MESHGATE_SAS_H_ */
