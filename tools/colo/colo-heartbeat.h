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

/*
 * A heartbeat datagram: fixed size (COLO_HB_WIRE_LEN), network byte order,
 * no padding (docs/system/qemu-colo-heartbeat.rst, "Datagrams"):
 *
 *   0  magic "CHB1"            4  version (2)    5  health   6  mode
 *   7  auth (0 none, 1 HMAC-SHA256)
 *   8  seq (64 bits)          16  boot id        24  sender's wall clock
 *                                                    (ms since the epoch)
 *  32  pair name (32 bytes, NUL-padded)          64  node name (32 bytes)
 *  96  HMAC-SHA256 over bytes 0..95 with the pair's key (zero with none)
 */
#define COLO_HB_MAGIC       "CHB1"
#define COLO_HB_VERSION     2
#define COLO_HB_NAME_MAX    31
#define COLO_HB_MAC_LEN     32
#define COLO_HB_KEY_MIN     32      /* bytes of key material, at least */
#define COLO_HB_BODY_LEN    (4 + 4 + 8 + 8 + 8 + 2 * (COLO_HB_NAME_MAX + 1))
#define COLO_HB_WIRE_LEN    (COLO_HB_BODY_LEN + COLO_HB_MAC_LEN)

#define COLO_HB_AUTH_NONE   0
#define COLO_HB_AUTH_HMAC   1

typedef struct ColoHbMsg {
    uint64_t seq;           /* counts up from 1 per agent start */
    uint64_t boot_id;       /* random per agent start */
    int64_t wall_ms;        /* the sender's wall clock when it sent it */
    ColoHealth health;
    ColoHbMode mode;
    char pair[COLO_HB_NAME_MAX + 1];
    char node[COLO_HB_NAME_MAX + 1];
} ColoHbMsg;

/* The pair's heartbeat key; len 0 (data NULL): heartbeat-auth = none */
typedef struct ColoHbKey {
    const uint8_t *data;
    size_t len;
} ColoHbKey;

/* How a received datagram was judged (hb->last_verdict). */
typedef enum ColoHbVerdict {
    COLO_HB_RX_OK,
    COLO_HB_RX_MALFORMED,   /* length, magic, version, fields, auth kind */
    COLO_HB_RX_FORGED,      /* the MAC does not verify (or is missing) */
    /* as forged, but it names the peer's current boot: likely damaged */
    COLO_HB_RX_CORRUPT,
    COLO_HB_RX_FOREIGN,     /* authentic, but another pair or node */
    COLO_HB_RX_REPLAYED,    /* this boot, but not newer than the last */
    COLO_HB_RX_STALE,       /* a new boot id with an old timestamp */
} ColoHbVerdict;

void colo_hb_encode(const ColoHbMsg *msg, const ColoHbKey *key,
                    uint8_t *buf);
/*
 * The MAC is checked before any field is read.  Returns COLO_HB_RX_OK,
 * MALFORMED or FORGED, with *why (static) set when not OK.
 */
ColoHbVerdict colo_hb_decode(const uint8_t *buf, size_t len,
                             const ColoHbKey *key, ColoHbMsg *msg,
                             const char **why);

typedef struct ColoHbConfig {
    const char *pair;       /* names checked in received heartbeats */
    const char *peer;
    int64_t interval_ms;
    int64_t timeout_ms;     /* also the freshness window of a new boot */
    bool use_quorum;        /* act on corosync's quorum (see above) */
    ColoHbKey key;          /* len 0: heartbeat-auth = none */
} ColoHbConfig;

typedef struct ColoHeartbeat {
    ColoHbConfig cfg;
    int64_t start_ms;

    /* the peer, from its last heartbeat */
    bool peer_seen;
    int64_t last_rx_ms;
    uint64_t peer_boot_id;
    uint64_t peer_seq;
    int64_t peer_wall_ms;   /* its timestamp: a new boot must be newer */
    uint64_t prev_boot_id;  /* the boot id followed before this one */
    ColoHealth peer_health;
    ColoHbMode peer_mode;
    uint64_t rx_ok, rx_bad, rx_forged, rx_corrupt, rx_replayed, rx_stale;
    ColoHbVerdict last_verdict;
    const char *last_bad;   /* why the last refused datagram was refused */

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
 * A datagram from the peer's address, received at @now (monotonic) and
 * @wall_ms (this host's wall clock, ms since the epoch).  Returns false,
 * counts it by its verdict and ignores it if it is garbage, does not carry
 * the pair's MAC, is from another pair or node, or is not newer than what
 * was accepted: within one boot id the sequence number must grow; a new
 * boot id is accepted only if its timestamp is within the timeout of
 * @wall_ms and newer than the last accepted datagram's.
 * One that reports the primary's QEMU running, received by a secondary
 * after its COLO link broke, makes it stale.
 */
bool colo_hb_receive(ColoHeartbeat *hb, int64_t now, int64_t wall_ms,
                     const uint8_t *buf, size_t len);

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
