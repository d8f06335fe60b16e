/*
 * COLO failover requests: x-colo-lost-heartbeat and the failover API
 *
 * Copyright (c) 2026 The qemu-colo authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * A failover request marks the session, wakes the COLO thread and shuts the
 * COLO channels down, so a thread blocked on the peer returns at once.  The
 * COLO thread then leaves COLO at the next safe point: on the primary at
 * once (the guest runs on alone); on the secondary after finishing a
 * checkpoint it has fully received (so it never runs a half-applied one),
 * otherwise from its own current state, which is the last complete
 * checkpoint plus its own execution since.
 *
 * Locking: requests come from the monitor with the BQL held and take only
 * colo_session.lock; colo_failover_release() runs on the COLO thread with
 * the BQL held.
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qapi/qapi-commands-migration.h"
#include "qemu/error-report.h"
#include "block/replication.h"
#include "net/filter.h"
#include "net/colo-compare.h"
#include "migration/colo.h"
#include "migration/failover.h"
#include "colo-internal.h"
#include "trace.h"

bool colo_request_failover(Error **errp)
{
    qemu_mutex_lock(&colo_session.lock);
    if (colo_session.mode == COLO_MODE_NONE) {
        qemu_mutex_unlock(&colo_session.lock);
        error_setg(errp, "VM is not in COLO mode");
        return false;
    }
    if (colo_session.failover_requested) {
        qemu_mutex_unlock(&colo_session.lock);
        error_setg(errp, "COLO failover is already activated");
        return false;
    }
    colo_session.failover_requested = true;
    trace_colo_failover_requested(COLOMode_str(colo_session.mode));
    qemu_mutex_unlock(&colo_session.lock);

    colo_shutdown_channels();
    qemu_sem_post(&colo_session.wake);
    return true;
}

static void colo_warn_failed(Error *err, const char *what)
{
    if (err) {
        warn_reportf_err(err, "COLO failover: %s: ", what);
    }
}

void colo_failover_release(COLOMode mode)
{
    Error *err = NULL;

    replication_stop_all(true, &err);
    colo_warn_failed(err, "stopping disk replication");
    err = NULL;
    if (mode == COLO_MODE_PRIMARY) {
        colo_notify_compares_event(NULL, COLO_EVENT_FAILOVER, &err);
        colo_warn_failed(err, "colo-compare");
        err = NULL;
    }
    colo_notify_filters_event(COLO_EVENT_FAILOVER, &err);
    colo_warn_failed(err, "network filters");
}

void qmp_x_colo_lost_heartbeat(Error **errp)
{
    colo_request_failover(errp);
}

/* The failover status of the public API, derived from the session phase. */
FailoverStatus failover_get_state(void)
{
    FailoverStatus status;

    qemu_mutex_lock(&colo_session.lock);
    if (colo_session.phase == COLO_PHASE_FAILOVER) {
        status = FAILOVER_STATUS_ACTIVE;
    } else if (colo_session.failover_requested) {
        status = colo_session.mode == COLO_MODE_NONE ?
                 FAILOVER_STATUS_COMPLETED : FAILOVER_STATUS_REQUIRE;
    } else {
        status = FAILOVER_STATUS_NONE;
    }
    qemu_mutex_unlock(&colo_session.lock);
    return status;
}

void failover_request_active(Error **errp)
{
    colo_request_failover(errp);
}

bool failover_request_is_active(void)
{
    return failover_get_state() != FAILOVER_STATUS_NONE;
}
