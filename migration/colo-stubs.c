/*
 * COLO left out of the build (replication disabled): what the rest of QEMU
 * calls into COLO, doing nothing
 *
 * Copyright (c) 2026 The qemu-colo authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * Without COLO, x-colo cannot be set (migrate_colo() is false: the
 * capability needs CONFIG_REPLICATION), so these are never reached with COLO
 * on; they only answer "not in COLO".
 */

#include "qemu/osdep.h"
#include "exec/ramblock.h"
#include "migration/colo.h"
#include "ram.h"
#include "colo-ram.h"
#include "colo-session.h"

void migrate_start_colo_process(MigrationState *s)
{
    g_assert_not_reached();
}

void coroutine_fn colo_incoming_co(void)
{
}

bool colo_guest_run_request(bool run, Error **errp)
{
    return false;
}

void colo_checkpoint_delay_set(void)
{
}

bool colo_check_properties(MigrationState *s, Error **errp)
{
    return true;
}

void colo_shutdown(void)
{
}

COLOMode get_colo_mode(void)
{
    return COLO_MODE_NONE;
}

bool migration_in_colo_state(void)
{
    return false;
}

bool migration_incoming_in_colo_state(void)
{
    return false;
}

bool colo_incoming_code_invalidated(void)
{
    return false;
}

int colo_init_ram_cache(void)
{
    return -ENOTSUP;
}

bool colo_ram_multifd_sync_needed(void)
{
    return false;
}

void *colo_ram_load_target(RAMBlock *block, ram_addr_t offset, void *host,
                           void **host_copy)
{
    *host_copy = NULL;
    return host;
}

void *colo_ram_multifd_target(RAMBlock *block,
                              const ram_addr_t *normal, uint32_t normal_num,
                              const ram_addr_t *zero, uint32_t zero_num)
{
    return block->host;
}

void colo_ram_multifd_received(RAMBlock *block, const ram_addr_t *normal,
                               uint32_t normal_num)
{
}
