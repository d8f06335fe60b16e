/*
 * qemu-colo-agent's monitor thread: the local QEMU over its own QMP
 * socket (agent-qmp)
 *
 * Copyright (c) 2026 The qemu-colo authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * The thread owns the QMP client, whose calls block (a checkpoint can
 * hold QEMU's monitor for seconds), so a slow QEMU never delays a
 * heartbeat.  It hands what it sees to the agent's callback in the main
 * loop's context (g_main_context_invoke()); the main thread asks it to
 * take over through colo_monitor_request().
 */

#ifndef TOOLS_COLO_AGENT_MONITOR_H
#define TOOLS_COLO_AGENT_MONITOR_H

#include "colo-config.h"
#include "colo-heartbeat.h"

typedef enum ColoMonKind {
    COLO_MON_CONNECTED,         /* @pid: the QEMU behind the socket */
    COLO_MON_DISCONNECTED,      /* @text: why */
    COLO_MON_MODE,              /* @mode, @link_lost */
    COLO_MON_EVENT,             /* @name, @text: its data as JSON */
    COLO_MON_ACTION_DONE,       /* @action, @ok, @text: what or why not */
    COLO_MON_NOTE,              /* @text: a line for the log */
} ColoMonKind;

typedef struct ColoMonMsg {
    ColoMonKind kind;
    pid_t pid;
    ColoHbMode mode;
    /*
     * The secondary session failed (its link broke), also when the
     * COLO_LINK_LOST event was missed (an agent started later): "error"
     * while still a secondary (the guest waits for a decision), or after
     * leaving COLO without a failover request.
     */
    bool link_lost;
    ColoHbAction action;
    bool ok;
    char *name;
    char *text;
} ColoMonMsg;

/* Called in the main loop's context; @m is freed after it returns. */
typedef void ColoMonFn(const ColoMonMsg *m, void *opaque);

typedef struct ColoMonitor ColoMonitor;

/*
 * Watch the QEMU on @node's agent-qmp socket, retrying every
 * heartbeat-interval-ms while none answers; take over with @cfg.  The
 * thread runs until the process exits.
 */
ColoMonitor *colo_monitor_start(const ColoConfig *cfg,
                                const ColoNodeConfig *node, ColoMonFn *fn,
                                void *opaque);

/* Ask the thread to do @action; it answers with COLO_MON_ACTION_DONE. */
void colo_monitor_request(ColoMonitor *m, ColoHbAction action);

#endif /* TOOLS_COLO_AGENT_MONITOR_H */
