/*
 * Unit tests of the COLO watchdog (migration/colo-watchdog.c)
 *
 * Copyright (c) 2026 The qemu-colo authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * Each test waits for an event (the expiry callback), with a generous bound;
 * "did not fire" is shown by a later, shorter deadline firing first.
 */

#include "qemu/osdep.h"
#include "qemu/thread.h"
#include "../../../migration/colo-watchdog.h"

typedef struct Expiries {
    QemuMutex lock;
    QemuCond fired;
    GPtrArray *what;
} Expiries;

static void on_expired(void *opaque, const char *what)
{
    Expiries *e = opaque;

    qemu_mutex_lock(&e->lock);
    g_ptr_array_add(e->what, (gpointer)what);
    qemu_cond_broadcast(&e->fired);
    qemu_mutex_unlock(&e->lock);
}

/* Wait (at most 30 s) until @n expiries were seen. */
static void wait_expiries(Expiries *e, guint n)
{
    qemu_mutex_lock(&e->lock);
    while (e->what->len < n) {
        g_assert_true(qemu_cond_timedwait(&e->fired, &e->lock, 30000) ||
                      e->what->len >= n);
    }
    qemu_mutex_unlock(&e->lock);
}

static Expiries *expiries_new(void)
{
    Expiries *e = g_new0(Expiries, 1);

    qemu_mutex_init(&e->lock);
    qemu_cond_init(&e->fired);
    e->what = g_ptr_array_new();
    return e;
}

static void test_fires_once(void)
{
    Expiries *e = expiries_new();
    ColoWatchdog *wd = colo_watchdog_new(on_expired, NULL, e);

    colo_watchdog_arm(wd, "reply", 20);
    wait_expiries(e, 1);
    g_assert_cmpstr(g_ptr_array_index(e->what, 0), ==, "reply");

    /* Once only: a second, later deadline is the next thing to fire. */
    colo_watchdog_arm(wd, "second", 20);
    wait_expiries(e, 2);
    g_assert_cmpuint(e->what->len, ==, 2);
    g_assert_cmpstr(g_ptr_array_index(e->what, 1), ==, "second");
    colo_watchdog_free(wd);
}

static void test_disarm_prevents_expiry(void)
{
    Expiries *e = expiries_new();
    ColoWatchdog *wd = colo_watchdog_new(on_expired, NULL, e);

    colo_watchdog_arm(wd, "disarmed", 50);
    colo_watchdog_disarm(wd);
    colo_watchdog_arm(wd, "later", 300);
    wait_expiries(e, 1);
    g_assert_cmpuint(e->what->len, ==, 1);
    g_assert_cmpstr(g_ptr_array_index(e->what, 0), ==, "later");
    colo_watchdog_free(wd);
}

static void test_rearm_moves_deadline(void)
{
    Expiries *e = expiries_new();
    ColoWatchdog *wd = colo_watchdog_new(on_expired, NULL, e);

    /* A long deadline replaced by a short one: the short one counts. */
    colo_watchdog_arm(wd, "long", 60000);
    colo_watchdog_arm(wd, "short", 10);
    wait_expiries(e, 1);
    g_assert_cmpstr(g_ptr_array_index(e->what, 0), ==, "short");
    colo_watchdog_free(wd);
}

static void test_free_while_armed(void)
{
    Expiries *e = expiries_new();
    ColoWatchdog *wd = colo_watchdog_new(on_expired, NULL, e);

    colo_watchdog_arm(wd, "never", 60000);
    colo_watchdog_free(wd);     /* must not wait for the deadline */
    g_assert_cmpuint(e->what->len, ==, 0);
}

/* Slow is not dead: a wait that keeps progressing outlives its timeout. */
typedef struct Progress {
    Expiries *e;
    uint64_t counter;
    bool done;              /* the bumper stopped: no progress from now on */
    bool done_at_expiry;
} Progress;

static uint64_t read_progress(void *opaque)
{
    Progress *p = opaque;

    return qatomic_read(&p->counter);
}

static void on_progress_expired(void *opaque, const char *what)
{
    Progress *p = opaque;

    p->done_at_expiry = qatomic_read(&p->done);
    on_expired(p->e, what);
}

static void *bump_progress(void *opaque)
{
    Progress *p = opaque;

    /* 1.2 s of progress, ten times longer than the timeout below. */
    for (int i = 0; i < 120; i++) {
        qatomic_inc(&p->counter);
        g_usleep(10 * 1000);
    }
    qatomic_set(&p->done, true);
    return NULL;
}

static void test_progress_extends(void)
{
    Progress p = { .e = expiries_new() };
    ColoWatchdog *wd = colo_watchdog_new(on_progress_expired, read_progress,
                                         &p);
    QemuThread bumper;

    colo_watchdog_arm(wd, "slow peer", 120);
    qemu_thread_create(&bumper, "bumper", bump_progress, &p,
                       QEMU_THREAD_JOINABLE);
    /* It fires, but only once progress stopped. */
    wait_expiries(p.e, 1);
    g_assert_true(p.done_at_expiry);
    qemu_thread_join(&bumper);
    colo_watchdog_free(wd);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/colo-watchdog/fires-once", test_fires_once);
    g_test_add_func("/colo-watchdog/disarm", test_disarm_prevents_expiry);
    g_test_add_func("/colo-watchdog/rearm", test_rearm_moves_deadline);
    g_test_add_func("/colo-watchdog/free-while-armed", test_free_while_armed);
    g_test_add_func("/colo-watchdog/progress-extends", test_progress_extends);
    return g_test_run();
}
