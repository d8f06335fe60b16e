/*
 * A small synchronous QMP client for the COLO tools
 *
 * Copyright (c) 2026 The qemu-colo authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * One client per monitor socket, used from one thread.  Replies are matched
 * by order (QMP answers commands in order); events that arrive meanwhile
 * are queued for qmp_client_wait_event().  Every read has a deadline.
 */

#ifndef TOOLS_COLO_QMP_CLIENT_H
#define TOOLS_COLO_QMP_CLIENT_H

#include "qobject/qdict.h"
#include "qobject/qlist.h"

typedef struct QmpClient QmpClient;

/* How long one command may take unless a caller says otherwise. */
#define QMP_CLIENT_TIMEOUT_MS 10000

/* Connect to a QMP unix socket and leave capabilities negotiation mode. */
QmpClient *qmp_client_connect(const char *path, int timeout_ms, Error **errp);
void qmp_client_free(QmpClient *c);

/*
 * Run @command with @args (may be NULL; not consumed).  Returns the
 * "return" value as a QObject the caller owns, or NULL with @errp set to
 * the QMP error's description.
 */
QObject *qmp_client_cmd(QmpClient *c, const char *command, QDict *args,
                        int timeout_ms, Error **errp);
/* Like qmp_client_cmd() for commands that return an object. */
QDict *qmp_client_cmd_dict(QmpClient *c, const char *command, QDict *args,
                           int timeout_ms, Error **errp);

/* Like qmp_client_cmd() for commands that return a list. */
QList *qmp_client_cmd_list(QmpClient *c, const char *command, QDict *args,
                           int timeout_ms, Error **errp);

/* qmp_client_cmd() with QMP_CLIENT_TIMEOUT_MS, the reply dropped. */
bool qmp_client_run(QmpClient *c, const char *command, QDict *args,
                    Error **errp);
/* qmp_client_run() with one string argument @key = @value. */
bool qmp_client_run_str(QmpClient *c, const char *command, const char *key,
                        const char *value, Error **errp);
/*
 * The string @key of what @command (no arguments) returns, "none" if it
 * has none; NULL with @errp set on error.  The caller frees it.
 */
char *qmp_client_query_str(QmpClient *c, const char *command,
                           const char *key, Error **errp);

/* The string values of @key in a list of objects, NULL-terminated. */
GStrv qmp_list_values(QList *list, const char *key);
/* Whether an object of @list has @key equal to @value. */
bool qmp_list_has(QList *list, const char *key, const char *value);

/*
 * Wait for the first queued or new event named @name (NULL: any event).
 * Returns 0 with *@event set (the caller owns it), or a negative errno
 * with @errp set: -ETIMEDOUT when none came in @timeout_ms, -EPIPE when
 * the monitor closed the connection (QEMU ended), -EIO on anything else.
 */
int qmp_client_wait_event(QmpClient *c, const char *name, int timeout_ms,
                          QDict **event, Error **errp);

#endif /* TOOLS_COLO_QMP_CLIENT_H */
