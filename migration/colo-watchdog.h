/*
 * COLO watchdog: bounds every wait on the peer during a checkpoint
 *
 * Copyright (c) 2026 The qemu-colo authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * The COLO threads block on sockets (sometimes holding the big QEMU lock, as
 * saving RAM requires).  A peer that stops answering must not hang them, and
 * a timer of the main loop cannot help while the big lock is held.  So the
 * watchdog is a thread of its own that needs no lock of QEMU's: the COLO
 * thread arms it before each wait and disarms it after; if the wait makes
 * no progress for the armed time, @expired runs on the watchdog thread (it
 * shuts the COLO channels down, which makes the blocked call fail).
 *
 * Slow is not dead: the bound is on time without progress, not on the
 * whole wait.  @progress (may be NULL: then the bound is on the whole wait)
 * returns a counter that grows while data moves, e.g. bytes sent or pages
 * received; the watchdog samples it four times per timeout, so it fires
 * between 1 and 1.25 timeouts after the last progress.
 *
 * Locking: all functions are thread-safe; @expired runs without the
 * watchdog's lock held and never concurrently with itself; @progress runs
 * on the watchdog thread with the watchdog's lock held and must not block.
 */

#ifndef MIGRATION_COLO_WATCHDOG_H
#define MIGRATION_COLO_WATCHDOG_H

typedef struct ColoWatchdog ColoWatchdog;
typedef void ColoWatchdogExpired(void *opaque, const char *what);
typedef uint64_t ColoWatchdogProgress(void *opaque);

ColoWatchdog *colo_watchdog_new(ColoWatchdogExpired *expired,
                                ColoWatchdogProgress *progress, void *opaque);
/*
 * (Re)arm: @expired(opaque, what) runs if not disarmed before @timeout_ms
 * pass without progress.
 */
void colo_watchdog_arm(ColoWatchdog *wd, const char *what, int64_t timeout_ms);
void colo_watchdog_disarm(ColoWatchdog *wd);
/* Stop the thread and free; a pending deadline is dropped. */
void colo_watchdog_free(ColoWatchdog *wd);

#endif /* MIGRATION_COLO_WATCHDOG_H */
