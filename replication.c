/*
 * Replication framework (see include/block/replication.h)
 *
 * Copyright (c) 2026 The qemu-colo authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "block/replication.h"

static QLIST_HEAD(, ReplicationState) replication_participants =
    QLIST_HEAD_INITIALIZER(replication_participants);

ReplicationState *replication_new(void *opaque, const ReplicationOps *ops)
{
    ReplicationState *rs = g_new0(ReplicationState, 1);

    rs->opaque = opaque;
    rs->ops = ops;
    QLIST_INSERT_HEAD(&replication_participants, rs, node);
    return rs;
}

void replication_remove(ReplicationState *rs)
{
    if (rs) {
        QLIST_REMOVE(rs, node);
        g_free(rs);
    }
}

void replication_start_all(ReplicationMode mode, Error **errp)
{
    ERRP_GUARD();
    ReplicationState *rs, *undo;

    QLIST_FOREACH(rs, &replication_participants, node) {
        if (!rs->ops->start) {
            continue;
        }
        rs->ops->start(rs, mode, errp);
        if (*errp) {
            goto rollback;
        }
    }
    return;

rollback:
    /* Stop what was started before @rs, so no participant is half-set-up. */
    QLIST_FOREACH(undo, &replication_participants, node) {
        if (undo == rs) {
            break;
        }
        if (undo->ops->stop) {
            undo->ops->stop(undo, false, NULL);
        }
    }
}

void replication_do_checkpoint_all(Error **errp)
{
    ERRP_GUARD();
    ReplicationState *rs;

    QLIST_FOREACH(rs, &replication_participants, node) {
        if (rs->ops->do_checkpoint) {
            rs->ops->do_checkpoint(rs, errp);
            if (*errp) {
                return;
            }
        }
    }
}

void replication_get_error_all(Error **errp)
{
    ERRP_GUARD();
    ReplicationState *rs;

    QLIST_FOREACH(rs, &replication_participants, node) {
        if (rs->ops->get_error) {
            rs->ops->get_error(rs, errp);
            if (*errp) {
                return;
            }
        }
    }
}

void replication_stop_all(bool failover, Error **errp)
{
    ReplicationState *rs, *next;

    /* Safe iteration: a participant may unregister itself when it stops. */
    QLIST_FOREACH_SAFE(rs, &replication_participants, node, next) {
        Error *local_err = NULL;

        if (rs->ops->stop) {
            rs->ops->stop(rs, failover, &local_err);
        }
        if (local_err) {
            if (errp && !*errp) {
                error_propagate(errp, local_err);
            } else {
                error_free(local_err);
            }
        }
    }
}
