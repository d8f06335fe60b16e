/*
 * The HeartBeat agent's status line: written by qemu-colo-agent on its
 * status socket (agent-socket), read by qemu-colo-ctl status
 *
 * Copyright (c) 2026 The qemu-colo authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * One JSON object, one line, then the agent closes the connection.  The
 * keys are documented in docs/system/qemu-colo-heartbeat.rst ("The status
 * socket"); this struct and its two conversions are the only place that
 * names them.
 */

#ifndef TOOLS_COLO_AGENT_STATUS_H
#define TOOLS_COLO_AGENT_STATUS_H

#include "qobject/qdict.h"

typedef struct ColoAgentStatus {
    const char *node;
    const char *role;           /* primary, secondary, alone, stale ... */
    const char *peer;
    const char *peer_state;     /* alive, silent, gone */
    int64_t last_heartbeat_ms;  /* -1 before the first */
    const char *quorum;         /* quorate, inquorate, none */
    const char *last_action;    /* "none" or what was done and how */
    int64_t last_action_ms_ago; /* -1 without one */
    const char *reason;         /* the current assessment */
    bool stale;
    const char *local_qemu;     /* health of the local QEMU */
    int64_t qemu_pid;
    const char *peer_qemu;
    const char *peer_mode;
    int64_t heartbeats_sent, heartbeats_received;
    /* datagrams ignored, by reason (see "Authentication and replays") */
    int64_t bad_datagrams, forged_datagrams, corrupt_datagrams;
    int64_t replayed_datagrams, stale_datagrams;
    const char *heartbeat_auth; /* hmac-sha256 or none */
    const char *warning;        /* NULL: none */
    int64_t bytes_sent, bytes_received;
    int64_t interval_ms, timeout_ms;
} ColoAgentStatus;

/* The status line's object. */
QDict *colo_agent_status_to_qdict(const ColoAgentStatus *st);

/*
 * @st from a status line's object; the strings point into @d (missing
 * strings are "?", missing numbers -1, except the counters: 0).
 */
void colo_agent_status_from_qdict(QDict *d, ColoAgentStatus *st);

/* Read the status line of the agent listening on @path (NULL: none). */
QDict *colo_agent_status_read(const char *path, int timeout_ms,
                              Error **errp);

#endif /* TOOLS_COLO_AGENT_STATUS_H */
