/*
 * COLO: what leaving COLO tells the other layers
 *
 * Copyright (c) 2026 The qemu-colo authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * Failover requests are the session's (colo_request_failover() in
 * colo-session.c); this is the last step of leaving COLO on either side,
 * run by its COLO thread with the BQL held.
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qemu/error-report.h"
#include "block/replication.h"
#include "net/filter.h"
#include "net/colo-compare.h"
#include "migration/colo.h"
#include "colo-failover.h"

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
