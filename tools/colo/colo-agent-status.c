/*
 * The HeartBeat agent's status line (see colo-agent-status.h)
 *
 * Copyright (c) 2026 The qemu-colo authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include <poll.h>
#include "qapi/error.h"
#include "qemu/sockets.h"
#include "qobject/qjson.h"
#include "colo-agent-status.h"

/* The counters of the line: heartbeats, ignored datagrams, bytes. */
#define COUNTERS(X) \
    X("heartbeats-sent", heartbeats_sent) \
    X("heartbeats-received", heartbeats_received) \
    X("bad-datagrams", bad_datagrams) \
    X("forged-datagrams", forged_datagrams) \
    X("corrupt-datagrams", corrupt_datagrams) \
    X("replayed-datagrams", replayed_datagrams) \
    X("stale-datagrams", stale_datagrams) \
    X("bytes-sent", bytes_sent) \
    X("bytes-received", bytes_received)

QDict *colo_agent_status_to_qdict(const ColoAgentStatus *st)
{
    QDict *d = qdict_new();

    qdict_put_str(d, "node", st->node);
    qdict_put_str(d, "role", st->role);
    qdict_put_str(d, "peer", st->peer);
    qdict_put_str(d, "peer-state", st->peer_state);
    qdict_put_int(d, "last-heartbeat-ms", st->last_heartbeat_ms);
    qdict_put_str(d, "quorum", st->quorum);
    qdict_put_str(d, "last-action", st->last_action);
    qdict_put_int(d, "last-action-ms-ago", st->last_action_ms_ago);
    qdict_put_str(d, "reason", st->reason);
    qdict_put_bool(d, "stale", st->stale);
    qdict_put_str(d, "local-qemu", st->local_qemu);
    qdict_put_int(d, "qemu-pid", st->qemu_pid);
    qdict_put_str(d, "peer-qemu", st->peer_qemu);
    qdict_put_str(d, "peer-mode", st->peer_mode);
#define PUT(key, field) qdict_put_int(d, key, st->field);
    COUNTERS(PUT)
#undef PUT
    qdict_put_str(d, "heartbeat-auth", st->heartbeat_auth);
    if (st->warning) {
        qdict_put_str(d, "warning", st->warning);
    }
    qdict_put_int(d, "interval-ms", st->interval_ms);
    qdict_put_int(d, "timeout-ms", st->timeout_ms);
    return d;
}

void colo_agent_status_from_qdict(QDict *d, ColoAgentStatus *st)
{
    *st = (ColoAgentStatus) {
        .node = qdict_get_try_str(d, "node") ?: "?",
        .role = qdict_get_try_str(d, "role") ?: "?",
        .peer = qdict_get_try_str(d, "peer") ?: "?",
        .peer_state = qdict_get_try_str(d, "peer-state") ?: "?",
        .last_heartbeat_ms = qdict_get_try_int(d, "last-heartbeat-ms", -1),
        .quorum = qdict_get_try_str(d, "quorum") ?: "?",
        .last_action = qdict_get_try_str(d, "last-action") ?: "none",
        .last_action_ms_ago = qdict_get_try_int(d, "last-action-ms-ago", -1),
        .reason = qdict_get_try_str(d, "reason") ?: "?",
        .stale = qdict_get_try_bool(d, "stale", false),
        .local_qemu = qdict_get_try_str(d, "local-qemu") ?: "?",
        .qemu_pid = qdict_get_try_int(d, "qemu-pid", -1),
        .peer_qemu = qdict_get_try_str(d, "peer-qemu") ?: "?",
        .peer_mode = qdict_get_try_str(d, "peer-mode") ?: "?",
        .heartbeat_auth = qdict_get_try_str(d, "heartbeat-auth") ?: "?",
        .warning = qdict_get_try_str(d, "warning"),
        .interval_ms = qdict_get_try_int(d, "interval-ms", -1),
        .timeout_ms = qdict_get_try_int(d, "timeout-ms", -1),
    };
#define GET(key, field) st->field = qdict_get_try_int(d, key, 0);
    COUNTERS(GET)
#undef GET
}

QDict *colo_agent_status_read(const char *path, int timeout_ms,
                              Error **errp)
{
    g_autoptr(GString) in = g_string_new(NULL);
    int64_t deadline = g_get_monotonic_time() + timeout_ms * 1000LL;
    Error *err = NULL;
    QObject *obj;
    QDict *d;
    int fd = unix_connect(path, errp);

    if (fd < 0) {
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
    obj = qobject_from_json(in->str, &err);
    d = qobject_to(QDict, obj);
    if (!d) {
        qobject_unref(obj);
        error_free(err);
        error_setg(errp, "%s: no JSON object in the status line", path);
    }
    return d;
}
