/*
 * The HeartBeat engine of qemu-colo-agent: peer liveness and the failover
 * decision, without I/O
 *
 * Copyright (c) 2026 The qemu-colo authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * The agent feeds in what it sees (heartbeat datagrams from the peer's
 * agent, the health and COLO mode of the local QEMU, the COLO_LINK_LOST
 * event, corosync's quorum) with the time they were seen, and asks
 * colo_hb_decide() what to do.  Time is an input (milliseconds on any
 * monotonic clock), so the unit test drives it without sleeping.
 *
 * The rules, in short (docs/system/qemu-colo-heartbeat.rst has them all):
 * - A primary may always drop protection and run alone: it does so when
 *   the link is lost, the peer's QEMU is gone, or the peer has been silent
 *   for the timeout (with corosync: and is out of our quorate partition).
 *   It never stops serving, except when corosync says its partition is
 *   not quorate and the peer is silent: then it fences its own QEMU,
 *   because the other partition may take over.
 * - A secondary takes over only when the primary is provably gone: the
 *   primary's agent reported its QEMU gone (exited, or fenced after being
 *   stopped), or, with corosync, our partition is quorate, the peer is
 *   not a member and it has been silent for the timeout.  Silence alone is
 *   no proof (a cut link looks the same): without corosync the secondary
 *   then waits.
 * - A secondary is stale, and never takes over, once the primary may have
 *   answered clients or written its disk alone since the last checkpoint:
 *   none of that is in the secondary's state.  That is: after its COLO
 *   link broke the primary's QEMU was reported running (any mode); or the
 *   primary, reported in COLO in this session, was reported running
 *   outside it; or the agent learned of the break in its first report of
 *   this QEMU (it started since: the primary's doings are unknown).
 *   Only re-protection (a new COLO session, or a new QEMU) clears it.
 * - An agent whose QEMU is stopped (SIGSTOP, a hung host) for the timeout
 *   while the peer is alive fences (SIGKILLs) it and reports it gone, so
 *   the peer can take over without risk of the stopped one coming back.
 */

#ifndef TOOLS_COLO_HEARTBEAT_H
#define TOOLS_COLO_HEARTBEAT_H

/* The local QEMU as its agent sees it; sent in every heartbeat. */
typedef enum ColoHealth {
    COLO_HEALTH_UNKNOWN,    /* the agent never reached its QEMU (yet) */
    COLO_HEALTH_RUNNING,    /* the process runs (QMP may be slow) */
    COLO_HEALTH_STOPPED,    /* the process is stopped (SIGSTOP, traced) */
    COLO_HEALTH_GONE,       /* the process the agent watched has exited */
    COLO_HEALTH__MAX
} ColoHealth;

/* The COLO mode of a node's QEMU (query-colo-status). */
typedef enum ColoHbMode {
    COLO_HB_MODE_UNKNOWN,
    COLO_HB_MODE_NONE,      /* not in COLO: serving alone, or not started */
    COLO_HB_MODE_PRIMARY,
    COLO_HB_MODE_SECONDARY,
    COLO_HB_MODE__MAX
} ColoHbMode;

typedef enum ColoPeerState {
    COLO_PEER_ALIVE,        /* heartbeats arrive, its QEMU runs */
    COLO_PEER_SILENT,       /* heartbeats missed, or its QEMU is stopped */
    COLO_PEER_GONE,         /* provably gone */
} ColoPeerState;

typedef enum ColoHbQuorum {
    COLO_HB_QUORUM_NONE,    /* corosync not used */
    COLO_HB_QUORUM_QUORATE,
    COLO_HB_QUORUM_INQUORATE,
} ColoHbQuorum;

typedef enum ColoHbAction {
    COLO_HB_NOTHING,
    COLO_HB_TAKE_OVER,      /* colo_action_take_over() on the local QEMU */
    COLO_HB_FENCE,          /* SIGKILL the local QEMU */
} ColoHbAction;

/* A heartbeat datagram: fixed size, network byte order, no padding. */
#define COLO_HB_MAGIC       "CHB1"
#define COLO_HB_VERSION     1
#define COLO_HB_NAME_MAX    31
#define COLO_HB_WIRE_LEN    (4 + 4 + 4 + 8 + 2 * (COLO_HB_NAME_MAX + 1))

typedef struct ColoHbMsg {
    uint32_t seq;           /* counts up from 1 per agent start */
    uint64_t boot_id;       /* random per agent start */
    ColoHealth health;
    ColoHbMode mode;
    char pair[COLO_HB_NAME_MAX + 1];
    char node[COLO_HB_NAME_MAX + 1];
} ColoHbMsg;

void colo_hb_encode(const ColoHbMsg *msg, uint8_t *buf);
/* False, with *why (static) set, if @buf is not a valid heartbeat. */
bool colo_hb_decode(const uint8_t *buf, size_t len, ColoHbMsg *msg,
                    const char **why);

typedef struct ColoHbConfig {
    const char *pair;       /* names checked in received heartbeats */
    const char *peer;
    int64_t interval_ms;
    int64_t timeout_ms;
    bool use_quorum;        /* act on corosync's quorum (see above) */
} ColoHbConfig;

typedef struct ColoHeartbeat {
    ColoHbConfig cfg;
    int64_t start_ms;

    /* the peer, from its last heartbeat */
    bool peer_seen;
    int64_t last_rx_ms;
    uint64_t peer_boot_id;
    uint32_t peer_seq;
    ColoHealth peer_health;
    ColoHbMode peer_mode;
    uint64_t rx_ok, rx_bad, rx_stale;
    const char *last_bad;   /* why the last bad datagram was refused */

    /* the local QEMU */
    ColoHealth local_health;
    int64_t local_stopped_ms;  /* since when it is stopped */
    ColoHbMode local_mode;
    /* the mode of the current or last COLO session: what a failure asks */
    ColoHbMode session_mode;
    bool link_lost;         /* COLO_LINK_LOST in this COLO session */
    int mode_reports;       /* of this QEMU so far */
    bool peer_joined;       /* the peer reported "primary" in it */
    bool stale;             /* behind its primary: never take over */
    const char *stale_why;  /* static: for the log */

    ColoHbQuorum quorum;
    bool peer_member;       /* the peer is in our corosync partition */
    int64_t voted_out_ms;   /* since when quorate without the peer */

    /* decisions */
    bool acting;            /* an action runs; no new decision meanwhile */
    bool took_over;         /* done in this COLO session */
    bool fenced;
    int64_t retry_ms;       /* a failed action is retried from then on */
    const char *reason;     /* why the last decision (static string) */
} ColoHeartbeat;

void colo_hb_init(ColoHeartbeat *hb, const ColoHbConfig *cfg, int64_t now);

/*
 * A datagram from the peer's address.  Returns false (and counts it) if it
 * is garbage, from another pair or node, or older than one already seen.
 * One that reports the primary's QEMU running, received by a secondary
 * after its COLO link broke, makes it stale.
 */
bool colo_hb_receive(ColoHeartbeat *hb, int64_t now, const uint8_t *buf,
                     size_t len);

void colo_hb_set_local_health(ColoHeartbeat *hb, int64_t now,
                              ColoHealth health);
/* A new COLO session (NONE -> PRIMARY/SECONDARY) clears the past one. */
void colo_hb_set_local_mode(ColoHeartbeat *hb, ColoHbMode mode);
/*
 * The local QEMU's COLO link broke (COLO_LINK_LOST, or query-colo-status
 * says its secondary session failed).  A secondary whose primary was last
 * reported running outside COLO is stale at once.
 */
void colo_hb_link_lost(ColoHeartbeat *hb);
/*
 * query-colo-status says the local session failed (the agent may have
 * missed COLO_LINK_LOST): as colo_hb_link_lost(), and if this is the first
 * report of this QEMU, the agent has not watched the session: a secondary
 * is stale.  Call it after colo_hb_set_local_mode() with the same report.
 */
void colo_hb_session_broken(ColoHeartbeat *hb);
/*
 * Corosync's view.  "Quorate without the peer" proves the peer gone only
 * after COLO_HB_VOTED_OUT_GRACE intervals (and the heartbeat timeout).
 */
#define COLO_HB_VOTED_OUT_GRACE 3
void colo_hb_set_quorum(ColoHeartbeat *hb, ColoHbQuorum quorum,
                        bool peer_member, int64_t now);

ColoPeerState colo_hb_peer_state(const ColoHeartbeat *hb, int64_t now);
/* Milliseconds since the last heartbeat, -1 if none yet. */
int64_t colo_hb_silence_ms(const ColoHeartbeat *hb, int64_t now);

/*
 * What to do now.  After COLO_HB_TAKE_OVER or COLO_HB_FENCE the caller
 * runs the action and reports with colo_hb_action_done(); until then no
 * other action is proposed.  hb->reason says why.
 */
ColoHbAction colo_hb_decide(ColoHeartbeat *hb, int64_t now);
void colo_hb_action_done(ColoHeartbeat *hb, ColoHbAction action, bool ok,
                         int64_t now);

const char *colo_health_name(ColoHealth h);
const char *colo_hb_mode_name(ColoHbMode m);
const char *colo_peer_state_name(ColoPeerState s);
const char *colo_hb_quorum_name(ColoHbQuorum q);

#endif /* TOOLS_COLO_HEARTBEAT_H */
