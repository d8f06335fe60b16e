/*
 * COLO proxy: helpers shared by colo-compare and the COLO filters
 *
 * Copyright (c) 2026 The qemu-colo authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qom/object.h"
#include "net/colo.h"

static void colo_proxy_ignore_str(Object *obj, const char *value, Error **errp)
{
}

void colo_proxy_add_scaffold_properties(ObjectClass *oc,
                                        const char *const *names)
{
    for (; *names; names++) {
        object_class_property_add_str(oc, *names, NULL, colo_proxy_ignore_str);
    }
}

void colo_proxy_refuse(const char *type_name, Error **errp)
{
    error_setg(errp, COLO_PROXY_NOT_AVAILABLE_FMT, type_name);
}
