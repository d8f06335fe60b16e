/*
 * A node's QEMU process for qemu-colo-ctl: its command line (the
 * documented one, for the role it starts in), start and stop
 *
 * Copyright (c) 2026 The qemu-colo authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * Prints one line per node started or stopped (qemu-colo-ctl only).
 */

#ifndef TOOLS_COLO_NODE_H
#define TOOLS_COLO_NODE_H

#include "colo-config.h"

const char *colo_role_name(ColoRole role);

/* WORKDIR/@name of node @n. */
char *colo_node_file(const ColoNodeConfig *n, const char *name);

/*
 * Start @n's QEMU in @role (-daemonize): its disk created if missing, a
 * secondary's overlays made anew.  Refused if a QEMU answers on its QMP.
 */
bool colo_node_start(const ColoConfig *cfg, const ColoNodeConfig *n,
                     ColoRole role, Error **errp);

/* The pid of @n's QEMU from its pid file, 0 if none runs. */
pid_t colo_node_pid(const ColoNodeConfig *n);

/* quit over QMP; SIGTERM, then SIGKILL through the pid file otherwise. */
bool colo_node_stop(const ColoNodeConfig *n, Error **errp);

#endif /* TOOLS_COLO_NODE_H */
