/*
 * COLO: test-only fault injection points (see colo-fault.h)
 *
 * Copyright (c) 2026 The qemu-colo authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * Threads: colo_fault_reached() runs on the COLO thread of this side (the
 * migration thread on the primary, colo-incoming on the secondary), one at
 * a time, so fault_fd and the wanted set need no lock; the set is read from
 * the environment once, before any COLO thread runs.
 */

#include "qemu/osdep.h"
#include "qemu/error-report.h"
#include "qemu/main-loop.h"
#include "qemu/sockets.h"
#include "qemu/module.h"
#include "migration/colo.h"
#include "colo-session.h"
#include "colo-fault.h"
#include "trace.h"

bool colo_fault_enabled;

static const char *const colo_fault_names[COLO_FAULT__MAX] = {
    [COLO_FAULT_AFTER_STOP] = "after-stop",
    [COLO_FAULT_AFTER_COMPARES_TOLD] = "after-compares-told",
    [COLO_FAULT_AFTER_DEVICE_STATE] = "after-device-state",
    [COLO_FAULT_BEFORE_RECEIVED] = "before-received",
    [COLO_FAULT_BEFORE_LOADED] = "before-loaded",
    [COLO_FAULT_AFTER_LIVE_RAM] = "after-live-ram",
    [COLO_FAULT_AFTER_RECEIVED] = "after-received",
};

static char *fault_socket_path;
static unsigned fault_wanted;      /* bit (1 << ColoFaultPoint) */
static int fault_fd = -1;

static void colo_fault_init(void)
{
    const char *path = getenv("QEMU_COLO_FAULT_SOCKET");
    const char *points = getenv("QEMU_COLO_FAULT_POINTS");

    if (!path || !*path) {
        return;
    }
    if (!points || !*points || !strcmp(points, "all")) {
        fault_wanted = (1u << COLO_FAULT__MAX) - 1;
    } else {
        g_auto(GStrv) names = g_strsplit(points, ",", -1);

        for (int i = 0; names[i]; i++) {
            int p;

            for (p = 0; p < COLO_FAULT__MAX; p++) {
                if (!strcmp(names[i], colo_fault_names[p])) {
                    break;
                }
            }
            if (p == COLO_FAULT__MAX) {
                /* Too early for error_report(): no monitor yet. */
                fprintf(stderr, "QEMU_COLO_FAULT_POINTS: unknown point "
                        "'%s'\n", names[i]);
                exit(1);
            }
            fault_wanted |= 1u << p;
        }
    }
    fault_socket_path = g_strdup(path);
    colo_fault_enabled = true;
}
migration_init(colo_fault_init);

static void colo_fault_off(void)
{
    if (fault_fd >= 0) {
        close(fault_fd);
        fault_fd = -1;
    }
    colo_fault_enabled = false;
}

void colo_fault_reached(ColoFaultPoint point, uint32_t seq)
{
    g_autofree char *line = NULL;
    bool had_bql = bql_locked();
    char go;
    ssize_t n;

    if (!(fault_wanted & (1u << point))) {
        return;
    }
    if (fault_fd < 0) {
        warn_report("COLO fault injection is on (QEMU_COLO_FAULT_SOCKET=%s): "
                    "for tests only", fault_socket_path);
        fault_fd = unix_connect(fault_socket_path, NULL);
        if (fault_fd < 0) {
            error_report("COLO fault injection: cannot connect to %s; "
                         "points off", fault_socket_path);
            colo_fault_off();
            return;
        }
    }
    line = g_strdup_printf("%s %s %" PRIu32 "\n",
                           COLOMode_str(get_colo_mode()),
                           colo_fault_names[point], seq);
    trace_colo_fault_point(colo_fault_names[point], seq);
    if (had_bql) {
        bql_unlock();
    }
    if (qemu_write_full(fault_fd, line, strlen(line)) != strlen(line)) {
        colo_fault_off();
    } else {
        do {
            n = read(fault_fd, &go, 1);
        } while (n < 0 && errno == EINTR);
        if (n != 1) {
            colo_fault_off();
        }
    }
    if (had_bql) {
        bql_lock();
    }
}
