/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "kernel_meshgate_plugin.h"

#include <daemon.h>

#include "kernel_meshgate_ipsec.h"

typedef struct private_kernel_meshgate_plugin_t private_kernel_meshgate_plugin_t;

struct private_kernel_meshgate_plugin_t {
  kernel_meshgate_plugin_t public;
};

METHOD(plugin_t, get_name, char *, private_kernel_meshgate_plugin_t *this) {
  return "kernel-meshgate";
}

METHOD(plugin_t, get_features, int, private_kernel_meshgate_plugin_t *this, plugin_feature_t *features[]) {
  /* The first kernel-ipsec provider wins: this plugin must load before kernel-netlink, which then provides only
   * kernel-net (addresses, routes) as charon still needs it. */
  static plugin_feature_t f[] = {
    PLUGIN_CALLBACK(kernel_ipsec_register, kernel_meshgate_ipsec_create),
      PLUGIN_PROVIDE(CUSTOM, "kernel-ipsec"),
  };
  *features = f;
  return countof(f);
}

METHOD(plugin_t, destroy, void, private_kernel_meshgate_plugin_t *this) {
  free(this);
}

plugin_t *kernel_meshgate_plugin_create(void) {
  private_kernel_meshgate_plugin_t *this;

  INIT(this,
    .public = {
      .plugin = {
        .get_name = _get_name,
        .get_features = _get_features,
        .destroy = _destroy,
      },
    },
  );
  return &this->public.plugin;
}
