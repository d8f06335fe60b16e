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
#include "qobject/qjson.h"
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

/* One block job's entry in query-block-jobs (*@job NULL if none). */
static bool get_job(QmpClient *c, const char *id, QDict **job, Error **errp)
{
    QObject *ret = qmp_client_cmd(c, "query-block-jobs", NULL,
                                  CMD_TIMEOUT_MS, errp);
    QList *list = qobject_to(QList, ret);
    QListEntry *e;

    *job = NULL;
    if (!ret) {
        return false;
    }
    QLIST_FOREACH_ENTRY(list, e) {
        QDict *j = qobject_to(QDict, qlist_entry_obj(e));

        if (j && g_strcmp0(qdict_get_try_str(j, "device"), id) == 0) {
            *job = qobject_ref(j);
        }
    }
    qobject_unref(ret);
    return true;
}

/* Cancel the resync job whatever its state, and dismiss it. */
static bool end_resync_job(QmpClient *c, Error **errp)
{
    int64_t deadline = qemu_clock_get_ms(QEMU_CLOCK_REALTIME) +
                       EXIT_TIMEOUT_MS;
    bool cancelled = false;

    for (;;) {
        g_autoptr(QDict) job = NULL;
        const char *status;

        if (!get_job(c, COLO_RESYNC_JOB, &job, errp)) {
            return false;
        }
        if (!job) {
            return true;
        }
        status = qdict_get_try_str(job, "status") ?: "";
        if (g_str_equal(status, "concluded")) {
            if (!run_id(c, "job-dismiss", "id", COLO_RESYNC_JOB, errp)) {
                return false;
            }
            continue;
        }
        if (!cancelled) {
            g_autoptr(QDict) args = qdict_new();

            /* force: a ready mirror would otherwise finish its copy */
            qdict_put_str(args, "device", COLO_RESYNC_JOB);
            qdict_put_bool(args, "force", true);
            if (!run(c, "block-job-cancel", args, errp)) {
                return false;
            }
            cancelled = true;
        }
        if (qemu_clock_get_ms(QEMU_CLOCK_REALTIME) > deadline) {
            error_setg(errp, "the disk resync job does not end");
            return false;
        }
        g_usleep(POLL_US);
    }
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
    if (has(inv.jobs, COLO_RESYNC_JOB) && !end_resync_job(c, errp)) {
        goto out;
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
        *what = "already out of COLO: removed the primary's proxy and "
                "replication child";
    }
    return true;
}

/* The guest's disk on a VM: top-disk0 on a node started as secondary. */
static const char *top_disk(const VmInventory *inv)
{
    return has(inv->devices, "top-disk0") ? "top-disk0" : "colo-disk0";
}

/*
 * The node name of the device's root (the quorum), for x-blockdev-change:
 * once the mirror runs, the device name resolves to its filter node.
 */
static char *root_node(QmpClient *c, const char *device, Error **errp)
{
    g_autoptr(QList) l = query_list(c, "query-block", NULL, errp);
    QListEntry *e;

    if (!l) {
        return NULL;
    }
    QLIST_FOREACH_ENTRY(l, e) {
        QDict *d = qobject_to(QDict, qlist_entry_obj(e));
        QDict *ins = d ? qdict_get_qdict(d, "inserted") : NULL;

        if (ins && g_strcmp0(qdict_get_try_str(d, "device"), device) == 0 &&
            qdict_get_try_str(ins, "node-name")) {
            return g_strdup(qdict_get_try_str(ins, "node-name"));
        }
    }
    error_setg(errp, "no disk '%s' on this QEMU", device);
    return NULL;
}

static QDict *inet(const char *host, int port)
{
    QDict *addr = qdict_new();
    g_autofree char *p = g_strdup_printf("%d", port);

    qdict_put_str(addr, "host", host);
    qdict_put_str(addr, "port", p);
    return addr;
}

/* ---- TLS (tls-dir) --------------------------------------------------- */

/* object-add arguments of a tls-creds-x509 object from tls-dir. */
static QDict *tls_creds_args(const ColoConfig *cfg, bool server)
{
    QDict *d = qdict_new();

    qdict_put_str(d, "qom-type", "tls-creds-x509");
    qdict_put_str(d, "id", server ? COLO_TLS_SERVER : COLO_TLS_CLIENT);
    qdict_put_str(d, "endpoint", server ? "server" : "client");
    qdict_put_str(d, "dir", cfg->tls_dir);
    /* A listener asks for the client's certificate and checks its CA. */
    qdict_put_bool(d, "verify-peer", true);
    return d;
}

static QDict *authz_rule(const char *match, const char *format)
{
    QDict *r = qdict_new();

    qdict_put_str(r, "match", match);
    qdict_put_str(r, "policy", "allow");
    qdict_put_str(r, "format", format);
    return r;
}

/*
 * The listeners' authz: only the peer's certificate, whose distinguished
 * name (as GnuTLS prints it, RFC 4514 order) starts with CN=<peer name>.
 * Everything else is denied, also other certificates of the pair's CA.
 */
static QDict *tls_authz_args(const ColoNodeConfig *peer)
{
    QDict *d = qdict_new();
    QList *rules = qlist_new();
    g_autofree char *dn = g_strdup_printf("CN=%s", peer->name);

    qdict_put_str(d, "qom-type", "authz-list");
    qdict_put_str(d, "id", COLO_TLS_AUTHZ);
    qdict_put_str(d, "policy", "deny");
    qlist_append(rules, authz_rule(dn, "exact"));
    if (!strpbrk(peer->name, "*?,\\")) {
        /* further components after the CN (O=..., C=...) */
        g_autofree char *glob = g_strdup_printf("CN=%s,*", peer->name);

        qlist_append(rules, authz_rule(glob, "glob"));
    }
    qdict_put(d, "rules", rules);
    return d;
}

GStrv colo_tls_object_args(const ColoConfig *cfg, const ColoNodeConfig *peer)
{
    QDict *objs[3];
    GStrv out;

    if (!cfg->tls_dir) {
        return NULL;
    }
    objs[0] = tls_creds_args(cfg, true);
    objs[1] = tls_creds_args(cfg, false);
    objs[2] = tls_authz_args(peer);
    out = g_new0(char *, 4);
    for (int i = 0; i < 3; i++) {
        GString *json = qobject_to_json(QOBJECT(objs[i]));

        out[i] = g_string_free(json, false);
        qobject_unref(objs[i]);
    }
    return out;
}

/* The TLS objects on a running QEMU (started by an older tool: added). */
static bool ensure_tls_objects(QmpClient *c, const ColoConfig *cfg,
                               const ColoNodeConfig *peer, Error **errp)
{
    VmInventory inv;
    bool ok = true;

    if (!cfg->tls_dir) {
        return true;
    }
    if (!inventory_get(c, &inv, errp)) {
        return false;
    }
    for (int i = 0; ok && i < 3; i++) {
        static const char *const ids[] = {
            COLO_TLS_SERVER, COLO_TLS_CLIENT, COLO_TLS_AUTHZ
        };
        g_autoptr(QDict) args = NULL;

        if (has(inv.objects, ids[i])) {
            continue;
        }
        args = i < 2 ? tls_creds_args(cfg, i == 0) : tls_authz_args(peer);
        ok = run(c, "object-add", args, errp);
        if (!ok) {
            error_prepend(errp, "adding %s (tls-dir %s): ", ids[i],
                          cfg->tls_dir);
        }
    }
    inventory_clear(&inv);
    return ok;
}

static QDict *nbd_file(const ColoConfig *cfg, const ColoNodeConfig *fresh)
{
    QDict *file = qdict_new();
    QDict *server = inet(fresh->link_addr, cfg->port_nbd);

    qdict_put_str(server, "type", "inet");
    qdict_put_str(file, "driver", "nbd");
    qdict_put_str(file, "export", "colo-disk0");
    qdict_put(file, "server", server);
    if (cfg->tls_dir) {
        /* the server's certificate must name the fresh node */
        qdict_put_str(file, "tls-creds", COLO_TLS_CLIENT);
        qdict_put_str(file, "tls-hostname", fresh->name);
    }
    return file;
}

static char *uri_of(const char *host, int port)
{
    return g_strdup_printf("tcp:%s:%d", host, port);
}

static int64_t now_ms(void)
{
    return qemu_clock_get_ms(QEMU_CLOCK_REALTIME);
}

static void report(ColoProgressFn *progress, void *opaque, const char *step,
                   int64_t done, int64_t total)
{
    if (progress) {
        progress(step, done, total, opaque);
    }
}

/* The fresh QEMU: x-colo, and its disk exported for the resync/primary. */
static bool prepare_fresh(QmpClient *fresh, const ColoConfig *cfg,
                          const ColoNodeConfig *node, Error **errp)
{
    g_autoptr(QDict) caps = qdict_new();
    g_autoptr(QDict) nbd = qdict_new();
    g_autoptr(QDict) add = qdict_new();
    QList *list = qlist_new();
    QDict *cap = qdict_new();
    QDict *addr = qdict_new();

    qdict_put_str(cap, "capability", "x-colo");
    qdict_put_bool(cap, "state", true);
    qlist_append(list, cap);
    qdict_put(caps, "capabilities", list);
    if (!run(fresh, "migrate-set-capabilities", caps, errp)) {
        return false;
    }
    if (!node->disk) {
        return true;
    }
    qdict_put_str(addr, "type", "inet");
    qdict_put(addr, "data", inet(node->link_addr, cfg->port_nbd));
    qdict_put(nbd, "addr", addr);
    if (cfg->tls_dir) {
        qdict_put_str(nbd, "tls-creds", COLO_TLS_SERVER);
        qdict_put_str(nbd, "tls-authz", COLO_TLS_AUTHZ);
    }
    qdict_put_str(add, "device", "colo-disk0");
    qdict_put_bool(add, "writable", true);
    if (!run(fresh, "nbd-server-start", nbd, errp) ||
        !run(fresh, "nbd-server-add", add, errp)) {
        error_prepend(errp, "NBD: ");
        return false;
    }
    return true;
}

#define RESYNC_STALL_MS  120000

/*
 * Copy the survivor's disk to the fresh node while the guest runs; return
 * once the mirror is READY.  The mirror is active (write-blocking): from
 * then on every guest write completes on both disks, so the copy stays
 * exact while the replication child is added and the RAM migrates live.
 */
static bool resync(QmpClient *s, const char *top, const ColoConfig *cfg,
                   const ColoNodeConfig *fresh, ColoProgressFn *progress,
                   void *opaque, Error **errp)
{
    g_autoptr(QDict) node = nbd_file(cfg, fresh);
    g_autoptr(QDict) mirror = qdict_new();
    int64_t last_offset = -1, last_change = now_ms();

    qdict_put_str(node, "node-name", COLO_RESYNC_NODE);
    if (!run(s, "blockdev-add", node, errp)) {
        error_prepend(errp, "NBD: ");
        return false;
    }
    qdict_put_str(mirror, "job-id", COLO_RESYNC_JOB);
    qdict_put_str(mirror, "device", top);
    qdict_put_str(mirror, "target", COLO_RESYNC_NODE);
    qdict_put_str(mirror, "sync", "full");
    qdict_put_str(mirror, "copy-mode", "write-blocking");
    if (cfg->resync_speed) {
        qdict_put_int(mirror, "speed", cfg->resync_speed);
    }
    /* Keep a failed job around so that its error can be reported. */
    qdict_put_bool(mirror, "auto-dismiss", false);
    if (!run(s, "blockdev-mirror", mirror, errp)) {
        return false;
    }
    for (;;) {
        g_autoptr(QDict) job = NULL;
        int64_t offset, len;

        if (!get_job(s, COLO_RESYNC_JOB, &job, errp)) {
            return false;
        }
        if (!job) {
            error_setg(errp, "the resync job disappeared");
            return false;
        }
        offset = qdict_get_try_int(job, "offset", 0);
        len = qdict_get_try_int(job, "len", 0);
        if (g_strcmp0(qdict_get_try_str(job, "status"), "concluded") == 0 ||
            qdict_haskey(job, "error")) {
            error_setg(errp, "the copy to the new secondary failed: %s",
                       qdict_get_try_str(job, "error") ?: "job ended");
            return false;
        }
        report(progress, opaque, "disk resync", offset, len);
        if (qdict_get_try_bool(job, "ready", false)) {
            return true;
        }
        if (offset != last_offset) {
            last_offset = offset;
            last_change = now_ms();
        } else if (now_ms() - last_change > RESYNC_STALL_MS) {
            error_setg(errp, "the copy to the new secondary made no progress "
                       "for %d s", RESYNC_STALL_MS / 1000);
            return false;
        }
        g_usleep(4 * POLL_US);
    }
}

/*
 * Once COLO runs (the replication child forwards every write): end the
 * mirror without pivot.  It must still be healthy: a mirror that failed
 * before may have missed writes the secondary's disk needs.
 */
static bool resync_finish(QmpClient *s, Error **errp)
{
    int64_t deadline = now_ms() + EXIT_TIMEOUT_MS;
    g_autoptr(QDict) cur = NULL;

    if (!get_job(s, COLO_RESYNC_JOB, &cur, errp)) {
        return false;
    }
    if (!cur || qdict_haskey(cur, "error") ||
        !qdict_get_try_bool(cur, "ready", false)) {
        error_setg(errp, "the copy to the new secondary stopped following "
                   "the guest's writes: %s", cur ?
                   qdict_get_try_str(cur, "error") ?: "job not ready" :
                   "job gone");
        return false;
    }
    if (!run_id(s, "block-job-cancel", "device", COLO_RESYNC_JOB, errp)) {
        return false;
    }
    for (;;) {
        g_autoptr(QDict) job = NULL;

        if (!get_job(s, COLO_RESYNC_JOB, &job, errp)) {
            return false;
        }
        if (!job) {
            break;
        }
        if (g_strcmp0(qdict_get_try_str(job, "status"), "concluded") == 0) {
            if (qdict_haskey(job, "error")) {
                error_setg(errp, "the final copy failed: %s",
                           qdict_get_str(job, "error"));
                return false;
            }
            if (!run_id(s, "job-dismiss", "id", COLO_RESYNC_JOB, errp)) {
                return false;
            }
            break;
        }
        if (now_ms() > deadline) {
            error_setg(errp, "the resync job did not end after "
                       "block-job-cancel");
            return false;
        }
        g_usleep(POLL_US);
    }
    return run_id(s, "blockdev-del", "node-name", COLO_RESYNC_NODE, errp);
}

static bool add_replication(QmpClient *s, const char *top,
                            const ColoConfig *cfg,
                            const ColoNodeConfig *fresh, Error **errp)
{
    g_autoptr(QDict) rep = qdict_new();
    g_autoptr(QDict) change = qdict_new();

    qdict_put_str(rep, "driver", "replication");
    qdict_put_str(rep, "node-name", COLO_REPLICATION_NODE);
    qdict_put_str(rep, "mode", "primary");
    qdict_put(rep, "file", nbd_file(cfg, fresh));
    if (!run(s, "blockdev-add", rep, errp)) {
        error_prepend(errp, "NBD: ");
        return false;
    }
    qdict_put_str(change, "parent", top);
    qdict_put_str(change, "node", COLO_REPLICATION_NODE);
    return run(s, "x-blockdev-change", change, errp);
}

static bool add_socket(QmpClient *s, const char *id, const char *host,
                       int port, bool server, bool tls, Error **errp)
{
    g_autoptr(QDict) args = qdict_new();
    QDict *backend = qdict_new();
    QDict *data = qdict_new();
    QDict *addr = qdict_new();

    qdict_put_str(addr, "type", "inet");
    qdict_put(addr, "data", inet(host, port));
    qdict_put(data, "addr", addr);
    qdict_put_bool(data, "server", server);
    if (tls) {
        /* only the link's listeners: the peer connects with a cert */
        qdict_put_str(data, "tls-creds", COLO_TLS_SERVER);
        qdict_put_str(data, "tls-authz", COLO_TLS_AUTHZ);
    }
    if (server) {
        qdict_put_bool(data, "wait", false);
    } else {
        qdict_put_int(data, "reconnect-ms", 200);
    }
    qdict_put_str(backend, "type", "socket");
    qdict_put(backend, "data", data);
    qdict_put_str(args, "id", id);
    qdict_put(args, "backend", backend);
    return run(s, "chardev-add", args, errp);
}

static bool add_object(QmpClient *s, const char *type, const char *id,
                       const char *const *props, Error **errp)
{
    g_autoptr(QDict) args = qdict_new();

    qdict_put_str(args, "qom-type", type);
    qdict_put_str(args, "id", id);
    for (int i = 0; props && props[i]; i += 2) {
        qdict_put_str(args, props[i], props[i + 1]);
    }
    if (!g_str_equal(type, "iothread")) {
        /* tap frames carry a virtio-net header (see the documentation) */
        qdict_put_bool(args, "vnet_hdr_support", true);
    }
    return run(s, "object-add", args, errp);
}

/*
 * The primary's proxy of the documented command line, at run time.
 *
 * On a former secondary, filter-rewriter rew0 stays (it keeps rewriting
 * connections opened under the old pair) and the new filters are appended
 * after it (object-add's default position=tail), which is the order we
 * need: net/filter.c runs the filters of packets going to the guest (tx)
 * from head to tail and those coming from the guest (rx) from tail to head.
 * So client packets are rewritten by rew0 before m0 mirrors them (the new
 * secondary is a copy of this guest and must see what it sees), the
 * guest's own output reaches redire1 and colo-compare unrewritten (the new
 * secondary's output is in the same numbering), and what colo-compare
 * releases is injected by redire0 and passes rew0 on its way out.  Putting
 * the new filters before rew0 (position=id:rew0) would compare rewritten
 * against unrewritten packets.
 */
static bool add_proxy(QmpClient *s, const ColoConfig *cfg,
                      const ColoNodeConfig *self, Error **errp)
{
    g_autofree char *portc = NULL;
    const char *const m0[] = {
        "netdev", "hn0", "queue", "tx", "outdev", "mirror0", NULL
    };
    const char *const redire0[] = {
        "netdev", "hn0", "queue", "rx", "indev", "compare_out", NULL
    };
    const char *const redire1[] = {
        "netdev", "hn0", "queue", "rx", "outdev", "compare0", NULL
    };
    const char *const comp0[] = {
        "primary_in", "compare0-0", "secondary_in", "compare1",
        "outdev", "compare_out0", "iothread", "iothread1", NULL
    };

    bool tls = cfg->tls_dir != NULL;

    return add_socket(s, "mirror0", self->link_addr, cfg->port_mirror, true,
                      tls, errp) &&
           add_socket(s, "compare1", self->link_addr, cfg->port_compare,
                      true, tls, errp) &&
           add_socket(s, "compare0", "127.0.0.1", cfg->port_local_compare,
                      true, false, errp) &&
           add_socket(s, "compare0-0", "127.0.0.1", cfg->port_local_compare,
                      false, false, errp) &&
           add_socket(s, "compare_out", "127.0.0.1", cfg->port_local_out,
                      true, false, errp) &&
           add_socket(s, "compare_out0", "127.0.0.1", cfg->port_local_out,
                      false, false, errp) &&
           add_object(s, "filter-mirror", "m0", m0, errp) &&
           add_object(s, "filter-redirector", "redire0", redire0, errp) &&
           add_object(s, "filter-redirector", "redire1", redire1, errp) &&
           add_object(s, "iothread", "iothread1", NULL, errp) &&
           add_object(s, "colo-compare", "comp0", comp0, errp);
}

#define MIGRATE_STALL_MS  120000
#define MIGRATE_CONVERGE_MS 30000
#define COLO_START_MS     60000

static bool start_colo(QmpClient *s, QmpClient *fresh, const ColoConfig *cfg,
                       const ColoNodeConfig *fnode, ColoProgressFn *progress,
                       void *opaque, Error **errp)
{
    g_autoptr(QDict) caps = qdict_new();
    g_autoptr(QDict) params = qdict_new();
    g_autoptr(QDict) in = qdict_new();
    g_autoptr(QDict) out = qdict_new();
    g_autofree char *uri = uri_of(fnode->link_addr, cfg->port_migrate);
    QList *list = qlist_new();
    QDict *cap = qdict_new();
    int64_t last = -1, last_change = now_ms();
    int64_t converge = now_ms() + MIGRATE_CONVERGE_MS;

    qdict_put_str(cap, "capability", "x-colo");
    qdict_put_bool(cap, "state", true);
    qlist_append(list, cap);
    qdict_put(caps, "capabilities", list);
    qdict_put_int(params, "x-checkpoint-delay", cfg->checkpoint_delay_ms);
    /*
     * The guest runs while its RAM is copied (precopy): no bandwidth
     * limit, and a short final stop, as long as the copy converges.
     */
    qdict_put_int(params, "max-bandwidth", 8LL << 30);
    qdict_put_int(params, "downtime-limit", 300);
    qdict_put_str(in, "uri", uri);
    qdict_put_str(out, "uri", uri);
    if (cfg->tls_dir) {
        g_autoptr(QDict) fparams = qdict_new();

        /* The listener: only the primary's certificate. */
        qdict_put_str(fparams, "tls-creds", COLO_TLS_SERVER);
        qdict_put_str(fparams, "tls-authz", COLO_TLS_AUTHZ);
        if (!run(fresh, "migrate-set-parameters", fparams, errp)) {
            error_prepend(errp, "migration: ");
            return false;
        }
        /* The client: the listener's certificate must name the node. */
        qdict_put_str(params, "tls-creds", COLO_TLS_CLIENT);
        qdict_put_str(params, "tls-hostname", fnode->name);
    }
    if (!run(fresh, "migrate-incoming", in, errp) ||
        !run(s, "migrate-set-capabilities", caps, errp) ||
        !run(s, "migrate-set-parameters", params, errp) ||
        !run(s, "migrate", out, errp)) {
        error_prepend(errp, "migration: ");
        return false;
    }
    for (;;) {
        g_autoptr(QDict) mig = qmp_client_cmd_dict(s, "query-migrate", NULL,
                                                   CMD_TIMEOUT_MS, errp);
        const char *status;
        QDict *ram;
        int64_t done = 0, total = 0;

        if (!mig) {
            return false;
        }
        status = qdict_get_try_str(mig, "status") ?: "none";
        if (g_str_equal(status, "colo")) {
            break;
        }
        if (!migration_active(status)) {
            error_setg(errp, "migration: the migration to the new "
                       "secondary ended with status '%s'%s%s", status,
                       qdict_haskey(mig, "error-desc") ? ": " : "",
                       qdict_get_try_str(mig, "error-desc") ?: "");
            return false;
        }
        ram = qdict_get_qdict(mig, "ram");
        if (ram) {
            done = qdict_get_try_int(ram, "transferred", 0);
            total = qdict_get_try_int(ram, "total", 0);
        }
        report(progress, opaque, "migration", done, total);
        if (converge && now_ms() > converge) {
            /* A guest dirtying memory fast: accept a longer final stop. */
            g_autoptr(QDict) longer = qdict_new();

            qdict_put_int(longer, "downtime-limit", 2000);
            if (!run(s, "migrate-set-parameters", longer, errp)) {
                return false;
            }
            converge = 0;
        }
        if (done != last) {
            last = done;
            last_change = now_ms();
        } else if (now_ms() - last_change > MIGRATE_STALL_MS) {
            error_setg(errp, "the migration made no progress for %d s",
                       MIGRATE_STALL_MS / 1000);
            return false;
        }
        g_usleep(4 * POLL_US);
    }
    report(progress, opaque, "entering COLO", 0, 0);
    /* Both sides in COLO, the secondary's proxy connected, guest running. */
    for (int64_t deadline = now_ms() + COLO_START_MS;;) {
        g_autofree char *smode = colo_mode(fresh, errp);
        g_autofree char *pstate = smode ? run_state(s, errp) : NULL;
        bool connected = true;

        if (!pstate) {
            return false;
        }
        {
            QObject *ret = qmp_client_cmd(fresh, "query-chardev", NULL,
                                          CMD_TIMEOUT_MS, errp);
            QList *l = qobject_to(QList, ret);
            QListEntry *e;

            if (!ret) {
                return false;
            }
            QLIST_FOREACH_ENTRY(l, e) {
                QDict *d = qobject_to(QDict, qlist_entry_obj(e));
                const char *label = d ? qdict_get_try_str(d, "label") : NULL;

                if (label && (g_str_equal(label, "red0") ||
                              g_str_equal(label, "red1")) &&
                    g_str_has_prefix(qdict_get_try_str(d, "filename") ?: "",
                                     "disconnected")) {
                    connected = false;
                }
            }
            qobject_unref(ret);
        }
        if (g_str_equal(smode, "secondary") && connected &&
            g_str_equal(pstate, "running")) {
            return true;
        }
        if (now_ms() > deadline) {
            error_setg(errp, "%sCOLO did not settle in %d s (new "
                       "secondary: mode %s, proxy %s; primary run state %s)",
                       connected ? "" : "proxy: the new secondary's red0/red1 "
                       "did not connect to the primary's mirror0/compare1: ",
                       COLO_START_MS / 1000, smode,
                       connected ? "connected" : "not connected", pstate);
            if (!connected && cfg->tls_dir) {
                error_append_hint(errp, "With tls-dir, a certificate that "
                                  "does not name the node's link address "
                                  "or is not signed by the pair's CA fails "
                                  "the proxy's TLS handshake.\n");
            }
            return false;
        }
        g_usleep(POLL_US);
    }
}

bool colo_action_protect(QmpClient *survivor, QmpClient *fresh,
                         const ColoConfig *cfg,
                         const ColoNodeConfig *survivor_node,
                         const ColoNodeConfig *fresh_node,
                         bool do_resync, ColoProgressFn *progress,
                         void *opaque, Error **errp)
{
    g_autofree char *smode = NULL, *sstate = NULL, *fstate = NULL;
    g_autofree char *fmig = NULL, *top_node = NULL;
    VmInventory inv = { 0 };
    const char *step = "checking the nodes";
    bool fresh_touched = false, ok = false;
    const char *top;
    Error *err = NULL;

    report(progress, opaque, step, 0, 0);
    smode = colo_mode(survivor, &err);
    sstate = smode ? run_state(survivor, &err) : NULL;
    if (!sstate) {
        error_propagate_prepend(errp, err, "node %s: ", survivor_node->name);
        return false;
    }
    fstate = run_state(fresh, &err);
    fmig = fstate ? query_str(fresh, "query-migrate", "status", &err) : NULL;
    if (!fmig) {
        error_propagate_prepend(errp, err, "node %s: ", fresh_node->name);
        return false;
    }
    if (!g_str_equal(smode, "none")) {
        error_setg(errp, "node %s is in COLO mode '%s': the pair is "
                   "protected (fail over first to replace a node)",
                   survivor_node->name, smode);
        return false;
    }
    if (g_str_equal(sstate, "inmigrate")) {
        error_setg(errp, "node %s waits for a migration: neither node runs "
                   "the guest", survivor_node->name);
        return false;
    }
    if (!g_str_equal(fstate, "inmigrate") || !g_str_equal(fmig, "none")) {
        error_setg(errp, "node %s is not a freshly started secondary (run "
                   "state %s, migration %s): start it again with "
                   "-incoming defer (qemu-colo-ctl start --node %s "
                   "--role secondary)", fresh_node->name, fstate, fmig,
                   fresh_node->name);
        return false;
    }
    /* Leftovers of an earlier attempt or of the failover go first. */
    if (!colo_action_take_over(survivor, cfg, NULL, &err) ||
        !inventory_get(survivor, &inv, &err)) {
        goto fail;
    }
    top = top_disk(&inv);
    step = "TLS credentials";
    if (!ensure_tls_objects(survivor, cfg, fresh_node, &err) ||
        !ensure_tls_objects(fresh, cfg, survivor_node, &err)) {
        goto fail;
    }
    if (survivor_node->disk) {
        top_node = root_node(survivor, top, &err);
        if (!top_node) {
            goto fail;
        }
    }

    step = "preparing the new secondary";
    report(progress, opaque, step, 0, 0);
    fresh_touched = true;
    if (!prepare_fresh(fresh, cfg, fresh_node, &err)) {
        goto fail;
    }
    if (survivor_node->disk && do_resync) {
        step = "disk resync";
        if (!resync(survivor, top, cfg, fresh_node, progress, opaque, &err)) {
            goto fail;
        }
    } else if (survivor_node->disk) {
        /*
         * No mirror follows the writes: the identical disks must stay
         * so until replication runs.
         */
        step = "stopping the guest";
        if (!run(survivor, "stop", NULL, &err)) {
            goto fail;
        }
    }
    /*
     * The guest runs on: the active mirror writes everything to the new
     * disk, the replication child stays dormant until COLO starts.
     */
    if (survivor_node->disk) {
        step = "adding the replication child";
        report(progress, opaque, step, 0, 0);
        if (!add_replication(survivor, top_node, cfg, fresh_node, &err)) {
            goto fail;
        }
    }
    step = "adding the primary's proxy";
    report(progress, opaque, step, 0, 0);
    if (!add_proxy(survivor, cfg, survivor_node, &err)) {
        goto fail;
    }
    /*
     * Live migration; its completion stops the guest (draining the disk
     * I/O, so every completed write is on both disks), COLO starts and
     * the guest runs again: the only stop of the whole step.
     */
    step = "starting COLO";
    if (!start_colo(survivor, fresh, cfg, fresh_node, progress, opaque,
                    &err)) {
        goto fail;
    }
    /* Replication carries the writes now: the mirror can go. */
    if (survivor_node->disk && do_resync) {
        step = "ending the disk resync";
        report(progress, opaque, step, 0, 0);
        if (!resync_finish(survivor, &err)) {
            goto fail;
        }
    }
    ok = true;
    goto out;

fail:
    {
        Error *rb = NULL;

        error_prepend(&err, "%s: ", step);
        if (!colo_action_take_over(survivor, cfg, NULL, &rb)) {
            error_append_hint(&err, "Rolling back on node %s failed too: "
                              "%s\n", survivor_node->name,
                              error_get_pretty(rb));
            error_prepend(&err, "node %s NOT rolled back: ",
                          survivor_node->name);
            error_free(rb);
        } else {
            error_prepend(&err, "rolled back, node %s runs unprotected: ",
                          survivor_node->name);
        }
        if (fresh_touched) {
            /*
             * A half-set-up secondary must not live on (and ever take
             * over): it has no consistent state.
             */
            qobject_unref(qmp_client_cmd(fresh, "quit", NULL, CMD_TIMEOUT_MS,
                                         NULL));
        }
        error_propagate(errp, err);
    }
out:
    inventory_clear(&inv);
    return ok;
}

bool colo_action_reprotect(QmpClient *survivor, QmpClient *fresh,
                           const ColoConfig *cfg,
                           const ColoNodeConfig *survivor_node,
                           const ColoNodeConfig *fresh_node,
                           ColoProgressFn *progress, void *opaque,
                           Error **errp)
{
    return colo_action_protect(survivor, fresh, cfg, survivor_node,
                               fresh_node, true, progress, opaque, errp);
}
