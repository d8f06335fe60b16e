/*
 * COLO: the QMP commands (query-colo-status, x-colo-lost-heartbeat) and
 * the replication commands of Xen's COLO
 *
 * Copyright (c) 2026 The qemu-colo authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * Main loop, BQL held.  The COLO session is reached only through
 * colo-session.h.
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qapi/qapi-commands-migration.h"
#include "block/replication.h"
#include "net/filter.h"
#include "migration/colo.h"
#include "colo-session.h"

static COLOCheckpointSteps *colo_qmp_steps(const ColoCheckpointTimes *t)
{
    COLOCheckpointSteps *steps = g_new0(COLOCheckpointSteps, 1);

    steps->request_us = t->step_us[COLO_STEP_REQUEST];
    steps->live_us = t->step_us[COLO_STEP_LIVE];
    steps->stop_us = t->step_us[COLO_STEP_STOP];
    steps->disks_us = t->step_us[COLO_STEP_DISKS];
    steps->ram_us = t->step_us[COLO_STEP_RAM];
    steps->device_us = t->step_us[COLO_STEP_DEVICE];
    steps->send_us = t->step_us[COLO_STEP_SEND];
    steps->received_us = t->step_us[COLO_STEP_RECEIVED];
    steps->resume_us = t->step_us[COLO_STEP_RESUME];
    steps->live_rounds = t->live_rounds;
    steps->live_bytes = t->live_bytes;
    steps->residual_bytes = t->residual_bytes;
    steps->throttle_percent = t->throttle_pct;
    return steps;
}

COLOStatus *qmp_query_colo_status(Error **errp)
{
    COLOStatus *status = g_new0(COLOStatus, 1);
    ColoSessionStatus now;
    const ColoStats *st = &now.stats;

    colo_session_get_status(&now);
    status->mode = now.mode;
    status->last_mode = now.last_mode;
    status->reason = now.reason;
    status->has_checkpoints = true;
    status->checkpoints = st->checkpoints;
    status->has_checkpoints_periodic = true;
    status->checkpoints_periodic = st->by_trigger[COLO_TRIGGER_PERIODIC];
    status->has_checkpoints_mismatch = true;
    status->checkpoints_mismatch = st->by_trigger[COLO_TRIGGER_MISMATCH];
    status->has_checkpoints_timeout = true;
    status->checkpoints_timeout = st->by_trigger[COLO_TRIGGER_TIMEOUT];
    status->has_checkpoints_forced = true;
    status->checkpoints_forced = st->by_trigger[COLO_TRIGGER_FORCED];
    status->has_last_pause_us = true;
    status->last_pause_us = st->last_pause_us;
    status->has_max_pause_us = true;
    status->max_pause_us = st->max_pause_us;
    status->has_ram_bytes = true;
    status->ram_bytes = st->ram_bytes;
    status->has_device_state_bytes = true;
    status->device_state_bytes = st->device_state_bytes;
    if (st->has_steps) {
        status->last_steps = colo_qmp_steps(&st->last_steps);
        status->max_steps = colo_qmp_steps(&st->max_steps);
    }
    return status;
}

void qmp_x_colo_lost_heartbeat(Error **errp)
{
    colo_request_failover(errp);
}

/*
 * The replication commands Xen uses drive the replication framework
 * directly; they work without Xen too.
 */
void qmp_xen_set_replication(bool enable, bool primary,
                             bool has_failover, bool failover,
                             Error **errp)
{
    ReplicationMode mode = primary ? REPLICATION_MODE_PRIMARY
                                   : REPLICATION_MODE_SECONDARY;

    if (has_failover && enable) {
        error_setg(errp, "Parameter 'failover' is only for stopping "
                   "replication");
        return;
    }
    if (enable) {
        replication_start_all(mode, errp);
    } else {
        replication_stop_all(has_failover && failover, errp);
    }
}

ReplicationStatus *qmp_query_xen_replication_status(Error **errp)
{
    ReplicationStatus *status = g_new0(ReplicationStatus, 1);
    Error *err = NULL;

    replication_get_error_all(&err);
    if (err) {
        status->error = true;
        status->desc = g_strdup(error_get_pretty(err));
        error_free(err);
    }
    return status;
}

void qmp_xen_colo_do_checkpoint(Error **errp)
{
    ERRP_GUARD();

    replication_do_checkpoint_all(errp);
    if (!*errp) {
        colo_notify_filters_event(COLO_EVENT_CHECKPOINT, errp);
    }
}
