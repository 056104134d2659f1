/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * charon's kernel_ipsec_t backed by meshgate's keying interface: SAs go to meshgate's data plane, policies are
 * accepted and dropped (meshgate's selectors are its own configuration).
 */
#ifndef KERNEL_MESHGATE_IPSEC_H_
#define KERNEL_MESHGATE_IPSEC_H_

#include <kernel/kernel_ipsec.h>

kernel_ipsec_t *kernel_meshgate_ipsec_create(void);

#endif /* KERNEL_MESHGATE_IPSEC_H_ */
