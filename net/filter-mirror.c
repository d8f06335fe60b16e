/*
 * COLO proxy: filter-mirror and filter-redirector
 *
 * Copyright (c) 2026 The qemu-colo authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * Scaffold: the types exist so that their names are known, and creating one
 * fails with a clear error.
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "net/filter.h"
#include "net/colo.h"

#define TYPE_FILTER_MIRROR "filter-mirror"
#define TYPE_FILTER_REDIRECTOR "filter-redirector"

static void filter_mirror_setup(NetFilterState *nf, Error **errp)
{
    colo_proxy_refuse(object_get_typename(OBJECT(nf)), errp);
}

static ssize_t filter_mirror_receive_iov(NetFilterState *nf,
                                         NetClientState *sender,
                                         unsigned flags,
                                         const struct iovec *iov,
                                         int iovcnt,
                                         NetPacketSent *sent_cb)
{
    return 0;
}

static void filter_mirror_class_init(ObjectClass *oc, void *data)
{
    static const char *const props[] = { "indev", "outdev", NULL };
    NetFilterClass *nfc = NETFILTER_CLASS(oc);

    colo_proxy_add_scaffold_properties(oc, props);
    nfc->setup = filter_mirror_setup;
    nfc->receive_iov = filter_mirror_receive_iov;
}

static const TypeInfo filter_mirror_info = {
    .name = TYPE_FILTER_MIRROR,
    .parent = TYPE_NETFILTER,
    .class_init = filter_mirror_class_init,
};

static const TypeInfo filter_redirector_info = {
    .name = TYPE_FILTER_REDIRECTOR,
    .parent = TYPE_NETFILTER,
    .class_init = filter_mirror_class_init,
};

static void filter_mirror_register_types(void)
{
    type_register_static(&filter_mirror_info);
    type_register_static(&filter_redirector_info);
}

type_init(filter_mirror_register_types);
