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
 *   qemu-colo-ctl failover CONFIG --node NAME
 *                                       make node NAME the one serving
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
#include "qobject/qstring.h"
#include "qmp-client.h"
#include "colo-config.h"
#include "colo-actions.h"

#define CMD_TIMEOUT_MS      10000
#define FAILOVER_TIMEOUT_MS 60000

static QmpClient *connect_or_report(const char *path)
{
    Error *err = NULL;
    QmpClient *c = qmp_client_connect(path, CMD_TIMEOUT_MS, &err);

    if (!c) {
        error_reportf_err(err, "%s: ", path);
    }
    return c;
}

static uint64_t stat_or_zero(QDict *st, const char *key)
{
    return qdict_haskey(st, key) ? qdict_get_int(st, key) : 0;
}

static int cmd_status(int argc, char **argv)
{
    int rc = 0;

    for (int i = 0; i < argc; i++) {
        g_autoptr(QDict) st = NULL, mig = NULL, run = NULL;
        QmpClient *c = connect_or_report(argv[i]);
        Error *err = NULL;

        if (!c) {
            rc = 1;
            continue;
        }
        st = qmp_client_cmd_dict(c, "query-colo-status", NULL,
                                 CMD_TIMEOUT_MS, &err);
        if (st) {
            mig = qmp_client_cmd_dict(c, "query-migrate", NULL,
                                      CMD_TIMEOUT_MS, &err);
        }
        if (mig) {
            run = qmp_client_cmd_dict(c, "query-status", NULL,
                                      CMD_TIMEOUT_MS, &err);
        }
        qmp_client_free(c);
        if (!run) {
            error_reportf_err(err, "%s: ", argv[i]);
            rc = 1;
            continue;
        }
        printf("%s: mode=%s last-mode=%s reason=%s run-state=%s "
               "migration=%s checkpoints=%" PRIu64 " (periodic %" PRIu64
               ", mismatch %" PRIu64 ", timeout %" PRIu64 ", forced %" PRIu64
               ") last-pause=%.1fms max-pause=%.1fms\n",
               argv[i], qdict_get_str(st, "mode"),
               qdict_get_str(st, "last-mode"), qdict_get_str(st, "reason"),
               qdict_get_str(run, "status"),
               qdict_get_try_str(mig, "status") ?: "none",
               stat_or_zero(st, "checkpoints"),
               stat_or_zero(st, "checkpoints-periodic"),
               stat_or_zero(st, "checkpoints-mismatch"),
               stat_or_zero(st, "checkpoints-timeout"),
               stat_or_zero(st, "checkpoints-forced"),
               stat_or_zero(st, "last-pause-us") / 1000.0,
               stat_or_zero(st, "max-pause-us") / 1000.0);
    }
    return rc;
}

static int cmd_failover(const char *path)
{
    g_autoptr(QDict) ev = NULL, run = NULL;
    QmpClient *c = connect_or_report(path);
    Error *err = NULL;
    QObject *ret;
    QDict *data;

    if (!c) {
        return 1;
    }
    ret = qmp_client_cmd(c, "x-colo-lost-heartbeat", NULL, CMD_TIMEOUT_MS,
                         &err);
    if (ret) {
        qobject_unref(ret);
        ev = qmp_client_wait_event(c, "COLO_EXIT", FAILOVER_TIMEOUT_MS, &err);
    }
    if (ev) {
        run = qmp_client_cmd_dict(c, "query-status", NULL, CMD_TIMEOUT_MS,
                                  &err);
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
        g_autoptr(QDict) ev = qmp_client_wait_event(c, NULL, INT_MAX, &err);
        g_autoptr(GString) data = NULL;
        const char *name;

        if (!ev) {
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

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: qemu-colo-ctl status MONITOR...\n"
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
    if (argc >= 3 && g_str_equal(argv[1], "status")) {
        return cmd_status(argc - 2, argv + 2);
    }
    if (argc == 5 && g_str_equal(argv[1], "failover") &&
        g_str_equal(argv[3], "--node")) {
        return cmd_failover_node(argv[2], argv[4]);
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
