/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * kernel-meshgate: charon's IPsec backend for meshgate, an IPsec gateway data plane outside the kernel. charon
 * keys, meshgate forwards; they talk over meshgate's keying socket only (IPC, no shared code but the wire format).
 */
#ifndef KERNEL_MESHGATE_PLUGIN_H_
#define KERNEL_MESHGATE_PLUGIN_H_

#include <plugins/plugin.h>

typedef struct kernel_meshgate_plugin_t kernel_meshgate_plugin_t;

struct kernel_meshgate_plugin_t {
  plugin_t plugin;
};

plugin_t *kernel_meshgate_plugin_create(void);

#endif /* KERNEL_MESHGATE_PLUGIN_H_ */
