/*
 * qemu-colo-ctl: look at and steer a COLO pair through its QMP monitors
 *
 * Copyright (c) 2026 The qemu-colo authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 *   qemu-colo-ctl status MONITOR...     one line per side
 *   qemu-colo-ctl failover MONITOR      x-colo-lost-heartbeat, await COLO_EXIT
 *   qemu-colo-ctl watch MONITOR [N]     print COLO-related events (N of them)
 *
 * With the pair configuration file (docs/system/qemu-colo.rst):
 *   qemu-colo-ctl start CONFIG [--node NAME [--role primary|secondary]]
 *   qemu-colo-ctl protect CONFIG        first entry into COLO
 *   qemu-colo-ctl status CONFIG [--node NAME] [--json]
 *                                       both nodes, agent, resync progress
 *   qemu-colo-ctl failover CONFIG --node NAME
 *                                       make node NAME the one serving
 *   qemu-colo-ctl reprotect CONFIG [--start]
 *                                       protect the survivor again
 *   qemu-colo-ctl stop CONFIG [--node NAME]
 *
 * MONITOR is the path of a QMP unix socket (-qmp unix:PATH,server=on).
 * Exit status: 0 on success, 1 on a failed request, 2 on bad usage.
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qemu/error-report.h"
#include "qemu/cutils.h"
#include "qobject/qdict.h"
#include "qobject/qjson.h"
#include "qmp-client.h"
#include "colo-config.h"
#include "colo-actions.h"
#include "colo-ctl.h"
#include "colo-node.h"
#include "colo-vm.h"

#define FAILOVER_TIMEOUT_MS 60000
#define PROBE_TIMEOUT_MS    3000

static QmpClient *connect_or_report(const char *path)
{
    Error *err = NULL;
    QmpClient *c = qmp_client_connect(path, QMP_CLIENT_TIMEOUT_MS, &err);

    if (!c) {
        error_reportf_err(err, "%s: ", path);
    }
    return c;
}

static int cmd_failover(const char *path)
{
    g_autoptr(QDict) ev = NULL, run = NULL;
    QmpClient *c = connect_or_report(path);
    Error *err = NULL;
    QDict *data;

    if (!c) {
        return 1;
    }
    if (qmp_client_run(c, "x-colo-lost-heartbeat", NULL, &err) &&
        qmp_client_wait_event(c, "COLO_EXIT", FAILOVER_TIMEOUT_MS, &ev,
                              &err) == 0) {
        run = qmp_client_cmd_dict(c, "query-status", NULL,
                                  QMP_CLIENT_TIMEOUT_MS, &err);
    }
    qmp_client_free(c);
    if (!run) {
        error_reportf_err(err, "%s: ", path);
        return 1;
    }
    data = qdict_get_qdict(ev, "data");
    printf("%s: left COLO as %s (reason %s); run-state=%s\n", path,
           qdict_get_str(data, "mode"), qdict_get_str(data, "reason"),
           qdict_get_str(run, "status"));
    return 0;
}

static bool load_config(const char *path, ColoConfig *cfg)
{
    Error *err = NULL;

    if (!colo_config_load(path, cfg, &err)) {
        error_report_err(err);
        return false;
    }
    return true;
}

/* failover CONFIG --node NAME: colo_action_take_over() on node NAME. */
static int cmd_failover_node(const char *config, const char *name)
{
    ColoConfig cfg;
    ColoNodeConfig *node;
    QmpClient *c;
    Error *err = NULL;
    const char *what = NULL;
    int rc = 1;

    if (!load_config(config, &cfg)) {
        return 2;
    }
    node = colo_config_node(&cfg, name, &err);
    if (!node) {
        error_report_err(err);
        colo_config_free(&cfg);
        return 2;
    }
    c = connect_or_report(node->qmp);
    if (c) {
        if (colo_action_take_over(c, &cfg, &what, &err)) {
            printf("%s: %s\n", node->name, what);
            rc = 0;
        } else {
            error_reportf_err(err, "%s: failover: ", node->name);
        }
        qmp_client_free(c);
    }
    colo_config_free(&cfg);
    return rc;
}

static bool colo_related_event(const char *name)
{
    static const char *const names[] = {
        "COLO_EXIT", "MIGRATION", "STOP", "RESUME", "SHUTDOWN", NULL
    };

    return g_strv_contains(names, name);
}

static int cmd_watch(const char *path, long count)
{
    QmpClient *c = connect_or_report(path);
    int rc = 0;

    if (!c) {
        return 1;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("%s: watching\n", path);
    while (count != 0) {
        Error *err = NULL;
        g_autoptr(QDict) ev = NULL;
        g_autoptr(GString) data = NULL;
        const char *name;

        if (qmp_client_wait_event(c, NULL, INT_MAX, &ev, &err) < 0) {
            error_reportf_err(err, "%s: ", path);
            rc = 1;
            break;
        }
        name = qdict_get_try_str(ev, "event") ?: "?";
        if (!colo_related_event(name)) {
            continue;
        }
        data = qdict_haskey(ev, "data") ?
               qobject_to_json(qdict_get(ev, "data")) : g_string_new("{}");
        printf("%s: %s %s\n", path, name, data->str);
        if (count > 0) {
            count--;
        }
    }
    qmp_client_free(c);
    return rc;
}

/* ---- commands with a configuration file ---------------------------- */

typedef struct CtlArgs {
    const char *node;
    const char *role;
    bool start;
    bool json;
} CtlArgs;

static bool load_with_node(const char *config, const CtlArgs *args,
                           ColoConfig *cfg, ColoNodeConfig **node)
{
    Error *err = NULL;

    if (!load_config(config, cfg)) {
        return false;
    }
    *node = NULL;
    if (args->node) {
        *node = colo_config_node(cfg, args->node, &err);
        if (!*node) {
            error_report_err(err);
            colo_config_free(cfg);
            return false;
        }
    }
    return true;
}

typedef bool NodeAction(const ColoConfig *cfg, const ColoNodeConfig *n,
                        const CtlArgs *args, Error **errp);

/* @fn on both nodes, or on --node; 1 if it failed on one, 2: bad usage. */
static int on_nodes(const char *config, const CtlArgs *args, NodeAction *fn)
{
    ColoConfig cfg;
    ColoNodeConfig *only;
    int rc = 0;

    if (!load_with_node(config, args, &cfg, &only)) {
        return 2;
    }
    for (int i = 0; i < 2; i++) {
        Error *err = NULL;

        if ((!only || &cfg.nodes[i] == only) &&
            !fn(&cfg, &cfg.nodes[i], args, &err)) {
            error_report_err(err);
            rc = 1;
        }
    }
    colo_config_free(&cfg);
    return rc;
}

/* start: in its initial role, or --role. */
static bool start_one(const ColoConfig *cfg, const ColoNodeConfig *n,
                      const CtlArgs *args, Error **errp)
{
    ColoRole role = n->initial_role;

    if (args->role) {
        role = g_str_equal(args->role, "primary") ? COLO_ROLE_PRIMARY :
               COLO_ROLE_SECONDARY;
    }
    return colo_node_start(cfg, n, role, errp);
}

static bool stop_one(const ColoConfig *cfg, const ColoNodeConfig *n,
                     const CtlArgs *args, Error **errp)
{
    return colo_node_stop(n, errp);
}

static int cmd_status(const char *config, const CtlArgs *args)
{
    ColoConfig cfg;
    ColoNodeConfig *only;
    int rc;

    if (!load_with_node(config, args, &cfg, &only)) {
        return 2;
    }
    rc = colo_ctl_status_config(&cfg, only, args->json);
    colo_config_free(&cfg);
    return rc;
}

/* ---- protect / reprotect --------------------------------------------- */

typedef struct Progress {
    bool tty;
    char *step;
    int last_pct;
} Progress;

static void show_progress(const char *step, int64_t done, int64_t total,
                          void *opaque)
{
    Progress *p = opaque;
    bool new_step = g_strcmp0(p->step, step) != 0;
    int pct = total > 0 ? (int)(done * 100 / total) : -1;
    char bar[128];

    if (new_step) {
        if (p->tty && p->step) {
            putchar('\n');
        }
        g_free(p->step);
        p->step = g_strdup(step);
        p->last_pct = -1;
        if (!p->tty || total <= 0) {
            printf("%s...\n", step);
        }
    }
    if (total <= 0) {
        fflush(stdout);
        return;
    }
    colo_progress_bar(bar, sizeof(bar), done, total);
    if (p->tty) {
        printf("\r%-14s %s", step, bar);
    } else if (pct / 10 != p->last_pct / 10 || p->last_pct < 0) {
        printf("%s %s\n", step, bar);
    }
    p->last_pct = pct;
    fflush(stdout);
}

typedef struct NodeState {
    QmpClient *c;
    char *state;            /* run state, NULL if unreachable */
    char *error;
} NodeState;

static void probe(const ColoNodeConfig *n, NodeState *s)
{
    g_auto(ColoVmStatus) st = { 0 };
    Error *err = NULL;

    memset(s, 0, sizeof(*s));
    s->c = qmp_client_connect(n->qmp, PROBE_TIMEOUT_MS, &err);
    if (!s->c ||
        !colo_vm_query_status(s->c, &st, QMP_CLIENT_TIMEOUT_MS, &err)) {
        s->error = g_strdup(error_get_pretty(err));
        error_free(err);
        qmp_client_free(s->c);
        s->c = NULL;
        return;
    }
    s->state = g_strdup(st.run_state);
}

static void probe_free(NodeState *s)
{
    qmp_client_free(s->c);
    g_free(s->state);
    g_free(s->error);
    memset(s, 0, sizeof(*s));
}

static int cmd_reprotect(const char *config, const CtlArgs *args,
                         bool first)
{
    ColoConfig cfg;
    ColoNodeConfig *dummy, *surv = NULL, *fresh = NULL;
    NodeState ns[2];
    Progress prog = { .tty = isatty(STDOUT_FILENO) };
    Error *err = NULL;
    int64_t t0 = g_get_monotonic_time();
    int rc = 1, si = -1;

    if (!load_with_node(config, args, &cfg, &dummy)) {
        return 2;
    }
    for (int i = 0; i < 2; i++) {
        probe(&cfg.nodes[i], &ns[i]);
    }
    for (int i = 0; i < 2; i++) {
        if (ns[i].state && !g_str_equal(ns[i].state, "inmigrate")) {
            if (si >= 0) {
                error_report("both nodes run the guest (%s: %s, %s: %s): "
                             "stop one of them first",
                             cfg.nodes[0].name, ns[0].state,
                             cfg.nodes[1].name, ns[1].state);
                goto out;
            }
            si = i;
        }
    }
    if (si < 0) {
        error_report("no node runs the guest (%s: %s; %s: %s)%s",
                     cfg.nodes[0].name, ns[0].state ?: ns[0].error,
                     cfg.nodes[1].name, ns[1].state ?: ns[1].error,
                     first ? ": start the pair first" : "");
        goto out;
    }
    surv = &cfg.nodes[si];
    fresh = &cfg.nodes[1 - si];
    if (args->start) {
        bool running = ns[1 - si].c || colo_node_pid(fresh);

        /* Whatever runs there (also a hung QEMU) makes room first. */
        probe_free(&ns[1 - si]);
        if (running && !colo_node_stop(fresh, &err)) {
            error_report_err(err);
            goto out;
        }
        if (!colo_node_start(&cfg, fresh, COLO_ROLE_SECONDARY, &err)) {
            error_report_err(err);
            goto out;
        }
        probe(fresh, &ns[1 - si]);
    }
    if (!ns[1 - si].c) {
        error_report("node %s: no QEMU to protect with (%s); start it with "
                     "'qemu-colo-ctl start %s --node %s --role secondary' "
                     "or use --start", fresh->name, ns[1 - si].error,
                     config, fresh->name);
        goto out;
    }
    printf("%s %s (runs the guest) with %s as the new secondary\n",
           first ? "protecting" : "re-protecting", surv->name, fresh->name);
    if (colo_action_reprotect(ns[si].c, ns[1 - si].c, &cfg, surv, fresh,
                              show_progress, &prog, &err)) {
        if (prog.tty) {
            putchar('\n');
        }
        printf("protected: %s primary, %s secondary, in %.1f s\n",
               surv->name, fresh->name,
               (g_get_monotonic_time() - t0) / 1e6);
        rc = 0;
    } else {
        if (prog.tty) {
            putchar('\n');
        }
        error_report_err(err);
    }
out:
    g_free(prog.step);
    for (int i = 0; i < 2; i++) {
        probe_free(&ns[i]);
    }
    colo_config_free(&cfg);
    return rc;
}

/*
 * start/protect/reprotect/stop always take a configuration file; status
 * and failover take one when their argument is not a socket (the older
 * MONITOR forms).
 */
static bool is_config_command(const char *cmd, const char *arg)
{
    static const char *const config_only[] = {
        "start", "protect", "reprotect", "stop", NULL
    };
    struct stat st;

    if (g_strv_contains(config_only, cmd)) {
        return true;
    }
    if (!g_str_equal(cmd, "status") && !g_str_equal(cmd, "failover")) {
        return false;
    }
    return stat(arg, &st) == 0 && !S_ISSOCK(st.st_mode);
}

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: qemu-colo-ctl status MONITOR...\n"
            "       qemu-colo-ctl status CONFIG [--node NAME] [--json]\n"
            "       qemu-colo-ctl failover MONITOR\n"
            "       qemu-colo-ctl failover CONFIG --node NAME\n"
            "       qemu-colo-ctl watch MONITOR [COUNT]\n"
            "MONITOR is the path of a QEMU QMP unix socket.\n");
}

int main(int argc, char **argv)
{
    long count = -1;

    error_init(argv[0]);
    if (argc >= 2 && (g_str_equal(argv[1], "-h") ||
                      g_str_equal(argv[1], "--help"))) {
        usage(stdout);
        return 0;
    }
    if (argc >= 3 && is_config_command(argv[1], argv[2])) {
        CtlArgs args = { 0 };
        const char *cmd = argv[1];

        for (int i = 3; i < argc; i++) {
            if (g_str_equal(argv[i], "--node") && i + 1 < argc) {
                args.node = argv[++i];
            } else if (g_str_equal(argv[i], "--role") && i + 1 < argc) {
                args.role = argv[++i];
                if (!g_str_equal(args.role, "primary") &&
                    !g_str_equal(args.role, "secondary")) {
                    fprintf(stderr, "qemu-colo-ctl: --role must be primary "
                            "or secondary, not '%s'\n", args.role);
                    return 2;
                }
            } else if (g_str_equal(argv[i], "--start") &&
                       g_str_equal(cmd, "reprotect")) {
                args.start = true;
            } else if (g_str_equal(argv[i], "--json") &&
                       g_str_equal(cmd, "status")) {
                args.json = true;
            } else {
                fprintf(stderr, "qemu-colo-ctl: %s: unexpected argument "
                        "'%s'\n", cmd, argv[i]);
                usage(stderr);
                return 2;
            }
        }
        if ((args.role && (!args.node || !g_str_equal(cmd, "start"))) ||
            (args.node && !g_str_equal(cmd, "start") &&
             !g_str_equal(cmd, "stop") && !g_str_equal(cmd, "failover") &&
             !g_str_equal(cmd, "status"))) {
            fprintf(stderr, "qemu-colo-ctl: %s: --role needs start and "
                    "--node; --node only with start, stop, failover, "
                    "status\n", cmd);
            return 2;
        }
        if (g_str_equal(cmd, "start")) {
            return on_nodes(argv[2], &args, start_one);
        } else if (g_str_equal(cmd, "stop")) {
            return on_nodes(argv[2], &args, stop_one);
        } else if (g_str_equal(cmd, "status")) {
            return cmd_status(argv[2], &args);
        } else if (g_str_equal(cmd, "failover")) {
            if (!args.node) {
                fprintf(stderr, "qemu-colo-ctl: failover CONFIG needs "
                        "--node NAME (the node that takes over)\n");
                return 2;
            }
            return cmd_failover_node(argv[2], args.node);
        }
        return cmd_reprotect(argv[2], &args, g_str_equal(cmd, "protect"));
    }
    if (argc >= 3 && g_str_equal(argv[1], "status")) {
        return colo_ctl_status_monitors(argc - 2, argv + 2);
    }
    if (argc == 3 && g_str_equal(argv[1], "failover")) {
        return cmd_failover(argv[2]);
    }
    if ((argc == 3 || argc == 4) && g_str_equal(argv[1], "watch")) {
        if (argc == 4) {
            if (qemu_strtol(argv[3], NULL, 10, &count) < 0 || count <= 0) {
                fprintf(stderr, "qemu-colo-ctl: COUNT must be a positive "
                        "number, not '%s'\n", argv[3]);
                return 2;
            }
        }
        return cmd_watch(argv[2], count);
    }
    usage(stderr);
    return 2;
}
