/*
 * A small synchronous QMP client for the COLO tools (see qmp-client.h)
 *
 * Copyright (c) 2026 The qemu-colo authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include <poll.h>
#include "qapi/error.h"
#include "qobject/qjson.h"
#include "qobject/qstring.h"
#include "qemu/timer.h"
#include "qemu/sockets.h"
#include "qmp-client.h"

/* A QMP message larger than this is refused as garbage. */
#define QMP_MAX_MESSAGE  (16 * 1024 * 1024)

struct QmpClient {
    int fd;
    GString *inbuf;         /* bytes read, not yet parsed */
    GQueue events;          /* QDict * */
};

static int64_t deadline_after(int timeout_ms)
{
    return qemu_clock_get_ms(QEMU_CLOCK_REALTIME) + timeout_ms;
}

/*
 * Read one newline-terminated JSON object before @deadline into *@msg.
 * Returns 0, or a negative errno as qmp_client_wait_event() does.
 */
static int qmp_client_read(QmpClient *c, int64_t deadline, QDict **msg,
                           Error **errp)
{
    *msg = NULL;
    for (;;) {
        char *nl = memchr(c->inbuf->str, '\n', c->inbuf->len);
        struct pollfd pfd = { .fd = c->fd, .events = POLLIN };
        char buf[65536];
        int64_t left;
        ssize_t n;

        if (nl) {
            size_t len = nl - c->inbuf->str + 1;
            g_autofree char *line = g_strndup(c->inbuf->str, len);
            QObject *obj;

            g_string_erase(c->inbuf, 0, len);
            if (!*g_strstrip(line)) {
                continue;
            }
            obj = qobject_from_json(line, errp);
            if (!obj) {
                return -EIO;
            }
            *msg = qobject_to(QDict, obj);
            if (!*msg) {
                qobject_unref(obj);
                error_setg(errp, "QMP: expected a JSON object");
                return -EIO;
            }
            return 0;
        }
        if (c->inbuf->len > QMP_MAX_MESSAGE) {
            error_setg(errp, "QMP: message too long");
            return -EIO;
        }
        left = deadline - qemu_clock_get_ms(QEMU_CLOCK_REALTIME);
        if (left <= 0) {
            error_setg(errp, "QMP: no answer in time");
            return -ETIMEDOUT;
        }
        n = poll(&pfd, 1, MIN(left, INT_MAX));
        if (n < 0 && errno != EINTR) {
            error_setg_errno(errp, errno, "QMP: poll failed");
            return -EIO;
        }
        if (n <= 0) {
            continue;
        }
        n = read(c->fd, buf, sizeof(buf));
        if (n == 0) {
            error_setg(errp, "QMP: the monitor closed the connection");
            return -EPIPE;
        }
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN) {
                continue;
            }
            error_setg_errno(errp, errno, "QMP: read failed");
            return -EIO;
        }
        g_string_append_len(c->inbuf, buf, n);
    }
}

static bool qmp_client_send(QmpClient *c, QDict *msg, Error **errp)
{
    g_autoptr(GString) json = qobject_to_json(QOBJECT(msg));
    size_t done = 0;

    g_string_append_c(json, '\n');
    while (done < json->len) {
        /* A dead QEMU must give an error, not SIGPIPE. */
        ssize_t n = send(c->fd, json->str + done, json->len - done,
                         MSG_NOSIGNAL);

        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            error_setg_errno(errp, errno, "QMP: write failed");
            return false;
        }
        done += n;
    }
    return true;
}

QObject *qmp_client_cmd(QmpClient *c, const char *command, QDict *args,
                        int timeout_ms, Error **errp)
{
    int64_t deadline = deadline_after(timeout_ms);
    g_autoptr(QDict) msg = qdict_new();

    qdict_put_str(msg, "execute", command);
    if (args) {
        qdict_put(msg, "arguments", qobject_ref(args));
    }
    if (!qmp_client_send(c, msg, errp)) {
        return NULL;
    }
    for (;;) {
        g_autoptr(QDict) reply = NULL;
        QDict *error;

        if (qmp_client_read(c, deadline, &reply, errp) < 0) {
            error_prepend(errp, "%s: ", command);
            return NULL;
        }
        if (qdict_haskey(reply, "event")) {
            g_queue_push_tail(&c->events, g_steal_pointer(&reply));
            continue;
        }
        error = qdict_get_qdict(reply, "error");
        if (error) {
            error_setg(errp, "%s: %s", command,
                       qdict_get_try_str(error, "desc") ?: "error");
            return NULL;
        }
        if (qdict_haskey(reply, "return")) {
            return qobject_ref(qdict_get(reply, "return"));
        }
        /* Anything else (a stray greeting) is not ours: skip it. */
    }
}

/* qmp_client_cmd() whose reply must be of @type (@what, for the error). */
static QObject *cmd_of_type(QmpClient *c, const char *command, QDict *args,
                            int timeout_ms, QType type, const char *what,
                            Error **errp)
{
    QObject *ret = qmp_client_cmd(c, command, args, timeout_ms, errp);

    if (ret && qobject_type(ret) != type) {
        qobject_unref(ret);
        error_setg(errp, "%s: expected %s in the reply", command, what);
        return NULL;
    }
    return ret;
}

QDict *qmp_client_cmd_dict(QmpClient *c, const char *command, QDict *args,
                           int timeout_ms, Error **errp)
{
    return qobject_to(QDict, cmd_of_type(c, command, args, timeout_ms,
                                         QTYPE_QDICT, "an object", errp));
}

QList *qmp_client_cmd_list(QmpClient *c, const char *command, QDict *args,
                           int timeout_ms, Error **errp)
{
    return qobject_to(QList, cmd_of_type(c, command, args, timeout_ms,
                                         QTYPE_QLIST, "a list", errp));
}

bool qmp_client_run(QmpClient *c, const char *command, QDict *args,
                    Error **errp)
{
    QObject *ret = qmp_client_cmd(c, command, args, QMP_CLIENT_TIMEOUT_MS,
                                  errp);

    qobject_unref(ret);
    return ret != NULL;
}

bool qmp_client_run_str(QmpClient *c, const char *command, const char *key,
                        const char *value, Error **errp)
{
    g_autoptr(QDict) args = qdict_new();

    qdict_put_str(args, key, value);
    return qmp_client_run(c, command, args, errp);
}

char *qmp_client_query_str(QmpClient *c, const char *command,
                           const char *key, Error **errp)
{
    g_autoptr(QDict) d = qmp_client_cmd_dict(c, command, NULL,
                                             QMP_CLIENT_TIMEOUT_MS, errp);

    if (!d) {
        return NULL;
    }
    return g_strdup(qdict_get_try_str(d, key) ?: "none");
}

GStrv qmp_list_values(QList *list, const char *key)
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

bool qmp_list_has(QList *list, const char *key, const char *value)
{
    QListEntry *e;

    QLIST_FOREACH_ENTRY(list, e) {
        QDict *d = qobject_to(QDict, qlist_entry_obj(e));

        if (d && g_strcmp0(qdict_get_try_str(d, key), value) == 0) {
            return true;
        }
    }
    return false;
}

int qmp_client_wait_event(QmpClient *c, const char *name, int timeout_ms,
                          QDict **event, Error **errp)
{
    int64_t deadline = deadline_after(timeout_ms);

    for (;;) {
        QDict *ev = g_queue_pop_head(&c->events);

        if (!ev) {
            int ret = qmp_client_read(c, deadline, &ev, errp);

            if (ret < 0) {
                error_prepend(errp, "waiting for event %s: ",
                              name ? name : "(any)");
                *event = NULL;
                return ret;
            }
            if (!qdict_haskey(ev, "event")) {
                qobject_unref(ev);     /* a late reply: nobody waits for it */
                continue;
            }
        }
        if (!name || g_str_equal(qdict_get_try_str(ev, "event") ?: "", name)) {
            *event = ev;
            return 0;
        }
        qobject_unref(ev);
    }
}

QmpClient *qmp_client_connect(const char *path, int timeout_ms, Error **errp)
{
    QmpClient *c;
    g_autoptr(QDict) greeting = NULL;
    int64_t deadline = deadline_after(timeout_ms);
    Error *err = NULL;
    QObject *ret;
    int fd = unix_connect(path, &err);

    if (fd < 0) {
        error_propagate_prepend(errp, err, "cannot connect to QMP socket %s: ",
                                path);
        return NULL;
    }
    c = g_new0(QmpClient, 1);
    c->fd = fd;
    c->inbuf = g_string_new(NULL);
    g_queue_init(&c->events);
    /*
     * An event raised while we connect may come before the greeting: QEMU
     * sends events to a monitor's client unless it negotiates capabilities,
     * and the monitor enters negotiation only once it has seen us (the
     * previous client left it in command mode, or none came yet).  Keep
     * such events as events.
     */
    for (;;) {
        if (qmp_client_read(c, deadline, &greeting, errp) < 0) {
            qmp_client_free(c);
            return NULL;
        }
        if (!qdict_haskey(greeting, "event")) {
            break;
        }
        g_queue_push_tail(&c->events, g_steal_pointer(&greeting));
    }
    if (!qdict_haskey(greeting, "QMP")) {
        error_setg(errp, "%s does not speak QMP", path);
        qmp_client_free(c);
        return NULL;
    }
    ret = qmp_client_cmd(c, "qmp_capabilities", NULL, timeout_ms, errp);
    if (!ret) {
        qmp_client_free(c);
        return NULL;
    }
    qobject_unref(ret);
    return c;
}

void qmp_client_free(QmpClient *c)
{
    QDict *ev;

    if (!c) {
        return;
    }
    if (c->fd >= 0) {
        close(c->fd);
    }
    while ((ev = g_queue_pop_head(&c->events))) {
        qobject_unref(ev);
    }
    g_string_free(c->inbuf, true);
    g_free(c);
}
