/*
 * The `replication` block driver (COLO disk replication)
 *
 * Copyright (c) 2026 The qemu-colo authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * Scaffold: the driver is registered so that its name and options are known,
 * and opening a node fails with a clear error.
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qemu/module.h"
#include "block/block_int.h"

static int replication_open(BlockDriverState *bs, QDict *options, int flags,
                            Error **errp)
{
    error_setg(errp, "the 'replication' block driver is not available in "
               "this build yet");
    return -ENOTSUP;
}

static BlockDriver bdrv_replication = {
    .format_name = "replication",
    .instance_size = 0,
    .bdrv_open = replication_open,
};

static void bdrv_replication_init(void)
{
    bdrv_register(&bdrv_replication);
}

block_init(bdrv_replication_init);
