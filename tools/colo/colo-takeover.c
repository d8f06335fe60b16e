/*
 * Take-over: make one node's QEMU the only one serving, from whatever
 * COLO state it is in (see colo-actions.h)
 *
 * Copyright (c) 2026 The qemu-colo authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * No printing here: qemu-colo-agent links this file too.  Everything is
 * reported through Error and return values.
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qobject/qdict.h"
#include "qobject/qlist.h"
#include "colo-actions.h"
#include "colo-ids.h"
#include "colo-vm.h"

/* What the primary's proxy adds (protect), and the secondary's. */
static const char *const primary_objects[] = {
    COLO_ID_MIRROR, COLO_ID_REDIRECT_OUT, COLO_ID_REDIRECT_IN,
    COLO_ID_COMPARE, COLO_ID_IOTHREAD, NULL
};
static const char *const primary_chardevs[] = {
    COLO_ID_MIRROR_CHR, COLO_ID_COMPARE_SEC, COLO_ID_COMPARE_PRI,
    COLO_ID_COMPARE_PRI_IN, COLO_ID_COMPARE_OUT, COLO_ID_COMPARE_OUT_IN, NULL
};
static const char *const secondary_objects[] = {
    COLO_ID_FILTER_OUT, COLO_ID_FILTER_IN, NULL
};
static const char *const secondary_chardevs[] = {
    COLO_ID_RED_OUT, COLO_ID_RED_IN, NULL
};

static ColoPoll colo_left(void *opaque, bool expired, Error **errp)
{
    QmpClient *c = opaque;
    g_auto(ColoVmStatus) st = { 0 };

    if (!colo_vm_query_status(c, &st, QMP_CLIENT_TIMEOUT_MS, errp)) {
        return COLO_POLL_FAILED;
    }
    if (g_str_equal(st.mode, "none")) {
        return COLO_POLL_DONE;
    }
    if (expired) {
        error_setg(errp, "still in COLO mode '%s' %d s after "
                   "x-colo-lost-heartbeat", st.mode,
                   COLO_ACTION_WAIT_MS / 1000);
        return COLO_POLL_FAILED;
    }
    return COLO_POLL_AGAIN;
}

/* Leave COLO on either side; a VM already out of COLO is fine. */
static bool leave_colo(QmpClient *c, const char *mode, Error **errp)
{
    Error *err = NULL;

    if (!qmp_client_run(c, "x-colo-lost-heartbeat", NULL, &err)) {
        /* It may have left by itself since we asked (peer death). */
        g_auto(ColoVmStatus) now = { 0 };

        if (!colo_vm_query_status(c, &now, QMP_CLIENT_TIMEOUT_MS, NULL) ||
            !g_str_equal(now.mode, "none")) {
            error_propagate_prepend(errp, err, "leaving COLO as %s: ", mode);
            return false;
        }
        error_free(err);
        return true;
    }
    if (!colo_poll_until(colo_left, c, COLO_ACTION_POLL_MS,
                         COLO_ACTION_WAIT_MS, errp)) {
        error_prepend(errp, "leaving COLO as %s: ", mode);
        return false;
    }
    return true;
}

typedef struct CancelState {
    QmpClient *c;
    bool sent;
} CancelState;

static ColoPoll migration_cancelled(void *opaque, bool expired, Error **errp)
{
    CancelState *s = opaque;
    g_autofree char *status = qmp_client_query_str(s->c, "query-migrate",
                                                   "status", errp);

    if (!status) {
        return COLO_POLL_FAILED;
    }
    if (!colo_migration_active(status)) {
        return COLO_POLL_DONE;
    }
    if (!s->sent) {
        if (!qmp_client_run(s->c, "migrate_cancel", NULL, errp)) {
            return COLO_POLL_FAILED;
        }
        s->sent = true;
    }
    if (expired) {
        error_setg(errp, "migration still '%s' after migrate_cancel",
                   status);
        return COLO_POLL_FAILED;
    }
    return COLO_POLL_AGAIN;
}

/* Cancel a migration in progress (an interrupted COLO start). */
static bool cancel_migration(QmpClient *c, Error **errp)
{
    CancelState s = { .c = c };

    return colo_poll_until(migration_cancelled, &s, COLO_ACTION_POLL_MS,
                           COLO_ACTION_WAIT_MS, errp);
}

/*
 * The child name (children.N) and parent node of @node in the block
 * graph, for x-blockdev-change.  False if @node has no parent.
 */
static bool find_parent(QmpClient *c, const char *node, char **parent,
                        char **child, Error **errp)
{
    g_autoptr(QDict) g = qmp_client_cmd_dict(c, "x-debug-query-block-graph",
                                             NULL, QMP_CLIENT_TIMEOUT_MS,
                                             errp);
    QList *nodes, *edges;
    QListEntry *e;
    int64_t id = -1;

    *parent = *child = NULL;
    if (!g) {
        return false;
    }
    nodes = qdict_get_qlist(g, "nodes");
    edges = qdict_get_qlist(g, "edges");
    if (!nodes || !edges) {
        error_setg(errp, "x-debug-query-block-graph: unexpected reply");
        return false;
    }
    QLIST_FOREACH_ENTRY(nodes, e) {
        QDict *n = qobject_to(QDict, qlist_entry_obj(e));

        if (n && g_strcmp0(qdict_get_try_str(n, "name"), node) == 0 &&
            g_strcmp0(qdict_get_try_str(n, "type"), "block-driver") == 0) {
            id = qdict_get_int(n, "id");
        }
    }
    QLIST_FOREACH_ENTRY(edges, e) {
        QDict *ed = qobject_to(QDict, qlist_entry_obj(e));

        if (ed && id >= 0 && qdict_get_int(ed, "child") == id) {
            int64_t pid = qdict_get_int(ed, "parent");
            QListEntry *e2;

            QLIST_FOREACH_ENTRY(nodes, e2) {
                QDict *n = qobject_to(QDict, qlist_entry_obj(e2));

                if (n && qdict_get_int(n, "id") == pid &&
                    g_strcmp0(qdict_get_try_str(n, "type"),
                              "block-driver") == 0) {
                    *parent = g_strdup(qdict_get_try_str(n, "name"));
                    *child = g_strdup(qdict_get_try_str(ed, "name"));
                    return *parent && *child;
                }
            }
        }
    }
    return false;
}

/* Detach @node from its quorum parent (if attached) and delete it. */
static bool remove_block_node(QmpClient *c, const char *node, Error **errp)
{
    g_autofree char *parent = NULL, *child = NULL;
    Error *err = NULL;

    if (find_parent(c, node, &parent, &child, &err)) {
        g_autoptr(QDict) args = qdict_new();

        qdict_put_str(args, "parent", parent);
        qdict_put_str(args, "child", child);
        if (!qmp_client_run(c, "x-blockdev-change", args, errp)) {
            error_prepend(errp, "removing %s from the disk's quorum: ", node);
            return false;
        }
    } else if (err) {
        error_propagate(errp, err);
        return false;
    }
    return qmp_client_run_str(c, "blockdev-del", "node-name", node, errp);
}

/* Remove those of @ids that @have lists, with @cmd (its "id" argument). */
static bool remove_ids(QmpClient *c, const char *cmd, GStrv have,
                       const char *const *ids, Error **errp)
{
    for (int i = 0; ids[i]; i++) {
        if (colo_has(have, ids[i]) &&
            !qmp_client_run_str(c, cmd, "id", ids[i], errp)) {
            return false;
        }
    }
    return true;
}

/* Whether @have lists any of @ids. */
static bool has_any(GStrv have, const char *const *ids)
{
    for (int i = 0; ids[i]; i++) {
        if (colo_has(have, ids[i])) {
            return true;
        }
    }
    return false;
}

typedef struct EndJobState {
    QmpClient *c;
    bool cancelled;
} EndJobState;

static ColoPoll resync_job_ended(void *opaque, bool expired, Error **errp)
{
    EndJobState *s = opaque;
    g_autoptr(QDict) job = NULL;
    const char *status;

    if (!colo_vm_block_job(s->c, COLO_RESYNC_JOB, &job, errp)) {
        return COLO_POLL_FAILED;
    }
    if (!job) {
        return COLO_POLL_DONE;
    }
    status = qdict_get_try_str(job, "status") ?: "";
    if (g_str_equal(status, "concluded")) {
        if (!qmp_client_run_str(s->c, "job-dismiss", "id", COLO_RESYNC_JOB,
                                errp)) {
            return COLO_POLL_FAILED;
        }
        return COLO_POLL_AGAIN;
    }
    if (!s->cancelled) {
        g_autoptr(QDict) args = qdict_new();

        /* force: a ready mirror would otherwise finish its copy */
        qdict_put_str(args, "device", COLO_RESYNC_JOB);
        qdict_put_bool(args, "force", true);
        if (!qmp_client_run(s->c, "block-job-cancel", args, errp)) {
            return COLO_POLL_FAILED;
        }
        s->cancelled = true;
    }
    if (expired) {
        error_setg(errp, "the disk resync job does not end");
        return COLO_POLL_FAILED;
    }
    return COLO_POLL_AGAIN;
}

/* Cancel the resync job whatever its state, and dismiss it. */
static bool end_resync_job(QmpClient *c, Error **errp)
{
    EndJobState s = { .c = c };

    return colo_poll_until(resync_job_ended, &s, COLO_ACTION_POLL_MS,
                           COLO_ACTION_WAIT_MS, errp);
}

/*
 * Remove everything the primary role (or an interrupted re-protection)
 * added: the resync job and node, the replication child, the proxy.
 */
static bool remove_primary_side(QmpClient *c, bool *removed, Error **errp)
{
    g_auto(ColoVmInventory) inv = { 0 };

    *removed = false;
    if (!colo_vm_inventory(c, &inv, errp)) {
        return false;
    }
    *removed = colo_has(inv.jobs, COLO_RESYNC_JOB) ||
               colo_has(inv.nodes, COLO_RESYNC_NODE) ||
               colo_has(inv.nodes, COLO_REPLICATION_NODE) ||
               has_any(inv.objects, primary_objects) ||
               has_any(inv.chardevs, primary_chardevs);
    if (colo_has(inv.jobs, COLO_RESYNC_JOB) && !end_resync_job(c, errp)) {
        return false;
    }
    if (colo_has(inv.nodes, COLO_RESYNC_NODE) &&
        !remove_block_node(c, COLO_RESYNC_NODE, errp)) {
        return false;
    }
    if (colo_has(inv.nodes, COLO_REPLICATION_NODE) &&
        !remove_block_node(c, COLO_REPLICATION_NODE, errp)) {
        return false;
    }
    return remove_ids(c, "object-del", inv.objects, primary_objects, errp) &&
           remove_ids(c, "chardev-remove", inv.chardevs, primary_chardevs,
                      errp);
}

/* Remove the secondary's redirectors; true in *@removed if there were. */
static bool remove_secondary_side(QmpClient *c, bool *removed, Error **errp)
{
    g_auto(ColoVmInventory) inv = { 0 };

    *removed = false;
    if (!colo_vm_inventory(c, &inv, errp)) {
        return false;
    }
    *removed = has_any(inv.objects, secondary_objects) ||
               has_any(inv.chardevs, secondary_chardevs);
    /* Removing f2 sends the guest's output to its own tap. */
    return remove_ids(c, "object-del", inv.objects, secondary_objects,
                      errp) &&
           remove_ids(c, "chardev-remove", inv.chardevs, secondary_chardevs,
                      errp);
}

/* Make the switch learn the guest's MAC on this host's port. */
static bool announce(QmpClient *c, Error **errp)
{
    g_autoptr(QDict) args = qdict_new();

    qdict_put_int(args, "initial", 50);
    qdict_put_int(args, "max", 550);
    qdict_put_int(args, "rounds", 5);
    qdict_put_int(args, "step", 50);
    return qmp_client_run(c, "announce-self", args, errp);
}

static bool ensure_running(QmpClient *c, Error **errp)
{
    g_autofree char *state = qmp_client_query_str(c, "query-status",
                                                  "status", errp);

    if (!state) {
        return false;
    }
    if (g_str_equal(state, "paused") || g_str_equal(state, "postmigrate")) {
        return qmp_client_run(c, "cont", NULL, errp);
    }
    return true;
}

bool colo_action_take_over(QmpClient *qmp, const ColoConfig *cfg,
                           const char **what, Error **errp)
{
    g_auto(ColoVmStatus) st = { 0 };
    bool was_secondary = false, removed = false, removed_primary = false;

    if (what) {
        *what = "nothing to do: already running alone";
    }
    if (!colo_vm_query_status(qmp, &st, QMP_CLIENT_TIMEOUT_MS, errp)) {
        return false;
    }
    if (g_str_equal(st.run_state, "inmigrate")) {
        error_setg(errp, "this QEMU still waits for its first migration: it "
                   "has no guest state to run (take over on the other node)");
        return false;
    }
    if (g_str_equal(st.mode, "secondary")) {
        /* The primary must not write through NBD any more. */
        qmp_client_run(qmp, "nbd-server-stop", NULL, NULL);
        if (!leave_colo(qmp, st.mode, errp)) {
            return false;
        }
        was_secondary = true;
    } else if (g_str_equal(st.mode, "primary")) {
        if (!leave_colo(qmp, st.mode, errp)) {
            return false;
        }
    }
    if (!cancel_migration(qmp, errp)) {
        error_prepend(errp, "cancelling the migration to the secondary: ");
        return false;
    }
    if (!remove_secondary_side(qmp, &removed, errp)) {
        error_prepend(errp, "removing the secondary's proxy: ");
        return false;
    }
    if (removed || was_secondary) {
        /* A former secondary: its NBD server must go too (retry case). */
        qmp_client_run(qmp, "nbd-server-stop", NULL, NULL);
    }
    if (!remove_primary_side(qmp, &removed_primary, errp)) {
        error_prepend(errp, "removing the primary's proxy and replication: ");
        return false;
    }
    if (!ensure_running(qmp, errp)) {
        error_prepend(errp, "restarting the guest: ");
        return false;
    }
    if (removed || was_secondary) {
        if (!announce(qmp, errp)) {
            return false;
        }
        if (what) {
            *what = "took over as the former secondary: left COLO, removed "
                    "the secondary's proxy, announced the guest";
        }
    } else if (g_str_equal(st.mode, "primary")) {
        if (what) {
            *what = "left COLO as primary, removed the proxy and the "
                    "replication child";
        }
    } else if (what && removed_primary) {
        *what = "already out of COLO: removed the primary's proxy and "
                "replication child";
    }
    return true;
}
