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

typedef struct QmpClient QmpClient;

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

/*
 * Return the first queued or new event named @name (NULL: any event), or
 * NULL with @errp set after @timeout_ms.  The caller owns the result.
 */
QDict *qmp_client_wait_event(QmpClient *c, const char *name, int timeout_ms,
                             Error **errp);

#endif /* TOOLS_COLO_QMP_CLIENT_H */
