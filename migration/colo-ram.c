/*
 * COLO: the secondary's cache of the primary's RAM
 *
 * Copyright (c) 2026 The qemu-colo authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * Scaffold: the cache is not built yet, so incoming COLO is refused when
 * the primary's MIG_CMD_ENABLE_COLO arrives, and the page-load hook in ram.c
 * is an identity.
 *
 * Locking: colo_init_ram_cache() runs in the incoming migration coroutine with
 * the big QEMU lock held; colo_ram_load_target() runs wherever ram_load runs.
 */

#include "qemu/osdep.h"
#include "qemu/error-report.h"
#include "exec/ramblock.h"
#include "ram.h"
#include "colo-scaffold.h"

int colo_init_ram_cache(void)
{
    error_report("incoming COLO refused: %s", COLO_NOT_AVAILABLE_MSG);
    return -ENOTSUP;
}

void *colo_ram_load_target(RAMBlock *block, ram_addr_t offset, void *host,
                           void **host_copy)
{
    *host_copy = NULL;
    return host;
}
