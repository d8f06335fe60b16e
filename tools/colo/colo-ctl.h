/*
 * qemu-colo-ctl's parts: the commands (colo-ctl.c) and status
 * (colo-ctl-status.c)
 *
 * Copyright (c) 2026 The qemu-colo authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef TOOLS_COLO_CTL_H
#define TOOLS_COLO_CTL_H

#include "colo-config.h"

/* "[####....]  47% 483/1024 MiB" into @buf. */
void colo_progress_bar(char *buf, size_t size, int64_t done, int64_t total);

/* status MONITOR...: one line per QMP socket; 1 if one does not answer. */
int colo_ctl_status_monitors(int argc, char **argv);

/*
 * status CONFIG: both nodes (or @only) with their agents, as lines or as
 * JSON (@json); 1 if a node's QEMU does not answer.
 */
int colo_ctl_status_config(const ColoConfig *cfg, const ColoNodeConfig *only,
                           bool json);

#endif /* TOOLS_COLO_CTL_H */
