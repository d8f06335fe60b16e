/*
 * A node's QEMU process for qemu-colo-ctl: its command line, start, stop
 *
 * Copyright (c) 2026 The qemu-colo authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qemu/cutils.h"
#include "colo-actions.h"
#include "colo-ids.h"
#include "colo-node.h"
#include "colo-vm.h"

#define PROBE_TIMEOUT_MS    3000
#define STOP_TIMEOUT_MS     15000

const char *colo_role_name(ColoRole role)
{
    return role == COLO_ROLE_PRIMARY ? "primary" : "secondary";
}

char *colo_node_file(const ColoNodeConfig *n, const char *name)
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
    g_autofree char *pid = colo_node_file(n, "qemu.pid");
    g_autofree char *serial = colo_node_file(n, "serial.log");
    g_autofree char *log = colo_node_file(n, "qemu.log");
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
    ADD("%s,id=" COLO_ID_NETDEV, cfg->netdev);
    ADD("-device");
    ADD("virtio-net-pci,netdev=" COLO_ID_NETDEV ",mac=%s,romfile=", cfg->mac);
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
            ADD("if=none,id=" COLO_ID_DISK ",%s", node);
            ADD("-device");
            ADD("virtio-blk-pci,drive=" COLO_ID_DISK);
        } else {
            g_autofree char *active = opt_escape(n->active);

            /* The VM writes its overlay; the shared image is the backing. */
            ADD("-blockdev");
            ADD("%s", node);
            ADD("-drive");
            ADD("if=none,id=" COLO_ID_TOP_DISK ",driver=qcow2,file.filename=%s,"
                "file.cache.no-flush=on,backing=colo-shared0", active);
            ADD("-device");
            ADD("virtio-blk-pci,drive=" COLO_ID_TOP_DISK);
        }
    }
    if (role == COLO_ROLE_PRIMARY) {
        /* The proxy and the replication child come with `protect`. */
        if (disk) {
            ADD("-drive");
            ADD("if=none,id=" COLO_ID_DISK ",driver=quorum,read-pattern=fifo,"
                "vote-threshold=1,children.0.file.filename=%s,"
                "children.0.driver=raw", disk);
            ADD("-device");
            ADD("virtio-blk-pci,drive=" COLO_ID_DISK);
        }
    } else {
        if (disk) {
            g_autofree char *active = opt_escape(n->active);
            g_autofree char *hidden = opt_escape(n->hidden);

            ADD("-drive");
            ADD("if=none,id=" COLO_ID_DISK ",file.filename=%s,driver=raw,"
                "node-name=" COLO_ID_SEC_NODE, disk);
            ADD("-drive");
            ADD("if=none,id=" COLO_ID_SEC_CHILD ",driver=replication,"
                "mode=secondary,top-id=" COLO_ID_TOP_DISK ","
                "file.driver=qcow2,file.file.filename=%s,"
                "file.backing.driver=qcow2,file.backing.file.filename=%s,"
                "file.backing.backing=" COLO_ID_DISK ","
                "file.cache.no-flush=on,file.backing.cache.no-flush=on",
                active, hidden);
            ADD("-drive");
            ADD("if=none,id=" COLO_ID_TOP_DISK ",driver=quorum,"
                "read-pattern=fifo,vote-threshold=1,"
                "children.0=" COLO_ID_SEC_CHILD);
            ADD("-device");
            ADD("virtio-blk-pci,drive=" COLO_ID_TOP_DISK);
        }
        ADD("-chardev");
        ADD("socket,id=" COLO_ID_RED_IN ",host=%s,port=%d,reconnect-ms=200,"
            "nodelay=on%s",
            peer->link_addr, cfg->port_mirror, red_tls);
        ADD("-chardev");
        ADD("socket,id=" COLO_ID_RED_OUT ",host=%s,port=%d,reconnect-ms=200,"
            "nodelay=on%s",
            peer->link_addr, cfg->port_compare, red_tls);
        ADD("-object");
        ADD("filter-redirector,id=" COLO_ID_FILTER_IN ",netdev=" COLO_ID_NETDEV
            ",queue=tx,indev=" COLO_ID_RED_IN ",vnet_hdr_support=on");
        ADD("-object");
        ADD("filter-redirector,id=" COLO_ID_FILTER_OUT ",netdev="
            COLO_ID_NETDEV ",queue=rx,outdev=" COLO_ID_RED_OUT
            ",vnet_hdr_support=on");
        ADD("-object");
        ADD("filter-rewriter,id=" COLO_ID_REWRITER ",netdev=" COLO_ID_NETDEV
            ",queue=all,vnet_hdr_support=on");
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

bool colo_node_start(const ColoConfig *cfg, const ColoNodeConfig *n,
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
           colo_role_name(role), n->qmp, n->workdir);
    return true;
}

pid_t colo_node_pid(const ColoNodeConfig *n)
{
    g_autofree char *path = colo_node_file(n, "qemu.pid");
    g_autofree char *text = NULL;
    int64_t pid;

    if (!g_file_get_contents(path, &text, NULL, NULL) ||
        qemu_strtoi64(g_strstrip(text), NULL, 10, &pid) < 0 || pid <= 1) {
        return 0;
    }
    return kill(pid, 0) == 0 ? pid : 0;
}

static ColoPoll pid_gone(void *opaque, bool expired, Error **errp)
{
    pid_t pid = GPOINTER_TO_INT(opaque);

    return kill(pid, 0) < 0 && errno == ESRCH ? COLO_POLL_DONE :
                                                COLO_POLL_AGAIN;
}

static bool wait_pid_gone(pid_t pid, int timeout_ms)
{
    return colo_poll_until(pid_gone, GINT_TO_POINTER(pid), 50, timeout_ms,
                           NULL);
}

/* quit over QMP; SIGTERM, then SIGKILL through the pid file otherwise. */
bool colo_node_stop(const ColoNodeConfig *n, Error **errp)
{
    pid_t pid = colo_node_pid(n);
    QmpClient *c = qmp_client_connect(n->qmp, PROBE_TIMEOUT_MS, NULL);
    g_autofree char *pidfile = colo_node_file(n, "qemu.pid");

    if (c) {
        qmp_client_run(c, "quit", NULL, NULL);
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

