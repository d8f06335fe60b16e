/*
 * COLO (COarse-grained LOck-stepping): the primary's checkpoint loop
 *
 * Copyright (c) 2026 The qemu-colo authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * The primary enters COLO when precopy completes with x-colo set: the
 * migration thread calls migrate_start_colo_process(), which runs the
 * checkpoint loop until COLO ends.  One checkpoint (see colo-proto.h):
 *
 *   request/reply      the secondary is ready for the RAM
 *   live RAM phase     dirty RAM is sent while both guests still run
 *   stop               the primary stops; the disks checkpoint; the RAM
 *                      dirtied since the live phase and the device state
 *                      (into a buffer) are saved
 *   device state       sent with a length and a CRC32C
 *   received           the secondary has all of it: the compares release
 *                      the output they held (output commit, see
 *                      colo_primary_checkpoint()) and learn where the
 *                      secondary's output after it begins (output marks,
 *                      net/colo-output.h), the primary resumes
 *   loaded             the secondary applied it and runs again
 *
 * Threads and locks: the checkpoint loop runs on the migration thread and
 * reaches the session through colo-session.h.  It holds the BQL to
 * stop/start the guest and while saving the rest of RAM and the device
 * state (the dirty-bitmap sync inside that save needs it under TCG); so
 * sending the rest of RAM blocks the main loop, the monitor included, for
 * as long as it takes (bound: see COLO_PEER_TIMEOUT_MIN_MS).  Every wait on
 * the peer is bounded by the session's watchdog, which shuts the channels
 * down so that the loop fails over instead of hanging, with or without the
 * BQL.
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qapi/qapi-events-migration.h"
#include "qemu/error-report.h"
#include "qemu/main-loop.h"
#include "qemu/timer.h"
#include "qemu/units.h"
#include "io/channel-buffer.h"
#include "system/runstate.h"
#include "system/cpus.h"
#include "system/kvm.h"
#include "system/cpu-throttle.h"
#include "block/replication.h"
#include "net/filter.h"
#include "net/colo-compare.h"
#include "net/colo-input.h"
#include "migration/colo.h"
#include "migration.h"
#include "migration-stats.h"
#include "savevm.h"
#include "options.h"
#include "colo-session.h"
#include "colo-failover.h"
#include "colo-proto.h"
#include "colo-fault.h"
#include "trace.h"

/*
 * colo-compare wants a checkpoint: called in the main loop (the compare's
 * request bottom half) with @data pointing to a ColoCompareRequest.
 */
static void colo_compare_wants_checkpoint(Notifier *notifier, void *data)
{
    const ColoCompareRequest *request = data;
    bool timeout = *request == COLO_COMPARE_REQUEST_TIMEOUT;

    colo_request_checkpoint(timeout ? COLO_TRIGGER_TIMEOUT
                                    : COLO_TRIGGER_MISMATCH);
}

static Notifier colo_compare_notifier = {
    .notify = colo_compare_wants_checkpoint,
};

/*
 * The watchdog's progress measure on the primary: bytes sent.  Watchdog
 * thread; a lock-free read.
 */
static uint64_t colo_primary_progress(void *opaque)
{
    return stat64_get(&mig_stats.qemu_file_transferred);
}

/* ---- the primary's checkpoint loop (migration thread) ---- */

typedef struct ColoPrimary {
    MigrationState *s;
    QEMUFile *to;           /* migration stream */
    QEMUFile *from;         /* its return path */
    uint32_t seq;
    int64_t next_periodic_ms;
    ColoCheckpointTimes times;  /* of the checkpoint in flight */
    int64_t step_start_us;      /* when its current step began */
    /*
     * The live RAM phase's guess of what the guest dirties before it stops:
     * when the last dirty-bitmap sync with the guest running began (or the
     * guest resumed), and how long a stop takes after such a sync began
     * (the longest of late, decaying, at least COLO_STOP_LAG_MIN_US).
     */
    int64_t sync_us;
    int64_t stop_lag_us;
} ColoPrimary;

/* The current step of the checkpoint is over: time it, start the next. */
static void colo_step_done(ColoPrimary *p, ColoStep step)
{
    int64_t now = qemu_clock_get_us(QEMU_CLOCK_REALTIME);

    p->times.step_us[step] = now - p->step_start_us;
    p->step_start_us = now;
    trace_colo_checkpoint_step(p->seq, colo_step_name(step),
                               p->times.step_us[step]);
}

static bool colo_primary_expect(ColoPrimary *p, ColoMsgType type,
                                ColoMsg *msg, Error **errp)
{
    bool ok;

    colo_arm(colo_msg_name(type));
    ok = colo_msg_expect(p->from, type, p->seq, msg, errp);
    colo_disarm();
    return ok;
}

/*
 * -global migration.x-colo-max-residual: at least 16 pages, so that a guest
 * that runs at all can meet it without being throttled to a halt.
 */
#define COLO_MAX_RESIDUAL_MIN   (64 * KiB)
/* -global migration.x-colo-max-live-ms */
#define COLO_MAX_LIVE_MS_MIN    10
#define COLO_MAX_LIVE_MS_MAX    60000
/*
 * The least time the live RAM phase expects between a sync and the guest's
 * stop: the BQL may be busy, and a miss costs a residual over the bound.
 */
#define COLO_STOP_LAG_MIN_US    500

bool colo_check_properties(MigrationState *s, Error **errp)
{
    if (s->colo_max_residual < COLO_MAX_RESIDUAL_MIN) {
        error_setg(errp, "migration.x-colo-max-residual must be at least "
                   "%" PRIu64 " bytes (64K), not %" PRIu64,
                   (uint64_t)COLO_MAX_RESIDUAL_MIN, s->colo_max_residual);
        return false;
    }
    if (s->colo_max_live_ms < COLO_MAX_LIVE_MS_MIN ||
        s->colo_max_live_ms > COLO_MAX_LIVE_MS_MAX) {
        error_setg(errp, "migration.x-colo-max-live-ms must be between %d "
                   "and %d ms, not %" PRIu32, COLO_MAX_LIVE_MS_MIN,
                   COLO_MAX_LIVE_MS_MAX, s->colo_max_live_ms);
        return false;
    }
    return true;
}

/*
 * The last round did not halve what is dirty: slow the guest's vCPUs down,
 * to max-cpu-throttle at once if it did not shrink at all (a guest that
 * writes its whole working set again within one round), else halving the
 * share of time they run (cpu-throttle-initial first).
 */
static void colo_throttle_guest(ColoPrimary *p, bool shrank)
{
    int max = migrate_max_cpu_throttle();
    int now = cpu_throttle_get_percentage();
    int pct;

    if (!shrank) {
        pct = max;
    } else if (!now) {
        pct = migrate_cpu_throttle_initial();
    } else {
        pct = 100 - (100 - now) / 2;
    }
    pct = MIN(pct, max);
    if (pct > now) {
        bql_lock();
        cpu_throttle_set(pct);
        bql_unlock();
        p->times.throttle_pct = pct;
    }
}

/*
 * The live RAM phase: rounds that each sync the dirty bitmap and send what
 * it found, with the guest running, until the guest can stop with at most
 * x-colo-max-residual bytes of RAM dirty: what the last sync found plus
 * what the guest dirties until it is stopped, at its rate since the sync
 * before.  While each round leaves at most half of what the one before it
 * left, rounds alone get there; a guest that dirties about as fast as we
 * send has its vCPUs throttled, as precopy's auto-converge does, until the
 * checkpoint stops it (see colo_throttle_guest()).  A throttled vCPU runs
 * 10 ms slices between sleeps, so the guest stops with little dirty only
 * when the last round fell between two slices: it takes a high throttle
 * for a guest that dirties much within one slice.  At x-colo-max-live-ms
 * the guest stops with whatever is left, so a checkpoint always happens.
 */
static bool colo_primary_send_live_ram(ColoPrimary *p, Error **errp)
{
    uint64_t bound = p->s->colo_max_residual;
    int64_t deadline = qemu_clock_get_us(QEMU_CLOCK_REALTIME) +
                       p->s->colo_max_live_ms * (int64_t)1000;
    uint64_t last = UINT64_MAX;

    for (int round = 0; ; round++) {
        uint64_t must_precopy = 0, can_postcopy = 0, pending, more;
        int64_t sync_us = qemu_clock_get_us(QEMU_CLOCK_REALTIME), now;
        int running = 100 - cpu_throttle_get_percentage();
        int ret;

        /* Syncs the dirty bitmap; takes the BQL itself. */
        qemu_savevm_state_pending_exact(&must_precopy, &can_postcopy);
        now = qemu_clock_get_us(QEMU_CLOCK_REALTIME);
        pending = must_precopy + can_postcopy;
        /* A throttled guest dirties in bursts: its rate while it runs. */
        more = pending * p->stop_lag_us * 100 /
               (MAX(sync_us - p->sync_us, 1) * running);
        p->sync_us = sync_us;
        trace_colo_live_ram_round(round, pending, more,
                                  100 - running);
        if (pending + more <= bound) {
            return true;
        }
        if (now >= deadline) {
            trace_colo_live_ram_capped(pending);
            return true;
        }
        if (round && pending > last / 2) {
            colo_throttle_guest(p, pending < last);
        }
        last = pending;
        p->times.live_rounds++;
        colo_arm("live RAM");
        do {
            ret = qemu_savevm_state_iterate(p->to, false);
        } while (ret == 0 && !qemu_file_get_error(p->to) &&
                 qemu_clock_get_us(QEMU_CLOCK_REALTIME) < deadline);
        /*
         * Out of QEMUFile's buffer now, so that the pause does not wait for
         * the secondary to take in the round's tail.
         */
        qemu_fflush(p->to);
        colo_disarm();
        if (ret < 0 || qemu_file_get_error(p->to)) {
            error_setg(errp, "COLO: sending RAM failed");
            return false;
        }
    }
}

/*
 * Save the device state into a new buffer of *len bytes.  Called with the
 * BQL held.
 */
static uint8_t *colo_save_device_state(size_t *len, Error **errp)
{
    QIOChannelBuffer *bioc = qio_channel_buffer_new(4 * MiB);
    QEMUFile *fb = qemu_file_new_output(QIO_CHANNEL(bioc));
    uint8_t *data = NULL;
    int ret;

    object_unref(OBJECT(bioc));     /* @fb holds the channel */
    ret = qemu_save_device_state(fb);
    if (ret == 0) {
        ret = qemu_fflush(fb);
    }
    if (ret == 0) {
        /* Take the bytes before closing, which would free them. */
        data = bioc->data;
        *len = bioc->usage;
        bioc->data = NULL;
        bioc->capacity = bioc->usage = bioc->offset = 0;
    } else {
        error_setg(errp, "COLO: saving the device state failed: %s",
                   strerror(-ret));
    }
    qemu_fclose(fb);
    return data;
}

/*
 * A checkpoint the secondary acknowledged covers all output held so far:
 * tell the compares to release it (with the secondary's output marks, see
 * net/colo-output.h) and the filters to start over.  BQL held.
 */
static void colo_primary_release_output(ColoPrimary *p,
                                        const uint8_t *output_marks,
                                        size_t len)
{
    Error *local_err = NULL;

    colo_compare_release_checkpoint((const char *)output_marks, len,
                                    &local_err);
    if (!local_err) {
        colo_notify_filters_event(COLO_EVENT_CHECKPOINT, &local_err);
    }
    if (local_err) {
        warn_report_err(local_err);
    }
    colo_fault_point(COLO_FAULT_AFTER_COMPARES_TOLD, p->seq);
}

static bool colo_primary_checkpoint(ColoPrimary *p, ColoTrigger trigger,
                                    Error **errp)
{
    ERRP_GUARD();
    ColoMsg msg = { 0 };
    g_autofree uint8_t *dev_state = NULL;
    g_autoptr(GString) input_marks = g_string_new(NULL);
    g_autofree uint8_t *output_marks = NULL;
    size_t dev_len = 0;
    uint64_t ram_start, ram_bytes = 0, dev_bytes = 0;
    int64_t stop_us = 0, pause_us;
    bool was_running = true;

    p->seq++;
    p->times = (ColoCheckpointTimes) { 0 };
    p->step_start_us = qemu_clock_get_us(QEMU_CLOCK_REALTIME);
    colo_set_phase(COLO_PHASE_CHECKPOINT);
    trace_colo_checkpoint_start(p->seq, colo_trigger_name(trigger));

    msg = (ColoMsg) { .type = COLO_MSG_CHECKPOINT_REQUEST, .seq = p->seq,
                      .flags = trigger };
    if (!colo_msg_send(p->to, &msg, errp) ||
        !colo_primary_expect(p, COLO_MSG_CHECKPOINT_REPLY, &msg, errp)) {
        return false;
    }
    colo_step_done(p, COLO_STEP_REQUEST);

    msg = (ColoMsg) { .type = COLO_MSG_RAM, .seq = p->seq };
    if (!colo_msg_send(p->to, &msg, errp)) {
        return false;
    }
    ram_start = qemu_file_transferred(p->to);
    if (!colo_primary_send_live_ram(p, errp)) {
        return false;
    }
    p->times.live_bytes = qemu_file_transferred(p->to) - ram_start;
    colo_fault_point(COLO_FAULT_AFTER_LIVE_RAM, p->seq);

    bql_lock();
    colo_step_done(p, COLO_STEP_LIVE);
    stop_us = p->step_start_us;
    was_running = runstate_is_running();
    colo_stop_guest();
    colo_compare_primary_stopped();
    if (was_running) {
        p->stop_lag_us = MAX(qemu_clock_get_us(QEMU_CLOCK_REALTIME) -
                             p->sync_us,
                             MAX(p->stop_lag_us * 3 / 4, COLO_STOP_LAG_MIN_US));
    }
    /* The live RAM phase's throttle (or auto-converge's) ends here. */
    if (cpu_throttle_active()) {
        cpu_throttle_stop();
    }
    colo_fault_point(COLO_FAULT_AFTER_STOP, p->seq);
    colo_step_done(p, COLO_STEP_STOP);
    replication_get_error_all(errp);
    if (!*errp) {
        replication_do_checkpoint_all(errp);
    }
    colo_step_done(p, COLO_STEP_DISKS);
    if (!*errp) {
        /*
         * The rest of RAM (with a dirty-bitmap sync) and QEMU_VM_EOF, with
         * the BQL held: a peer that stops reading stalls the main loop
         * until the watchdog fires (see COLO_PEER_TIMEOUT_MIN_MS).
         */
        colo_arm("RAM");
        qemu_savevm_live_state(p->to);
        colo_disarm();
        if (qemu_file_get_error(p->to)) {
            error_setg(errp, "COLO: sending RAM failed");
        }
        /* Set by the save's own bitmap sync, with the guest stopped. */
        p->times.residual_bytes =
            stat64_get(&mig_stats.dirty_bytes_last_sync);
        colo_step_done(p, COLO_STEP_RAM);
    }
    if (!*errp) {
        dev_state = colo_save_device_state(&dev_len, errp);
        /* With the guest stopped: the client input its state holds. */
        colo_input_marks_save(input_marks);
        colo_step_done(p, COLO_STEP_DEVICE);
    }
    bql_unlock();
    if (*errp) {
        goto out;
    }
    ram_bytes = qemu_file_transferred(p->to) - ram_start;
    dev_bytes = dev_len;

    /* A full buffer is written on the way: the watchdog covers it. */
    colo_arm("device state");
    msg = (ColoMsg) {
        .type = COLO_MSG_DEVICE_STATE, .seq = p->seq,
        .flags = was_running ? COLO_FLAG_RUN : 0,
    };
    colo_msg_put_payload(p->to, &msg, dev_state, dev_bytes);
    msg = (ColoMsg) { .type = COLO_MSG_INPUT_MARKS, .seq = p->seq };
    colo_msg_put_payload(p->to, &msg, input_marks->str, input_marks->len);
    colo_msg_flush(p->to, &msg, errp);
    colo_disarm();
    if (*errp) {
        goto out;
    }
    colo_step_done(p, COLO_STEP_SEND);
    colo_fault_point(COLO_FAULT_AFTER_DEVICE_STATE, p->seq);
    colo_fault_point(COLO_FAULT_BEFORE_RECEIVED, p->seq);
    colo_arm("received");
    if (colo_msg_expect(p->from, COLO_MSG_RECEIVED, p->seq, &msg, errp)) {
        output_marks = colo_msg_receive_payload(p->from, &msg,
                                                "output marks", errp);
    }
    colo_disarm();
    if (!output_marks) {
        goto out;
    }
    colo_step_done(p, COLO_STEP_RECEIVED);
    colo_fault_point(COLO_FAULT_AFTER_RECEIVED, p->seq);

    /*
     * The secondary has the whole checkpoint.  Only now may the compares
     * release what they hold (output commit): the checkpoint covers those
     * packets, and should this primary die now, the secondary resumes from
     * a state that sent them.  Released any earlier, they would reach the
     * client although a failover could resume from the previous checkpoint
     * (in the documented wiring QEMU's net queue of the stopped primary
     * happened to hold them back; that is not a design).  Then the primary
     * may run again.
     */
    bql_lock();
    colo_primary_release_output(p, output_marks, msg.length);
    /* Disks on shared storage open their next epoch: see shared-undo.c. */
    replication_checkpoint_received_all(errp);
    if (!*errp) {
        colo_release_guest();
    }
    bql_unlock();
    if (*errp) {
        goto out;
    }
    colo_step_done(p, COLO_STEP_RESUME);
    pause_us = p->step_start_us - stop_us;
    p->sync_us = p->step_start_us;

    colo_fault_point(COLO_FAULT_BEFORE_LOADED, p->seq);
    if (colo_primary_expect(p, COLO_MSG_LOADED, &msg, errp)) {
        colo_stats_checkpoint(trigger, pause_us, ram_bytes, dev_bytes);
        colo_stats_steps(&p->times);
        colo_set_phase(COLO_PHASE_RUNNING);
    }

out:
    /* On failure the guest may be stopped: colo_primary_exit() runs it. */
    return !*errp;
}

/*
 * x-colo-primary-waits: the secondary is lost and nobody asked for a
 * failover.  With a cluster manager that may yet choose the secondary (a
 * cut link, a witness), running on alone would release output the
 * secondary never saw; then it takes over from a stale state and a client
 * sees answers undone.  So stop the guest, hold the output, and wait for
 * x-colo-lost-heartbeat (this primary goes on) or for QEMU to be killed or
 * to quit (the secondary goes on).
 */
static void colo_primary_wait_for_decision(Error *err)
{
    error_report("COLO primary: %s; the guest is stopped and its output "
                 "held until x-colo-lost-heartbeat",
                 err ? error_get_pretty(err) : "COLO stopped");
    colo_wait_for_decision();
}

/* Leave COLO on the primary: it carries on alone, unprotected. */
static void colo_primary_exit(ColoPrimary *p, Error *err)
{
    MigrationState *s = p->s;
    QEMUFile *rp;

    if (!colo_failover_requested()) {
        /* The secondary vanished or broke the protocol. */
        qapi_event_send_colo_link_lost(COLO_MODE_PRIMARY,
                                       err ? error_get_pretty(err)
                                           : "COLO stopped");
        if (colo_session_primary_waits() && !colo_quitting()) {
            colo_primary_wait_for_decision(err);
        }
    }
    colo_set_phase(COLO_PHASE_FAILOVER);
    colo_compare_unregister_notifier(&colo_compare_notifier);
    /* Nothing more on these channels; make sure the secondary notices. */
    colo_shutdown_channels();

    bql_lock();
    colo_failover_release(COLO_MODE_PRIMARY);
    if (cpu_throttle_active()) {
        cpu_throttle_stop();
    }
    colo_release_guest();
    if (colo_session_checkpoints() == 0 && err &&
        !colo_failover_requested()) {
        /* COLO never worked: say so, as a failed migration. */
        migrate_set_error(s, err);
        migrate_set_state(&s->state, MIGRATION_STATUS_COLO,
                          MIGRATION_STATUS_FAILED);
    } else {
        migrate_set_state(&s->state, MIGRATION_STATUS_COLO,
                          MIGRATION_STATUS_COMPLETED);
    }
    colo_session_end(err);
    bql_unlock();

    WITH_QEMU_LOCK_GUARD(&s->qemu_file_lock) {
        rp = s->rp_state.from_dst_file;
        s->rp_state.from_dst_file = NULL;
    }
    if (rp) {
        qemu_fclose(rp);
    }
}

static void colo_primary_run(MigrationState *s)
{
    ColoPrimary p = { .s = s, .to = s->to_dst_file,
                      .stop_lag_us = COLO_STOP_LAG_MIN_US };
    Error *err = NULL;
    ColoMsg msg;
    ColoTrigger trigger;

    p.from = qemu_file_get_return_path(p.to);
    WITH_QEMU_LOCK_GUARD(&s->qemu_file_lock) {
        s->rp_state.from_dst_file = p.from;
    }
    colo_session_begin(COLO_MODE_PRIMARY, p.from, p.to,
                       colo_primary_progress);
    /* Before any exit: colo_primary_exit() unregisters it. */
    colo_compare_register_notifier(&colo_compare_notifier);
    if (!p.from) {
        error_setg(&err, "COLO: cannot open the return path");
    } else if (kvm_dirty_ring_enabled()) {
        /* As on the secondary (colo_init_ram_cache()): untested, refused. */
        error_setg(&err, "COLO: the KVM dirty ring (-accel kvm,"
                   "dirty-ring-size=N) is not supported; start QEMU without "
                   "dirty-ring-size");
    } else if (migrate_dirty_bitmaps()) {
        /* Their sections would reach the secondary's lock-free RAM load. */
        error_setg(&err, "COLO: the dirty-bitmaps migration capability is "
                   "not supported");
    }
    if (err) {
        colo_primary_exit(&p, err);
        error_free(err);
        return;
    }
    migration_rate_set(RATE_LIMIT_DISABLED);

    bql_lock();
    replication_start_all(REPLICATION_MODE_PRIMARY, &err);
    bql_unlock();
    if (!err) {
        colo_primary_expect(&p, COLO_MSG_HELLO, &msg, &err);
    }
    if (err) {
        colo_primary_exit(&p, err);
        error_free(err);
        return;
    }

    bql_lock();
    /*
     * Both sides now hold the same state, as after a checkpoint: release
     * what colo-compare held before COLO ran (a guest that ran during the
     * migration), instead of at the first checkpoint.
     */
    colo_notify_compares_event(NULL, COLO_EVENT_CHECKPOINT, &err);
    if (err) {
        warn_report_err(err);
        err = NULL;
    }
    vm_start();
    p.sync_us = qemu_clock_get_us(QEMU_CLOCK_REALTIME);
    bql_unlock();
    colo_set_phase(COLO_PHASE_RUNNING);
    trace_colo_primary_running();

    for (;;) {
        p.next_periodic_ms = qemu_clock_get_ms(QEMU_CLOCK_REALTIME) +
                             migrate_checkpoint_delay();
        if (!colo_wait_trigger(p.next_periodic_ms, &trigger)) {
            break;
        }
        if (!colo_primary_checkpoint(&p, trigger, &err)) {
            break;
        }
    }
    colo_primary_exit(&p, err);
    error_free(err);
}

void migrate_start_colo_process(MigrationState *s)
{
    /* Called by the migration thread with the BQL held. */
    bql_unlock();
    colo_primary_run(s);
    bql_lock();
}
