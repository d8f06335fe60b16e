/*
 * COLO proxy: colo-compare
 *
 * Copyright (c) 2026 The qemu-colo authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * Scaffold: the type exists so that its name is known, and creating one fails
 * with a clear error.  With no compare ever created, the controller-facing
 * functions have nothing to notify.
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qom/object_interfaces.h"
#include "net/colo.h"
#include "net/colo-compare.h"

#define TYPE_COLO_COMPARE "colo-compare"

static void colo_compare_complete(UserCreatable *uc, Error **errp)
{
    colo_proxy_refuse(TYPE_COLO_COMPARE, errp);
}

static void colo_compare_class_init(ObjectClass *oc, void *data)
{
    static const char *const props[] = {
        "primary_in", "secondary_in", "outdev", "iothread", "notify_dev", NULL
    };
    UserCreatableClass *ucc = USER_CREATABLE_CLASS(oc);

    colo_proxy_add_scaffold_properties(oc, props);
    ucc->complete = colo_compare_complete;
}

static const TypeInfo colo_compare_info = {
    .name = TYPE_COLO_COMPARE,
    .parent = TYPE_OBJECT,
    .class_init = colo_compare_class_init,
    .interfaces = (InterfaceInfo[]) {
        { TYPE_USER_CREATABLE },
        { }
    },
};

static void colo_compare_register_types(void)
{
    type_register_static(&colo_compare_info);
}

type_init(colo_compare_register_types);

void colo_notify_compares_event(void *opaque, int event, Error **errp)
{
}

void colo_compare_register_notifier(Notifier *notify)
{
}

void colo_compare_unregister_notifier(Notifier *notify)
{
}

void colo_compare_cleanup(void)
{
}
