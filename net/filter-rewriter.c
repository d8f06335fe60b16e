/*
 * COLO proxy: filter-rewriter
 *
 * Copyright (c) 2026 The qemu-colo authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * Scaffold: the type exists so that its name is known, and creating one
 * fails with a clear error.
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "net/filter.h"
#include "net/colo.h"

#define TYPE_FILTER_REWRITER "filter-rewriter"

static void filter_rewriter_setup(NetFilterState *nf, Error **errp)
{
    colo_proxy_refuse(object_get_typename(OBJECT(nf)), errp);
}

static ssize_t filter_rewriter_receive_iov(NetFilterState *nf,
                                         NetClientState *sender,
                                         unsigned flags,
                                         const struct iovec *iov,
                                         int iovcnt,
                                         NetPacketSent *sent_cb)
{
    return 0;
}

static void filter_rewriter_class_init(ObjectClass *oc, void *data)
{
    NetFilterClass *nfc = NETFILTER_CLASS(oc);

    nfc->setup = filter_rewriter_setup;
    nfc->receive_iov = filter_rewriter_receive_iov;
}

static const TypeInfo filter_rewriter_info = {
    .name = TYPE_FILTER_REWRITER,
    .parent = TYPE_NETFILTER,
    .class_init = filter_rewriter_class_init,
};

static void filter_rewriter_register_types(void)
{
    type_register_static(&filter_rewriter_info);
}

type_init(filter_rewriter_register_types);
