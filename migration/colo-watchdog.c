/*
 * COLO watchdog (see colo-watchdog.h)
 *
 * Copyright (c) 2026 The qemu-colo authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * Locking: @lock protects @deadline_ms, @what and @quit.
 */

#include "qemu/osdep.h"
#include "qemu/thread.h"
#include "qemu/timer.h"
#include "colo-watchdog.h"

struct ColoWatchdog {
    QemuThread thread;
    QemuMutex lock;
    QemuCond changed;
    int64_t deadline_ms;        /* 0: disarmed */
    const char *what;
    bool quit;
    ColoWatchdogExpired *expired;
    void *opaque;
};

static int64_t now_ms(void)
{
    return qemu_clock_get_ms(QEMU_CLOCK_REALTIME);
}

static void *colo_watchdog_thread(void *opaque)
{
    ColoWatchdog *wd = opaque;

    qemu_mutex_lock(&wd->lock);
    while (!wd->quit) {
        int64_t left;

        if (!wd->deadline_ms) {
            qemu_cond_wait(&wd->changed, &wd->lock);
            continue;
        }
        left = wd->deadline_ms - now_ms();
        if (left > 0) {
            qemu_cond_timedwait(&wd->changed, &wd->lock, MIN(left, INT_MAX));
            continue;
        }
        /* Expired: fire once, outside the lock (the callback may block). */
        {
            const char *what = wd->what;

            wd->deadline_ms = 0;
            qemu_mutex_unlock(&wd->lock);
            wd->expired(wd->opaque, what);
            qemu_mutex_lock(&wd->lock);
        }
    }
    qemu_mutex_unlock(&wd->lock);
    return NULL;
}

ColoWatchdog *colo_watchdog_new(ColoWatchdogExpired *expired, void *opaque)
{
    ColoWatchdog *wd = g_new0(ColoWatchdog, 1);

    wd->expired = expired;
    wd->opaque = opaque;
    qemu_mutex_init(&wd->lock);
    qemu_cond_init(&wd->changed);
    qemu_thread_create(&wd->thread, "colo-watchdog", colo_watchdog_thread,
                       wd, QEMU_THREAD_JOINABLE);
    return wd;
}

void colo_watchdog_arm(ColoWatchdog *wd, const char *what, int64_t timeout_ms)
{
    qemu_mutex_lock(&wd->lock);
    wd->what = what;
    wd->deadline_ms = now_ms() + MAX(timeout_ms, 1);
    qemu_cond_signal(&wd->changed);
    qemu_mutex_unlock(&wd->lock);
}

void colo_watchdog_disarm(ColoWatchdog *wd)
{
    qemu_mutex_lock(&wd->lock);
    wd->deadline_ms = 0;
    qemu_cond_signal(&wd->changed);
    qemu_mutex_unlock(&wd->lock);
}

void colo_watchdog_free(ColoWatchdog *wd)
{
    if (!wd) {
        return;
    }
    qemu_mutex_lock(&wd->lock);
    wd->quit = true;
    qemu_cond_signal(&wd->changed);
    qemu_mutex_unlock(&wd->lock);
    qemu_thread_join(&wd->thread);
    qemu_cond_destroy(&wd->changed);
    qemu_mutex_destroy(&wd->lock);
    g_free(wd);
}
