/*
 * qemu-colo-agent's monitor thread (see colo-agent-monitor.h)
 *
 * Copyright (c) 2026 The qemu-colo authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qemu/sockets.h"
#include "qemu/timer.h"
#include "qobject/qdict.h"
#include "qobject/qlist.h"
#include "qobject/qjson.h"
#include "qmp-client.h"
#include "colo-actions.h"
#include "colo-agent-monitor.h"
#include "colo-vm.h"

#define QMP_CONNECT_MS      2000
#define QMP_QUERY_MS        30000   /* a checkpoint may hold the monitor */
#define EVENT_SLICE_MS      20      /* how soon the monitor sees a request */
#define MODE_POLL_MS        1000    /* COLO mode also re-read on events */

struct ColoMonitor {
    const ColoConfig *cfg;
    const char *path;           /* agent-qmp */
    ColoMonFn *fn;
    void *opaque;
    GAsyncQueue *requests;      /* GINT_TO_POINTER(ColoHbAction) */
    GThread *thread;
};

typedef struct Posted {
    ColoMonitor *m;
    ColoMonMsg msg;
} Posted;

static int64_t now_ms(void)
{
    return qemu_clock_get_ms(QEMU_CLOCK_REALTIME);
}

static gboolean deliver(gpointer opaque)
{
    Posted *p = opaque;

    p->m->fn(&p->msg, p->m->opaque);
    g_free(p->msg.name);
    g_free(p->msg.text);
    g_free(p);
    return G_SOURCE_REMOVE;
}

static void post(ColoMonitor *m, ColoMonMsg msg)
{
    Posted *p = g_new0(Posted, 1);

    p->m = m;
    p->msg = msg;
    g_main_context_invoke(NULL, deliver, p);
}

/* The pid of the process that listens on the unix socket @path. */
static pid_t socket_owner(const char *path)
{
    struct ucred cred = { 0 };
    socklen_t len = sizeof(cred);
    int fd = unix_connect(path, NULL);

    if (fd < 0) {
        return 0;
    }
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
        cred.pid = 0;
    }
    close(fd);
    return cred.pid;
}

/* The local QEMU's COLO mode, and whether its link is lost (see .h). */
static ColoHbMode query_mode(QmpClient *c, bool *link_lost, Error **errp)
{
    g_auto(ColoVmStatus) st = { 0 };

    if (!colo_vm_query_status(c, &st, QMP_QUERY_MS, errp)) {
        return COLO_HB_MODE_UNKNOWN;
    }
    *link_lost = g_str_equal(st.reason, "error") &&
                 (g_str_equal(st.mode, "secondary") ||
                  (g_str_equal(st.mode, "none") &&
                   g_str_equal(st.last_mode, "secondary")));
    if (g_str_equal(st.mode, "primary")) {
        return COLO_HB_MODE_PRIMARY;
    }
    if (g_str_equal(st.mode, "secondary")) {
        return COLO_HB_MODE_SECONDARY;
    }
    return COLO_HB_MODE_NONE;
}

/*
 * Break the connections of NBD clients (the primary's replication child)
 * with yank: to a peer that vanished with its host or behind a cut link
 * they hang until TCP gives up, and removing the child would drain them
 * with the monitor blocked.  In-flight writes to that child fail; quorum
 * completes them from the local copy.  Returns how many were yanked.
 */
static int yank_block_nodes(QmpClient *c, Error **errp)
{
    g_autoptr(QList) list = qmp_client_cmd_list(c, "query-yank", NULL,
                                                QMP_CONNECT_MS, errp);
    g_autoptr(QDict) args = NULL;
    QList *inst;
    QListEntry *e;
    int n = 0;

    if (!list) {
        return -1;
    }
    inst = qlist_new();
    QLIST_FOREACH_ENTRY(list, e) {
        QDict *d = qobject_to(QDict, qlist_entry_obj(e));

        if (d && !g_strcmp0(qdict_get_try_str(d, "type"), "block-node")) {
            qlist_append(inst, qobject_ref(d));
            n++;
        }
    }
    args = qdict_new();
    qdict_put(args, "instances", inst);
    if (n) {
        QObject *r = qmp_client_cmd(c, "yank", args, QMP_CONNECT_MS, errp);

        if (!r) {
            return -1;
        }
        qobject_unref(r);
    }
    return n;
}

/* Yank, then take over; the result goes to the main loop. */
static void take_over(ColoMonitor *m, QmpClient *c, ColoHbAction action)
{
    Error *err = NULL;
    const char *what = NULL;
    int yanked = yank_block_nodes(c, &err);
    bool ok;

    if (yanked != 0) {
        post(m, (ColoMonMsg) { .kind = COLO_MON_NOTE,
            .text = yanked > 0 ?
                g_strdup_printf("yanked %d NBD client node(s)", yanked) :
                g_strdup_printf("yank failed: %s", error_get_pretty(err)) });
        error_free(err);
        err = NULL;
    }
    ok = colo_action_take_over(c, m->cfg, &what, &err);
    post(m, (ColoMonMsg) {
        .kind = COLO_MON_ACTION_DONE, .action = action, .ok = ok,
        .text = g_strdup(ok ? what : error_get_pretty(err)) });
    error_free(err);
}

/* Connect, or answer requests with "no connection" until the next try. */
static QmpClient *connect_qemu(ColoMonitor *m, bool *told_unreachable)
{
    Error *err = NULL;
    pid_t pid = socket_owner(m->path);
    QmpClient *c = pid ? qmp_client_connect(m->path, QMP_CONNECT_MS, &err)
                       : NULL;
    gpointer req;

    if (c) {
        *told_unreachable = false;
        post(m, (ColoMonMsg) { .kind = COLO_MON_CONNECTED, .pid = pid });
        return c;
    }
    if (!*told_unreachable) {
        post(m, (ColoMonMsg) { .kind = COLO_MON_DISCONNECTED,
                               .text = g_strdup(err ? error_get_pretty(err) :
                                                "no QEMU listens on it") });
        *told_unreachable = true;
    }
    error_free(err);
    req = g_async_queue_timeout_pop(m->requests,
                                    m->cfg->heartbeat_interval_ms * 1000);
    if (req) {
        post(m, (ColoMonMsg) { .kind = COLO_MON_ACTION_DONE,
                               .action = GPOINTER_TO_INT(req),
                               .text = g_strdup("no QMP connection to the "
                                                "local QEMU") });
    }
    return NULL;
}

static gpointer monitor_thread(gpointer opaque)
{
    ColoMonitor *m = opaque;
    QmpClient *c = NULL;
    int64_t next_query = 0;
    bool told_unreachable = false;

    for (;;) {
        Error *err = NULL;
        gpointer req;

        if (!c) {
            c = connect_qemu(m, &told_unreachable);
            if (!c) {
                continue;
            }
            next_query = 0;
        }

        req = g_async_queue_try_pop(m->requests);
        if (req) {
            take_over(m, c, GPOINTER_TO_INT(req));
            next_query = 0;
        }

        if (now_ms() >= next_query) {
            bool lost = false;
            ColoHbMode mode = query_mode(c, &lost, &err);

            if (mode != COLO_HB_MODE_UNKNOWN) {
                post(m, (ColoMonMsg) { .kind = COLO_MON_MODE, .mode = mode,
                                       .link_lost = lost });
            }
            next_query = now_ms() + MODE_POLL_MS;
            /*
             * Any failure ends this connection: after a timeout the late
             * reply would be taken for the next command's.
             */
        } else {
            g_autoptr(QDict) ev = NULL;
            int ret = qmp_client_wait_event(c, NULL, EVENT_SLICE_MS, &ev,
                                            &err);

            if (ret == 0) {
                const char *name = qdict_get_try_str(ev, "event") ?: "";
                QObject *data = qdict_get(ev, "data");
                g_autoptr(GString) json =
                    data ? qobject_to_json(data) : g_string_new("{}");

                post(m, (ColoMonMsg) { .kind = COLO_MON_EVENT,
                                       .name = g_strdup(name),
                                       .text = g_strdup(json->str) });
                /* COLO_EXIT, MIGRATION (to colo) ...: the mode changed */
                if (g_str_has_prefix(name, "COLO") ||
                    g_str_equal(name, "MIGRATION")) {
                    next_query = 0;
                }
            } else if (ret != -EPIPE) {
                /* no event in this slice: normal; only EOF ends it */
                error_free(err);
                err = NULL;
            }
        }
        if (err) {
            post(m, (ColoMonMsg) { .kind = COLO_MON_DISCONNECTED,
                                   .text = g_strdup(error_get_pretty(err)) });
            told_unreachable = true;
            qmp_client_free(c);
            c = NULL;
            error_free(err);
        }
    }
    return NULL;
}

ColoMonitor *colo_monitor_start(const ColoConfig *cfg,
                                const ColoNodeConfig *node, ColoMonFn *fn,
                                void *opaque)
{
    ColoMonitor *m = g_new0(ColoMonitor, 1);

    m->cfg = cfg;
    m->path = node->agent_qmp;
    m->fn = fn;
    m->opaque = opaque;
    m->requests = g_async_queue_new();
    m->thread = g_thread_new("qmp-monitor", monitor_thread, m);
    return m;
}

void colo_monitor_request(ColoMonitor *m, ColoHbAction action)
{
    g_async_queue_push(m->requests, GINT_TO_POINTER(action));
}
