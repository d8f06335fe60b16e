/*
 * The HeartBeat engine of qemu-colo-agent (see colo-heartbeat.h)
 *
 * Copyright (c) 2026 The qemu-colo authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qemu/bswap.h"
#include "colo-heartbeat.h"

static const char *const health_names[COLO_HEALTH__MAX] = {
    [COLO_HEALTH_UNKNOWN] = "unknown",
    [COLO_HEALTH_RUNNING] = "running",
    [COLO_HEALTH_STOPPED] = "stopped",
    [COLO_HEALTH_GONE] = "gone",
};

static const char *const mode_names[COLO_HB_MODE__MAX] = {
    [COLO_HB_MODE_UNKNOWN] = "unknown",
    [COLO_HB_MODE_NONE] = "none",
    [COLO_HB_MODE_PRIMARY] = "primary",
    [COLO_HB_MODE_SECONDARY] = "secondary",
};

const char *colo_health_name(ColoHealth h)
{
    return h < COLO_HEALTH__MAX ? health_names[h] : "invalid";
}

const char *colo_hb_mode_name(ColoHbMode m)
{
    return m < COLO_HB_MODE__MAX ? mode_names[m] : "invalid";
}

const char *colo_peer_state_name(ColoPeerState s)
{
    switch (s) {
    case COLO_PEER_ALIVE:
        return "alive";
    case COLO_PEER_SILENT:
        return "silent";
    case COLO_PEER_GONE:
        return "gone";
    }
    return "invalid";
}

const char *colo_hb_quorum_name(ColoHbQuorum q)
{
    switch (q) {
    case COLO_HB_QUORUM_NONE:
        return "none";
    case COLO_HB_QUORUM_QUORATE:
        return "quorate";
    case COLO_HB_QUORUM_INQUORATE:
        return "inquorate";
    }
    return "invalid";
}

/* ---- wire format ------------------------------------------------------- */

/*
 * HMAC-SHA256 of the body with @key into @mac.  An empty key (auth none)
 * gives zeros.
 */
static void body_mac(const uint8_t *buf, const ColoHbKey *key, uint8_t *mac)
{
    g_autoptr(GHmac) h = NULL;
    gsize len = COLO_HB_MAC_LEN;

    if (!key->len) {
        memset(mac, 0, COLO_HB_MAC_LEN);
        return;
    }
    h = g_hmac_new(G_CHECKSUM_SHA256, key->data, key->len);
    g_hmac_update(h, buf, COLO_HB_BODY_LEN);
    g_hmac_get_digest(h, mac, &len);
    assert(len == COLO_HB_MAC_LEN);
}

void colo_hb_encode(const ColoHbMsg *msg, const ColoHbKey *key,
                    uint8_t *buf)
{
    memset(buf, 0, COLO_HB_WIRE_LEN);
    memcpy(buf, COLO_HB_MAGIC, 4);
    buf[4] = COLO_HB_VERSION;
    buf[5] = msg->health;
    buf[6] = msg->mode;
    buf[7] = key->len ? COLO_HB_AUTH_HMAC : COLO_HB_AUTH_NONE;
    stq_be_p(buf + 8, msg->seq);
    stq_be_p(buf + 16, msg->boot_id);
    stq_be_p(buf + 24, msg->wall_ms);
    /* names longer than the field are cut; the rest stays NUL */
    memcpy(buf + 32, msg->pair, strnlen(msg->pair, COLO_HB_NAME_MAX));
    memcpy(buf + 32 + COLO_HB_NAME_MAX + 1, msg->node,
           strnlen(msg->node, COLO_HB_NAME_MAX));
    body_mac(buf, key, buf + COLO_HB_BODY_LEN);
}

/* A NUL-terminated printable name in a field of COLO_HB_NAME_MAX + 1. */
static bool decode_name(const uint8_t *field, char *out)
{
    size_t len = strnlen((const char *)field, COLO_HB_NAME_MAX + 1);

    if (len == 0 || len > COLO_HB_NAME_MAX) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        if (!g_ascii_isgraph(field[i])) {
            return false;
        }
    }
    memcpy(out, field, len + 1);
    return true;
}

/* In time independent of where they differ: a MAC is no oracle. */
static bool mac_equal(const uint8_t *a, const uint8_t *b)
{
    uint8_t diff = 0;

    for (int i = 0; i < COLO_HB_MAC_LEN; i++) {
        diff |= a[i] ^ b[i];
    }
    return diff == 0;
}

ColoHbVerdict colo_hb_decode(const uint8_t *buf, size_t len,
                             const ColoHbKey *key, ColoHbMsg *msg,
                             const char **why)
{
    uint8_t mac[COLO_HB_MAC_LEN];

    if (len != COLO_HB_WIRE_LEN) {
        *why = "wrong length";
        return COLO_HB_RX_MALFORMED;
    }
    if (memcmp(buf, COLO_HB_MAGIC, 4) != 0) {
        *why = "bad magic";
        return COLO_HB_RX_MALFORMED;
    }
    if (buf[4] != COLO_HB_VERSION) {
        *why = "unknown version";
        return COLO_HB_RX_MALFORMED;
    }
    /* Nothing else is read before the MAC holds. */
    if (key->len) {
        body_mac(buf, key, mac);
        if (!mac_equal(mac, buf + COLO_HB_BODY_LEN)) {
            *why = "bad MAC (forged, another key, or damaged)";
            return COLO_HB_RX_FORGED;
        }
        if (buf[7] != COLO_HB_AUTH_HMAC) {
            *why = "bad auth field";
            return COLO_HB_RX_MALFORMED;
        }
    } else if (buf[7] != COLO_HB_AUTH_NONE) {
        *why = "the peer signs its heartbeats but this agent has "
               "heartbeat-auth = none";
        return COLO_HB_RX_MALFORMED;
    }
    if (buf[5] >= COLO_HEALTH__MAX || buf[6] >= COLO_HB_MODE__MAX) {
        *why = "bad health or mode";
        return COLO_HB_RX_MALFORMED;
    }
    msg->health = buf[5];
    msg->mode = buf[6];
    msg->seq = ldq_be_p(buf + 8);
    msg->boot_id = ldq_be_p(buf + 16);
    msg->wall_ms = ldq_be_p(buf + 24);
    if (!decode_name(buf + 32, msg->pair) ||
        !decode_name(buf + 32 + COLO_HB_NAME_MAX + 1, msg->node)) {
        *why = "bad pair or node name";
        return COLO_HB_RX_MALFORMED;
    }
    return COLO_HB_RX_OK;
}

/* ---- engine ------------------------------------------------------------ */

void colo_hb_init(ColoHeartbeat *hb, const ColoHbConfig *cfg, int64_t now)
{
    *hb = (ColoHeartbeat) {
        .cfg = *cfg,
        .start_ms = now,
        .peer_health = COLO_HEALTH_UNKNOWN,
        .peer_mode = COLO_HB_MODE_UNKNOWN,
        .local_health = COLO_HEALTH_UNKNOWN,
        .local_mode = COLO_HB_MODE_UNKNOWN,
        .session_mode = COLO_HB_MODE_UNKNOWN,
        .quorum = COLO_HB_QUORUM_NONE,
        .reason = "starting",
    };
}

static bool secondary_session(const ColoHeartbeat *hb)
{
    return hb->session_mode == COLO_HB_MODE_SECONDARY && !hb->took_over;
}

static void make_stale(ColoHeartbeat *hb, const char *why)
{
    if (!hb->stale) {
        hb->stale = true;
        hb->stale_why = why;
    }
}

static bool refuse(ColoHeartbeat *hb, ColoHbVerdict verdict,
                   const char *why)
{
    switch (verdict) {
    case COLO_HB_RX_FORGED:
        hb->rx_forged++;
        break;
    case COLO_HB_RX_CORRUPT:
        hb->rx_corrupt++;
        break;
    case COLO_HB_RX_REPLAYED:
        hb->rx_replayed++;
        break;
    case COLO_HB_RX_STALE:
        hb->rx_stale++;
        break;
    default:
        hb->rx_bad++;
        break;
    }
    hb->last_verdict = verdict;
    hb->last_bad = why;
    return false;
}

/*
 * Is a datagram of another boot id than the one we follow fresh?  Its
 * timestamp must be within the timeout of our clock (both ways), and newer
 * than the last datagram accepted from any earlier boot; and it must not
 * be the boot we left (two captured runs must not alternate).
 */
static const char *not_fresh(const ColoHeartbeat *hb, const ColoHbMsg *msg,
                             int64_t wall_ms)
{
    if (hb->peer_seen && msg->boot_id == hb->prev_boot_id) {
        return "from an earlier run of the peer's agent (a boot id it left)";
    }
    /* (no subtraction: the timestamp may be anything) */
    if (msg->wall_ms < wall_ms - hb->cfg.timeout_ms ||
        msg->wall_ms > wall_ms + hb->cfg.timeout_ms) {
        return "a new boot id with a timestamp not within the timeout of "
               "our clock (an earlier run's datagram, or the hosts' clocks "
               "disagree)";
    }
    if (hb->peer_seen && msg->wall_ms <= hb->peer_wall_ms) {
        return "a new boot id with a timestamp older than the last "
               "accepted datagram";
    }
    return NULL;
}

bool colo_hb_receive(ColoHeartbeat *hb, int64_t now, int64_t wall_ms,
                     const uint8_t *buf, size_t len)
{
    ColoHbMsg msg;
    const char *why;
    ColoHbVerdict v = colo_hb_decode(buf, len, &hb->cfg.key, &msg, &why);

    if (v == COLO_HB_RX_FORGED && hb->peer_seen &&
        ldq_be_p(buf + 16) == hb->peer_boot_id) {
        /* Most likely ours, damaged; an attacker can fake that too. */
        return refuse(hb, COLO_HB_RX_CORRUPT,
                      "bad MAC on a datagram of the peer's current boot id "
                      "(damaged, or forged)");
    }
    if (v != COLO_HB_RX_OK) {
        return refuse(hb, v, why);
    }
    if (strcmp(msg.pair, hb->cfg.pair) != 0) {
        return refuse(hb, COLO_HB_RX_FOREIGN, "from another pair");
    }
    if (strcmp(msg.node, hb->cfg.peer) != 0) {
        return refuse(hb, COLO_HB_RX_FOREIGN, "not from the peer node");
    }
    /*
     * Within one boot id the sequence number only grows.  Another boot id
     * (a restarted agent, or a datagram of an earlier run) must be fresh.
     */
    if (hb->peer_seen && msg.boot_id == hb->peer_boot_id) {
        if (msg.seq <= hb->peer_seq) {
            return refuse(hb, COLO_HB_RX_REPLAYED,
                          "not newer than the last accepted (a replay or "
                          "a duplicate)");
        }
    } else {
        why = not_fresh(hb, &msg, wall_ms);
        if (why) {
            return refuse(hb, COLO_HB_RX_STALE, why);
        }
        if (hb->peer_seen) {
            hb->prev_boot_id = hb->peer_boot_id;
        }
    }
    hb->last_verdict = COLO_HB_RX_OK;
    hb->peer_seen = true;
    hb->last_rx_ms = now;
    hb->peer_boot_id = msg.boot_id;
    hb->peer_seq = msg.seq;
    hb->peer_wall_ms = msg.wall_ms;
    hb->peer_health = msg.health;
    hb->peer_mode = msg.mode;
    hb->rx_ok++;
    if (!secondary_session(hb)) {
        return true;
    }
    /*
     * After the break any mode counts: the primary leaves COLO by itself
     * when the link breaks, and its agent may report the new mode a little
     * later.  A primary that died with the link is reported gone, not
     * running.
     */
    if (hb->link_lost && msg.health == COLO_HEALTH_RUNNING) {
        make_stale(hb, "the primary's QEMU was reported running after the "
                   "COLO link broke");
    }
    /*
     * "none" before it ever said "primary" is the start of the session:
     * its agent reads the new mode a little later.
     */
    if (msg.mode == COLO_HB_MODE_PRIMARY) {
        hb->peer_joined = true;
    } else if (hb->peer_joined && msg.mode == COLO_HB_MODE_NONE &&
               msg.health == COLO_HEALTH_RUNNING) {
        make_stale(hb, "the primary left COLO and runs alone");
    }
    return true;
}

void colo_hb_set_local_health(ColoHeartbeat *hb, int64_t now,
                              ColoHealth health)
{
    if (health == COLO_HEALTH_STOPPED &&
        hb->local_health != COLO_HEALTH_STOPPED) {
        hb->local_stopped_ms = now;
    }
    if (health == COLO_HEALTH_RUNNING &&
        hb->local_health == COLO_HEALTH_GONE) {
        /* A new QEMU: nothing of the old one's session applies. */
        hb->fenced = false;
        hb->session_mode = COLO_HB_MODE_UNKNOWN;
        hb->local_mode = COLO_HB_MODE_UNKNOWN;
        hb->link_lost = false;
        hb->took_over = false;
        hb->mode_reports = 0;
        hb->peer_joined = false;
        hb->stale = false;
    }
    hb->local_health = health;
}

static bool in_colo(ColoHbMode m)
{
    return m == COLO_HB_MODE_PRIMARY || m == COLO_HB_MODE_SECONDARY;
}

void colo_hb_set_local_mode(ColoHeartbeat *hb, ColoHbMode mode)
{
    if (in_colo(mode) && !in_colo(hb->local_mode)) {
        /* A new COLO session: the last one's failure is history. */
        hb->session_mode = mode;
        hb->link_lost = false;
        hb->took_over = false;
        hb->peer_joined = false;
        hb->stale = false;
    }
    hb->mode_reports++;
    hb->local_mode = mode;
}

void colo_hb_link_lost(ColoHeartbeat *hb)
{
    hb->link_lost = true;
}

void colo_hb_session_broken(ColoHeartbeat *hb)
{
    /* What the primary did before we looked is unknown: assume the worst */
    if (secondary_session(hb) && !hb->link_lost && hb->mode_reports <= 1) {
        make_stale(hb, "the COLO link broke before this agent watched it: "
                   "the primary may have run on alone");
    }
    colo_hb_link_lost(hb);
}

void colo_hb_set_quorum(ColoHeartbeat *hb, ColoHbQuorum quorum,
                        bool peer_member, int64_t now)
{
    bool out = quorum == COLO_HB_QUORUM_QUORATE && !peer_member;

    if (out && !(hb->quorum == COLO_HB_QUORUM_QUORATE && !hb->peer_member)) {
        hb->voted_out_ms = now;
    }
    hb->quorum = quorum;
    hb->peer_member = peer_member;
}

int64_t colo_hb_silence_ms(const ColoHeartbeat *hb, int64_t now)
{
    return hb->peer_seen ? now - hb->last_rx_ms : -1;
}

/*
 * The peer has been out of our quorate partition for a few intervals:
 * corosync's proof it is gone.  The wait gives the other partition, which
 * may learn that it lost quorum a little later, time to fence itself.
 */
static bool peer_voted_out(const ColoHeartbeat *hb, int64_t now)
{
    return hb->cfg.use_quorum && hb->quorum == COLO_HB_QUORUM_QUORATE &&
           !hb->peer_member &&
           now - hb->voted_out_ms >= COLO_HB_VOTED_OUT_GRACE *
                                     hb->cfg.interval_ms;
}

ColoPeerState colo_hb_peer_state(const ColoHeartbeat *hb, int64_t now)
{
    int64_t silence = now - (hb->peer_seen ? hb->last_rx_ms : hb->start_ms);

    if (hb->peer_seen && hb->peer_health == COLO_HEALTH_GONE) {
        return COLO_PEER_GONE;
    }
    if (peer_voted_out(hb, now) && silence >= hb->cfg.timeout_ms) {
        return COLO_PEER_GONE;
    }
    if (!hb->peer_seen || silence > 2 * hb->cfg.interval_ms ||
        hb->peer_health == COLO_HEALTH_STOPPED) {
        return COLO_PEER_SILENT;
    }
    return COLO_PEER_ALIVE;
}

static ColoHbAction act(ColoHeartbeat *hb, ColoHbAction action,
                        const char *reason)
{
    hb->reason = reason;
    if (action != COLO_HB_NOTHING) {
        hb->acting = true;
    }
    return action;
}

ColoHbAction colo_hb_decide(ColoHeartbeat *hb, int64_t now)
{
    ColoPeerState peer = colo_hb_peer_state(hb, now);
    int64_t silence = now - (hb->peer_seen ? hb->last_rx_ms : hb->start_ms);
    bool timed_out = hb->peer_seen && silence >= hb->cfg.timeout_ms;

    if (hb->acting || hb->fenced || now < hb->retry_ms) {
        return COLO_HB_NOTHING;
    }

    /*
     * Our QEMU is stopped and the peer can serve: make sure ours never
     * comes back (a resumed primary next to a promoted secondary would be
     * split brain), then the peer takes over on our "gone".
     */
    if (hb->local_health == COLO_HEALTH_STOPPED &&
        now - hb->local_stopped_ms >= hb->cfg.timeout_ms &&
        in_colo(hb->session_mode) && !hb->took_over &&
        peer == COLO_PEER_ALIVE && hb->peer_health == COLO_HEALTH_RUNNING) {
        return act(hb, COLO_HB_FENCE,
                   "the local QEMU has been stopped for the timeout while "
                   "the peer runs: fencing it so that the peer takes over");
    }
    if (hb->local_health != COLO_HEALTH_RUNNING) {
        return act(hb, COLO_HB_NOTHING, "the local QEMU is not running");
    }

    /*
     * With corosync, a serving primary that loses quorum while the peer
     * is silent stops serving: the quorate side will take over.
     */
    if (hb->cfg.use_quorum && hb->quorum == COLO_HB_QUORUM_INQUORATE &&
        peer != COLO_PEER_ALIVE &&
        (hb->local_mode == COLO_HB_MODE_PRIMARY ||
         (hb->session_mode == COLO_HB_MODE_PRIMARY &&
          hb->local_mode == COLO_HB_MODE_NONE))) {
        return act(hb, COLO_HB_FENCE,
                   "our partition is not quorate and the peer is silent: "
                   "fencing the local QEMU (the quorate side takes over)");
    }
    if (hb->took_over) {
        return act(hb, COLO_HB_NOTHING, hb->reason);
    }

    switch (hb->session_mode) {
    case COLO_HB_MODE_PRIMARY:
        if (hb->link_lost) {
            return act(hb, COLO_HB_TAKE_OVER,
                       "the COLO link to the secondary broke: running "
                       "alone, unprotected");
        }
        if (peer == COLO_PEER_GONE) {
            return act(hb, COLO_HB_TAKE_OVER,
                       "the secondary is gone: running alone, unprotected");
        }
        if (timed_out) {
            /*
             * With corosync, silence alone is not enough: the other
             * partition may win the witness's vote, and whatever we
             * released alone would be lost with us.  Stay in COLO (output
             * held) until corosync drops the peer from our quorate
             * partition (peer gone, above) or takes quorum from us.
             */
            if (hb->cfg.use_quorum) {
                return act(hb, COLO_HB_NOTHING,
                           "the secondary is silent; output held until "
                           "corosync drops it from our quorate partition");
            }
            return act(hb, COLO_HB_TAKE_OVER,
                       "the secondary has been silent for the timeout: "
                       "running alone, unprotected");
        }
        return act(hb, COLO_HB_NOTHING, "protecting");
    case COLO_HB_MODE_SECONDARY:
        if (hb->stale) {
            return act(hb, COLO_HB_NOTHING,
                       peer == COLO_PEER_GONE ?
                       "stale: the primary is gone, but it may have served "
                       "alone since this secondary's last checkpoint: not "
                       "taking over (re-protect, or fail over by hand "
                       "accepting that loss)" :
                       "stale: the primary may have served alone since this "
                       "secondary's last checkpoint; not taking over until "
                       "re-protected");
        }
        if (peer == COLO_PEER_GONE) {
            return act(hb, COLO_HB_TAKE_OVER,
                       hb->peer_health == COLO_HEALTH_GONE ?
                       "the primary's agent reports its QEMU gone: taking "
                       "over" :
                       "the primary left the quorate membership and is "
                       "silent: taking over");
        }
        if (timed_out || (!hb->peer_seen && hb->link_lost)) {
            return act(hb, COLO_HB_NOTHING,
                       hb->cfg.use_quorum ?
                       "the primary is silent but not provably gone "
                       "(waiting for corosync's membership)" :
                       "the primary is silent but not provably gone "
                       "(no corosync): waiting, the primary keeps serving "
                       "if it is alive");
        }
        if (hb->link_lost) {
            return act(hb, COLO_HB_NOTHING,
                       "the COLO link broke but the primary is alive: it "
                       "runs on alone");
        }
        return act(hb, COLO_HB_NOTHING, "protecting");
    default:
        return act(hb, COLO_HB_NOTHING, "not in COLO");
    }
}

void colo_hb_action_done(ColoHeartbeat *hb, ColoHbAction action, bool ok,
                         int64_t now)
{
    hb->acting = false;
    if (!ok) {
        hb->retry_ms = now + hb->cfg.timeout_ms;
        return;
    }
    if (action == COLO_HB_TAKE_OVER) {
        hb->took_over = true;
    } else if (action == COLO_HB_FENCE) {
        hb->fenced = true;
    }
}
