/*
 * COLO watchdog (see colo-watchdog.h)
 *
 * Copyright (c) 2026 The qemu-colo authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * Locking: @lock protects every field but @expired, @progress and @opaque,
 * which are set once by colo_watchdog_new().
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
    int64_t timeout_ms;         /* allowed time without progress */
    uint64_t progress_seen;     /* @progress at the last sample */
    const char *what;
    bool quit;
    ColoWatchdogExpired *expired;
    ColoWatchdogProgress *progress;
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
            /* Wake early enough to notice progress (see the header). */
            if (wd->progress) {
                left = MIN(left, MAX(wd->timeout_ms / 4, 1));
            }
            qemu_cond_timedwait(&wd->changed, &wd->lock, MIN(left, INT_MAX));
            if (wd->progress && wd->deadline_ms) {
                uint64_t seen = wd->progress(wd->opaque);

                if (seen != wd->progress_seen) {
                    wd->progress_seen = seen;
                    wd->deadline_ms = now_ms() + wd->timeout_ms;
                }
            }
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

ColoWatchdog *colo_watchdog_new(ColoWatchdogExpired *expired,
                                ColoWatchdogProgress *progress, void *opaque)
{
    ColoWatchdog *wd = g_new0(ColoWatchdog, 1);

    wd->expired = expired;
    wd->progress = progress;
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
    wd->timeout_ms = MAX(timeout_ms, 1);
    wd->progress_seen = wd->progress ? wd->progress(wd->opaque) : 0;
    wd->deadline_ms = now_ms() + wd->timeout_ms;
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
