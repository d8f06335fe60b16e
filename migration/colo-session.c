/*
 * COLO: the session, its phase and its requests
 *
 * Copyright (c) 2026 The qemu-colo authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * The one owner of the COLO session state (see colo-session.h for who calls
 * what from which thread).  Also the COLO entry points of upstream's
 * include/migration/colo.h that are about the session.
 *
 * A failover request marks the session, wakes the COLO thread and shuts the
 * COLO channels down, so a thread blocked on the peer returns at once.  The
 * COLO thread then leaves COLO at the next safe point: on the primary at
 * once (the guest runs on alone); on the secondary after finishing a
 * checkpoint it has fully received (so it never runs a half-applied one),
 * otherwise from its own current state, which is the last complete
 * checkpoint plus its own execution since.
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qapi/qapi-events-migration.h"
#include "qemu/error-report.h"
#include "qemu/main-loop.h"
#include "qemu/timer.h"
#include "system/runstate.h"
#include "system/cpus.h"
#include "migration/colo.h"
#include "io/channel.h"
#include "migration.h"
#include "qemu-file.h"
#include "colo-session.h"
#include "trace.h"

/*
 * Locking: lock is a leaf lock, never held across a blocking call or while
 * taking the BQL.  It protects the fields marked [L]: they are written
 * under it and read under it by other threads.  Fields marked [T] are
 * written only by the COLO thread, in colo_session_begin() before the
 * watchdog can fire, and read without the lock by that thread and by the
 * watchdog thread.  The COLO thread, the only writer of stats, reads its
 * own stats without the lock; other threads read them under it.  Fields
 * marked [B] are read and written with the BQL held.
 */
typedef struct ColoSession {
    QemuMutex lock;
    COLOMode mode;              /* [L] COLO_MODE_NONE when OFF */
    COLOMode last_mode;         /* [L] */
    COLOExitReason exit_reason; /* [L] of the last session, or NONE */
    ColoPhase phase;            /* [L] */
    bool failover_requested;    /* [L] by x-colo-lost-heartbeat or exit */
    bool quitting;              /* [L] QEMU is exiting: never restart */
    unsigned pending_triggers;  /* [L] bit (1 << ColoTrigger) */
    QEMUFile *from_peer;        /* [L] shut down to unblock the thread */
    QEMUFile *to_peer;          /* [L] */
    ColoStats stats;            /* [L] written by the COLO thread */
    QemuSemaphore wake;         /* wakes the COLO thread's waits */
    ColoWatchdog *watchdog;     /* [T] */
    uint32_t peer_timeout_ms;   /* [T] x-colo-peer-timeout */
    bool primary_waits;         /* [T] x-colo-primary-waits */
    /* [B] a checkpoint (or a lost peer) holds the guest stopped */
    bool holds_guest;
    /* [B] it runs when that ends: it ran, or the operator's cont since */
    bool run_after;
} ColoSession;

static ColoSession colo_session = {
    .mode = COLO_MODE_NONE,
    .last_mode = COLO_MODE_NONE,
    .exit_reason = COLO_EXIT_REASON_NONE,
};

static void colo_session_init(void)
{
    qemu_mutex_init(&colo_session.lock);
    qemu_sem_init(&colo_session.wake, 0);
}
migration_init(colo_session_init);

static const char *const colo_phase_names[COLO_PHASE__MAX] = {
    [COLO_PHASE_OFF] = "off",
    [COLO_PHASE_STARTING] = "starting",
    [COLO_PHASE_RUNNING] = "running",
    [COLO_PHASE_CHECKPOINT] = "checkpoint",
    [COLO_PHASE_LOST] = "lost",
    [COLO_PHASE_FAILOVER] = "failover",
};

/* The phases each phase may move to. */
#define PHASE(p) (1u << COLO_PHASE_##p)
static const unsigned colo_phase_next[COLO_PHASE__MAX] = {
    [COLO_PHASE_OFF] = PHASE(STARTING),
    [COLO_PHASE_STARTING] = PHASE(RUNNING) | PHASE(LOST) | PHASE(FAILOVER),
    [COLO_PHASE_RUNNING] = PHASE(CHECKPOINT) | PHASE(LOST) | PHASE(FAILOVER),
    [COLO_PHASE_CHECKPOINT] = PHASE(RUNNING) | PHASE(LOST) | PHASE(FAILOVER),
    [COLO_PHASE_LOST] = PHASE(FAILOVER),
    [COLO_PHASE_FAILOVER] = PHASE(OFF),
};
#undef PHASE

static const char *const colo_trigger_names[COLO_TRIGGER__MAX] = {
    [COLO_TRIGGER_PERIODIC] = "periodic",
    [COLO_TRIGGER_MISMATCH] = "mismatch",
    [COLO_TRIGGER_TIMEOUT] = "timeout",
    [COLO_TRIGGER_FORCED] = "forced",
};

const char *colo_trigger_name(ColoTrigger trigger)
{
    return trigger < COLO_TRIGGER__MAX ? colo_trigger_names[trigger] : "?";
}

void colo_set_phase(ColoPhase phase)
{
    ColoPhase from;

    qemu_mutex_lock(&colo_session.lock);
    from = colo_session.phase;
    trace_colo_phase(COLOMode_str(colo_session.mode),
                     colo_phase_names[from], colo_phase_names[phase]);
    /* The trace above names a refused transition. */
    assert(colo_phase_next[from] & (1u << phase));
    colo_session.phase = phase;
    qemu_mutex_unlock(&colo_session.lock);
}

/* Watchdog thread. */
static void colo_watchdog_expired(void *opaque, const char *what)
{
    error_report("COLO: no progress from the peer for %" PRIu32 " ms (%s); "
                 "failing over", colo_session.peer_timeout_ms, what);
    trace_colo_watchdog_expired(what);
    colo_shutdown_channels();
}

static uint32_t colo_peer_timeout_setting(void)
{
    uint32_t ms = migrate_get_current()->colo_peer_timeout_ms;

    if (ms < COLO_PEER_TIMEOUT_MIN_MS) {
        warn_report("COLO: x-colo-peer-timeout=%" PRIu32 " is below the "
                    "minimum; using %d ms", ms, COLO_PEER_TIMEOUT_MIN_MS);
        ms = COLO_PEER_TIMEOUT_MIN_MS;
    }
    return ms;
}

void colo_session_begin(COLOMode mode, QEMUFile *from_peer, QEMUFile *to_peer,
                        ColoWatchdogProgress *progress)
{
    ColoWatchdog *watchdog = colo_watchdog_new(colo_watchdog_expired,
                                               progress, NULL);
    uint32_t peer_timeout_ms = colo_peer_timeout_setting();

    /*
     * Every checkpoint ends in small writes that the peer answers (the
     * input marks after the device state; RECEIVED).  With Nagle's
     * algorithm such a write waits while earlier data is unacknowledged,
     * and the peer delays its ACK (40 ms on Linux): the guest stayed
     * stopped that long on about half the checkpoints.  QEMUFile already
     * gathers what we write into large writes, so send each at once.
     * Both directions share the one channel; a no-op off TCP.
     */
    qio_channel_set_delay(qemu_file_get_ioc(to_peer), false);

    qemu_mutex_lock(&colo_session.lock);
    colo_session.mode = mode;
    colo_session.exit_reason = COLO_EXIT_REASON_NONE;
    colo_session.failover_requested = false;
    colo_session.pending_triggers = 0;
    colo_session.from_peer = from_peer;
    colo_session.to_peer = to_peer;
    colo_session.watchdog = watchdog;
    colo_session.peer_timeout_ms = peer_timeout_ms;
    colo_session.primary_waits = migrate_get_current()->colo_primary_waits;
    memset(&colo_session.stats, 0, sizeof(colo_session.stats));
    qemu_mutex_unlock(&colo_session.lock);
    colo_set_phase(COLO_PHASE_STARTING);
}

void colo_session_end(Error *err)
{
    COLOMode mode;
    COLOExitReason reason;
    ColoWatchdog *watchdog;

    qemu_mutex_lock(&colo_session.lock);
    mode = colo_session.mode;
    /* A requested failover breaks the channel on purpose: not an error. */
    reason = colo_session.failover_requested ? COLO_EXIT_REASON_REQUEST
                                             : COLO_EXIT_REASON_ERROR;
    colo_session.last_mode = mode;
    colo_session.mode = COLO_MODE_NONE;
    colo_session.exit_reason = reason;
    colo_session.from_peer = NULL;
    colo_session.to_peer = NULL;
    watchdog = colo_session.watchdog;
    colo_session.watchdog = NULL;
    qemu_mutex_unlock(&colo_session.lock);

    colo_watchdog_free(watchdog);
    colo_set_phase(COLO_PHASE_OFF);
    if (err && reason == COLO_EXIT_REASON_ERROR) {
        error_report("COLO %s: leaving COLO: %s", COLOMode_str(mode),
                     error_get_pretty(err));
    }
    trace_colo_session_end(COLOMode_str(mode), COLOExitReason_str(reason));
    qapi_event_send_colo_exit(mode, reason);
}

void colo_arm(const char *what)
{
    colo_watchdog_arm(colo_session.watchdog, what,
                      colo_session.peer_timeout_ms);
}

void colo_disarm(void)
{
    colo_watchdog_disarm(colo_session.watchdog);
}

void colo_stats_checkpoint(ColoTrigger trigger, int64_t pause_us,
                           uint64_t ram_bytes, uint64_t device_state_bytes)
{
    ColoStats *st = &colo_session.stats;

    qemu_mutex_lock(&colo_session.lock);
    st->checkpoints++;
    st->by_trigger[trigger]++;
    st->last_pause_us = pause_us;
    st->max_pause_us = MAX(st->max_pause_us, pause_us);
    st->ram_bytes += ram_bytes;
    st->device_state_bytes += device_state_bytes;
    qemu_mutex_unlock(&colo_session.lock);
    trace_colo_checkpoint_done(st->checkpoints, colo_trigger_name(trigger),
                               pause_us, ram_bytes, device_state_bytes);
}

static const char *const colo_step_names[COLO_STEP__MAX] = {
    [COLO_STEP_REQUEST] = "request",
    [COLO_STEP_LIVE] = "live",
    [COLO_STEP_STOP] = "stop",
    [COLO_STEP_DISKS] = "disks",
    [COLO_STEP_RAM] = "ram",
    [COLO_STEP_DEVICE] = "device",
    [COLO_STEP_SEND] = "send",
    [COLO_STEP_RECEIVED] = "received",
    [COLO_STEP_RESUME] = "resume",
};

const char *colo_step_name(ColoStep step)
{
    return step < COLO_STEP__MAX ? colo_step_names[step] : "?";
}

void colo_stats_steps(const ColoCheckpointTimes *t)
{
    ColoStats *st = &colo_session.stats;
    ColoCheckpointTimes *max = &st->max_steps;

    qemu_mutex_lock(&colo_session.lock);
    st->has_steps = true;
    st->last_steps = *t;
    for (int i = 0; i < COLO_STEP__MAX; i++) {
        max->step_us[i] = MAX(max->step_us[i], t->step_us[i]);
    }
    max->live_rounds = MAX(max->live_rounds, t->live_rounds);
    max->live_bytes = MAX(max->live_bytes, t->live_bytes);
    max->residual_bytes = MAX(max->residual_bytes, t->residual_bytes);
    max->throttle_pct = MAX(max->throttle_pct, t->throttle_pct);
    qemu_mutex_unlock(&colo_session.lock);
}

uint64_t colo_session_checkpoints(void)
{
    return colo_session.stats.checkpoints;
}

bool colo_session_primary_waits(void)
{
    return colo_session.primary_waits;
}

bool colo_wait_trigger(int64_t periodic_ms, ColoTrigger *trigger)
{
    for (;;) {
        int64_t now = qemu_clock_get_ms(QEMU_CLOCK_REALTIME);
        unsigned pending;
        bool failover;

        qemu_mutex_lock(&colo_session.lock);
        failover = colo_session.failover_requested;
        pending = colo_session.pending_triggers;
        colo_session.pending_triggers = 0;
        qemu_mutex_unlock(&colo_session.lock);

        if (failover) {
            return false;
        }
        if (pending) {
            *trigger = ctz32(pending);
            return true;
        }
        if (now >= periodic_ms) {
            *trigger = COLO_TRIGGER_PERIODIC;
            return true;
        }
        qemu_sem_timedwait(&colo_session.wake,
                           MIN(periodic_ms - now, INT_MAX));
    }
}

void colo_wait_for_decision(void)
{
    colo_shutdown_channels();
    colo_set_phase(COLO_PHASE_LOST);
    bql_lock();
    colo_stop_guest();
    bql_unlock();
    while (!colo_failover_requested()) {
        qemu_sem_wait(&colo_session.wake);
    }
}

void colo_stop_guest(void)
{
    if (!colo_session.holds_guest) {
        colo_session.holds_guest = true;
        colo_session.run_after = runstate_is_running();
    }
    if (runstate_is_running()) {
        vm_stop(RUN_STATE_COLO);
    }
}

/*
 * A reset handled while COLO holds the guest stopped (a QMP system_reset,
 * or the guest rebooting itself) leaves the run state prelaunch, not colo:
 * main_loop_should_exit() sets it for any reset of a stopped VM.
 */
static bool colo_guest_may_start(bool held)
{
    return runstate_check(RUN_STATE_COLO) ||
           (held && runstate_check(RUN_STATE_PRELAUNCH));
}

void colo_resume_guest(bool run)
{
    bool held = colo_session.holds_guest;

    colo_session.holds_guest = false;
    if (run && !colo_quitting() && colo_guest_may_start(held)) {
        vm_start();
    }
}

void colo_release_guest(void)
{
    bool held = colo_session.holds_guest;
    bool run = held ? colo_session.run_after
                    : runstate_check(RUN_STATE_COLO);

    colo_session.holds_guest = false;
    if (colo_quitting()) {
        return;
    }
    if (run && (colo_guest_may_start(held) ||
                runstate_check(RUN_STATE_PAUSED))) {
        vm_start();
    } else if (!run && runstate_check(RUN_STATE_COLO)) {
        /* the operator stopped it meanwhile: a paused VM, as asked */
        runstate_set(RUN_STATE_PAUSED);
    }
}

bool colo_guest_run_request(bool run, Error **errp)
{
    if (!colo_session.holds_guest || get_colo_mode() == COLO_MODE_NONE) {
        return false;
    }
    if (get_colo_mode() == COLO_MODE_SECONDARY) {
        error_setg(errp, "COLO: the secondary's guest runs when the "
                   "primary's does; stop or continue the primary's");
        return true;
    }
    /*
     * Starting the guest now would let it run, and send output that
     * colo-compare releases with this checkpoint, before the secondary
     * has the checkpoint; stopping it now would not last (the checkpoint
     * runs it again).  Both take effect when the checkpoint ends.
     */
    colo_session.run_after = run;
    return true;
}

void colo_shutdown_channels(void)
{
    qemu_mutex_lock(&colo_session.lock);
    if (colo_session.from_peer) {
        qemu_file_shutdown(colo_session.from_peer);
    }
    if (colo_session.to_peer) {
        qemu_file_shutdown(colo_session.to_peer);
    }
    qemu_mutex_unlock(&colo_session.lock);
}

bool colo_failover_requested(void)
{
    bool requested;

    qemu_mutex_lock(&colo_session.lock);
    requested = colo_session.failover_requested;
    qemu_mutex_unlock(&colo_session.lock);
    return requested;
}

bool colo_quitting(void)
{
    bool quitting;

    qemu_mutex_lock(&colo_session.lock);
    quitting = colo_session.quitting;
    qemu_mutex_unlock(&colo_session.lock);
    return quitting;
}

bool colo_request_failover(Error **errp)
{
    qemu_mutex_lock(&colo_session.lock);
    if (colo_session.mode == COLO_MODE_NONE) {
        qemu_mutex_unlock(&colo_session.lock);
        error_setg(errp, "VM is not in COLO mode");
        return false;
    }
    if (colo_session.failover_requested) {
        qemu_mutex_unlock(&colo_session.lock);
        error_setg(errp, "COLO failover is already activated");
        return false;
    }
    colo_session.failover_requested = true;
    trace_colo_failover_requested(COLOMode_str(colo_session.mode));
    qemu_mutex_unlock(&colo_session.lock);

    colo_shutdown_channels();
    qemu_sem_post(&colo_session.wake);
    return true;
}

void colo_request_checkpoint(ColoTrigger trigger)
{
    bool wake = false;

    qemu_mutex_lock(&colo_session.lock);
    if (colo_session.mode == COLO_MODE_PRIMARY) {
        colo_session.pending_triggers |= 1u << trigger;
        wake = true;
    }
    qemu_mutex_unlock(&colo_session.lock);
    if (wake) {
        trace_colo_checkpoint_requested(colo_trigger_name(trigger));
        qemu_sem_post(&colo_session.wake);
    }
}

void colo_session_get_status(ColoSessionStatus *status)
{
    qemu_mutex_lock(&colo_session.lock);
    status->mode = colo_session.mode;
    status->last_mode = colo_session.last_mode;
    switch (colo_session.phase) {
    case COLO_PHASE_FAILOVER:
        status->reason = COLO_EXIT_REASON_PROCESSING;
        break;
    case COLO_PHASE_LOST:
        status->reason = COLO_EXIT_REASON_ERROR;
        break;
    default:
        status->reason = colo_session.exit_reason;
        break;
    }
    status->stats = colo_session.stats;
    qemu_mutex_unlock(&colo_session.lock);
}

/* ---- include/migration/colo.h ---- */

COLOMode get_colo_mode(void)
{
    COLOMode mode;

    qemu_mutex_lock(&colo_session.lock);
    mode = colo_session.mode;
    qemu_mutex_unlock(&colo_session.lock);
    return mode;
}

bool migration_in_colo_state(void)
{
    MigrationState *s = migrate_get_current();

    return s->state == MIGRATION_STATUS_COLO;
}

bool migration_incoming_in_colo_state(void)
{
    MigrationIncomingState *mis = migration_incoming_get_current();

    return mis && mis->state == MIGRATION_STATUS_COLO;
}

/* x-checkpoint-delay changed (main loop): on the primary, checkpoint now. */
void colo_checkpoint_delay_set(void)
{
    colo_request_checkpoint(COLO_TRIGGER_FORCED);
}

/*
 * QEMU is exiting (main loop): let the COLO thread leave its loop; do not
 * wait for it.
 */
void colo_shutdown(void)
{
    qemu_mutex_lock(&colo_session.lock);
    colo_session.quitting = true;
    if (colo_session.mode != COLO_MODE_NONE) {
        colo_session.failover_requested = true;
    }
    qemu_mutex_unlock(&colo_session.lock);
    colo_shutdown_channels();
    qemu_sem_post(&colo_session.wake);
}
