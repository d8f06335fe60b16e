/*
 * COLO (COarse-grained LOck-stepping) checkpoint controller
 *
 * Copyright (c) 2026 The qemu-colo authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * Scaffold: this build tree does not have the checkpoint controller yet.
 * Every entry point the rest of QEMU reaches reports "not in COLO", and every
 * user-facing command answers with a clear error, so QEMU without COLO works
 * unchanged and a user who asks for COLO is told why nothing happens.
 *
 * Locking: all functions here run with the big QEMU lock held, except
 * colo_incoming_co(), which runs in the incoming migration coroutine.
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qapi/qapi-commands-migration.h"
#include "migration/colo.h"
#include "migration.h"
#include "colo-scaffold.h"

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

void migrate_start_colo_process(MigrationState *s)
{
    Error *err = NULL;

    /* Precopy finished with x-colo set: fail the migration, keep the VM. */
    error_setg(&err, COLO_NOT_AVAILABLE_MSG);
    migrate_set_error(s, err);
    error_free(err);
    migrate_set_state(&s->state, MIGRATION_STATUS_COLO,
                      MIGRATION_STATUS_FAILED);
}

void coroutine_fn colo_incoming_co(void)
{
    /* Unreachable: colo_init_ram_cache() refuses to enable incoming COLO. */
}

void colo_checkpoint_delay_set(void)
{
}

void colo_do_failover(void)
{
}

void colo_shutdown(void)
{
}

COLOStatus *qmp_query_colo_status(Error **errp)
{
    error_setg(errp, COLO_NOT_AVAILABLE_MSG);
    return NULL;
}

void qmp_xen_set_replication(bool enable, bool primary,
                             bool has_failover, bool failover,
                             Error **errp)
{
    error_setg(errp, COLO_NOT_AVAILABLE_MSG);
}

ReplicationStatus *qmp_query_xen_replication_status(Error **errp)
{
    error_setg(errp, COLO_NOT_AVAILABLE_MSG);
    return NULL;
}

void qmp_xen_colo_do_checkpoint(Error **errp)
{
    error_setg(errp, COLO_NOT_AVAILABLE_MSG);
}
