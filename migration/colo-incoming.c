/*
 * COLO: the secondary side
 *
 * Copyright (c) 2026 The qemu-colo authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * When the initial migration has loaded, the incoming coroutine calls
 * colo_incoming_co(), which starts the colo-incoming thread and yields until
 * COLO ends on this side.  The thread starts the secondary guest, says hello
 * and serves checkpoints (see colo-proto.h).  A checkpoint is all or nothing:
 * RAM goes into the cache and the device state into a buffer with a length
 * and a CRC32C; only when all of it arrived intact does the secondary
 * checkpoint its disks, acknowledge (with its output marks,
 * net/colo-output.h), and apply it.  A torn, corrupt or
 * interrupted checkpoint is discarded: on failover the secondary runs on from
 * its own state, which is the last complete checkpoint plus its own
 * execution since.
 *
 * The secondary's guest runs on while the primary's RAM arrives (the
 * primary's guest runs then too, in its live RAM phase), so that
 * colo-compare has the secondary's output to compare the primary's with
 * and need not hold it for the whole checkpoint.  It stops only when the
 * primary's RAM ends (QEMU_VM_EOF: the primary stopped before sending the
 * last of it).  Why running meanwhile changes nothing the checkpoint
 * promises: see colo_secondary_checkpoint().
 *
 * Threads and locks: the colo-incoming thread reaches the session through
 * colo-session.h.  It holds the BQL only to stop/start the guest and to
 * apply a checkpoint; it reads from the primary, RAM included (see
 * colo_secondary_checkpoint()), without it, so the monitor stays
 * responsive and x-colo-lost-heartbeat can always interrupt a read.
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qapi/qapi-events-migration.h"
#include "qemu/error-report.h"
#include "qemu/main-loop.h"
#include "qemu/rcu.h"
#include "qemu/coroutine.h"
#include "io/channel-buffer.h"
#include "system/runstate.h"
#include "system/cpus.h"
#include "exec/memory.h"
#include "block/aio.h"
#include "block/replication.h"
#include "net/filter.h"
#include "net/colo-input.h"
#include "net/colo-output.h"
#include "migration/colo.h"
#include "migration.h"
#include "savevm.h"
#include "migration-stats.h"
#include "colo-session.h"
#include "colo-failover.h"
#include "colo-ram.h"
#include "colo-proto.h"
#include "colo-fault.h"
#include "trace.h"

typedef struct ColoSecondary {
    MigrationIncomingState *mis;
    QEMUFile *from;         /* migration stream from the primary */
    QEMUFile *to;           /* its return path */
    uint32_t seq;
    bool half_applied;      /* a checkpoint failed to apply: never run */
    QemuThread thread;
    Coroutine *co;          /* the incoming coroutine, parked meanwhile */
} ColoSecondary;

static ColoSecondary colo_secondary;

/*
 * True while a checkpoint's device state loads, after colo_ram_flush()
 * copied its RAM.  BQL.
 */
static bool colo_loading_checkpoint;

bool colo_incoming_code_invalidated(void)
{
    /*
     * The device state of a checkpoint holds no RAM (the primary's
     * qemu_save_device_state() leaves the RAM section out), and
     * colo_ram_flush() has dropped the code translated from every page it
     * overwrote.  Devices that write guest RAM as they load do it through
     * the memory API, which drops translated code itself; a device that
     * discards RAM (virtio-mem) does not, so with one, flush everything.
     */
    return colo_loading_checkpoint && !ram_block_discard_is_required();
}

/* Enter COLO: disks active, replication started, dirty log on, guest runs. */
static bool colo_secondary_start(ColoSecondary *sec, Error **errp)
{
    ERRP_GUARD();
    ColoMsg hello = {
        .type = COLO_MSG_HELLO, .length = COLO_PROTO_MAGIC,
        .crc = COLO_PROTO_VERSION,
    };

    bql_lock();
    migrate_set_state(&sec->mis->state, MIGRATION_STATUS_ACTIVE,
                      MIGRATION_STATUS_COLO);
    if (migration_block_activate(errp)) {
        replication_start_all(REPLICATION_MODE_SECONDARY, errp);
    }
    if (!*errp && colo_ram_start_dirty_log(errp)) {
        vm_start();
    }
    bql_unlock();
    return !*errp && colo_msg_send(sec->to, &hello, errp);
}

/* Load the buffered device state, after colo_ram_flush().  BQL held. */
static bool colo_load_device_state(uint8_t *data, uint64_t len, Error **errp)
{
    QIOChannelBuffer *bioc = qio_channel_buffer_new(0);
    QEMUFile *fb;
    uint64_t rounds;
    int ret;

    /* The buffer channel takes over @data. */
    bioc->data = data;
    bioc->capacity = len;
    bioc->usage = len;
    fb = qemu_file_new_input(QIO_CHANNEL(bioc));
    object_unref(OBJECT(bioc));
    /*
     * Loading a NIC's state makes it ask its guest to announce itself
     * (virtio-net's post_load, with migrate_announce_params()), as after a
     * move to a new host.  A checkpoint is no such move: the announcement
     * would be output of this guest alone, held by colo-compare until a
     * checkpoint it forces (and the secondary announces at failover, by
     * announce-self).  No announcement rounds while loading, then.
     */
    rounds = migrate_get_current()->parameters.announce_rounds;
    migrate_get_current()->parameters.announce_rounds = 0;
    colo_loading_checkpoint = true;
    ret = qemu_load_device_state(fb);
    colo_loading_checkpoint = false;
    migrate_get_current()->parameters.announce_rounds = rounds;
    qemu_fclose(fb);
    if (ret < 0) {
        error_setg(errp, "COLO: loading the device state failed: %s",
                   strerror(-ret));
        return false;
    }
    return true;
}

/*
 * Serve one checkpoint.  Returns false when COLO must end; sec->half_applied
 * tells whether it ended with this checkpoint only partly in the guest.
 */
static bool colo_secondary_checkpoint(ColoSecondary *sec, Error **errp)
{
    ERRP_GUARD();
    ColoMsg msg, dev_msg, marks_msg;
    g_autofree uint8_t *dev_state = NULL;
    g_autofree uint8_t *input_marks = NULL;
    g_autoptr(GString) output_marks = g_string_new(NULL);
    int64_t stop_us, pause_us;
    ColoTrigger trigger;
    Error *local_err = NULL;
    int ret;

    /* Idle: wait as long as the primary likes; failover interrupts. */
    if (!colo_msg_expect(sec->from, COLO_MSG_CHECKPOINT_REQUEST,
                         sec->seq + 1, &msg, errp)) {
        return false;
    }
    sec->seq++;
    trigger = msg.flags < COLO_TRIGGER__MAX ? msg.flags : COLO_TRIGGER_FORCED;
    colo_set_phase(COLO_PHASE_CHECKPOINT);
    trace_colo_checkpoint_start(sec->seq, colo_trigger_name(trigger));

    /*
     * The guest runs on while RAM arrives.  It stays a consistent guest,
     * and the checkpoint a faithful copy of the primary, because:
     *  - RAM goes into the cache only (colo-ram.c); the flush, after the
     *    stop below, syncs the dirty log first, so every page the guest
     *    wrote meanwhile is copied back from the cache, i.e. rolled back;
     *  - its disk writes meanwhile land in its replication overlays
     *    (active disk), which replication_do_checkpoint_all() below
     *    (guest stopped, I/O drained) empties, as between checkpoints;
     *  - client input it takes meanwhile is input between checkpoints: the
     *    input marks sort it out after the load (net/colo-input.h);
     *  - should the checkpoint not complete (failover, fault, torn stream),
     *    nothing of it reached the guest: it runs on from its own state.
     */
    msg = (ColoMsg) { .type = COLO_MSG_CHECKPOINT_REPLY, .seq = sec->seq };
    if (!colo_msg_send(sec->to, &msg, errp)) {
        return false;
    }

    colo_arm("RAM");
    if (!colo_msg_expect(sec->from, COLO_MSG_RAM, sec->seq, &msg, errp)) {
        goto fail;
    }
    /*
     * RAM sections into the cache, up to QEMU_VM_EOF, without the BQL
     * (upstream's COLO takes it here; postcopy's listen thread loads RAM
     * without it too).  What makes it safe: the primary sends only its
     * iterable sections here (qemu_savevm_live_state()) and the only one
     * COLO allows is RAM (colo_primary_run() refuses block dirty
     * bitmaps); in COLO, ram_load() puts each page into the cache and marks
     * it in block->bmap (colo_ram_load_target()), which nothing else
     * touches until the flush, and never resizes a block (MEM_SIZE comes
     * only at setup).  Guest RAM and device state are not touched, so the
     * guest may run meanwhile.
     */
    assert(migration_incoming_in_colo_state());
    ret = qemu_loadvm_state_main(sec->from, sec->mis);
    if (ret < 0) {
        error_setg(errp, "COLO: receiving RAM failed: %s", strerror(-ret));
        goto fail;
    }

    /*
     * The primary sends the end of its RAM with its guest stopped: stop
     * ours too, before the flush and the disk checkpoint.
     */
    bql_lock();
    stop_us = qemu_clock_get_us(QEMU_CLOCK_REALTIME);
    colo_stop_guest();
    bql_unlock();
    colo_fault_point(COLO_FAULT_AFTER_STOP, sec->seq);

    colo_arm("device state");
    if (!colo_msg_expect(sec->from, COLO_MSG_DEVICE_STATE, sec->seq,
                         &dev_msg, errp)) {
        goto fail;
    }
    dev_state = colo_msg_receive_payload(sec->from, &dev_msg, "device state",
                                         errp);
    if (!dev_state ||
        !colo_msg_expect(sec->from, COLO_MSG_INPUT_MARKS, sec->seq,
                         &marks_msg, errp)) {
        goto fail;
    }
    input_marks = colo_msg_receive_payload(sec->from, &marks_msg,
                                           "input marks", errp);
    if (!input_marks) {
        goto fail;
    }
    colo_disarm();
    colo_fault_point(COLO_FAULT_AFTER_DEVICE_STATE, sec->seq);

    /*
     * The whole checkpoint is here.  Checkpoint the disks before saying so:
     * the primary resumes on RECEIVED, and its next writes must land on
     * top of this checkpoint.
     */
    bql_lock();
    replication_do_checkpoint_all(errp);
    /* With the guest stopped: the output it sent before this checkpoint. */
    colo_output_marks_save(output_marks);
    bql_unlock();
    if (*errp) {
        return false;
    }
    colo_fault_point(COLO_FAULT_BEFORE_RECEIVED, sec->seq);
    msg = (ColoMsg) { .type = COLO_MSG_RECEIVED, .seq = sec->seq };
    colo_msg_put_payload(sec->to, &msg, output_marks->str, output_marks->len);
    if (!colo_msg_flush(sec->to, &msg, &local_err)) {
        /* Keep going: the checkpoint is complete, apply it, then leave. */
        trace_colo_secondary_send_failed(error_get_pretty(local_err));
    }

    /*
     * Apply it whatever happens now, so the guest never sees half of it.
     * The flush syncs the dirty log of the stopped guest: the pages it
     * wrote while RAM arrived go back to the checkpoint's.
     */
    bql_lock();
    colo_ram_flush();
    if (colo_load_device_state(g_steal_pointer(&dev_state), dev_msg.length,
                               errp)) {
        Error *filter_err = NULL;

        colo_notify_filters_event(COLO_EVENT_CHECKPOINT, &filter_err);
        if (filter_err) {
            warn_report_err(filter_err);
            filter_err = NULL;
        }
        /* Client input the checkpoint already holds is not delivered again. */
        if (!colo_input_marks_apply((const char *)input_marks,
                                    marks_msg.length, &filter_err)) {
            warn_report_err(filter_err);
        }
        if (dev_msg.flags & COLO_FLAG_RUN) {
            colo_resume_guest(true);
        }
    }
    bql_unlock();
    if (*errp) {
        /* Half-applied: this VM must not take over.  Leave it stopped. */
        sec->half_applied = true;
        error_prepend(errp, "the secondary cannot continue: ");
        return false;
    }
    pause_us = qemu_clock_get_us(QEMU_CLOCK_REALTIME) - stop_us;
    /* Input files do not count bytes: RAM bytes are the primary's figure. */
    colo_stats_checkpoint(trigger, pause_us, 0, dev_msg.length);

    if (!local_err) {
        colo_fault_point(COLO_FAULT_BEFORE_LOADED, sec->seq);
        msg = (ColoMsg) { .type = COLO_MSG_LOADED, .seq = sec->seq };
        colo_msg_send(sec->to, &msg, &local_err);
    }
    if (local_err) {
        error_propagate(errp, local_err);
        return false;
    }
    colo_set_phase(COLO_PHASE_RUNNING);
    return true;

fail:
    colo_disarm();
    return false;
}

/* Leave COLO on the secondary: the guest runs on as a normal VM. */
static void colo_secondary_exit(ColoSecondary *sec, Error *err)
{
    colo_set_phase(COLO_PHASE_FAILOVER);
    colo_shutdown_channels();

    bql_lock();
    colo_failover_release(COLO_MODE_SECONDARY);
    colo_ram_release();
    migrate_set_state(&sec->mis->state, MIGRATION_STATUS_COLO,
                      MIGRATION_STATUS_COMPLETED);
    /* A half-applied checkpoint: the guest stays stopped. */
    colo_resume_guest(!sec->half_applied);
    colo_session_end(err);
    bql_unlock();
}

/*
 * The primary is gone or broke the protocol, and nobody asked for a
 * failover.  The secondary must not decide alone that the primary is dead
 * (it may still be serving clients): stop the guest and wait for a failover
 * request (x-colo-lost-heartbeat) or for QEMU to quit.
 */
static void colo_secondary_wait_for_decision(Error *err)
{
    const char *why = err ? error_get_pretty(err) : "COLO stopped";

    error_report("COLO secondary: %s; the guest is stopped until "
                 "x-colo-lost-heartbeat", why);
    /* Tell a manager at once: it decides whether the primary is gone. */
    qapi_event_send_colo_link_lost(COLO_MODE_SECONDARY, why);
    colo_wait_for_decision();
}

/*
 * The watchdog's progress measure on the secondary: pages that reached the
 * cache (and bytes sent).  Watchdog thread; lock-free reads.
 */
static uint64_t colo_secondary_progress(void *opaque)
{
    return stat64_get(&mig_stats.qemu_file_transferred) +
           colo_ram_pages_received();
}

static void *colo_incoming_thread(void *opaque)
{
    ColoSecondary *sec = opaque;
    Error *err = NULL;

    rcu_register_thread();
    colo_session_begin(COLO_MODE_SECONDARY, sec->from, sec->to,
                       colo_secondary_progress);
    if (colo_secondary_start(sec, &err)) {
        colo_set_phase(COLO_PHASE_RUNNING);
        trace_colo_secondary_running();
        while (colo_secondary_checkpoint(sec, &err)) {
            /* next checkpoint */
        }
    }
    if (!colo_failover_requested() && !sec->half_applied) {
        colo_secondary_wait_for_decision(err);
    }
    if (colo_failover_requested()) {
        /* The channel was broken on purpose: not worth an error. */
        error_free(err);
        err = NULL;
    }
    colo_secondary_exit(sec, err);
    error_free(err);
    rcu_unregister_thread();

    /*
     * Let the incoming coroutine finish the migration, unless QEMU is
     * exiting: then it must not restart anything.
     */
    if (!colo_quitting()) {
        aio_co_schedule(qemu_get_aio_context(), sec->co);
    }
    return NULL;
}

void coroutine_fn colo_incoming_co(void)
{
    ColoSecondary *sec = &colo_secondary;
    MigrationIncomingState *mis = migration_incoming_get_current();

    if (!migration_incoming_colo_enabled()) {
        return;
    }
    *sec = (ColoSecondary) {
        .mis = mis,
        .from = mis->from_src_file,
        .co = qemu_coroutine_self(),
    };
    if (!mis->to_src_file) {
        mis->to_src_file = qemu_file_get_return_path(mis->from_src_file);
    }
    sec->to = mis->to_src_file;
    if (!sec->to) {
        error_report("COLO: the migration channel has no return path; "
                     "COLO needs a socket channel");
        return;
    }
    /* The COLO thread reads without a coroutine to yield to. */
    qemu_file_set_blocking(sec->from, true);

    qemu_thread_create(&sec->thread, MIGRATION_THREAD_DST_COLO,
                       colo_incoming_thread, sec, QEMU_THREAD_JOINABLE);
    qemu_coroutine_yield();

    /* The thread has nothing left to do but return. */
    bql_unlock();
    qemu_thread_join(&sec->thread);
    bql_lock();
}
