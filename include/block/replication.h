/*
 * Replication framework: the COLO controller drives every replicated disk
 * through one set of calls (start, checkpoint, error query, stop), without
 * knowing which block drivers take part.
 *
 * Copyright (c) 2026 The qemu-colo authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * Locking: all functions are called with the big QEMU lock held, from the
 * main loop or from the COLO thread holding it.
 */

#ifndef BLOCK_REPLICATION_H
#define BLOCK_REPLICATION_H

#include "qapi/qapi-types-block-core.h"

typedef struct ReplicationState ReplicationState;

/* What a participant (e.g. a replication block node) does at each step. */
typedef struct ReplicationOps {
    void (*start)(ReplicationState *rs, ReplicationMode mode, Error **errp);
    void (*do_checkpoint)(ReplicationState *rs, Error **errp);
    /*
     * Primary only: the secondary acknowledged the checkpoint (RECEIVED);
     * the guest is still stopped.  Optional.
     */
    void (*checkpoint_received)(ReplicationState *rs, Error **errp);
    /* Report a latched error, if any; leave *errp untouched otherwise. */
    void (*get_error)(ReplicationState *rs, Error **errp);
    void (*stop)(ReplicationState *rs, bool failover, Error **errp);
} ReplicationOps;

struct ReplicationState {
    void *opaque;
    const ReplicationOps *ops;
};

/*
 * Register a participant; @opaque is handed back through rs->opaque.
 * Participants are called in the order they registered (stop: reverse).
 */
ReplicationState *replication_new(void *opaque, const ReplicationOps *ops);
/* Unregister and free @rs (NULL is allowed). */
void replication_remove(ReplicationState *rs);
/* The participant registered with @opaque, or NULL (tests drive one). */
ReplicationState *replication_find(void *opaque);

/*
 * Start every participant in @mode.  If one fails, the ones already started
 * are stopped again (not as a failover) and the first error is returned.
 */
void replication_start_all(ReplicationMode mode, Error **errp);
/* Checkpoint every participant; stops at the first error. */
void replication_do_checkpoint_all(Error **errp);
/*
 * The primary got RECEIVED for the checkpoint just taken: tell every
 * participant, before the guest runs again; stops at the first error.
 */
void replication_checkpoint_received_all(Error **errp);
/* Return the first error latched by any participant. */
void replication_get_error_all(Error **errp);
/* Stop every participant, even if some fail; returns the first error. */
void replication_stop_all(bool failover, Error **errp);

#endif /* BLOCK_REPLICATION_H */
