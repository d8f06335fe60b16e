/*
 * COLO: the session, its phase and its requests (colo-session.c)
 *
 * Copyright (c) 2026 The qemu-colo authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * One COLO session at a time per QEMU process, on one side.  colo-session.c
 * owns it: the rest of the controller (the primary's loop in colo.c, the
 * secondary's in colo-incoming.c, the QMP commands in colo-qmp.c) reaches it
 * only through these functions.  Its phase machine (ColoPhase) is the only
 * state machine of the controller.
 *
 * Threads: the COLO thread of this side (the migration thread on the
 * primary, "colo-incoming" on the secondary) begins and ends the session and
 * moves its phase.  The main loop (the monitor, colo-compare's request
 * bottom half, QEMU's exit) only requests: colo_request_failover(),
 * colo_request_checkpoint(), colo_shutdown().  The watchdog thread only
 * shuts the channels down.
 */

#ifndef MIGRATION_COLO_SESSION_H
#define MIGRATION_COLO_SESSION_H

#include "qapi/qapi-types-migration.h"
#include "qemu-file.h"
#include "colo-watchdog.h"

/*
 * How long a checkpoint step may go without progress (bytes sent, pages
 * received: the @progress of colo_session_begin()) before the peer counts
 * as gone and COLO fails over: -global migration.x-colo-peer-timeout=MS,
 * default 15000, at least COLO_PEER_TIMEOUT_MIN_MS.  Read at the start of a
 * session.
 *
 * It also bounds a stall of the primary's main loop: the primary sends the
 * last RAM of a checkpoint with the BQL held (the save syncs the dirty
 * bitmap, which needs it), so while a peer that has stopped reading keeps
 * that send blocked, the monitor and every other BQL user wait, up to the
 * peer timeout; then the watchdog shuts the channel, the send fails and
 * the primary fails over.  A slow peer that still reads keeps resetting the
 * watchdog: then the stall lasts as long as that send, which the live RAM
 * phase before it keeps short for a guest that does not dirty memory
 * faster than the link carries it.
 */
#define COLO_PEER_TIMEOUT_MIN_MS  100

/*
 * The primary's -global migration.x-colo-max-residual and
 * x-colo-max-live-ms (colo.c): false, with @errp set, for a value out of
 * range.  migration_object_check() calls it, so a bad value stops QEMU at
 * startup.
 */
bool colo_check_properties(MigrationState *s, Error **errp);

typedef enum ColoPhase {
    COLO_PHASE_OFF,         /* no COLO session */
    COLO_PHASE_STARTING,    /* entering COLO, until the peer's hello */
    COLO_PHASE_RUNNING,     /* both guests run; waiting for a trigger */
    COLO_PHASE_CHECKPOINT,  /* a checkpoint is in flight */
    /*
     * secondary, or a primary with x-colo-primary-waits: the peer is
     * unreachable, the guest stopped until a decision
     */
    COLO_PHASE_LOST,
    COLO_PHASE_FAILOVER,    /* leaving COLO: failover and cleanup */
    COLO_PHASE__MAX,
} ColoPhase;

/* Why a checkpoint happens; also carried in the request message. */
typedef enum ColoTrigger {
    COLO_TRIGGER_PERIODIC,
    COLO_TRIGGER_MISMATCH,  /* colo-compare saw different output */
    COLO_TRIGGER_TIMEOUT,   /* colo-compare held a packet too long */
    COLO_TRIGGER_FORCED,    /* x-checkpoint-delay changed, or similar */
    COLO_TRIGGER__MAX,
} ColoTrigger;

/*
 * The steps of one checkpoint on the primary, in order (colo.c); their
 * durations are in query-colo-status and in the trace.  The pause is STOP
 * to RESUME.
 */
typedef enum ColoStep {
    COLO_STEP_REQUEST,      /* request sent until the secondary's reply */
    COLO_STEP_LIVE,         /* live RAM phase, the guest running */
    COLO_STEP_STOP,         /* stopping the guest */
    COLO_STEP_DISKS,        /* the disks' checkpoint (replication) */
    COLO_STEP_RAM,          /* dirty-bitmap sync and the residual RAM */
    COLO_STEP_DEVICE,       /* the device state saved into a buffer */
    COLO_STEP_SEND,         /* the device state sent */
    COLO_STEP_RECEIVED,     /* waiting for RECEIVED */
    COLO_STEP_RESUME,       /* output released, the guest resumed */
    COLO_STEP__MAX,
} ColoStep;

/* One checkpoint of the primary, step by step. */
typedef struct ColoCheckpointTimes {
    uint64_t step_us[COLO_STEP__MAX];
    uint64_t live_rounds;
    uint64_t live_bytes;        /* RAM sent while the guest ran */
    /* dirty RAM left when the guest stopped, sent while it was stopped */
    uint64_t residual_bytes;
    uint64_t throttle_pct;      /* the highest vCPU throttle of the phase */
} ColoCheckpointTimes;

typedef struct ColoStats {
    uint64_t checkpoints;
    uint64_t by_trigger[COLO_TRIGGER__MAX];
    uint64_t last_pause_us;
    uint64_t max_pause_us;
    uint64_t ram_bytes;
    uint64_t device_state_bytes;
    /* primary: its last checkpoint, and each field's maximum */
    bool has_steps;
    ColoCheckpointTimes last_steps;
    ColoCheckpointTimes max_steps;
} ColoStats;

/* What query-colo-status shows, read at one instant. */
typedef struct ColoSessionStatus {
    COLOMode mode;
    COLOMode last_mode;
    COLOExitReason reason;
    ColoStats stats;
} ColoSessionStatus;

/* ---- the COLO thread of this side ---- */

/*
 * Start a session in @mode on the given channels (phase STARTING).  The
 * watchdog calls @progress to tell a slow peer from a dead one.
 */
void colo_session_begin(COLOMode mode, QEMUFile *from_peer, QEMUFile *to_peer,
                        ColoWatchdogProgress *progress);
/*
 * End the session: phase OFF, remember its mode as the last mode and why it
 * ended, emit COLO_EXIT.  BQL held.
 */
void colo_session_end(Error *err);
/*
 * Move to @phase.  Only the transitions of the table in colo-session.c are
 * allowed; any other is a bug and aborts.
 */
void colo_set_phase(ColoPhase phase);
/* Bound the next wait on the peer by the peer timeout / lift it. */
void colo_arm(const char *what);
void colo_disarm(void);
/* Record one completed checkpoint. */
void colo_stats_checkpoint(ColoTrigger trigger, int64_t pause_us,
                           uint64_t ram_bytes, uint64_t device_state_bytes);
/* Primary: record the steps of the checkpoint recorded last. */
void colo_stats_steps(const ColoCheckpointTimes *times);
const char *colo_step_name(ColoStep step);
uint64_t colo_session_checkpoints(void);
/* x-colo-primary-waits, as read when the session began. */
bool colo_session_primary_waits(void);
/*
 * Primary: wait without the BQL for the next reason to checkpoint, at the
 * latest until @periodic_ms (QEMU_CLOCK_REALTIME) for a periodic one.
 * False when a failover was requested instead.
 */
bool colo_wait_trigger(int64_t periodic_ms, ColoTrigger *trigger);
/*
 * The peer is lost and nobody asked for a failover (the secondary always,
 * the primary with x-colo-primary-waits): shut the channels, phase LOST,
 * stop the guest, and wait for x-colo-lost-heartbeat or quit.  Without the
 * BQL.
 */
void colo_wait_for_decision(void);
/*
 * The guest is held stopped for COLO from colo_stop_guest() (run state
 * colo if it ran) until colo_resume_guest() or colo_release_guest().
 * Meanwhile the operator's stop and cont only say what happens at the end
 * (colo_guest_run_request()).  All with the BQL held.
 */
void colo_stop_guest(void);
/*
 * The secondary applied a checkpoint of a running primary guest, or leaves
 * COLO (@run false: a half-applied checkpoint; the guest stays stopped):
 * the hold ends; run the guest if COLO stopped it (run state colo, or
 * prelaunch after a reset while held).  A checkpoint of a stopped primary
 * guest leaves the hold on.
 */
void colo_resume_guest(bool run);
/*
 * The primary's checkpoint ended, or the primary leaves COLO: the guest
 * runs if it ran when it was stopped, unless the operator stopped it
 * since, or if the operator continued it since; a guest stopped by the
 * operator ends paused.
 */
void colo_release_guest(void);

/* ---- any thread ---- */

/* Shut the session's channels down, so blocked reads and writes fail. */
void colo_shutdown_channels(void);
bool colo_failover_requested(void);
bool colo_quitting(void);
/* Leave COLO on this side; false with @errp set if not possible now. */
bool colo_request_failover(Error **errp);
/* Primary: checkpoint now; ignored on the secondary or outside COLO. */
void colo_request_checkpoint(ColoTrigger trigger);
void colo_session_get_status(ColoSessionStatus *status);
const char *colo_trigger_name(ColoTrigger trigger);

#endif /* MIGRATION_COLO_SESSION_H */
