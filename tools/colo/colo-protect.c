/*
 * Protect and re-protect: bring a node that runs the guest alone and a
 * fresh secondary QEMU into COLO (see colo-actions.h)
 *
 * Copyright (c) 2026 The qemu-colo authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * No printing here: qemu-colo-agent links this file too.  Everything is
 * reported through Error, return values and the progress callback.
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
#include "colo-ids.h"
#include "colo-vm.h"

/* The guest's disk on a VM: top-disk0 on a node started as secondary. */
static const char *top_disk(const ColoVmInventory *inv)
{
    return colo_has(inv->devices, COLO_ID_TOP_DISK) ? COLO_ID_TOP_DISK :
                                                      COLO_ID_DISK;
}

/*
 * The node name of the device's root (the quorum), for x-blockdev-change:
 * once the mirror runs, the device name resolves to its filter node.
 */
static char *root_node(QmpClient *c, const char *device, Error **errp)
{
    g_autoptr(QList) l = qmp_client_cmd_list(c, "query-block", NULL,
                                             QMP_CLIENT_TIMEOUT_MS, errp);
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

static QDict *nbd_file(const ColoConfig *cfg, const ColoNodeConfig *fresh)
{
    QDict *file = qdict_new();
    QDict *server = inet(fresh->link_addr, cfg->port_nbd);

    qdict_put_str(server, "type", "inet");
    qdict_put_str(file, "driver", "nbd");
    qdict_put_str(file, "export", COLO_ID_DISK);
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
    if (!qmp_client_run(fresh, "migrate-set-capabilities", caps, errp)) {
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
    qdict_put_str(add, "device", COLO_ID_DISK);
    qdict_put_bool(add, "writable", true);
    if (!qmp_client_run(fresh, "nbd-server-start", nbd, errp) ||
        !qmp_client_run(fresh, "nbd-server-add", add, errp)) {
        error_prepend(errp, "NBD: ");
        return false;
    }
    return true;
}

#define RESYNC_STALL_MS  120000

typedef struct ResyncState {
    QmpClient *c;
    ColoProgressFn *progress;
    void *opaque;
    int64_t last_offset;
} ResyncState;

static ColoPoll resync_ready(void *opaque, bool expired, Error **errp)
{
    ResyncState *rs = opaque;
    g_autoptr(QDict) job = NULL;
    int64_t offset, len;

    if (!colo_vm_block_job(rs->c, COLO_RESYNC_JOB, &job, errp)) {
        return COLO_POLL_FAILED;
    }
    if (!job) {
        error_setg(errp, "the resync job disappeared");
        return COLO_POLL_FAILED;
    }
    offset = qdict_get_try_int(job, "offset", 0);
    len = qdict_get_try_int(job, "len", 0);
    if (g_strcmp0(qdict_get_try_str(job, "status"), "concluded") == 0 ||
        qdict_haskey(job, "error")) {
        error_setg(errp, "the copy to the new secondary failed: %s",
                   qdict_get_try_str(job, "error") ?: "job ended");
        return COLO_POLL_FAILED;
    }
    report(rs->progress, rs->opaque, "disk resync", offset, len);
    if (qdict_get_try_bool(job, "ready", false)) {
        return COLO_POLL_DONE;
    }
    if (offset != rs->last_offset) {
        rs->last_offset = offset;
        return COLO_POLL_PROGRESS;
    }
    if (expired) {
        error_setg(errp, "the copy to the new secondary made no progress "
                   "for %d s", RESYNC_STALL_MS / 1000);
        return COLO_POLL_FAILED;
    }
    return COLO_POLL_AGAIN;
}

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
    ResyncState rs = {
        .c = s, .progress = progress, .opaque = opaque, .last_offset = -1,
    };

    qdict_put_str(node, "node-name", COLO_RESYNC_NODE);
    if (!qmp_client_run(s, "blockdev-add", node, errp)) {
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
    if (!qmp_client_run(s, "blockdev-mirror", mirror, errp)) {
        return false;
    }
    return colo_poll_until(resync_ready, &rs, 4 * COLO_ACTION_POLL_MS,
                           RESYNC_STALL_MS, errp);
}

/* The cancelled resync job concluded without error, and dismissed. */
static ColoPoll resync_job_gone(void *opaque, bool expired, Error **errp)
{
    QmpClient *s = opaque;
    g_autoptr(QDict) job = NULL;

    if (!colo_vm_block_job(s, COLO_RESYNC_JOB, &job, errp)) {
        return COLO_POLL_FAILED;
    }
    if (!job) {
        return COLO_POLL_DONE;
    }
    if (g_strcmp0(qdict_get_try_str(job, "status"), "concluded") == 0) {
        if (qdict_haskey(job, "error")) {
            error_setg(errp, "the final copy failed: %s",
                       qdict_get_str(job, "error"));
            return COLO_POLL_FAILED;
        }
        if (!qmp_client_run_str(s, "job-dismiss", "id", COLO_RESYNC_JOB,
                                errp)) {
            return COLO_POLL_FAILED;
        }
        return COLO_POLL_DONE;
    }
    if (expired) {
        error_setg(errp, "the resync job did not end after "
                   "block-job-cancel");
        return COLO_POLL_FAILED;
    }
    return COLO_POLL_AGAIN;
}

/*
 * Once COLO runs (the replication child forwards every write): end the
 * mirror without pivot.  It must still be healthy: a mirror that failed
 * before may have missed writes the secondary's disk needs.
 */
static bool resync_finish(QmpClient *s, Error **errp)
{
    g_autoptr(QDict) cur = NULL;

    if (!colo_vm_block_job(s, COLO_RESYNC_JOB, &cur, errp)) {
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
    if (!qmp_client_run_str(s, "block-job-cancel", "device", COLO_RESYNC_JOB,
                            errp)) {
        return false;
    }
    if (!colo_poll_until(resync_job_gone, s, COLO_ACTION_POLL_MS,
                         COLO_ACTION_WAIT_MS, errp)) {
        return false;
    }
    return qmp_client_run_str(s, "blockdev-del", "node-name",
                              COLO_RESYNC_NODE, errp);
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
    if (!qmp_client_run(s, "blockdev-add", rep, errp)) {
        error_prepend(errp, "NBD: ");
        return false;
    }
    qdict_put_str(change, "parent", top);
    qdict_put_str(change, "node", COLO_REPLICATION_NODE);
    return qmp_client_run(s, "x-blockdev-change", change, errp);
}

/*
 * chardev-add of a socket chardev at @addr (a SocketAddress, taken); the
 * clients retry every 200 ms until their listener is there.
 */
static bool add_chardev_socket(QmpClient *s, const char *id, QDict *addr,
                               bool server, bool tls, Error **errp)
{
    g_autoptr(QDict) args = qdict_new();
    QDict *backend = qdict_new();
    QDict *data = qdict_new();

    if (g_str_equal(qdict_get_str(addr, "type"), "inet")) {
        /* no Nagle: frames must not wait for delayed ACKs (docs: nodelay) */
        qdict_put_bool(data, "nodelay", true);
    }
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
    return qmp_client_run(s, "chardev-add", args, errp);
}

/* A chardev of the proxy on the replication link. */
static bool add_link_socket(QmpClient *s, const char *id, const char *host,
                            int port, bool server, bool tls, Error **errp)
{
    QDict *addr = qdict_new();

    qdict_put_str(addr, "type", "inet");
    qdict_put(addr, "data", inet(host, port));
    return add_chardev_socket(s, id, addr, server, tls, errp);
}

/*
 * One end of a hop inside the primary's QEMU: a unix socket in the node's
 * work directory.  Whoever connects to such a listener first is its peer,
 * so it must not be reachable by other local users as a loopback TCP port
 * is: the socket file has QEMU's umask and sits in the work directory, as
 * the QMP sockets do (docs: "The proxy's own hops").
 */
static bool add_local_socket(QmpClient *s, const ColoNodeConfig *self,
                             const char *id, const char *listener,
                             bool server, Error **errp)
{
    QDict *addr = qdict_new();
    QDict *unix_addr = qdict_new();
    g_autofree char *name = g_strconcat(listener, COLO_LOCAL_SOCKET_SUFFIX,
                                         NULL);
    g_autofree char *path = g_build_filename(self->workdir, name, NULL);

    qdict_put_str(unix_addr, "path", path);
    qdict_put_str(addr, "type", "unix");
    qdict_put(addr, "data", unix_addr);
    return add_chardev_socket(s, id, addr, server, false, errp);
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
    return qmp_client_run(s, "object-add", args, errp);
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
    const char *const m0[] = {
        "netdev", COLO_ID_NETDEV, "queue", "tx",
        "outdev", COLO_ID_MIRROR_CHR, NULL
    };
    const char *const redire0[] = {
        "netdev", COLO_ID_NETDEV, "queue", "rx",
        "indev", COLO_ID_COMPARE_OUT, NULL
    };
    const char *const redire1[] = {
        "netdev", COLO_ID_NETDEV, "queue", "rx",
        "outdev", COLO_ID_COMPARE_PRI, NULL
    };
    const char *const comp0[] = {
        "primary_in", COLO_ID_COMPARE_PRI_IN,
        "secondary_in", COLO_ID_COMPARE_SEC,
        "outdev", COLO_ID_COMPARE_OUT_IN, "iothread", COLO_ID_IOTHREAD, NULL
    };
    bool tls = cfg->tls_dir != NULL;

    return add_link_socket(s, COLO_ID_MIRROR_CHR, self->link_addr,
                           cfg->port_mirror, true, tls, errp) &&
           add_link_socket(s, COLO_ID_COMPARE_SEC, self->link_addr,
                           cfg->port_compare, true, tls, errp) &&
           add_local_socket(s, self, COLO_ID_COMPARE_PRI, COLO_ID_COMPARE_PRI,
                            true, errp) &&
           add_local_socket(s, self, COLO_ID_COMPARE_PRI_IN,
                            COLO_ID_COMPARE_PRI, false, errp) &&
           add_local_socket(s, self, COLO_ID_COMPARE_OUT, COLO_ID_COMPARE_OUT,
                            true, errp) &&
           add_local_socket(s, self, COLO_ID_COMPARE_OUT_IN,
                            COLO_ID_COMPARE_OUT, false, errp) &&
           add_object(s, "filter-mirror", COLO_ID_MIRROR, m0, errp) &&
           add_object(s, "filter-redirector", COLO_ID_REDIRECT_IN, redire0,
                      errp) &&
           add_object(s, "filter-redirector", COLO_ID_REDIRECT_OUT, redire1,
                      errp) &&
           add_object(s, "iothread", COLO_ID_IOTHREAD, NULL, errp) &&
           add_object(s, "colo-compare", COLO_ID_COMPARE, comp0, errp);
}

#define MIGRATE_STALL_MS  120000
#define MIGRATE_CONVERGE_MS 30000
#define COLO_START_MS     60000

typedef struct StartState {
    QmpClient *s, *fresh;
    const ColoConfig *cfg;
    ColoProgressFn *progress;
    void *opaque;
    int64_t last;           /* RAM transferred at the last look */
    int64_t converge;       /* when to accept a longer stop; 0: done */
} StartState;

/* The migration reached COLO; progress while RAM is transferred. */
static ColoPoll migrated(void *opaque, bool expired, Error **errp)
{
    StartState *ms = opaque;
    g_autoptr(QDict) mig = qmp_client_cmd_dict(ms->s, "query-migrate", NULL,
                                               QMP_CLIENT_TIMEOUT_MS, errp);
    const char *status;
    QDict *ram;
    int64_t done = 0, total = 0;

    if (!mig) {
        return COLO_POLL_FAILED;
    }
    status = qdict_get_try_str(mig, "status") ?: "none";
    if (g_str_equal(status, "colo")) {
        return COLO_POLL_DONE;
    }
    if (!colo_migration_active(status)) {
        error_setg(errp, "migration: the migration to the new "
                   "secondary ended with status '%s'%s%s", status,
                   qdict_haskey(mig, "error-desc") ? ": " : "",
                   qdict_get_try_str(mig, "error-desc") ?: "");
        return COLO_POLL_FAILED;
    }
    ram = qdict_get_qdict(mig, "ram");
    if (ram) {
        done = qdict_get_try_int(ram, "transferred", 0);
        total = qdict_get_try_int(ram, "total", 0);
    }
    report(ms->progress, ms->opaque, "migration", done, total);
    if (ms->converge && now_ms() > ms->converge) {
        /* A guest dirtying memory fast: accept a longer final stop. */
        g_autoptr(QDict) longer = qdict_new();

        qdict_put_int(longer, "downtime-limit", 2000);
        if (!qmp_client_run(ms->s, "migrate-set-parameters", longer, errp)) {
            return COLO_POLL_FAILED;
        }
        ms->converge = 0;
    }
    if (done != ms->last) {
        ms->last = done;
        return COLO_POLL_PROGRESS;
    }
    if (expired) {
        error_setg(errp, "the migration made no progress for %d s",
                   MIGRATE_STALL_MS / 1000);
        return COLO_POLL_FAILED;
    }
    return COLO_POLL_AGAIN;
}

/* Both sides in COLO, the secondary's proxy connected, guest running. */
static ColoPoll colo_settled(void *opaque, bool expired, Error **errp)
{
    StartState *ms = opaque;
    g_auto(ColoVmStatus) fst = { 0 };
    g_auto(ColoVmStatus) pst = { 0 };
    g_autoptr(QList) chardevs = NULL;
    QListEntry *e;
    bool connected = true;

    if (!colo_vm_query_status(ms->fresh, &fst, QMP_CLIENT_TIMEOUT_MS, errp) ||
        !colo_vm_query_status(ms->s, &pst, QMP_CLIENT_TIMEOUT_MS, errp)) {
        return COLO_POLL_FAILED;
    }
    chardevs = qmp_client_cmd_list(ms->fresh, "query-chardev", NULL,
                                   QMP_CLIENT_TIMEOUT_MS, errp);
    if (!chardevs) {
        return COLO_POLL_FAILED;
    }
    QLIST_FOREACH_ENTRY(chardevs, e) {
        QDict *d = qobject_to(QDict, qlist_entry_obj(e));
        const char *label = d ? qdict_get_try_str(d, "label") : NULL;

        if (label && (g_str_equal(label, COLO_ID_RED_IN) ||
                      g_str_equal(label, COLO_ID_RED_OUT)) &&
            g_str_has_prefix(qdict_get_try_str(d, "filename") ?: "",
                             "disconnected")) {
            connected = false;
        }
    }
    if (g_str_equal(fst.mode, "secondary") && connected &&
        g_str_equal(pst.run_state, "running")) {
        return COLO_POLL_DONE;
    }
    if (!expired) {
        return COLO_POLL_AGAIN;
    }
    error_setg(errp, "%sCOLO did not settle in %d s (new "
               "secondary: mode %s, proxy %s; primary run state %s)",
               connected ? "" : "proxy: the new secondary's red0/red1 "
               "did not connect to the primary's mirror0/compare1: ",
               COLO_START_MS / 1000, fst.mode,
               connected ? "connected" : "not connected", pst.run_state);
    if (!connected && ms->cfg->tls_dir) {
        error_append_hint(errp, "With tls-dir, a certificate that "
                          "does not name the node's link address "
                          "or is not signed by the pair's CA fails "
                          "the proxy's TLS handshake.\n");
    }
    return COLO_POLL_FAILED;
}

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
    StartState ms = {
        .s = s, .fresh = fresh, .cfg = cfg, .progress = progress,
        .opaque = opaque, .last = -1,
        .converge = now_ms() + MIGRATE_CONVERGE_MS,
    };

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
        if (!qmp_client_run(fresh, "migrate-set-parameters", fparams, errp)) {
            error_prepend(errp, "migration: ");
            return false;
        }
        /* The client: the listener's certificate must name the node. */
        qdict_put_str(params, "tls-creds", COLO_TLS_CLIENT);
        qdict_put_str(params, "tls-hostname", fnode->name);
    }
    if (!qmp_client_run(fresh, "migrate-incoming", in, errp) ||
        !qmp_client_run(s, "migrate-set-capabilities", caps, errp) ||
        !qmp_client_run(s, "migrate-set-parameters", params, errp) ||
        !qmp_client_run(s, "migrate", out, errp)) {
        error_prepend(errp, "migration: ");
        return false;
    }
    if (!colo_poll_until(migrated, &ms, 4 * COLO_ACTION_POLL_MS,
                         MIGRATE_STALL_MS, errp)) {
        return false;
    }
    report(progress, opaque, "entering COLO", 0, 0);
    return colo_poll_until(colo_settled, &ms, COLO_ACTION_POLL_MS,
                           COLO_START_MS, errp);
}

bool colo_action_protect(QmpClient *survivor, QmpClient *fresh,
                         const ColoConfig *cfg,
                         const ColoNodeConfig *survivor_node,
                         const ColoNodeConfig *fresh_node,
                         bool do_resync, ColoProgressFn *progress,
                         void *opaque, Error **errp)
{
    g_auto(ColoVmStatus) sst = { 0 };
    g_auto(ColoVmStatus) fst = { 0 };
    g_autofree char *top_node = NULL;
    ColoVmInventory inv = { 0 };
    const char *step = "checking the nodes";
    bool fresh_touched = false, ok = false;
    const char *top;
    Error *err = NULL;

    report(progress, opaque, step, 0, 0);
    if (!colo_vm_query_status(survivor, &sst, QMP_CLIENT_TIMEOUT_MS, &err)) {
        error_propagate_prepend(errp, err, "node %s: ", survivor_node->name);
        return false;
    }
    if (!colo_vm_query_status(fresh, &fst, QMP_CLIENT_TIMEOUT_MS, &err)) {
        error_propagate_prepend(errp, err, "node %s: ", fresh_node->name);
        return false;
    }
    if (!g_str_equal(sst.mode, "none")) {
        error_setg(errp, "node %s is in COLO mode '%s': the pair is "
                   "protected (fail over first to replace a node)",
                   survivor_node->name, sst.mode);
        return false;
    }
    if (g_str_equal(sst.run_state, "inmigrate")) {
        error_setg(errp, "node %s waits for a migration: neither node runs "
                   "the guest", survivor_node->name);
        return false;
    }
    if (!g_str_equal(fst.run_state, "inmigrate") ||
        !g_str_equal(fst.migration, "none")) {
        error_setg(errp, "node %s is not a freshly started secondary (run "
                   "state %s, migration %s): start it again with "
                   "-incoming defer (qemu-colo-ctl start --node %s "
                   "--role secondary)", fresh_node->name, fst.run_state,
                   fst.migration, fresh_node->name);
        return false;
    }
    /* Leftovers of an earlier attempt or of the failover go first. */
    if (!colo_action_take_over(survivor, cfg, NULL, &err) ||
        !colo_vm_inventory(survivor, &inv, &err)) {
        goto fail;
    }
    top = top_disk(&inv);
    step = "TLS credentials";
    if (!colo_tls_ensure_objects(survivor, cfg, fresh_node, &err) ||
        !colo_tls_ensure_objects(fresh, cfg, survivor_node, &err)) {
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
        if (!qmp_client_run(survivor, "stop", NULL, &err)) {
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
            qmp_client_run(fresh, "quit", NULL, NULL);
        }
        error_propagate(errp, err);
    }
out:
    colo_vm_inventory_clear(&inv);
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
