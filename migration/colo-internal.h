/*
 * COLO: state shared by the controller's files (colo.c, colo-incoming.c,
 * colo-failover.c, colo-ram.c)
 *
 * Copyright (c) 2026 The qemu-colo authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * One COLO session at a time per QEMU process, on one side: the state below
 * is that session's.  Its phase machine (ColoPhase) is the only state
 * machine; the failover status of the public API is derived from it.
 *
 * Threads: the primary runs its checkpoint loop on the migration thread, the
 * secondary on the "colo-incoming" thread; both drop the big QEMU lock (BQL)
 * while they wait on the peer and take it to stop/start the guest, to save
 * or load state and to call the block, net and replication layers.  The
 * monitor (main loop, BQL held) and the compare's iothread (no BQL) reach
 * the session only through colo_request_failover() and
 * colo_request_checkpoint().
 *
 * Locking: colo_session.lock protects every field of ColoSession; it is a
 * leaf lock, never held across a blocking call or while taking the BQL.
 */

#ifndef MIGRATION_COLO_INTERNAL_H
#define MIGRATION_COLO_INTERNAL_H

#include "qapi/qapi-types-migration.h"
#include "qemu/thread.h"
#include "qemu-file.h"
#include "colo-watchdog.h"

/*
 * How long a checkpoint step may go without progress (bytes sent, pages
 * received: see colo_session_progress()) before the peer counts as gone
 * and COLO fails over: -global migration.x-colo-peer-timeout=MS, default
 * 15000, at least COLO_PEER_TIMEOUT_MIN_MS.  Read at the start of a session.
 */
#define COLO_PEER_TIMEOUT_MIN_MS  100

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
} ColoPhase;

/* Why a checkpoint happens; also carried in the request message. */
typedef enum ColoTrigger {
    COLO_TRIGGER_PERIODIC,
    COLO_TRIGGER_MISMATCH,  /* colo-compare saw different output */
    COLO_TRIGGER_TIMEOUT,   /* colo-compare held a packet too long */
    COLO_TRIGGER_FORCED,    /* x-checkpoint-delay changed, or similar */
    COLO_TRIGGER__MAX,
} ColoTrigger;

typedef struct ColoStats {
    uint64_t checkpoints;
    uint64_t by_trigger[COLO_TRIGGER__MAX];
    uint64_t last_pause_us;
    uint64_t max_pause_us;
    uint64_t ram_bytes;
    uint64_t device_state_bytes;
} ColoStats;

typedef struct ColoSession {
    QemuMutex lock;
    COLOMode mode;              /* COLO_MODE_NONE when OFF */
    COLOMode last_mode;
    COLOExitReason exit_reason; /* of the last session, or PROCESSING */
    ColoPhase phase;
    bool failover_requested;    /* by x-colo-lost-heartbeat or shutdown */
    bool quitting;              /* QEMU is exiting: never restart a guest */
    unsigned pending_triggers;  /* bit (1 << ColoTrigger) */
    QemuSemaphore wake;         /* wakes the primary's checkpoint loop */
    QEMUFile *from_peer;        /* shut down to unblock the COLO thread */
    QEMUFile *to_peer;
    ColoWatchdog *watchdog;
    uint32_t peer_timeout_ms;   /* x-colo-peer-timeout, for this session */
    bool primary_waits;         /* x-colo-primary-waits, for this session */
    ColoStats stats;
} ColoSession;

extern ColoSession colo_session;

/* colo.c */
void colo_set_phase(ColoPhase phase);
/* Start a session in @mode on the given channels (phase STARTING). */
void colo_session_begin(COLOMode mode, QEMUFile *from_peer, QEMUFile *to_peer);
/*
 * End the session: phase OFF, remember @mode as last mode and why it ended,
 * emit COLO_EXIT.  Called with the BQL held.
 */
void colo_session_end(Error *err);
/* Record one completed checkpoint. */
void colo_stats_checkpoint(ColoTrigger trigger, int64_t pause_us,
                           uint64_t ram_bytes, uint64_t device_state_bytes);
/* Shut the session's channels down, so blocked reads and writes fail. */
void colo_shutdown_channels(void);
/*
 * The peer is lost and nobody asked for a failover (the secondary always,
 * the primary with x-colo-primary-waits): shut the channels, phase LOST,
 * stop the guest, and wait for x-colo-lost-heartbeat or quit.  COLO thread,
 * without the BQL.
 */
void colo_wait_for_decision(void);
/* Bound the next wait on the peer by the peer timeout / lift it. */
void colo_arm(const char *what);
void colo_disarm(void);
bool colo_failover_requested(void);
bool colo_quitting(void);
void colo_request_checkpoint(ColoTrigger trigger);
/* Leaving COLO: run the guest again if COLO stopped it.  BQL held. */
void colo_resume_guest(void);
const char *colo_trigger_name(ColoTrigger trigger);

/* colo-failover.c */
/*
 * Leaving COLO in @mode: stop disk replication (on the secondary this
 * commits the active disk) and tell the proxy objects.  Failures are
 * reported, not fatal: the guest must run on.  BQL held.
 */
void colo_failover_release(COLOMode mode);
/* Leave COLO on this side; false with @errp set if not possible now. */
bool colo_request_failover(Error **errp);

/* colo-ram.c (secondary) */
bool colo_ram_start_dirty_log(Error **errp);
/* Copy pages the primary sent or the secondary dirtied: cache -> RAM. */
uint64_t colo_ram_flush(void);
void colo_ram_release(void);
/* Pages received into the cache so far (grows while a checkpoint loads). */
uint64_t colo_ram_pages_received(void);

#endif /* MIGRATION_COLO_INTERNAL_H */
