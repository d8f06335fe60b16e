/*
 * What a node's QEMU is and has, read over QMP, for the COLO tools
 *
 * Copyright (c) 2026 The qemu-colo authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * One status query for every user (status, the actions, the agent), the
 * inventory the actions add to and remove from, and one way to wait for
 * a state.  No printing: qemu-colo-agent links this file too.
 */

#ifndef TOOLS_COLO_VM_H
#define TOOLS_COLO_VM_H

#include "qmp-client.h"

/* A node's QEMU: query-colo-status, query-status and query-migrate. */
typedef struct ColoVmStatus {
    const char *mode;       /* none, primary, secondary */
    const char *last_mode;
    const char *reason;     /* of the last COLO exit: none, request, error */
    const char *run_state;  /* running, paused, inmigrate ... */
    const char *migration;  /* query-migrate's status, "none" if absent */
    QDict *colo;            /* the replies the strings point into */
    QDict *run;
    QDict *migrate;
} ColoVmStatus;

/* Fill @st (cleared first); false with @errp set if a query fails. */
bool colo_vm_query_status(QmpClient *c, ColoVmStatus *st, int timeout_ms,
                          Error **errp);
void colo_vm_status_clear(ColoVmStatus *st);
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(ColoVmStatus, colo_vm_status_clear)

/* A COLO statistic of query-colo-status (0 if QEMU does not report it). */
uint64_t colo_vm_stat(const ColoVmStatus *st, const char *key);

/* Whether a migration with status @status is still under way. */
bool colo_migration_active(const char *status);

/* What the VM has now, to add or remove only what is needed. */
typedef struct ColoVmInventory {
    GStrv objects;          /* ids under /objects */
    GStrv chardevs;
    GStrv nodes;            /* named block nodes */
    GStrv devices;          /* block backends */
    GStrv jobs;             /* block job ids */
} ColoVmInventory;

bool colo_vm_inventory(QmpClient *c, ColoVmInventory *inv, Error **errp);
void colo_vm_inventory_clear(ColoVmInventory *inv);
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(ColoVmInventory, colo_vm_inventory_clear)
/* Whether @name is in @names (NULL-terminated, may be NULL). */
bool colo_has(GStrv names, const char *name);

/* The query-block-jobs entry of job @id in *@job (NULL if none). */
bool colo_vm_block_job(QmpClient *c, const char *id, QDict **job,
                       Error **errp);

/* ---- waiting for a state --------------------------------------------- */

typedef enum ColoPoll {
    COLO_POLL_DONE,         /* the state is reached */
    COLO_POLL_AGAIN,        /* not yet */
    COLO_POLL_PROGRESS,     /* not yet, but moving: the time starts again */
    COLO_POLL_FAILED,       /* it never will: @errp is set */
} ColoPoll;

/*
 * One look at the state.  @expired: the time is up; a step that is not
 * done then returns COLO_POLL_FAILED with @errp saying what was awaited
 * (COLO_POLL_AGAIN gets a generic "timed out" error).
 */
typedef ColoPoll ColoPollFn(void *opaque, bool expired, Error **errp);

/*
 * Call @fn every @interval_ms until it is done or fails, or @timeout_ms
 * after the start or its last COLO_POLL_PROGRESS.
 */
bool colo_poll_until(ColoPollFn *fn, void *opaque, int interval_ms,
                     int timeout_ms, Error **errp);

#endif /* TOOLS_COLO_VM_H */
