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
 *   qemu-colo-ctl status CONFIG         both nodes, agent, resync progress
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
#include "qobject/qlist.h"
#include "qobject/qstring.h"
#include "qobject/qbool.h"
#include "qmp-client.h"
#include "colo-config.h"
#include "colo-actions.h"

#include <sys/un.h>
#include <poll.h>

#define CMD_TIMEOUT_MS      10000
#define FAILOVER_TIMEOUT_MS 60000
#define PROBE_TIMEOUT_MS    3000
#define STOP_TIMEOUT_MS     15000

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

/* ---- commands with a configuration file ---------------------------- */

static const char *role_name(ColoRole role)
{
    return role == COLO_ROLE_PRIMARY ? "primary" : "secondary";
}

static char *node_file(const ColoNodeConfig *n, const char *name)
{
    return g_build_filename(n->workdir, name, NULL);
}

/* A path inside a -drive/-chardev option: commas are doubled. */
static char *opt_escape(const char *s)
{
    g_auto(GStrv) parts = g_strsplit(s, ",", -1);

    return g_strjoinv(",,", parts);
}

/* The QEMU command line of @n in @role, as in the documentation. */
static GPtrArray *qemu_argv(const ColoConfig *cfg, const ColoNodeConfig *n,
                            const ColoNodeConfig *peer, ColoRole role)
{
    GPtrArray *a = g_ptr_array_new_with_free_func(g_free);
    g_autofree char *pid = node_file(n, "qemu.pid");
    g_autofree char *serial = node_file(n, "serial.log");
    g_autofree char *log = node_file(n, "qemu.log");
    g_autofree char *disk = n->disk ? opt_escape(n->disk) : NULL;
    g_auto(GStrv) tls = colo_tls_object_args(cfg, peer);
    /* the secondary's proxy connects with the client certificate */
    const char *red_tls = tls ? ",tls-creds=" COLO_TLS_CLIENT : "";

    if (n->launcher[0]) {
        g_auto(GStrv) pre = NULL;

        g_shell_parse_argv(n->launcher, NULL, &pre, NULL);  /* checked */
        for (int i = 0; pre[i]; i++) {
            g_ptr_array_add(a, g_strdup(pre[i]));
        }
    }
#define ADD(...) g_ptr_array_add(a, g_strdup_printf(__VA_ARGS__))
    ADD("%s", cfg->qemu_binary);
    ADD("-name");
    ADD("%s-%s", cfg->name, n->name);
    ADD("-daemonize");
    ADD("-pidfile");
    ADD("%s", pid);
    ADD("-display");
    ADD("none");
    ADD("-monitor");
    ADD("none");
    ADD("-parallel");
    ADD("none");
    ADD("-serial");
    ADD("file:%s", serial);
    ADD("-D");
    ADD("%s", log);
    ADD("-qmp");
    ADD("unix:%s,server=on,wait=off", n->qmp);
    ADD("-qmp");
    ADD("unix:%s,server=on,wait=off", n->agent_qmp);
    ADD("-qmp");
    ADD("unix:%s,server=on,wait=off", n->status_qmp);
    if (cfg->use_corosync) {
        /*
         * A primary that loses its secondary holds its output until the
         * agent relays corosync's decision (qemu-colo-cluster.rst): the
         * witness may yet choose the secondary.
         */
        ADD("-global");
        ADD("migration.x-colo-primary-waits=on");
    }
    /* Both roles: the objects serve whichever role the node has later. */
    for (int i = 0; tls && tls[i]; i++) {
        ADD("-object");
        ADD("%s", tls[i]);
    }
    for (int i = 0; cfg->guest_args[i]; i++) {
        ADD("%s", cfg->guest_args[i]);
    }
    ADD("-netdev");
    ADD("%s,id=hn0", cfg->netdev);
    ADD("-device");
    ADD("virtio-net-pci,netdev=hn0,mac=%s,romfile=", cfg->mac);
    if (cfg->shared_disk) {
        /* One image both nodes reach: see "Shared storage" in the docs. */
        g_autofree char *shared = opt_escape(cfg->shared_disk);
        g_autofree char *undo = opt_escape(cfg->shared_undo);
        const char *direct = cfg->shared_cache_direct ? "on" : "off";
        g_autofree char *node = g_strdup_printf(
            "driver=shared-undo,node-name=colo-shared0,mode=%s,"
            "file.driver=file,file.filename=%s,file.cache.direct=%s,"
            "undo.driver=file,undo.filename=%s,undo.cache.direct=%s",
            role == COLO_ROLE_PRIMARY ? "primary" : "secondary", shared,
            direct, undo, direct);

        if (role == COLO_ROLE_PRIMARY) {
            ADD("-drive");
            ADD("if=none,id=colo-disk0,%s", node);
            ADD("-device");
            ADD("virtio-blk-pci,drive=colo-disk0");
        } else {
            g_autofree char *active = opt_escape(n->active);

            /* The VM writes its overlay; the shared image is the backing. */
            ADD("-blockdev");
            ADD("%s", node);
            ADD("-drive");
            ADD("if=none,id=top-disk0,driver=qcow2,file.filename=%s,"
                "file.cache.no-flush=on,backing=colo-shared0", active);
            ADD("-device");
            ADD("virtio-blk-pci,drive=top-disk0");
        }
    }
    if (role == COLO_ROLE_PRIMARY) {
        /* The proxy and the replication child come with `protect`. */
        if (disk) {
            ADD("-drive");
            ADD("if=none,id=colo-disk0,driver=quorum,read-pattern=fifo,"
                "vote-threshold=1,children.0.file.filename=%s,"
                "children.0.driver=raw", disk);
            ADD("-device");
            ADD("virtio-blk-pci,drive=colo-disk0");
        }
    } else {
        if (disk) {
            g_autofree char *active = opt_escape(n->active);
            g_autofree char *hidden = opt_escape(n->hidden);

            ADD("-drive");
            ADD("if=none,id=colo-disk0,file.filename=%s,driver=raw,"
                "node-name=sec0", disk);
            ADD("-drive");
            ADD("if=none,id=childs0,driver=replication,mode=secondary,"
                "top-id=top-disk0,file.driver=qcow2,file.file.filename=%s,"
                "file.backing.driver=qcow2,file.backing.file.filename=%s,"
                "file.backing.backing=colo-disk0,file.cache.no-flush=on,"
                "file.backing.cache.no-flush=on", active, hidden);
            ADD("-drive");
            ADD("if=none,id=top-disk0,driver=quorum,read-pattern=fifo,"
                "vote-threshold=1,children.0=childs0");
            ADD("-device");
            ADD("virtio-blk-pci,drive=top-disk0");
        }
        ADD("-chardev");
        ADD("socket,id=red0,host=%s,port=%d,reconnect-ms=200%s",
            peer->link_addr, cfg->port_mirror, red_tls);
        ADD("-chardev");
        ADD("socket,id=red1,host=%s,port=%d,reconnect-ms=200%s",
            peer->link_addr, cfg->port_compare, red_tls);
        ADD("-object");
        ADD("filter-redirector,id=f1,netdev=hn0,queue=tx,indev=red0,"
            "vnet_hdr_support=on");
        ADD("-object");
        ADD("filter-redirector,id=f2,netdev=hn0,queue=rx,outdev=red1,"
            "vnet_hdr_support=on");
        ADD("-object");
        ADD("filter-rewriter,id=rew0,netdev=hn0,queue=all,"
            "vnet_hdr_support=on");
        ADD("-incoming");
        ADD("defer");
    }
#undef ADD
    g_ptr_array_add(a, NULL);
    return a;
}

static bool run_program(char **argv, Error **errp)
{
    g_autofree char *cmd = g_strjoinv(" ", argv);
    GError *gerr = NULL;
    int status;

    if (!g_spawn_sync(NULL, argv, NULL,
                      G_SPAWN_SEARCH_PATH | G_SPAWN_CHILD_INHERITS_STDIN,
                      NULL, NULL, NULL, NULL, &status, &gerr)) {
        error_setg(errp, "cannot run %s: %s", argv[0], gerr->message);
        g_error_free(gerr);
        return false;
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        error_setg(errp, "%s: failed (%s %d)", cmd,
                   WIFEXITED(status) ? "exit status" : "signal",
                   WIFEXITED(status) ? WEXITSTATUS(status) :
                   WTERMSIG(status));
        return false;
    }
    return true;
}

/* The raw disk exists with the configured size (created empty if not). */
static bool ensure_raw_disk(const ColoConfig *cfg, const char *path,
                            Error **errp)
{
    struct stat st;
    int fd;

    if (stat(path, &st) == 0) {
        if (st.st_size != cfg->disk_size) {
            error_setg(errp, "disk %s has %" PRId64 " bytes, the "
                       "configuration says disk-size %" PRId64, path,
                       (int64_t)st.st_size, cfg->disk_size);
            return false;
        }
        return true;
    }
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd < 0 || ftruncate(fd, cfg->disk_size) < 0) {
        error_setg_errno(errp, errno, "cannot create disk %s", path);
        if (fd >= 0) {
            close(fd);
        }
        return false;
    }
    close(fd);
    printf("created empty disk %s\n", path);
    return true;
}

/*
 * The undo image of a shared disk is at least as large as shared-undo
 * needs with its default granularity (include/block/shared-undo.h): the
 * header, a 16-byte record per 64 KiB region, a copy of the disk.  Its
 * content does not matter: the primary writes a header when it starts.
 */
static bool ensure_undo_image(const ColoConfig *cfg, Error **errp)
{
    const int64_t gran = 64 * 1024;
    int64_t regions = DIV_ROUND_UP(cfg->disk_size, gran);
    int64_t need = ROUND_UP(4096 + 16 * regions, gran) + regions * gran;
    struct stat st;
    int fd;

    if (stat(cfg->shared_undo, &st) == 0 && st.st_size >= need) {
        return true;
    }
    fd = open(cfg->shared_undo, O_WRONLY | O_CREAT, 0600);
    if (fd < 0 || ftruncate(fd, need) < 0) {
        error_setg_errno(errp, errno, "cannot create the undo image %s",
                         cfg->shared_undo);
        if (fd >= 0) {
            close(fd);
        }
        return false;
    }
    close(fd);
    printf("prepared the undo image %s (%" PRId64 " bytes)\n",
           cfg->shared_undo, need);
    return true;
}

static bool make_overlay(const ColoConfig *cfg, const char *path,
                         Error **errp)
{
    g_autofree char *size = g_strdup_printf("%" PRId64, cfg->disk_size);
    char *argv[] = {
        cfg->qemu_img, (char *)"create", (char *)"-q", (char *)"-f",
        (char *)"qcow2", (char *)path, size, NULL
    };

    return run_program(argv, errp);
}

/* True if a QEMU answers on @n's QMP socket. */
static bool node_answers(const ColoNodeConfig *n)
{
    QmpClient *c = qmp_client_connect(n->qmp, PROBE_TIMEOUT_MS, NULL);

    qmp_client_free(c);
    return c != NULL;
}

static bool start_node(const ColoConfig *cfg, const ColoNodeConfig *n,
                       ColoRole role, Error **errp)
{
    const ColoNodeConfig *peer = colo_config_peer((ColoConfig *)cfg, n);
    g_autoptr(GPtrArray) argv = NULL;

    if (node_answers(n)) {
        error_setg(errp, "node %s already runs a QEMU (%s answers); "
                   "stop it first", n->name, n->qmp);
        return false;
    }
    if (g_mkdir_with_parents(n->workdir, 0700) < 0) {
        error_setg_errno(errp, errno, "cannot create %s", n->workdir);
        return false;
    }
    if (cfg->shared_disk) {
        if (!ensure_raw_disk(cfg, cfg->shared_disk, errp) ||
            !ensure_undo_image(cfg, errp)) {
            return false;
        }
        /* A secondary starts from an empty overlay, always. */
        if (role == COLO_ROLE_SECONDARY &&
            !make_overlay(cfg, n->active, errp)) {
            return false;
        }
    }
    if (n->disk) {
        if (!ensure_raw_disk(cfg, n->disk, errp)) {
            return false;
        }
        /* A secondary starts from empty overlays, always. */
        if (role == COLO_ROLE_SECONDARY &&
            (!make_overlay(cfg, n->active, errp) ||
             !make_overlay(cfg, n->hidden, errp))) {
            return false;
        }
    }
    argv = qemu_argv(cfg, n, peer, role);
    if (!run_program((char **)argv->pdata, errp)) {
        error_prepend(errp, "starting node %s: ", n->name);
        return false;
    }
    printf("%s: started as %s (QMP %s, console %s/serial.log)\n", n->name,
           role_name(role), n->qmp, n->workdir);
    return true;
}

typedef struct CtlArgs {
    const char *node;
    const char *role;
    bool start;
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

static int cmd_start(const char *config, const CtlArgs *args)
{
    ColoConfig cfg;
    ColoNodeConfig *only;
    Error *err = NULL;
    int rc = 0;

    if (!load_with_node(config, args, &cfg, &only)) {
        return 2;
    }
    for (int i = 0; i < 2; i++) {
        ColoNodeConfig *n = &cfg.nodes[i];
        ColoRole role = n->initial_role;

        if (only && n != only) {
            continue;
        }
        if (args->role) {
            role = g_str_equal(args->role, "primary") ? COLO_ROLE_PRIMARY :
                   COLO_ROLE_SECONDARY;
        }
        if (!start_node(&cfg, n, role, &err)) {
            error_report_err(err);
            err = NULL;
            rc = 1;
        }
    }
    colo_config_free(&cfg);
    return rc;
}

static pid_t read_pid(const ColoNodeConfig *n)
{
    g_autofree char *path = node_file(n, "qemu.pid");
    g_autofree char *text = NULL;
    int64_t pid;

    if (!g_file_get_contents(path, &text, NULL, NULL) ||
        qemu_strtoi64(g_strstrip(text), NULL, 10, &pid) < 0 || pid <= 1) {
        return 0;
    }
    return kill(pid, 0) == 0 ? pid : 0;
}

static bool wait_pid_gone(pid_t pid, int timeout_ms)
{
    for (int waited = 0; waited < timeout_ms; waited += 50) {
        if (kill(pid, 0) < 0 && errno == ESRCH) {
            return true;
        }
        g_usleep(50000);
    }
    return false;
}

/* quit over QMP; SIGTERM, then SIGKILL through the pid file otherwise. */
static bool stop_node(const ColoNodeConfig *n, Error **errp)
{
    pid_t pid = read_pid(n);
    QmpClient *c = qmp_client_connect(n->qmp, PROBE_TIMEOUT_MS, NULL);
    g_autofree char *pidfile = node_file(n, "qemu.pid");

    if (c) {
        qobject_unref(qmp_client_cmd(c, "quit", NULL, CMD_TIMEOUT_MS, NULL));
        qmp_client_free(c);
    }
    if (pid && !wait_pid_gone(pid, c ? STOP_TIMEOUT_MS : 0)) {
        kill(pid, SIGTERM);
        if (!wait_pid_gone(pid, STOP_TIMEOUT_MS)) {
            kill(pid, SIGKILL);
            if (!wait_pid_gone(pid, STOP_TIMEOUT_MS)) {
                error_setg(errp, "node %s: QEMU (pid %d) does not end",
                           n->name, (int)pid);
                return false;
            }
        }
    }
    unlink(pidfile);
    printf("%s: %s\n", n->name, c || pid ? "stopped" : "was not running");
    return true;
}

static int cmd_stop(const char *config, const CtlArgs *args)
{
    ColoConfig cfg;
    ColoNodeConfig *only;
    Error *err = NULL;
    int rc = 0;

    if (!load_with_node(config, args, &cfg, &only)) {
        return 2;
    }
    for (int i = 0; i < 2; i++) {
        if ((!only || &cfg.nodes[i] == only) &&
            !stop_node(&cfg.nodes[i], &err)) {
            error_report_err(err);
            err = NULL;
            rc = 1;
        }
    }
    colo_config_free(&cfg);
    return rc;
}

/* ---- status ---------------------------------------------------------- */

static void progress_bar(char *buf, size_t size, int64_t done, int64_t total)
{
    int width = 30;
    int fill = total > 0 ? (int)(done * width / total) : 0;
    g_autofree char *bar = g_strnfill(width, '.');

    memset(bar, '#', MIN(MAX(fill, 0), width));
    snprintf(buf, size, "[%s] %3d%% %" PRId64 "/%" PRId64 " MiB", bar,
             total > 0 ? (int)(done * 100 / total) : 0, done >> 20,
             total >> 20);
}

/* The agent's status line (one JSON object, then it closes), or NULL. */
static QDict *agent_status(const char *path)
{
    struct sockaddr_un addr = { .sun_family = AF_UNIX };
    g_autoptr(GString) in = g_string_new(NULL);
    int64_t deadline = g_get_monotonic_time() + 2 * G_USEC_PER_SEC;
    QObject *obj;
    int fd;

    if (strlen(path) >= sizeof(addr.sun_path)) {
        return NULL;
    }
    strcpy(addr.sun_path, path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
        if (fd >= 0) {
            close(fd);
        }
        return NULL;
    }
    for (;;) {
        struct pollfd pfd = { .fd = fd, .events = POLLIN };
        int64_t left = (deadline - g_get_monotonic_time()) / 1000;
        char buf[4096];
        ssize_t n;

        if (left <= 0 || poll(&pfd, 1, left) <= 0) {
            break;
        }
        n = read(fd, buf, sizeof(buf));
        if (n <= 0 || in->len > 65536) {
            break;
        }
        g_string_append_len(in, buf, n);
        if (strchr(in->str, '\n')) {
            break;
        }
    }
    close(fd);
    obj = qobject_from_json(in->str, NULL);
    if (obj && !qobject_to(QDict, obj)) {
        qobject_unref(obj);
        return NULL;
    }
    return qobject_to(QDict, obj);
}

static void print_agent(const ColoNodeConfig *n)
{
    g_autoptr(QDict) st = agent_status(n->agent_socket);

    if (!st) {
        printf("  agent: not running (%s does not answer)\n",
               n->agent_socket);
        return;
    }
    printf("  agent: role=%s peer=%s (last heartbeat %" PRId64 " ms ago) "
           "quorum=%s last-action=%s\n",
           qdict_get_try_str(st, "role") ?: "?",
           qdict_get_try_str(st, "peer-state") ?: "?",
           qdict_get_try_int(st, "last-heartbeat-ms", -1),
           qdict_get_try_str(st, "quorum") ?: "?",
           qdict_get_try_str(st, "last-action") ?: "none");
    {
        static const char *const refused[] = {
            "forged", "corrupt", "replayed", "stale", "bad",
        };
        g_autoptr(GString) line = g_string_new(NULL);

        for (int i = 0; i < ARRAY_SIZE(refused); i++) {
            g_autofree char *key = g_strdup_printf("%s-datagrams",
                                                   refused[i]);
            int64_t v = qdict_get_try_int(st, key, 0);

            if (v) {
                g_string_append_printf(line, " %s=%" PRId64, refused[i], v);
            }
        }
        if (line->len) {
            printf("  agent: heartbeats ignored:%s\n", line->str);
        }
    }
    if (qdict_get_try_str(st, "warning")) {
        printf("  agent: WARNING: %s\n", qdict_get_try_str(st, "warning"));
    }
}

static QObject *qom_get(QmpClient *c, const char *id, const char *prop)
{
    g_autoptr(QDict) args = qdict_new();
    g_autofree char *path = g_strdup_printf("/objects/%s", id);

    qdict_put_str(args, "path", path);
    qdict_put_str(args, "property", prop);
    return qmp_client_cmd(c, "qom-get", args, CMD_TIMEOUT_MS, NULL);
}

/* Whether the labels/names of @list (key @key) include @name. */
static bool list_has(QObject *list, const char *key, const char *name)
{
    QList *l = qobject_to(QList, list);
    QListEntry *e;

    QLIST_FOREACH_ENTRY(l, e) {
        QDict *d = qobject_to(QDict, qlist_entry_obj(e));

        if (d && g_strcmp0(qdict_get_try_str(d, key), name) == 0) {
            return true;
        }
    }
    return false;
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
                                              NULL, CMD_TIMEOUT_MS, NULL);
    g_autoptr(QDict) flat = qdict_new();
    g_autoptr(GString) out = g_string_new("  channels:");
    QObject *nodes, *chardevs, *verify, *rules;
    const char *creds = mp ? qdict_get_try_str(mp, "tls-creds") : NULL;
    bool server_creds, primary = g_str_equal(mode, "primary");
    bool secondary = g_str_equal(mode, "secondary");

    qdict_put_bool(flat, "flat", true);
    nodes = qmp_client_cmd(c, "query-named-block-nodes", flat,
                           CMD_TIMEOUT_MS, NULL);
    chardevs = qmp_client_cmd(c, "query-chardev", NULL, CMD_TIMEOUT_MS,
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
    if (primary && list_has(chardevs, "label", "mirror0")) {
        g_string_append_printf(out, " proxy=%s", server_creds ?
                               "tls(mirror0, compare1)" : "plain");
    } else if (secondary && list_has(chardevs, "label", "red0")) {
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

static int status_node(const ColoNodeConfig *n)
{
    g_autoptr(QDict) st = NULL, mig = NULL, run = NULL;
    QObject *jobs = NULL;
    Error *err = NULL;
    QmpClient *c;
    const char *mstatus;
    g_autofree char *channels = NULL;

    /* Its own monitor first: `reprotect` may hold the main one. */
    c = qmp_client_connect(n->status_qmp, PROBE_TIMEOUT_MS, NULL);
    if (!c) {
        c = qmp_client_connect(n->qmp, PROBE_TIMEOUT_MS, &err);
    }

    printf("%s (started as %s, link %s):", n->name,
           role_name(n->initial_role), n->link_addr);
    if (!c) {
        printf(" QEMU not reachable: %s\n", error_get_pretty(err));
        error_free(err);
        print_agent(n);
        return 1;
    }
    st = qmp_client_cmd_dict(c, "query-colo-status", NULL, CMD_TIMEOUT_MS,
                             &err);
    mig = st ? qmp_client_cmd_dict(c, "query-migrate", NULL, CMD_TIMEOUT_MS,
                                   &err) : NULL;
    run = mig ? qmp_client_cmd_dict(c, "query-status", NULL, CMD_TIMEOUT_MS,
                                    &err) : NULL;
    jobs = run ? qmp_client_cmd(c, "query-block-jobs", NULL, CMD_TIMEOUT_MS,
                                &err) : NULL;
    channels = jobs ? channels_line(c, qdict_get_str(st, "mode")) : NULL;
    qmp_client_free(c);
    if (!jobs) {
        printf(" %s\n", error_get_pretty(err));
        error_free(err);
        return 1;
    }
    mstatus = qdict_get_try_str(mig, "status") ?: "none";
    printf(" mode=%s run-state=%s migration=%s checkpoints=%" PRIu64
           " (periodic %" PRIu64 ", mismatch %" PRIu64 ", timeout %" PRIu64
           ", forced %" PRIu64 ") last-pause=%.1fms max-pause=%.1fms\n",
           qdict_get_str(st, "mode"), qdict_get_str(run, "status"), mstatus,
           stat_or_zero(st, "checkpoints"),
           stat_or_zero(st, "checkpoints-periodic"),
           stat_or_zero(st, "checkpoints-mismatch"),
           stat_or_zero(st, "checkpoints-timeout"),
           stat_or_zero(st, "checkpoints-forced"),
           stat_or_zero(st, "last-pause-us") / 1000.0,
           stat_or_zero(st, "max-pause-us") / 1000.0);
    {
        QList *l = qobject_to(QList, jobs);
        QListEntry *e;

        QLIST_FOREACH_ENTRY(l, e) {
            QDict *j = qobject_to(QDict, qlist_entry_obj(e));
            char bar[128];

            if (j && g_strcmp0(qdict_get_try_str(j, "device"),
                               COLO_RESYNC_JOB) == 0) {
                progress_bar(bar, sizeof(bar),
                             qdict_get_try_int(j, "offset", 0),
                             qdict_get_try_int(j, "len", 0));
                printf("  disk resync: %s%s\n", bar,
                       qdict_get_try_bool(j, "ready", false) ?
                       " ready" : "");
            }
        }
    }
    if (g_str_equal(mstatus, "active") && qdict_get_qdict(mig, "ram")) {
        QDict *ram = qdict_get_qdict(mig, "ram");
        char bar[128];

        progress_bar(bar, sizeof(bar),
                     qdict_get_try_int(ram, "transferred", 0),
                     qdict_get_try_int(ram, "total", 0));
        printf("  migration: %s\n", bar);
    }
    printf("%s\n", channels);
    qobject_unref(jobs);
    print_agent(n);
    return 0;
}

static int cmd_status_config(const char *config)
{
    ColoConfig cfg;
    int rc = 0;

    if (!load_config(config, &cfg)) {
        return 2;
    }
    printf("pair %s (%s)\n", cfg.name, cfg.path);
    if (!cfg.heartbeat_auth) {
        printf("WARNING: heartbeat-auth = none: the agents' heartbeats are "
               "not authenticated; anyone on the link can forge or replay "
               "them\n");
    }
    for (int i = 0; i < 2; i++) {
        rc |= status_node(&cfg.nodes[i]);
    }
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
    progress_bar(bar, sizeof(bar), done, total);
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
    char *mode;
    char *error;
} NodeState;

static void probe(const ColoNodeConfig *n, NodeState *s)
{
    Error *err = NULL;
    g_autoptr(QDict) run = NULL, st = NULL;

    memset(s, 0, sizeof(*s));
    s->c = qmp_client_connect(n->qmp, PROBE_TIMEOUT_MS, &err);
    if (s->c) {
        run = qmp_client_cmd_dict(s->c, "query-status", NULL, CMD_TIMEOUT_MS,
                                  &err);
        st = run ? qmp_client_cmd_dict(s->c, "query-colo-status", NULL,
                                       CMD_TIMEOUT_MS, &err) : NULL;
    }
    if (!st) {
        s->error = g_strdup(error_get_pretty(err));
        error_free(err);
        qmp_client_free(s->c);
        s->c = NULL;
        return;
    }
    s->state = g_strdup(qdict_get_str(run, "status"));
    s->mode = g_strdup(qdict_get_str(st, "mode"));
}

static void probe_free(NodeState *s)
{
    qmp_client_free(s->c);
    g_free(s->state);
    g_free(s->mode);
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
        bool running = ns[1 - si].c || read_pid(fresh);

        /* Whatever runs there (also a hung QEMU) makes room first. */
        probe_free(&ns[1 - si]);
        if (running && !stop_node(fresh, &err)) {
            error_report_err(err);
            goto out;
        }
        if (!start_node(&cfg, fresh, COLO_ROLE_SECONDARY, &err)) {
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
            } else {
                fprintf(stderr, "qemu-colo-ctl: %s: unexpected argument "
                        "'%s'\n", cmd, argv[i]);
                usage(stderr);
                return 2;
            }
        }
        if ((args.role && (!args.node || !g_str_equal(cmd, "start"))) ||
            (args.node && !g_str_equal(cmd, "start") &&
             !g_str_equal(cmd, "stop") && !g_str_equal(cmd, "failover"))) {
            fprintf(stderr, "qemu-colo-ctl: %s: --role needs start and "
                    "--node; --node only with start, stop, failover\n", cmd);
            return 2;
        }
        if (g_str_equal(cmd, "start")) {
            return cmd_start(argv[2], &args);
        } else if (g_str_equal(cmd, "stop")) {
            return cmd_stop(argv[2], &args);
        } else if (g_str_equal(cmd, "status")) {
            return cmd_status_config(argv[2]);
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
        return cmd_status(argc - 2, argv + 2);
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
