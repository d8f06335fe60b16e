/*
 * COLO (COarse-grained LOck-stepping): the session state and the primary's
 * checkpoint loop
 *
 * Copyright (c) 2026 The qemu-colo authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * The primary enters COLO when precopy completes with x-colo set: the
 * migration thread calls migrate_start_colo_process(), which runs the
 * checkpoint loop until COLO ends.  One checkpoint (see colo-proto.h):
 *
 *   request/reply      the secondary stops its guest
 *   live RAM phase     dirty RAM is sent while the primary guest still runs
 *   stop               the primary stops; the disks checkpoint; the RAM
 *                      dirtied since the live phase and the device state
 *                      (into a buffer) are saved
 *   device state       sent with a length and a CRC32C
 *   received           the secondary has all of it: the compares release
 *                      the output they held (output commit, see
 *                      colo_primary_checkpoint()), the primary resumes
 *   loaded             the secondary applied it and runs again
 *
 * Threads and locks: see colo-internal.h.  The checkpoint loop runs on the
 * migration thread.  It holds the BQL to stop/start the guest and while
 * saving the rest of RAM and the device state (the dirty-bitmap sync inside
 * that save needs it under TCG); every wait on the peer is bounded by the
 * session's watchdog, which shuts the channels down so that the loop fails
 * over instead of hanging, with or without the BQL.
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qapi/qapi-commands-migration.h"
#include "qapi/qapi-events-migration.h"
#include "qemu/error-report.h"
#include "qemu/main-loop.h"
#include "qemu/timer.h"
#include "qemu/units.h"
#include "io/channel-buffer.h"
#include "system/runstate.h"
#include "system/cpus.h"
#include "system/kvm.h"
#include "block/replication.h"
#include "net/filter.h"
#include "net/colo-compare.h"
#include "net/colo-input.h"
#include "migration/colo.h"
#include "migration/failover.h"
#include "migration.h"
#include "migration-stats.h"
#include "savevm.h"
#include "options.h"
#include "colo-internal.h"
#include "colo-proto.h"
#include "colo-fault.h"
#include "trace.h"

ColoSession colo_session = {
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

static const char *const colo_phase_names[] = {
    [COLO_PHASE_OFF] = "off",
    [COLO_PHASE_STARTING] = "starting",
    [COLO_PHASE_RUNNING] = "running",
    [COLO_PHASE_CHECKPOINT] = "checkpoint",
    [COLO_PHASE_LOST] = "lost",
    [COLO_PHASE_FAILOVER] = "failover",
};

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

/* The one place where the phase changes. */
void colo_set_phase(ColoPhase phase)
{
    qemu_mutex_lock(&colo_session.lock);
    trace_colo_phase(COLOMode_str(colo_session.mode),
                     colo_phase_names[colo_session.phase],
                     colo_phase_names[phase]);
    colo_session.phase = phase;
    qemu_mutex_unlock(&colo_session.lock);
}

static void colo_watchdog_expired(void *opaque, const char *what)
{
    error_report("COLO: no progress from the peer for %" PRIu32 " ms (%s); "
                 "failing over", colo_session.peer_timeout_ms, what);
    trace_colo_watchdog_expired(what);
    colo_shutdown_channels();
}

/*
 * What a checkpoint has moved so far: bytes the primary sent, pages the
 * secondary received.  Grows while a slow checkpoint still progresses, so
 * the watchdog only fires on a peer that stalls (slow is not dead).  Runs on
 * the watchdog thread: lock-free reads only.
 */
static uint64_t colo_session_progress(void *opaque)
{
    return stat64_get(&mig_stats.qemu_file_transferred) +
           colo_ram_pages_received();
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

void colo_session_begin(COLOMode mode, QEMUFile *from_peer, QEMUFile *to_peer)
{
    ColoWatchdog *watchdog = colo_watchdog_new(colo_watchdog_expired,
                                               colo_session_progress, NULL);
    uint32_t peer_timeout_ms = colo_peer_timeout_setting();

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

void colo_wait_for_decision(void)
{
    colo_shutdown_channels();
    colo_set_phase(COLO_PHASE_LOST);
    bql_lock();
    if (runstate_is_running()) {
        vm_stop(RUN_STATE_COLO);
    }
    bql_unlock();
    while (!colo_failover_requested()) {
        qemu_sem_wait(&colo_session.wake);
    }
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

/* Thread-safe: called from the main loop and from colo-compare's iothread. */
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

/* colo-compare asks for a checkpoint; @data points to a ColoCompareRequest. */
static void colo_compare_wants_checkpoint(Notifier *notifier, void *data)
{
    const ColoCompareRequest *request = data;

    bool timeout = request && *request == COLO_COMPARE_REQUEST_TIMEOUT;

    colo_request_checkpoint(timeout ? COLO_TRIGGER_TIMEOUT
                                    : COLO_TRIGGER_MISMATCH);
}

static Notifier colo_compare_notifier = {
    .notify = colo_compare_wants_checkpoint,
};

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

/* x-checkpoint-delay changed: on the primary, checkpoint now. */
void colo_checkpoint_delay_set(void)
{
    colo_request_checkpoint(COLO_TRIGGER_FORCED);
}

void colo_do_failover(void)
{
    colo_request_failover(NULL);
}

void colo_resume_guest(void)
{
    if (!colo_quitting() && runstate_check(RUN_STATE_COLO)) {
        vm_start();
    }
}

/* QEMU is exiting: let the COLO thread leave its loop; do not wait for it. */
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

COLOStatus *qmp_query_colo_status(Error **errp)
{
    COLOStatus *status = g_new0(COLOStatus, 1);
    ColoStats *st = &colo_session.stats;

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
    status->has_checkpoints = true;
    status->checkpoints = st->checkpoints;
    status->has_checkpoints_periodic = true;
    status->checkpoints_periodic = st->by_trigger[COLO_TRIGGER_PERIODIC];
    status->has_checkpoints_mismatch = true;
    status->checkpoints_mismatch = st->by_trigger[COLO_TRIGGER_MISMATCH];
    status->has_checkpoints_timeout = true;
    status->checkpoints_timeout = st->by_trigger[COLO_TRIGGER_TIMEOUT];
    status->has_checkpoints_forced = true;
    status->checkpoints_forced = st->by_trigger[COLO_TRIGGER_FORCED];
    status->has_last_pause_us = true;
    status->last_pause_us = st->last_pause_us;
    status->has_max_pause_us = true;
    status->max_pause_us = st->max_pause_us;
    status->has_ram_bytes = true;
    status->ram_bytes = st->ram_bytes;
    status->has_device_state_bytes = true;
    status->device_state_bytes = st->device_state_bytes;
    qemu_mutex_unlock(&colo_session.lock);
    return status;
}

/*
 * The replication commands Xen uses drive the replication framework
 * directly; they work without Xen too.
 */
void qmp_xen_set_replication(bool enable, bool primary,
                             bool has_failover, bool failover,
                             Error **errp)
{
    ReplicationMode mode = primary ? REPLICATION_MODE_PRIMARY
                                   : REPLICATION_MODE_SECONDARY;

    if (has_failover && enable) {
        error_setg(errp, "Parameter 'failover' is only for stopping "
                   "replication");
        return;
    }
    if (enable) {
        replication_start_all(mode, errp);
    } else {
        replication_stop_all(has_failover && failover, errp);
    }
}

ReplicationStatus *qmp_query_xen_replication_status(Error **errp)
{
    ReplicationStatus *status = g_new0(ReplicationStatus, 1);
    Error *err = NULL;

    replication_get_error_all(&err);
    if (err) {
        status->error = true;
        status->desc = g_strdup(error_get_pretty(err));
        error_free(err);
    }
    return status;
}

void qmp_xen_colo_do_checkpoint(Error **errp)
{
    ERRP_GUARD();

    replication_do_checkpoint_all(errp);
    if (!*errp) {
        colo_notify_filters_event(COLO_EVENT_CHECKPOINT, errp);
    }
}

/* ---- the primary's checkpoint loop (migration thread) ---- */

typedef struct ColoPrimary {
    MigrationState *s;
    QEMUFile *to;           /* migration stream */
    QEMUFile *from;         /* its return path */
    uint32_t seq;
    int64_t next_periodic_ms;
} ColoPrimary;

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
 * Wait for the next reason to checkpoint; false when COLO must end.
 * Runs without the BQL.
 */
static bool colo_primary_wait_trigger(ColoPrimary *p, ColoTrigger *trigger)
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
        if (now >= p->next_periodic_ms) {
            *trigger = COLO_TRIGGER_PERIODIC;
            return true;
        }
        qemu_sem_timedwait(&colo_session.wake,
                           MIN(p->next_periodic_ms - now, INT_MAX));
    }
}

/*
 * Send dirty RAM while the guest runs, until what is left is small or a few
 * rounds did not get it there (a guest dirtying faster than we send).
 */
#define COLO_LIVE_ROUNDS_MAX   3
#define COLO_LIVE_DONE_BYTES   (1 * MiB)

static bool colo_primary_send_live_ram(ColoPrimary *p, Error **errp)
{
    for (int round = 0; round < COLO_LIVE_ROUNDS_MAX; round++) {
        uint64_t must_precopy = 0, can_postcopy = 0;
        int ret;

        /* Syncs the dirty bitmap; takes the BQL itself. */
        qemu_savevm_state_pending_exact(&must_precopy, &can_postcopy);
        trace_colo_live_ram_round(round, must_precopy + can_postcopy);
        if (must_precopy + can_postcopy < COLO_LIVE_DONE_BYTES) {
            break;
        }
        colo_arm("live RAM");
        do {
            ret = qemu_savevm_state_iterate(p->to, false);
        } while (ret == 0 && !qemu_file_get_error(p->to));
        colo_disarm();
        if (ret < 0 || qemu_file_get_error(p->to)) {
            error_setg(errp, "COLO: sending RAM failed");
            return false;
        }
    }
    return true;
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
 * tell the compares to release it and the filters to start over.  BQL held.
 */
static void colo_primary_release_output(ColoPrimary *p)
{
    Error *local_err = NULL;

    colo_notify_compares_event(NULL, COLO_EVENT_CHECKPOINT, &local_err);
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
    size_t dev_len = 0;
    uint64_t ram_start, ram_bytes = 0, dev_bytes = 0;
    int64_t stop_us = 0, pause_us;
    bool was_running = true;

    p->seq++;
    colo_set_phase(COLO_PHASE_CHECKPOINT);
    trace_colo_checkpoint_start(p->seq, colo_trigger_name(trigger));

    msg = (ColoMsg) { .type = COLO_MSG_CHECKPOINT_REQUEST, .seq = p->seq,
                      .flags = trigger };
    if (!colo_msg_send(p->to, &msg, errp) ||
        !colo_primary_expect(p, COLO_MSG_CHECKPOINT_REPLY, &msg, errp)) {
        return false;
    }

    msg = (ColoMsg) { .type = COLO_MSG_RAM, .seq = p->seq };
    if (!colo_msg_send(p->to, &msg, errp)) {
        return false;
    }
    ram_start = qemu_file_transferred(p->to);
    if (!colo_primary_send_live_ram(p, errp)) {
        return false;
    }

    bql_lock();
    was_running = runstate_is_running();
    stop_us = qemu_clock_get_us(QEMU_CLOCK_REALTIME);
    if (was_running) {
        vm_stop_force_state(RUN_STATE_COLO);
    }
    colo_fault_point(COLO_FAULT_AFTER_STOP, p->seq);
    replication_get_error_all(errp);
    if (!*errp) {
        replication_do_checkpoint_all(errp);
    }
    if (!*errp) {
        /* The rest of RAM (with a dirty-bitmap sync) and QEMU_VM_EOF. */
        colo_arm("RAM");
        qemu_savevm_live_state(p->to);
        colo_disarm();
        if (qemu_file_get_error(p->to)) {
            error_setg(errp, "COLO: sending RAM failed");
        }
    }
    if (!*errp) {
        dev_state = colo_save_device_state(&dev_len, errp);
        /* With the guest stopped: the client input its state holds. */
        colo_input_marks_save(input_marks);
    }
    bql_unlock();
    if (*errp) {
        goto out;
    }
    ram_bytes = qemu_file_transferred(p->to) - ram_start;
    dev_bytes = dev_len;

    msg = (ColoMsg) {
        .type = COLO_MSG_DEVICE_STATE, .seq = p->seq, .length = dev_bytes,
        .crc = colo_device_state_crc(dev_state, dev_bytes),
        .flags = was_running ? COLO_FLAG_RUN : 0,
    };
    colo_arm("device state");
    if (colo_msg_send(p->to, &msg, errp)) {
        qemu_put_buffer(p->to, dev_state, dev_bytes);
        msg = (ColoMsg) {
            .type = COLO_MSG_INPUT_MARKS, .seq = p->seq,
            .length = input_marks->len,
            .crc = colo_device_state_crc((uint8_t *)input_marks->str,
                                         input_marks->len),
        };
        if (colo_msg_send(p->to, &msg, errp)) {
            qemu_put_buffer(p->to, (uint8_t *)input_marks->str,
                            input_marks->len);
            if (qemu_fflush(p->to) < 0) {
                error_setg(errp, "COLO: sending the device state failed");
            }
        }
    }
    colo_disarm();
    if (*errp) {
        goto out;
    }
    colo_fault_point(COLO_FAULT_AFTER_DEVICE_STATE, p->seq);
    colo_fault_point(COLO_FAULT_BEFORE_RECEIVED, p->seq);
    if (!colo_primary_expect(p, COLO_MSG_RECEIVED, &msg, errp)) {
        goto out;
    }

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
    colo_primary_release_output(p);
    if (was_running) {
        colo_resume_guest();
    }
    bql_unlock();
    pause_us = qemu_clock_get_us(QEMU_CLOCK_REALTIME) - stop_us;

    colo_fault_point(COLO_FAULT_BEFORE_LOADED, p->seq);
    if (colo_primary_expect(p, COLO_MSG_LOADED, &msg, errp)) {
        colo_stats_checkpoint(trigger, pause_us, ram_bytes, dev_bytes);
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
        if (colo_session.primary_waits && !colo_quitting()) {
            colo_primary_wait_for_decision(err);
        }
    }
    colo_set_phase(COLO_PHASE_FAILOVER);
    colo_compare_unregister_notifier(&colo_compare_notifier);
    /* Nothing more on these channels; make sure the secondary notices. */
    colo_shutdown_channels();

    bql_lock();
    colo_failover_release(COLO_MODE_PRIMARY);
    colo_resume_guest();
    if (colo_session.stats.checkpoints == 0 && err &&
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
    ColoPrimary p = { .s = s, .to = s->to_dst_file };
    Error *err = NULL;
    ColoMsg msg;
    ColoTrigger trigger;

    p.from = qemu_file_get_return_path(p.to);
    WITH_QEMU_LOCK_GUARD(&s->qemu_file_lock) {
        s->rp_state.from_dst_file = p.from;
    }
    colo_session_begin(COLO_MODE_PRIMARY, p.from, p.to);
    if (!p.from) {
        error_setg(&err, "COLO: cannot open the return path");
    } else if (kvm_dirty_ring_enabled()) {
        /* As on the secondary (colo_init_ram_cache()): untested, refused. */
        error_setg(&err, "COLO: the KVM dirty ring (-accel kvm,"
                   "dirty-ring-size=N) is not supported; start QEMU without "
                   "dirty-ring-size");
    }
    if (err) {
        colo_primary_exit(&p, err);
        error_free(err);
        return;
    }
    migration_rate_set(RATE_LIMIT_DISABLED);
    colo_compare_register_notifier(&colo_compare_notifier);

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
    bql_unlock();
    colo_set_phase(COLO_PHASE_RUNNING);
    trace_colo_primary_running();

    for (;;) {
        p.next_periodic_ms = qemu_clock_get_ms(QEMU_CLOCK_REALTIME) +
                             migrate_checkpoint_delay();
        if (!colo_primary_wait_trigger(&p, &trigger)) {
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
