/*
 * COLO proxy: helpers shared by colo-compare and the COLO filters
 *
 * Copyright (c) 2026 The qemu-colo authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * Threads: called from the main loop with the big QEMU lock held.
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qom/object.h"
#include "chardev/char.h"
#include "net/colo.h"
#include "net/colo-frame.h"

bool colo_proxy_attach_chardev(CharBackend *be, Object *owner,
                               const char *prop, const char *id,
                               bool from_iothread, Error **errp)
{
    Chardev *chr = qemu_chr_find(id);
    const char *type = object_get_typename(owner);
    const char *name = object_get_canonical_path_component(owner) ?: "?";

    if (!chr) {
        error_setg(errp, "%s '%s': chardev '%s' given as '%s' not found",
                   type, name, id, prop);
        return false;
    }
    if (from_iothread &&
        !qemu_chr_has_feature(chr, QEMU_CHAR_FEATURE_GCONTEXT)) {
        error_setg(errp, "%s '%s': chardev '%s' given as '%s' cannot be "
                   "read from an iothread; use a socket chardev",
                   type, name, id, prop);
        return false;
    }
    return qemu_chr_fe_init(be, chr, errp);
}

int colo_proxy_can_read(void *opaque)
{
    return COLO_FRAME_DEFAULT_MAX;
}
