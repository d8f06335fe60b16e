/*
 * The steps of the documented COLO procedure, driven over QMP
 * (see colo-actions.h and docs/system/qemu-colo.rst)
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
#include "qobject/qbool.h"
#include "qobject/qnum.h"
#include "qobject/qstring.h"
#include "qemu/timer.h"
#include "colo-actions.h"

#define CMD_TIMEOUT_MS      10000
#define EXIT_TIMEOUT_MS     60000
#define POLL_US             50000

/* The ids of the documented procedure (docs/system/qemu-colo.rst). */
static const char *const primary_objects[] = {
    "m0", "redire1", "redire0", "comp0", "iothread1", NULL
};
static const char *const primary_chardevs[] = {
    "mirror0", "compare1", "compare0", "compare0-0", "compare_out",
    "compare_out0", NULL
};
static const char *const secondary_objects[] = { "f2", "f1", NULL };
static const char *const secondary_chardevs[] = { "red1", "red0", NULL };

static bool run(QmpClient *c, const char *cmd, QDict *args, Error **errp)
{
    QObject *ret = qmp_client_cmd(c, cmd, args, CMD_TIMEOUT_MS, errp);

    qobject_unref(ret);
    return ret != NULL;
}

static bool run_id(QmpClient *c, const char *cmd, const char *key,
                   const char *id, Error **errp)
{
    g_autoptr(QDict) args = qdict_new();

    qdict_put_str(args, key, id);
    return run(c, cmd, args, errp);
}

static QList *query_list(QmpClient *c, const char *cmd, QDict *args,
                         Error **errp)
{
    QObject *ret = qmp_client_cmd(c, cmd, args, CMD_TIMEOUT_MS, errp);
    QList *list = qobject_to(QList, ret);

    if (ret && !list) {
        qobject_unref(ret);
        error_setg(errp, "%s: expected a list in the reply", cmd);
    }
    return list;
}

/* The values of @key in a list of objects, as a NULL-terminated array. */
static GStrv list_names(QList *list, const char *key)
{
    GPtrArray *a = g_ptr_array_new();
    QListEntry *e;

    QLIST_FOREACH_ENTRY(list, e) {
        QDict *d = qobject_to(QDict, qlist_entry_obj(e));
        const char *v = d ? qdict_get_try_str(d, key) : NULL;

        if (v) {
            g_ptr_array_add(a, g_strdup(v));
        }
    }
    g_ptr_array_add(a, NULL);
    return (GStrv)g_ptr_array_free(a, false);
}

/* What the VM has now, to add or remove only what is needed. */
typedef struct VmInventory {
    GStrv objects;          /* ids under /objects */
    GStrv chardevs;
    GStrv nodes;            /* named block nodes */
    GStrv devices;          /* block backends */
    GStrv jobs;             /* block job ids */
} VmInventory;

static void inventory_clear(VmInventory *inv)
{
    g_strfreev(inv->objects);
    g_strfreev(inv->chardevs);
    g_strfreev(inv->nodes);
    g_strfreev(inv->devices);
    g_strfreev(inv->jobs);
    memset(inv, 0, sizeof(*inv));
}

static bool names_of(QmpClient *c, const char *cmd, QDict *args,
                     const char *key, GStrv *out, Error **errp)
{
    QList *l = query_list(c, cmd, args, errp);

    if (!l) {
        return false;
    }
    *out = list_names(l, key);
    qobject_unref(l);
    return true;
}

static bool inventory_get(QmpClient *c, VmInventory *inv, Error **errp)
{
    g_autoptr(QDict) path = qdict_new();
    g_autoptr(QDict) flat = qdict_new();

    memset(inv, 0, sizeof(*inv));
    qdict_put_str(path, "path", "/objects");
    qdict_put_bool(flat, "flat", true);
    if (names_of(c, "qom-list", path, "name", &inv->objects, errp) &&
        names_of(c, "query-chardev", NULL, "label", &inv->chardevs, errp) &&
        names_of(c, "query-named-block-nodes", flat, "node-name",
                 &inv->nodes, errp) &&
        names_of(c, "query-block", NULL, "device", &inv->devices, errp) &&
        names_of(c, "query-block-jobs", NULL, "device", &inv->jobs, errp)) {
        return true;
    }
    inventory_clear(inv);
    return false;
}

static bool has(GStrv names, const char *name)
{
    return names && g_strv_contains((const char *const *)names, name);
}

static char *query_str(QmpClient *c, const char *cmd, const char *key,
                       Error **errp)
{
    g_autoptr(QDict) d = qmp_client_cmd_dict(c, cmd, NULL, CMD_TIMEOUT_MS,
                                             errp);

    if (!d) {
        return NULL;
    }
    return g_strdup(qdict_get_try_str(d, key) ?: "none");
}

static char *colo_mode(QmpClient *c, Error **errp)
{
    return query_str(c, "query-colo-status", "mode", errp);
}

static char *run_state(QmpClient *c, Error **errp)
{
    return query_str(c, "query-status", "status", errp);
}

static bool migration_active(const char *status)
{
    static const char *const idle[] = {
        "none", "completed", "failed", "cancelled", "colo", NULL
    };

    return !g_strv_contains(idle, status);
}

/* Poll until query-colo-status says mode none. */
static bool wait_colo_left(QmpClient *c, int timeout_ms, Error **errp)
{
    int64_t deadline = qemu_clock_get_ms(QEMU_CLOCK_REALTIME) + timeout_ms;

    for (;;) {
        g_autofree char *mode = colo_mode(c, errp);

        if (!mode) {
            return false;
        }
        if (g_str_equal(mode, "none")) {
            return true;
        }
        if (qemu_clock_get_ms(QEMU_CLOCK_REALTIME) > deadline) {
            error_setg(errp, "still in COLO mode '%s' %d s after "
                       "x-colo-lost-heartbeat", mode, timeout_ms / 1000);
            return false;
        }
        g_usleep(POLL_US);
    }
}

/* Leave COLO on either side; a VM already out of COLO is fine. */
static bool leave_colo(QmpClient *c, const char *mode, Error **errp)
{
    Error *err = NULL;

    if (!run(c, "x-colo-lost-heartbeat", NULL, &err)) {
        /* It may have left by itself since we asked (peer death). */
        g_autofree char *now = colo_mode(c, NULL);

        if (!now || !g_str_equal(now, "none")) {
            error_propagate_prepend(errp, err, "leaving COLO as %s: ", mode);
            return false;
        }
        error_free(err);
        return true;
    }
    if (!wait_colo_left(c, EXIT_TIMEOUT_MS, errp)) {
        error_prepend(errp, "leaving COLO as %s: ", mode);
        return false;
    }
    return true;
}

/* Cancel a migration in progress (an interrupted COLO start). */
static bool cancel_migration(QmpClient *c, Error **errp)
{
    int64_t deadline = qemu_clock_get_ms(QEMU_CLOCK_REALTIME) +
                       EXIT_TIMEOUT_MS;
    bool sent = false;

    for (;;) {
        g_autofree char *status = query_str(c, "query-migrate", "status",
                                            errp);

        if (!status) {
            return false;
        }
        if (!migration_active(status)) {
            return true;
        }
        if (!sent) {
            if (!run(c, "migrate_cancel", NULL, errp)) {
                return false;
            }
            sent = true;
        }
        if (qemu_clock_get_ms(QEMU_CLOCK_REALTIME) > deadline) {
            error_setg(errp, "migration still '%s' after migrate_cancel",
                       status);
            return false;
        }
        g_usleep(POLL_US);
    }
}

/*
 * The child name (children.N) and parent node of @node in the block
 * graph, for x-blockdev-change.  False if @node has no parent.
 */
static bool find_parent(QmpClient *c, const char *node, char **parent,
                        char **child, Error **errp)
{
    g_autoptr(QDict) g = qmp_client_cmd_dict(c, "x-debug-query-block-graph",
                                             NULL, CMD_TIMEOUT_MS, errp);
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
        if (!run(c, "x-blockdev-change", args, errp)) {
            error_prepend(errp, "removing %s from the disk's quorum: ", node);
            return false;
        }
    } else if (err) {
        error_propagate(errp, err);
        return false;
    }
    if (!run_id(c, "blockdev-del", "node-name", node, errp)) {
        return false;
    }
    return true;
}

static bool del_objects(QmpClient *c, GStrv have, const char *const *ids,
                        Error **errp)
{
    for (int i = 0; ids[i]; i++) {
        if (has(have, ids[i]) &&
            !run_id(c, "object-del", "id", ids[i], errp)) {
            return false;
        }
    }
    return true;
}

static bool del_chardevs(QmpClient *c, GStrv have, const char *const *ids,
                         Error **errp)
{
    for (int i = 0; ids[i]; i++) {
        if (has(have, ids[i]) &&
            !run_id(c, "chardev-remove", "id", ids[i], errp)) {
            return false;
        }
    }
    return true;
}

/*
 * Remove everything the primary role (or an interrupted re-protection)
 * added: the resync job and node, the replication child, the proxy.
 */
static bool remove_primary_side(QmpClient *c, bool *removed, Error **errp)
{
    VmInventory inv;
    bool ok = false;

    *removed = false;
    if (!inventory_get(c, &inv, errp)) {
        return false;
    }
    *removed = has(inv.jobs, COLO_RESYNC_JOB) ||
               has(inv.nodes, COLO_RESYNC_NODE) ||
               has(inv.nodes, COLO_REPLICATION_NODE);
    for (int i = 0; primary_objects[i]; i++) {
        *removed |= has(inv.objects, primary_objects[i]);
    }
    for (int i = 0; primary_chardevs[i]; i++) {
        *removed |= has(inv.chardevs, primary_chardevs[i]);
    }
    if (has(inv.jobs, COLO_RESYNC_JOB)) {
        g_autoptr(QDict) args = qdict_new();
        int64_t deadline = qemu_clock_get_ms(QEMU_CLOCK_REALTIME) +
                           EXIT_TIMEOUT_MS;

        qdict_put_str(args, "id", COLO_RESYNC_JOB);
        qdict_put_bool(args, "force", true);
        if (!run(c, "job-cancel", args, errp)) {
            goto out;
        }
        for (;;) {
            g_strfreev(inv.jobs);
            inv.jobs = NULL;
            if (!names_of(c, "query-block-jobs", NULL, "device", &inv.jobs,
                          errp)) {
                goto out;
            }
            if (!has(inv.jobs, COLO_RESYNC_JOB)) {
                break;
            }
            if (qemu_clock_get_ms(QEMU_CLOCK_REALTIME) > deadline) {
                error_setg(errp, "the disk resync job does not end");
                goto out;
            }
            g_usleep(POLL_US);
        }
    }
    if (has(inv.nodes, COLO_RESYNC_NODE) &&
        !remove_block_node(c, COLO_RESYNC_NODE, errp)) {
        goto out;
    }
    if (has(inv.nodes, COLO_REPLICATION_NODE) &&
        !remove_block_node(c, COLO_REPLICATION_NODE, errp)) {
        goto out;
    }
    ok = del_objects(c, inv.objects, primary_objects, errp) &&
         del_chardevs(c, inv.chardevs, primary_chardevs, errp);
out:
    inventory_clear(&inv);
    return ok;
}

/* Remove the secondary's redirectors; true in *@removed if there were. */
static bool remove_secondary_side(QmpClient *c, bool *removed, Error **errp)
{
    VmInventory inv;
    bool ok;

    *removed = false;
    if (!inventory_get(c, &inv, errp)) {
        return false;
    }
    for (int i = 0; secondary_objects[i]; i++) {
        *removed |= has(inv.objects, secondary_objects[i]);
    }
    for (int i = 0; secondary_chardevs[i]; i++) {
        *removed |= has(inv.chardevs, secondary_chardevs[i]);
    }
    /* Removing f2 sends the guest's output to its own tap. */
    ok = del_objects(c, inv.objects, secondary_objects, errp) &&
         del_chardevs(c, inv.chardevs, secondary_chardevs, errp);
    inventory_clear(&inv);
    return ok;
}

/* Make the switch learn the guest's MAC on this host's port. */
static bool announce(QmpClient *c, Error **errp)
{
    g_autoptr(QDict) args = qdict_new();

    qdict_put_int(args, "initial", 50);
    qdict_put_int(args, "max", 550);
    qdict_put_int(args, "rounds", 5);
    qdict_put_int(args, "step", 50);
    return run(c, "announce-self", args, errp);
}

static bool ensure_running(QmpClient *c, Error **errp)
{
    g_autofree char *state = run_state(c, errp);

    if (!state) {
        return false;
    }
    if (g_str_equal(state, "paused") || g_str_equal(state, "postmigrate")) {
        return run(c, "cont", NULL, errp);
    }
    return true;
}

bool colo_action_take_over(QmpClient *qmp, const ColoConfig *cfg,
                           const char **what, Error **errp)
{
    g_autofree char *mode = NULL, *state = NULL;
    bool was_secondary = false, removed = false, removed_primary = false;

    if (what) {
        *what = "nothing to do: already running alone";
    }
    mode = colo_mode(qmp, errp);
    state = mode ? run_state(qmp, errp) : NULL;
    if (!state) {
        return false;
    }
    if (g_str_equal(state, "inmigrate")) {
        error_setg(errp, "this QEMU still waits for its first migration: it "
                   "has no guest state to run (take over on the other node)");
        return false;
    }
    if (g_str_equal(mode, "secondary")) {
        /* The primary must not write through NBD any more. */
        qobject_unref(qmp_client_cmd(qmp, "nbd-server-stop", NULL,
                                     CMD_TIMEOUT_MS, NULL));
        if (!leave_colo(qmp, mode, errp)) {
            return false;
        }
        was_secondary = true;
    } else if (g_str_equal(mode, "primary")) {
        if (!leave_colo(qmp, mode, errp)) {
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
        qobject_unref(qmp_client_cmd(qmp, "nbd-server-stop", NULL,
                                     CMD_TIMEOUT_MS, NULL));
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
    } else if (g_str_equal(mode, "primary")) {
        if (what) {
            *what = "left COLO as primary, removed the proxy and the "
                    "replication child";
        }
    } else if (what && removed_primary) {
        *what = "runs alone: removed what was left of the COLO setup";
    }
    return true;
}

bool colo_action_reprotect(QmpClient *survivor, QmpClient *fresh,
                           const ColoConfig *cfg,
                           const ColoNodeConfig *survivor_node,
                           const ColoNodeConfig *fresh_node,
                           ColoProgressFn *progress, void *opaque,
                           Error **errp)
{
    error_setg(errp, "re-protection is not implemented yet");
    return false;
}
