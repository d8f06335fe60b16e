/*
 * COLO failover requests
 *
 * Copyright (c) 2026 The qemu-colo authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * Scaffold: without the checkpoint controller nothing is ever in COLO, so a
 * failover request is refused with the same error upstream gives outside COLO
 * mode, plus the reason.
 *
 * Locking: called with the big QEMU lock held.
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qapi/qapi-commands-migration.h"
#include "migration/failover.h"
#include "colo-scaffold.h"

static FailoverStatus failover_status = FAILOVER_STATUS_NONE;

void failover_init_state(void)
{
    failover_status = FAILOVER_STATUS_NONE;
}

FailoverStatus failover_set_state(FailoverStatus old_state,
                                  FailoverStatus new_state)
{
    FailoverStatus seen = failover_status;

    if (seen == old_state) {
        failover_status = new_state;
    }
    return seen;
}

FailoverStatus failover_get_state(void)
{
    return failover_status;
}

void failover_request_active(Error **errp)
{
    error_setg(errp, "VM is not in COLO mode (%s)", COLO_NOT_AVAILABLE_MSG);
}

bool failover_request_is_active(void)
{
    return false;
}

void qmp_x_colo_lost_heartbeat(Error **errp)
{
    failover_request_active(errp);
}
