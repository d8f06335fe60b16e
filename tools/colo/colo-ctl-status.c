/*
 * qemu-colo-ctl status: the pair's nodes, as text or JSON
 *
 * Copyright (c) 2026 The qemu-colo authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * What is shown is gathered once per node (NodeReport) and then printed:
 * as lines for people, or as one JSON object whose keys are documented in
 * docs/system/qemu-colo.rst (qemu-colo-ctl status --json), for programs
 * such as the OCF resource agent.
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qemu/error-report.h"
#include "qobject/qdict.h"
#include "qobject/qjson.h"
#include "qobject/qlist.h"
#include "qobject/qbool.h"
#include "colo-agent-status.h"
#include "colo-ctl.h"
#include "colo-ids.h"
#include "colo-node.h"
#include "colo-vm.h"

#define PROBE_TIMEOUT_MS    3000
#define AGENT_TIMEOUT_MS    2000

void colo_progress_bar(char *buf, size_t size, int64_t done, int64_t total)
{
    int width = 30;
    int fill = total > 0 ? (int)(done * width / total) : 0;
    g_autofree char *bar = g_strnfill(width, '.');

    memset(bar, '#', MIN(MAX(fill, 0), width));
    snprintf(buf, size, "[%s] %3d%% %" PRId64 "/%" PRId64 " MiB", bar,
             total > 0 ? (int)(done * 100 / total) : 0, done >> 20,
             total >> 20);
}

/* "mode=... max-pause=...ms": the COLO part of both status forms. */
static void print_colo(const ColoVmStatus *st)
{
    printf("run-state=%s migration=%s checkpoints=%" PRIu64
           " (periodic %" PRIu64 ", mismatch %" PRIu64 ", timeout %" PRIu64
           ", forced %" PRIu64 ") last-pause=%.1fms max-pause=%.1fms\n",
           st->run_state, st->migration,
           colo_vm_stat(st, "checkpoints"),
           colo_vm_stat(st, "checkpoints-periodic"),
           colo_vm_stat(st, "checkpoints-mismatch"),
           colo_vm_stat(st, "checkpoints-timeout"),
           colo_vm_stat(st, "checkpoints-forced"),
           colo_vm_stat(st, "last-pause-us") / 1000.0,
           colo_vm_stat(st, "max-pause-us") / 1000.0);
}

int colo_ctl_status_monitors(int argc, char **argv)
{
    int rc = 0;

    for (int i = 0; i < argc; i++) {
        g_auto(ColoVmStatus) st = { 0 };
        Error *err = NULL;
        QmpClient *c = qmp_client_connect(argv[i], QMP_CLIENT_TIMEOUT_MS,
                                          &err);

        if (c) {
            colo_vm_query_status(c, &st, QMP_CLIENT_TIMEOUT_MS, &err);
            qmp_client_free(c);
        }
        if (!st.mode) {
            error_reportf_err(err, "%s: ", argv[i]);
            rc = 1;
            continue;
        }
        printf("%s: mode=%s last-mode=%s reason=%s ", argv[i], st.mode,
               st.last_mode, st.reason);
        print_colo(&st);
    }
    return rc;
}

/* ---- one node --------------------------------------------------------- */

typedef struct NodeReport {
    bool connected;         /* a QEMU answered on QMP */
    bool queried;           /* and all its queries too */
    char *error;            /* why not */
    ColoVmStatus st;
    QList *jobs;
    char *channels;         /* the text line */
    QDict *agent;           /* its status line; NULL: it does not answer */
} NodeReport;

static void node_report_clear(NodeReport *r)
{
    g_free(r->error);
    colo_vm_status_clear(&r->st);
    qobject_unref(r->jobs);
    g_free(r->channels);
    qobject_unref(r->agent);
}

static QObject *qom_get(QmpClient *c, const char *id, const char *prop)
{
    g_autoptr(QDict) args = qdict_new();
    g_autofree char *path = g_strdup_printf("/objects/%s", id);

    qdict_put_str(args, "path", path);
    qdict_put_str(args, "property", prop);
    return qmp_client_cmd(c, "qom-get", args, QMP_CLIENT_TIMEOUT_MS, NULL);
}

/*
 * Per COLO channel, whether it is encrypted, read back from QEMU: the
 * migration parameters, the NBD client node's options (the primary), the
 * TLS objects with verify-peer and the authz rules.  QEMU does not report
 * the TLS of a chardev or of its NBD server: there the line says which
 * channel exists and whether the credentials it was wired with are there.
 */
static char *channels_line(QmpClient *c, const char *mode)
{
    g_autoptr(QDict) mp = qmp_client_cmd_dict(c, "query-migrate-parameters",
                                              NULL, QMP_CLIENT_TIMEOUT_MS,
                                              NULL);
    g_autoptr(QDict) flat = qdict_new();
    g_autoptr(GString) out = g_string_new("  channels:");
    QObject *nodes, *chardevs, *verify, *rules;
    const char *creds = mp ? qdict_get_try_str(mp, "tls-creds") : NULL;
    bool server_creds, primary = g_str_equal(mode, "primary");
    bool secondary = g_str_equal(mode, "secondary");

    qdict_put_bool(flat, "flat", true);
    nodes = qmp_client_cmd(c, "query-named-block-nodes", flat,
                           QMP_CLIENT_TIMEOUT_MS, NULL);
    chardevs = qmp_client_cmd(c, "query-chardev", NULL, QMP_CLIENT_TIMEOUT_MS,
                              NULL);
    verify = qom_get(c, COLO_TLS_SERVER, "verify-peer");
    rules = qom_get(c, COLO_TLS_AUTHZ, "rules");
    server_creds = verify && qbool_get_bool(qobject_to(QBool, verify));

    /* migration: the parameters of this side's end */
    if (!primary && !secondary) {
        g_string_append(out, " migration=-");
    } else if (creds && *creds) {
        g_string_append_printf(out, " migration=tls(%s%s%s)", creds,
                               primary ? ", peer name " : ", authz ",
                               primary ?
                               qdict_get_try_str(mp, "tls-hostname") ?: "" :
                               qdict_get_try_str(mp, "tls-authz") ?: "none");
    } else {
        g_string_append(out, " migration=plain");
    }

    /* NBD: the primary's replication child, the secondary's export */
    if (primary) {
        QList *l = qobject_to(QList, nodes);
        QListEntry *e;
        const char *state = "-";

        /*
         * The nbd node's own file name omits its TLS options; its parent,
         * the replication child, lists them in its json: file name.
         */
        QLIST_FOREACH_ENTRY(l, e) {
            QDict *d = qobject_to(QDict, qlist_entry_obj(e));
            const char *file = d ? qdict_get_try_str(d, "file") : NULL;

            if (d && file && g_strcmp0(qdict_get_try_str(d, "node-name"),
                                       COLO_REPLICATION_NODE) == 0) {
                state = strstr(file, "\"tls-creds\"") ? "tls" : "plain";
            }
        }
        g_string_append_printf(out, " nbd=%s", state);
    } else if (secondary) {
        g_string_append_printf(out, " nbd=%s", server_creds &&
                               creds && *creds ? "tls(server)" : "plain");
    } else {
        g_string_append(out, " nbd=-");
    }

    /* proxy: the chardevs of the link */
    if (primary && qmp_list_has(qobject_to(QList, chardevs), "label",
                                COLO_ID_MIRROR_CHR)) {
        g_string_append_printf(out, " proxy=%s", server_creds ?
                               "tls(mirror0, compare1)" : "plain");
    } else if (secondary && qmp_list_has(qobject_to(QList, chardevs),
                                         "label", COLO_ID_RED_IN)) {
        g_string_append_printf(out, " proxy=%s", creds && *creds ?
                               "tls(red0, red1)" : "plain");
    } else {
        g_string_append(out, " proxy=-");
    }

    /* who the listeners accept */
    if (rules) {
        QList *l = qobject_to(QList, rules);
        QListEntry *e;
        const char *sep = " peer-allowed=";

        QLIST_FOREACH_ENTRY(l, e) {
            QDict *d = qobject_to(QDict, qlist_entry_obj(e));

            if (d && g_strcmp0(qdict_get_try_str(d, "policy"), "allow") == 0) {
                g_string_append_printf(out, "%s%s", sep,
                                       qdict_get_try_str(d, "match") ?: "?");
                sep = "|";
            }
        }
    } else {
        g_string_append(out, " (no TLS objects: not encrypted, anyone on the "
                        "link may connect)");
    }
    qobject_unref(nodes);
    qobject_unref(chardevs);
    qobject_unref(verify);
    qobject_unref(rules);
    return g_string_free(g_steal_pointer(&out), false);
}

static void node_report(const ColoNodeConfig *n, NodeReport *r)
{
    Error *err = NULL;
    QmpClient *c;

    memset(r, 0, sizeof(*r));
    r->agent = colo_agent_status_read(n->agent_socket, AGENT_TIMEOUT_MS,
                                      NULL);
    /* Its own monitor first: `reprotect` may hold the main one. */
    c = qmp_client_connect(n->status_qmp, PROBE_TIMEOUT_MS, NULL);
    if (!c) {
        c = qmp_client_connect(n->qmp, PROBE_TIMEOUT_MS, &err);
    }
    if (!c) {
        r->error = g_strdup(error_get_pretty(err));
        error_free(err);
        return;
    }
    r->connected = true;
    if (colo_vm_query_status(c, &r->st, QMP_CLIENT_TIMEOUT_MS, &err)) {
        r->jobs = qmp_client_cmd_list(c, "query-block-jobs", NULL,
                                      QMP_CLIENT_TIMEOUT_MS, &err);
    }
    if (r->jobs) {
        r->queried = true;
        r->channels = channels_line(c, r->st.mode);
    } else {
        r->error = g_strdup(error_get_pretty(err));
        error_free(err);
    }
    qmp_client_free(c);
}

/* The resync job's entry, if it runs. */
static QDict *resync_job(const NodeReport *r)
{
    QListEntry *e;

    QLIST_FOREACH_ENTRY(r->jobs, e) {
        QDict *j = qobject_to(QDict, qlist_entry_obj(e));

        if (j && g_strcmp0(qdict_get_try_str(j, "device"),
                           COLO_RESYNC_JOB) == 0) {
            return j;
        }
    }
    return NULL;
}

/* The migration's RAM progress, while it is under way. */
static QDict *migration_ram(const NodeReport *r)
{
    return g_str_equal(r->st.migration, "active") ?
           qdict_get_qdict(r->st.migrate, "ram") : NULL;
}

static void print_agent(const ColoNodeConfig *n, QDict *line)
{
    static const char *const refused[] = {
        "forged", "corrupt", "replayed", "stale", "bad",
    };
    g_autoptr(GString) ignored = g_string_new(NULL);
    ColoAgentStatus st;

    if (!line) {
        printf("  agent: not running (%s does not answer)\n",
               n->agent_socket);
        return;
    }
    colo_agent_status_from_qdict(line, &st);
    printf("  agent: role=%s peer=%s (last heartbeat %" PRId64 " ms ago) "
           "quorum=%s last-action=%s\n", st.role, st.peer_state,
           st.last_heartbeat_ms, st.quorum, st.last_action);
    {
        const int64_t counts[] = {
            st.forged_datagrams, st.corrupt_datagrams, st.replayed_datagrams,
            st.stale_datagrams, st.bad_datagrams,
        };

        for (int i = 0; i < ARRAY_SIZE(refused); i++) {
            if (counts[i]) {
                g_string_append_printf(ignored, " %s=%" PRId64, refused[i],
                                       counts[i]);
            }
        }
    }
    if (ignored->len) {
        printf("  agent: heartbeats ignored:%s\n", ignored->str);
    }
    if (st.warning) {
        printf("  agent: WARNING: %s\n", st.warning);
    }
}

static void print_node(const ColoNodeConfig *n, const NodeReport *r)
{
    QDict *job = r->queried ? resync_job(r) : NULL;
    QDict *ram = r->queried ? migration_ram(r) : NULL;
    char bar[128];

    printf("%s (started as %s, link %s):", n->name,
           colo_role_name(n->initial_role), n->link_addr);
    if (!r->connected) {
        printf(" QEMU not reachable: %s\n", r->error);
        print_agent(n, r->agent);
        return;
    }
    if (!r->queried) {
        printf(" %s\n", r->error);
        return;
    }
    printf(" mode=%s ", r->st.mode);
    print_colo(&r->st);
    if (job) {
        colo_progress_bar(bar, sizeof(bar), qdict_get_try_int(job, "offset", 0),
                          qdict_get_try_int(job, "len", 0));
        printf("  disk resync: %s%s\n", bar,
               qdict_get_try_bool(job, "ready", false) ? " ready" : "");
    }
    if (ram) {
        colo_progress_bar(bar, sizeof(bar),
                          qdict_get_try_int(ram, "transferred", 0),
                          qdict_get_try_int(ram, "total", 0));
        printf("  migration: %s\n", bar);
    }
    printf("%s\n", r->channels);
    print_agent(n, r->agent);
}

static QDict *node_json(const ColoNodeConfig *n, const NodeReport *r)
{
    static const char *const stats[] = {
        "checkpoints", "checkpoints-periodic", "checkpoints-mismatch",
        "checkpoints-timeout", "checkpoints-forced", "last-pause-us",
        "max-pause-us",
    };
    QDict *d = qdict_new();
    QDict *job, *ram;

    qdict_put_str(d, "name", n->name);
    qdict_put_str(d, "initial-role", colo_role_name(n->initial_role));
    qdict_put_str(d, "link-addr", n->link_addr);
    qdict_put_bool(d, "reachable", r->queried);
    if (r->agent) {
        qdict_put(d, "agent", qobject_ref(r->agent));
    } else {
        qdict_put_null(d, "agent");
    }
    if (!r->queried) {
        qdict_put_str(d, "error", r->error);
        return d;
    }
    qdict_put_str(d, "mode", r->st.mode);
    qdict_put_str(d, "last-mode", r->st.last_mode);
    qdict_put_str(d, "reason", r->st.reason);
    qdict_put_str(d, "run-state", r->st.run_state);
    qdict_put_str(d, "migration", r->st.migration);
    for (int i = 0; i < ARRAY_SIZE(stats); i++) {
        qdict_put_int(d, stats[i], colo_vm_stat(&r->st, stats[i]));
    }
    job = resync_job(r);
    if (job) {
        QDict *j = qdict_new();

        qdict_put_int(j, "offset", qdict_get_try_int(job, "offset", 0));
        qdict_put_int(j, "len", qdict_get_try_int(job, "len", 0));
        qdict_put_bool(j, "ready", qdict_get_try_bool(job, "ready", false));
        qdict_put(d, "resync", j);
    }
    ram = migration_ram(r);
    if (ram) {
        QDict *m = qdict_new();

        qdict_put_int(m, "transferred",
                      qdict_get_try_int(ram, "transferred", 0));
        qdict_put_int(m, "total", qdict_get_try_int(ram, "total", 0));
        qdict_put(d, "migration-ram", m);
    }
    return d;
}

int colo_ctl_status_config(const ColoConfig *cfg, const ColoNodeConfig *only,
                           bool json)
{
    g_autoptr(QList) nodes = qlist_new();
    int rc = 0;

    if (!json) {
        printf("pair %s (%s)\n", cfg->name, cfg->path);
        if (!cfg->heartbeat_auth) {
            printf("WARNING: heartbeat-auth = none: the agents' heartbeats "
                   "are not authenticated; anyone on the link can forge or "
                   "replay them\n");
        }
    }
    for (int i = 0; i < 2; i++) {
        const ColoNodeConfig *n = &cfg->nodes[i];
        NodeReport r;

        if (only && n != only) {
            continue;
        }
        node_report(n, &r);
        if (json) {
            qlist_append(nodes, node_json(n, &r));
        } else {
            print_node(n, &r);
        }
        rc |= !r.queried;
        node_report_clear(&r);
    }
    if (json) {
        g_autoptr(QDict) pair = qdict_new();
        g_autoptr(GString) out = NULL;

        if (only) {
            out = qobject_to_json(qlist_peek(nodes));
        } else {
            qdict_put_str(pair, "pair", cfg->name);
            qdict_put_str(pair, "config", cfg->path);
            qdict_put_bool(pair, "heartbeat-auth", cfg->heartbeat_auth);
            qdict_put(pair, "nodes", qobject_ref(nodes));
            out = qobject_to_json(QOBJECT(pair));
        }
        printf("%s\n", out->str);
    }
    return rc;
}
