/*
 * Replication framework (see include/block/replication.h)
 *
 * Copyright (c) 2026 The qemu-colo authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * The participants live in an array in registration order: start and
 * checkpoint walk it forwards, stop backwards (the reverse of start), and
 * every walk that may call back into replication_remove() works on a
 * snapshot, so a participant can unregister itself from any callback.
 *
 * Locking: the BQL (see the header).
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "block/replication.h"

static GPtrArray *participants;

static GPtrArray *participants_get(void)
{
    if (!participants) {
        participants = g_ptr_array_new();
    }
    return participants;
}

/* A copy of the current list, safe against removal during the walk. */
static GPtrArray *participants_snapshot(void)
{
    return g_ptr_array_copy(participants_get(), NULL, NULL);
}

static bool still_registered(ReplicationState *rs)
{
    return g_ptr_array_find(participants_get(), rs, NULL);
}

ReplicationState *replication_new(void *opaque, const ReplicationOps *ops)
{
    ReplicationState *rs = g_new0(ReplicationState, 1);

    rs->opaque = opaque;
    rs->ops = ops;
    g_ptr_array_add(participants_get(), rs);
    return rs;
}

void replication_remove(ReplicationState *rs)
{
    if (rs && g_ptr_array_remove(participants_get(), rs)) {
        g_free(rs);
    }
}

ReplicationState *replication_find(void *opaque)
{
    GPtrArray *all = participants_get();

    for (guint i = 0; i < all->len; i++) {
        ReplicationState *rs = g_ptr_array_index(all, i);

        if (rs->opaque == opaque) {
            return rs;
        }
    }
    return NULL;
}

void replication_start_all(ReplicationMode mode, Error **errp)
{
    ERRP_GUARD();
    g_autoptr(GPtrArray) all = participants_snapshot();
    guint started;

    for (started = 0; started < all->len; started++) {
        ReplicationState *rs = g_ptr_array_index(all, started);

        if (rs->ops->start && still_registered(rs)) {
            rs->ops->start(rs, mode, errp);
            if (*errp) {
                break;
            }
        }
    }
    if (!*errp) {
        return;
    }
    /* Roll back: stop those started before the failure, newest first. */
    while (started-- > 0) {
        ReplicationState *rs = g_ptr_array_index(all, started);

        if (rs->ops->stop && still_registered(rs)) {
            rs->ops->stop(rs, false, NULL);
        }
    }
}

void replication_do_checkpoint_all(Error **errp)
{
    ERRP_GUARD();
    g_autoptr(GPtrArray) all = participants_snapshot();

    for (guint i = 0; i < all->len && !*errp; i++) {
        ReplicationState *rs = g_ptr_array_index(all, i);

        if (rs->ops->do_checkpoint && still_registered(rs)) {
            rs->ops->do_checkpoint(rs, errp);
        }
    }
}

void replication_checkpoint_received_all(Error **errp)
{
    ERRP_GUARD();
    g_autoptr(GPtrArray) all = participants_snapshot();

    for (guint i = 0; i < all->len && !*errp; i++) {
        ReplicationState *rs = g_ptr_array_index(all, i);

        if (rs->ops->checkpoint_received && still_registered(rs)) {
            rs->ops->checkpoint_received(rs, errp);
        }
    }
}

void replication_get_error_all(Error **errp)
{
    ERRP_GUARD();
    g_autoptr(GPtrArray) all = participants_snapshot();

    for (guint i = 0; i < all->len && !*errp; i++) {
        ReplicationState *rs = g_ptr_array_index(all, i);

        if (rs->ops->get_error && still_registered(rs)) {
            rs->ops->get_error(rs, errp);
        }
    }
}

void replication_stop_all(bool failover, Error **errp)
{
    g_autoptr(GPtrArray) all = participants_snapshot();
    Error *first_err = NULL;

    /* Everyone is asked to stop, whatever earlier ones answer. */
    for (guint i = all->len; i-- > 0;) {
        ReplicationState *rs = g_ptr_array_index(all, i);
        Error *err = NULL;

        if (!rs->ops->stop || !still_registered(rs)) {
            continue;
        }
        rs->ops->stop(rs, failover, &err);
        if (err && !first_err) {
            first_err = err;
        } else {
            error_free(err);
        }
    }
    if (first_err) {
        error_propagate(errp, first_err);
    }
}
