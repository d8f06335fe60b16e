/*
 * COLO proxy: the compare engine (connection tracking, TCP byte streams)
 *
 * Copyright (c) 2026 The qemu-colo authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * Threads and locking: none inside.  An engine belongs to its caller's
 * thread (colo-compare: its iothread); every field below is only touched
 * from there.  The release callback runs synchronously and must not call
 * back into the engine.
 *
 * Data structures: a hash table of connections (ColoConn) keyed by
 * ColoConnKey; per connection and side a queue of held packets in arrival
 * order; per side an engine-wide queue of the same packets in arrival
 * order (oldest first: timeouts and flush order); connections on an LRU
 * list (least recently used first) for aging and eviction.
 *
 * Release rules (colo-stream.h) against the output-commit promise: which
 * path may let primary TCP bytes out without the secondary's, and the
 * test under /colo-stream/tcp/ that pins it.
 *
 *  new SYN on a 4-tuple whose old connection holds packets: was placed in
 *    the old numbering and, for half of all ISNs, released as a
 *    retransmission; now a mismatch, held (audit/new-syn-while-holding)
 *  new SYN on an idle 4-tuple: compared from its SYN (audit/new-syn-idle)
 *  the secondary resending its SYN: was taken for a new connection (a
 *    spurious mismatch); now stays at position 0
 *    (audit/secondary-syn-retransmitted)
 *  empty segment without ACK, SYN, FIN, RST: was released at once; now
 *    waits for the same from the secondary (audit/empty-without-ack)
 *  2^32 wrap: positions are relative to the ISN, compared modulo 2^32
 *    (wraparound, audit/overlap-across-wrap)
 *  retransmission wholly below the matched point: out at once; relies on
 *    TCP resending the bytes it sent (retransmission)
 *  retransmission carrying new bytes: held until those match
 *    (retransmission, audit/overlap-across-wrap)
 *  retransmission overlapping primary bytes held but not yet matched:
 *    only the first copy is compared; was: the second left with whatever
 *    it carried; now: copies that differ are a mismatch
 *    (audit/overlap-differs-from-held)
 *  out of order, either side: compared by position; primary segments leave
 *    in arrival order (reordering, audit/primary-out-of-order)
 *  RST: its data matched and an RST from the secondary (rst,
 *    audit/rst-and-fin-hold)
 *  an empty copy of an RST both sides sent (same sequence number, ACK
 *    and flags; sent again to the client's FIN sent again): was held for
 *    an RST from the secondary that did not come, until the next
 *    checkpoint or a compare timeout; now out at once, the secondary's
 *    copies done, until a SYN or the flush (audit/rst-repeated)
 *  a pure ACK followed only by pure ACKs and an empty RST, where the
 *    secondary's first held segment is that RST (the primary ACKed the
 *    client's FIN, the secondary reset, both reset the FIN sent again):
 *    was held, the RSTs behind it, until the next checkpoint; now dropped,
 *    as the network may drop an ACK (audit/ack-before-common-rst)
 *  FIN: one stream position, compared (fin-difference,
 *    audit/rst-and-fin-hold)
 *  window probe: with data compared as data; empty (Linux) a pure ACK,
 *    out once the secondary acknowledged as far (audit/window-probe,
 *    ack-coalescing)
 *  SYN with data: its data compared (audit/syn-with-data)
 *  below the first sequence number seen after a checkpoint: out at once;
 *    relies on those bytes having been sent before the checkpoint, whose
 *    flush released them (audit/below-first-seen)
 *  the primary sending released bytes again before anything else of the
 *    connection after a checkpoint (a loss probe as it resumes), when the
 *    secondary does not: was held, with all after it, until the next
 *    checkpoint; now out at once if wholly below the end of what the
 *    flush released, which the flush notes per connection
 *    (audit/primary-resends-first)
 *  a primary segment the secondary covered in part: was held whole until
 *    the next checkpoint (bulk TCP stalled); now the matched part leaves,
 *    the rest is held (split/prefix, split/remainder-differs,
 *    split/flags)
 *  the secondary sending released bytes again before the primary's first
 *    segment after a checkpoint: held the primary's new bytes until the
 *    next checkpoint; now position 0 is the primary's first segment, the
 *    bytes above it compared (audit/secondary-resends-first)
 */

#include "qemu/osdep.h"
#include "qemu/bswap.h"
#include "qemu/queue.h"
#include "net/colo-stream.h"

typedef struct ColoConnKey {
    uint32_t vlan_key;
    uint8_t addr_a[16];
    uint8_t addr_b[16];
    uint16_t port_a;            /* non-IP: the EtherType */
    uint16_t port_b;
    uint8_t kind;
    uint8_t ip_proto;
    uint16_t zero;              /* keeps the key free of padding */
} ColoConnKey;

typedef struct ColoConn ColoConn;

typedef struct ColoHeld {
    QTAILQ_ENTRY(ColoHeld) conn_link;
    QTAILQ_ENTRY(ColoHeld) side_link;
    ColoConn *conn;
    ColoSide side;
    uint8_t *buf;               /* the allocation */
    uint8_t *frame;             /* in buf; vnet header first */
    size_t len;
    uint32_t vnet_hdr_len;
    int64_t arrival_ns;
    bool timed_out;
    ColoPacketInfo info;        /* offsets from frame + vnet_hdr_len */

    /* TCP: the stream positions this segment covers */
    uint32_t rel_start;
    uint32_t span;              /* SYN + data + FIN */
    bool syn;
    bool fin;
    bool rst;
    bool has_ack;
    bool paired;                /* waits for the same kind from the other */
    uint32_t ack;
} ColoHeld;

typedef QTAILQ_HEAD(, ColoHeld) ColoHeldQueue;

struct ColoConn {
    ColoConnKey key;
    ColoHeldQueue held[2];
    uint32_t nheld[2];
    QTAILQ_ENTRY(ColoConn) lru_link;
    int64_t last_seen_ns;
    uint64_t period;            /* stats.flushes when last seen */
    bool diverged;              /* mismatch: hold all until the flush */

    /* TCP */
    bool base_known;
    bool base_is_isn;           /* base is the primary's SYN */
    bool base_by_secondary;     /* base came from a secondary segment */
    uint32_t base;              /* sequence number of stream position 0 */
    bool sec_isn_known;
    uint32_t sec_isn;           /* the secondary's SYN, in its numbering */
    uint32_t matched;           /* both sides agree on [0, matched) */
    uint32_t pri_end;           /* furthest end of a primary segment */
    bool sec_ack_known;
    uint32_t sec_max_ack;       /* highest ACK the secondary sent */
    bool renumbered;            /* a new SYN came while packets were held */
    /* Where the primary's bytes released by the last flush end. */
    bool flushed_known;
    uint32_t flushed_end;       /* a sequence number */
    /* An RST that both sides sent, as the primary sent it */
    bool rst_matched;
    uint8_t rst_flags;
    uint32_t rst_seq;
    uint32_t rst_ack;
};

struct ColoEngine {
    ColoEngineConfig cfg;
    ColoReleaseFn *release;
    void *opaque;
    GHashTable *conns;
    QTAILQ_HEAD(, ColoConn) lru;
    ColoHeldQueue all[2];
    ColoEngineStats stats;
};

enum {
    TOK_SYN,
    TOK_DATA,
    TOK_FIN,
};

static bool seq_lt(uint32_t a, uint32_t b)
{
    return (int32_t)(a - b) < 0;
}

static bool seq_le(uint32_t a, uint32_t b)
{
    return (int32_t)(a - b) <= 0;
}

static guint conn_key_hash(gconstpointer p)
{
    return colo_key_hash(p, sizeof(ColoConnKey));
}

static gboolean conn_key_equal(gconstpointer a, gconstpointer b)
{
    return memcmp(a, b, sizeof(ColoConnKey)) == 0;
}

void colo_engine_default_config(ColoEngineConfig *cfg)
{
    cfg->max_queue_size = 1024;
    cfg->max_connections = 4096;
    cfg->max_total_packets = 8192;
    cfg->compare_timeout_ns = 3000 * 1000000LL;
    cfg->conn_idle_ns = 120 * 1000000000LL;
}

ColoEngine *colo_engine_new(const ColoEngineConfig *cfg,
                            ColoReleaseFn *release, void *opaque)
{
    ColoEngine *e = g_new0(ColoEngine, 1);

    e->cfg = *cfg;
    e->release = release;
    e->opaque = opaque;
    e->conns = g_hash_table_new(conn_key_hash, conn_key_equal);
    QTAILQ_INIT(&e->lru);
    QTAILQ_INIT(&e->all[COLO_PRIMARY]);
    QTAILQ_INIT(&e->all[COLO_SECONDARY]);
    return e;
}

static const uint8_t *held_payload(const ColoHeld *h)
{
    return h->frame + h->vnet_hdr_len + h->info.payload_offset;
}

static void held_unlink(ColoEngine *e, ColoHeld *h)
{
    QTAILQ_REMOVE(&h->conn->held[h->side], h, conn_link);
    h->conn->nheld[h->side]--;
    QTAILQ_REMOVE(&e->all[h->side], h, side_link);
    e->stats.queued[h->side]--;
}

static void held_free(ColoHeld *h)
{
    g_free(h->buf);
    g_free(h);
}

static void drop_secondary(ColoEngine *e, ColoHeld *h)
{
    held_unlink(e, h);
    e->stats.secondary_dropped++;
    held_free(h);
}

/* Send one primary frame on, @hold_ns after it arrived. */
static void release_frame(ColoEngine *e, const uint8_t *frame, size_t len,
                          uint32_t vnet_hdr_len, int64_t hold_ns)
{
    e->stats.packets_released++;
    e->stats.bytes_released += len;
    if (hold_ns > e->stats.max_hold_ns) {
        e->stats.max_hold_ns = hold_ns;
    }
    e->release(e->opaque, frame, len, vnet_hdr_len, hold_ns);
}

static void release_primary(ColoEngine *e, ColoHeld *h, int64_t now_ns,
                            bool compared)
{
    int64_t hold = now_ns - h->arrival_ns;

    held_unlink(e, h);
    if (compared) {
        e->stats.packets_compared++;
    }
    release_frame(e, h->frame, h->len, h->vnet_hdr_len, hold);
    held_free(h);
}

static void conn_remove(ColoEngine *e, ColoConn *c)
{
    ColoHeld *h, *next;
    int side;

    for (side = 0; side < 2; side++) {
        QTAILQ_FOREACH_SAFE(h, &c->held[side], conn_link, next) {
            held_unlink(e, h);
            held_free(h);
        }
    }
    g_hash_table_remove(e->conns, &c->key);
    QTAILQ_REMOVE(&e->lru, c, lru_link);
    e->stats.connections--;
    g_free(c);
}

void colo_engine_free(ColoEngine *e)
{
    ColoConn *c;

    if (!e) {
        return;
    }
    while ((c = QTAILQ_FIRST(&e->lru))) {
        conn_remove(e, c);
    }
    g_hash_table_destroy(e->conns);
    g_free(e);
}

static void make_key(const ColoPacketInfo *info, ColoConnKey *key)
{
    memset(key, 0, sizeof(*key));
    key->kind = info->kind;
    key->vlan_key = info->vlan_key;
    if (info->kind == COLO_PKT_NON_IP) {
        key->port_a = info->ethertype;
        return;
    }
    memcpy(key->addr_a, info->src_addr, 16);
    memcpy(key->addr_b, info->dst_addr, 16);
    key->ip_proto = info->ip_proto;
    if (info->kind == COLO_PKT_TCP || info->kind == COLO_PKT_UDP) {
        key->port_a = info->src_port;
        key->port_b = info->dst_port;
    }
}

/* Make room in a full table: the least recently used idle connection. */
static bool evict_one(ColoEngine *e)
{
    ColoConn *c;

    QTAILQ_FOREACH(c, &e->lru, lru_link) {
        if (!c->nheld[COLO_PRIMARY] && !c->nheld[COLO_SECONDARY]) {
            conn_remove(e, c);
            e->stats.connections_aged++;
            return true;
        }
    }
    return false;
}

static ColoConn *conn_get(ColoEngine *e, const ColoConnKey *key,
                          int64_t now_ns)
{
    ColoConn *c = g_hash_table_lookup(e->conns, key);

    if (c) {
        QTAILQ_REMOVE(&e->lru, c, lru_link);
    } else {
        if (e->stats.connections >= e->cfg.max_connections && !evict_one(e)) {
            return NULL;
        }
        c = g_new0(ColoConn, 1);
        c->key = *key;
        QTAILQ_INIT(&c->held[COLO_PRIMARY]);
        QTAILQ_INIT(&c->held[COLO_SECONDARY]);
        g_hash_table_insert(e->conns, &c->key, c);
        e->stats.connections++;
    }
    QTAILQ_INSERT_TAIL(&e->lru, c, lru_link);
    c->last_seen_ns = now_ns;
    c->period = e->stats.flushes;
    return c;
}

static void enqueue(ColoEngine *e, ColoConn *c, ColoHeld *h)
{
    h->conn = c;
    QTAILQ_INSERT_TAIL(&c->held[h->side], h, conn_link);
    c->nheld[h->side]++;
    QTAILQ_INSERT_TAIL(&e->all[h->side], h, side_link);
    e->stats.queued[h->side]++;
}

/* ---- TCP ---------------------------------------------------------------- */

static ColoHeld *covering(ColoHeldQueue *q, uint32_t pos)
{
    ColoHeld *h;

    QTAILQ_FOREACH(h, q, conn_link) {
        if (h->span && seq_le(h->rel_start, pos) &&
            seq_lt(pos, h->rel_start + h->span)) {
            return h;
        }
    }
    return NULL;
}

static int token_at(const ColoHeld *h, uint32_t pos, size_t *data_index)
{
    uint32_t off = pos - h->rel_start;

    if (h->syn) {
        if (off == 0) {
            return TOK_SYN;
        }
        off--;
    }
    if (off < h->info.payload_len) {
        *data_index = off;
        return TOK_DATA;
    }
    return TOK_FIN;
}

/*
 * Advance the matched point as far as both sides have bytes for it.
 * Returns false on a difference.
 */
static bool tcp_match(ColoEngine *e, ColoConn *c)
{
    for (;;) {
        ColoHeld *p = covering(&c->held[COLO_PRIMARY], c->matched);
        ColoHeld *s = covering(&c->held[COLO_SECONDARY], c->matched);
        size_t ip = 0, is = 0, n;
        int tp, ts;

        if (!p || !s) {
            return true;
        }
        tp = token_at(p, c->matched, &ip);
        ts = token_at(s, c->matched, &is);
        if (tp != ts) {
            return false;
        }
        if (tp != TOK_DATA) {
            c->matched++;
            continue;
        }
        n = MIN(p->info.payload_len - ip, s->info.payload_len - is);
        if (memcmp(held_payload(p) + ip, held_payload(s) + is, n)) {
            return false;
        }
        e->stats.bytes_compared += n;
        c->matched += n;
    }
}

/* ---- releasing the matched part of a primary segment -------------------- */

/*
 * virtio_net_hdr: its first 10 bytes are the same in every layout; its
 * fields little-endian (virtio 1.0, and legacy on x86).
 */
#define VNET_HDR_MIN_LEN        10
#define VNET_F_NEEDS_CSUM       1
#define VNET_GSO_NONE           0
#define VNET_GSO_TCPV4          1
#define VNET_GSO_TCPV6          4
#define VNET_GSO_ECN            0x80

#define TCP_URG                 0x20
#define TCP_CWR                 0x80

/* Headers up to the TCP payload, at most (vnet + Ethernet + IP + TCP). */
#define SPLIT_MAX_HDR           256

/* One's complement sum of @len bytes as big-endian 16-bit words. */
static uint32_t csum_add(uint32_t sum, const uint8_t *p, size_t len)
{
    size_t i;

    for (i = 0; i + 1 < len; i += 2) {
        sum += lduw_be_p(p + i);
    }
    if (len & 1) {
        sum += (uint32_t)p[len - 1] << 8;
    }
    return sum;
}

static uint16_t csum_fold(uint32_t sum)
{
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    return sum;
}

/* RFC 1624: a sum @s (not inverted) with 16-bit word @old replaced by @new */
static uint16_t csum_replace(uint16_t s, uint16_t old, uint16_t new)
{
    return csum_fold((uint32_t)s + (uint16_t)~old + new);
}

/*
 * Can held primary segment @h be cut in two?  Not a SYN or an RST (they
 * are compared whole) nor urgent data (the pointer counts from its start),
 * nor IPv6 with extension headers (a routing header changes the checksum's
 * pseudo-header; rare enough to stay whole);
 * and its offloads must be ones we know how to carry over: no vnet
 * header, or one asking at most for TCP segmentation and the TCP checksum.
 */
static bool tcp_splittable(const ColoHeld *h)
{
    const uint8_t *v = h->frame;

    if (h->syn || h->rst || h->paired || (h->info.tcp_flags & TCP_URG) ||
        (h->info.ipv6 && h->info.ip_hdr_len != 40) ||
        h->vnet_hdr_len + h->info.payload_offset > SPLIT_MAX_HDR) {
        return false;
    }
    if (!h->vnet_hdr_len) {
        return true;
    }
    if (h->vnet_hdr_len < VNET_HDR_MIN_LEN) {
        return false;
    }
    switch (v[1] & ~VNET_GSO_ECN) {
    case VNET_GSO_NONE:
    case VNET_GSO_TCPV4:
    case VNET_GSO_TCPV6:
        break;
    default:
        return false;
    }
    return !(v[0] & VNET_F_NEEDS_CSUM) ||
           (lduw_le_p(v + 6) == h->info.l3_offset + h->info.ip_hdr_len &&
            lduw_le_p(v + 8) == 16);
}

/*
 * Make the headers at @frame (those of held segment @h, or of a part of it
 * already cut) describe a segment of @seq, @flags and @len payload bytes,
 * which follow them.  With a checksum the device completes (NEEDS_CSUM) the
 * field holds the pseudo-header's sum, of which only the length changes.
 */
static void tcp_set_part(uint8_t *frame, const ColoHeld *h, uint32_t seq,
                         uint8_t flags, size_t len)
{
    uint8_t *v = frame;
    uint8_t *ip = frame + h->vnet_hdr_len + h->info.l3_offset;
    uint8_t *th = ip + h->info.ip_hdr_len;
    uint16_t tcp_len = h->info.tcp_hdr_len + len;
    uint16_t old_tcp_len;
    bool partial = h->vnet_hdr_len && (v[0] & VNET_F_NEEDS_CSUM);

    if (h->info.ipv6) {
        old_tcp_len = lduw_be_p(ip + 4);
        stw_be_p(ip + 4, tcp_len);
    } else {
        uint16_t old_total = lduw_be_p(ip + 2);
        uint16_t total = h->info.ip_hdr_len + tcp_len;

        old_tcp_len = old_total - h->info.ip_hdr_len;
        stw_be_p(ip + 2, total);
        stw_be_p(ip + 10,
                 ~csum_replace(~lduw_be_p(ip + 10), old_total, total));
    }
    stl_be_p(th + 4, seq);
    th[13] = flags;
    if (partial) {
        stw_be_p(th + 16,
                 csum_replace(lduw_be_p(th + 16), old_tcp_len, tcp_len));
    } else {
        uint32_t sum = 6 + tcp_len;

        if (h->info.ipv6) {
            sum = csum_add(sum, ip + 8, 32);
        } else {
            sum = csum_add(sum, ip + 12, 8);
        }
        stw_be_p(th + 16, 0);
        sum = csum_add(sum, th, tcp_len);
        stw_be_p(th + 16, ~csum_fold(sum));
    }
    if (h->vnet_hdr_len && v[1] != VNET_GSO_NONE) {
        if (len <= lduw_le_p(v + 4)) {
            /* one segment's worth: no longer a job for segmentation */
            v[1] = VNET_GSO_NONE;
            v[4] = v[5] = 0;
        } else if (!(flags & TCP_CWR)) {
            v[1] &= ~VNET_GSO_ECN;
        }
    }
}

/*
 * The secondary produced the first @k payload bytes of held primary segment
 * @h (the head of its connection's queue) and no more of it yet.  Release
 * them now as a segment of their own, cut as TCP segmentation would (FIN
 * and PSH stay on the last part, CWR on the first), and keep the rest held
 * as a segment starting @k bytes further.  Without this the client cannot
 * acknowledge past the start of a large segment (TSO) that the secondary,
 * its congestion window smaller, covers only in part: its window never
 * opens and the connection waits for the next checkpoint.
 */
static void tcp_release_prefix(ColoEngine *e, ColoHeld *h, uint32_t k,
                               int64_t now_ns)
{
    size_t hdr_len = h->vnet_hdr_len + h->info.payload_offset;
    size_t th = h->vnet_hdr_len + h->info.l3_offset + h->info.ip_hdr_len;
    uint8_t saved[SPLIT_MAX_HDR];
    uint8_t flags = h->frame[th + 13];  /* info has no ECE, CWR */

    memcpy(saved, h->frame, hdr_len);
    tcp_set_part(h->frame, h, h->info.tcp_seq,
                 flags & ~(COLO_TCP_FIN | COLO_TCP_PSH), k);
    e->stats.segments_split++;
    release_frame(e, h->frame, hdr_len + k, h->vnet_hdr_len,
                  now_ns - h->arrival_ns);

    /* the rest: its headers moved up in front of its first byte */
    h->frame += k;
    memcpy(h->frame, saved, hdr_len);
    h->info.tcp_seq += k;
    h->info.payload_len -= k;
    h->info.ip_total_len -= k;
    h->len = hdr_len + h->info.payload_len;
    h->rel_start += k;
    h->span -= k;
    tcp_set_part(h->frame, h, h->info.tcp_seq, flags & ~TCP_CWR,
                 h->info.payload_len);
}

/* The first held segment that pairs with @p (an RST, or an empty one). */
static ColoHeld *first_pair(ColoHeldQueue *q, const ColoHeld *p)
{
    ColoHeld *h;

    QTAILQ_FOREACH(h, q, conn_link) {
        if (h->paired && h->rst == p->rst) {
            return h;
        }
    }
    return NULL;
}

/*
 * Is @h an empty copy of an RST both sides sent on c?  Then both guests
 * have reset the connection and the client was sent that RST: a copy
 * tells it nothing (a duplicate from the network does the same), so it
 * needs no pair.  The guests send copies when they closed differently:
 * one answered the client's FIN with an RST, the other with an ACK, and
 * both answered the client's second FIN with an RST.
 */
static bool tcp_repeats_matched_rst(const ColoConn *c, const ColoHeld *h)
{
    return c->rst_matched && h->rst && !h->info.payload_len &&
           h->info.tcp_flags == c->rst_flags &&
           h->info.tcp_seq == c->rst_seq && h->ack == c->rst_ack;
}

/*
 * Pure ACK @h (the head of the primary's queue) waits for the secondary's
 * ACK.  Is the connection reset by both guests right after it: the
 * primary's next segments are pure ACKs up to an empty RST, and the
 * secondary's first held segment is that RST?  The guests closed
 * differently: the primary ACKed the client's FIN, the secondary reset;
 * the client, without the held ACK, resent its FIN and both reset.  The
 * ACK may then be dropped, as the network may drop it: the client gets the
 * RST both guests sent, which the primary's own guest sends after such a
 * loss too.
 */
static bool tcp_ack_before_common_rst(const ColoConn *c, const ColoHeld *h)
{
    const ColoHeld *r = h;
    const ColoHeld *s = QTAILQ_FIRST(&c->held[COLO_SECONDARY]);

    /* Checked first: the walk below runs for every packet while it holds. */
    if (!s || !s->rst || s->span) {
        return false;
    }
    do {
        r = QTAILQ_NEXT(r, conn_link);
    } while (r && !r->span && !r->paired);
    return r && !r->span &&
           s->info.tcp_flags == r->info.tcp_flags &&
           s->info.tcp_seq == r->info.tcp_seq && s->ack == r->ack;
}

/* Secondary segments wholly matched (or retransmitted) are done. */
static void tcp_drop_done_secondary(ColoEngine *e, ColoConn *c)
{
    ColoHeld *h, *next;

    QTAILQ_FOREACH_SAFE(h, &c->held[COLO_SECONDARY], conn_link, next) {
        if ((!h->paired && seq_le(h->rel_start + h->span, c->matched)) ||
            tcp_repeats_matched_rst(c, h)) {
            drop_secondary(e, h);
        }
    }
}

static ColoCheckpointReason tcp_progress(ColoEngine *e, ColoConn *c,
                                         int64_t now_ns)
{
    bool rst_noted = false;
    ColoHeld *h;

    if (c->diverged) {
        return COLO_REASON_NONE;
    }
    if (!tcp_match(e, c)) {
        c->diverged = true;
        e->stats.mismatches[COLO_PKT_TCP]++;
        return COLO_REASON_MISMATCH;
    }
    tcp_drop_done_secondary(e, c);
    while ((h = QTAILQ_FIRST(&c->held[COLO_PRIMARY]))) {
        if (h->span && !seq_le(h->rel_start + h->span, c->matched)) {
            uint32_t k = c->matched - h->rel_start;

            if (seq_lt(h->rel_start, c->matched) &&
                k <= h->info.payload_len && tcp_splittable(h)) {
                tcp_release_prefix(e, h, k, now_ns);
            }
            break;
        }
        if (!h->span && !h->paired &&
            !(c->sec_ack_known && seq_le(h->ack, c->sec_max_ack))) {
            if (!tcp_ack_before_common_rst(c, h)) {
                break;
            }
            held_unlink(e, h);
            e->stats.acks_dropped++;
            held_free(h);
            continue;
        }
        if (h->paired && !tcp_repeats_matched_rst(c, h)) {
            ColoHeld *s = first_pair(&c->held[COLO_SECONDARY], h);

            if (!s) {
                break;
            }
            drop_secondary(e, s);
            if (h->rst) {
                c->rst_matched = true;
                c->rst_flags = h->info.tcp_flags;
                c->rst_seq = h->info.tcp_seq;
                c->rst_ack = h->ack;
                rst_noted = true;
            }
        }
        release_primary(e, h, now_ns, true);
    }
    if (rst_noted) {
        tcp_drop_done_secondary(e, c);  /* the secondary's copies held */
    }
    return COLO_REASON_NONE;
}

/*
 * Position 0 of a connection first seen mid-stream (after a checkpoint's
 * flush) came from the secondary, and the primary's first segment starts
 * above it: the secondary was sending bytes again that the primary had
 * sent before the checkpoint, whose flush released them.  The primary need
 * not send them again, and then the matched point would wait at 0 for
 * them until the next checkpoint while the primary's new bytes are held
 * (bulk TCP stalled so).  Move position 0 to the primary's segment, as
 * long as none of the primary's is placed yet: the secondary's held
 * segments move with it and those wholly below are done (tcp_progress()).
 */
static void tcp_rebase(ColoConn *c, uint32_t seq)
{
    uint32_t delta = seq - c->base;
    ColoHeld *s;

    if (c->matched || c->nheld[COLO_PRIMARY] || !seq_lt(c->base, seq)) {
        return;
    }
    c->base = seq;
    c->base_by_secondary = false;
    QTAILQ_FOREACH(s, &c->held[COLO_SECONDARY], conn_link) {
        if (!s->syn) {          /* its SYN is at 0 in its own numbering */
            s->rel_start -= delta;
        }
    }
}

/*
 * Does SYN @h open a new connection on c's addresses and ports?  A SYN
 * after data, or with another ISN than the one seen, does; a retransmitted
 * SYN does not.
 */
static bool tcp_new_syn(const ColoConn *c, const ColoHeld *h)
{
    uint32_t seq = h->info.tcp_seq;

    if (h->side == COLO_PRIMARY) {
        return c->base_known && !(c->base_is_isn && seq == c->base);
    }
    if (c->sec_isn_known) {
        return seq != c->sec_isn;
    }
    return c->base_known && !c->base_is_isn;
}

/*
 * Place segment @h in c's stream.  Returns false when @h is a SYN for a
 * new connection while the old one still holds packets: positions of the
 * two are unrelated (about half of all ISNs would look like a
 * retransmission of the old stream), so the caller stops comparing and asks
 * for a checkpoint.
 */
static bool tcp_place(ColoConn *c, ColoHeld *h)
{
    uint32_t seq = h->info.tcp_seq;

    h->syn = h->info.tcp_flags & COLO_TCP_SYN;
    h->fin = h->info.tcp_flags & COLO_TCP_FIN;
    h->rst = h->info.tcp_flags & COLO_TCP_RST;
    h->has_ack = h->info.tcp_flags & COLO_TCP_ACK;
    h->ack = h->info.tcp_ack;
    h->span = (h->syn ? 1 : 0) + h->info.payload_len + (h->fin ? 1 : 0);
    /* Neither a position nor an ACK number to check: see the header. */
    h->paired = h->rst || (!h->span && !h->has_ack);

    if (h->syn && tcp_new_syn(c, h)) {
        if (c->nheld[COLO_PRIMARY] || c->nheld[COLO_SECONDARY]) {
            c->renumbered = true;
            return false;
        }
        c->base_known = false;
        c->sec_isn_known = false;
        c->matched = 0;
        c->pri_end = 0;
        c->sec_ack_known = false;
    }
    if (h->syn) {
        /* another numbering from here */
        c->flushed_known = false;
        c->rst_matched = false;
    }
    if (h->side == COLO_SECONDARY && h->syn) {
        /*
         * The secondary's SYN carries its own ISN: filter-rewriter learns
         * the offset to the primary's only later.  Everything else the
         * secondary sends is in the primary's numbering.
         */
        h->rel_start = 0;
        if (!c->sec_isn_known) {
            c->sec_isn = seq;
            c->sec_isn_known = true;
        }
    } else {
        if (!c->base_known) {
            c->base = seq;
            c->base_known = true;
            c->base_is_isn = h->syn;
            c->base_by_secondary = h->side == COLO_SECONDARY;
        } else if (c->base_by_secondary && h->side == COLO_PRIMARY) {
            tcp_rebase(c, seq);
        }
        h->rel_start = seq - c->base;
    }
    return true;
}

/* Do @a and @b carry the same SYN, data and FIN on [from, to)? */
static bool tcp_same(const ColoHeld *a, const ColoHeld *b, uint32_t from,
                     uint32_t to)
{
    while (seq_lt(from, to)) {
        size_t ia = 0, ib = 0, n;
        int ta = token_at(a, from, &ia);
        int tb = token_at(b, from, &ib);

        if (ta != tb) {
            return false;
        }
        if (ta != TOK_DATA) {
            from++;
            continue;
        }
        n = MIN(a->info.payload_len - ia, b->info.payload_len - ib);
        n = MIN(n, to - from);
        if (memcmp(held_payload(a) + ia, held_payload(b) + ib, n)) {
            return false;
        }
        from += n;
    }
    return true;
}

/*
 * Primary segment @h resends positions that a held primary segment also
 * carries and that are not matched yet.  Only the first copy is compared
 * with the secondary, and both leave once it matched, so the copies must
 * agree.  Segments in sequence (the common case) skip the walk.
 */
static bool tcp_agrees_with_held(ColoConn *c, const ColoHeld *h)
{
    uint32_t end = h->rel_start + h->span;
    bool agree = true;
    ColoHeld *o;

    if (seq_lt(h->rel_start, c->pri_end)) {
        QTAILQ_FOREACH(o, &c->held[COLO_PRIMARY], conn_link) {
            uint32_t o_end = o->rel_start + o->span;
            uint32_t lo = h->rel_start, hi = end;

            if (o == h) {
                break;          /* @h is the last one queued */
            }
            if (seq_lt(lo, o->rel_start)) {
                lo = o->rel_start;
            }
            if (seq_lt(lo, c->matched)) {
                lo = c->matched;
            }
            if (seq_lt(o_end, hi)) {
                hi = o_end;
            }
            if (seq_lt(lo, hi) && !tcp_same(h, o, lo, hi)) {
                agree = false;
                break;
            }
        }
    }
    if (seq_lt(c->pri_end, end)) {
        c->pri_end = end;
    }
    return agree;
}

/* ---- ARP, IPv6 neighbour discovery and MLD ------------------------------ */

#define ETH_P_ARP_COLO          0x0806

/*
 * The guest's own link-level chatter: ARP, router solicitations, neighbour
 * solicitations and advertisements, MLD reports.  The two guests cannot
 * send it identically: a duplicate address detection probe carries a
 * random nonce (RFC 7527), reports and probes leave after random delays,
 * and a neighbour entry is re-validated (ARP or ND unicast probes) when
 * the guest's own timers say so.  Compared, each would force a checkpoint,
 * or wait for the next one.  It is released uncompared (the primary's at
 * once, the secondary's dropped) because a client cannot see a divergence
 * in it: at every checkpoint both guests have the same MAC and addresses,
 * so what it tells the network (this address is at this MAC, this host
 * listens to these groups, who is the router) holds for both, and
 * neighbours re-validate it on their own (RFC 826 and RFC 4861
 * reachability, RFC 3810 report robustness), as on any network that loses
 * or reorders packets.  Router advertisements and redirects are not in the
 * list: they configure other hosts and stay compared; so do RARP and any
 * other non-IP protocol.
 *
 * Address resolution stays compared too: a broadcast ARP request, a
 * multicast neighbour solicitation from an assigned address.  The guest
 * asks who has an address it holds no entry for, and a Linux guest takes
 * the answer only to a question it asked itself (arp_accept and
 * accept_untracked_na are off by default).  Released at once, the
 * primary's question was answered before the secondary's guest had asked
 * its own (dropped here), and the secondary never learnt the client's MAC:
 * none of its answers reached the compare, which held the primary's until
 * a timeout forced a checkpoint.  Compared, the primary's leaves when the
 * secondary has asked too, so that the answer, mirrored, reaches both.
 */
static bool is_link_control(const uint8_t *eth, const ColoPacketInfo *info)
{
    static const uint8_t unspecified[16];
    bool multicast_dst = eth[0] & 1;

    if (info->kind == COLO_PKT_NON_IP) {
        return info->ethertype == ETH_P_ARP_COLO && !multicast_dst;
    }
    if (info->kind != COLO_PKT_ICMP || !info->ipv6) {
        return false;
    }
    switch (info->icmp_type) {
    case 135:   /* neighbour solicitation */
        /* DAD probes come from ::, unicast ones re-validate an entry */
        return info->dst_addr[0] != 0xff ||
               !memcmp(info->src_addr, unspecified, sizeof(unspecified));
    case 130:   /* multicast listener query */
    case 131:   /* multicast listener report */
    case 132:   /* multicast listener done */
    case 133:   /* router solicitation */
    case 136:   /* neighbour advertisement */
    case 143:   /* MLDv2 report */
        return true;
    default:
        return false;
    }
}

static void pass_link_control(ColoEngine *e, ColoSide side,
                              const uint8_t *frame, size_t len,
                              uint32_t vnet_hdr_len)
{
    e->stats.link_control[side]++;
    if (side == COLO_SECONDARY) {
        e->stats.secondary_dropped++;
        return;
    }
    release_frame(e, frame, len, vnet_hdr_len, 0);
}

/* ---- input -------------------------------------------------------------- */

static ColoCheckpointReason flow_progress(ColoEngine *e, ColoConn *c,
                                          int64_t now_ns)
{
    ColoHeld *p, *s;

    if (c->diverged) {
        return COLO_REASON_NONE;
    }
    while ((p = QTAILQ_FIRST(&c->held[COLO_PRIMARY])) &&
           (s = QTAILQ_FIRST(&c->held[COLO_SECONDARY]))) {
        if (p->info.payload_len != s->info.payload_len ||
            memcmp(held_payload(p), held_payload(s), p->info.payload_len)) {
            c->diverged = true;
            e->stats.mismatches[p->info.kind]++;
            return COLO_REASON_MISMATCH;
        }
        e->stats.bytes_compared += p->info.payload_len;
        drop_secondary(e, s);
        release_primary(e, p, now_ns, true);
    }
    return COLO_REASON_NONE;
}

/*
 * Primary segment @info sends again only what the last flush released on
 * c, before anything of c is placed after it (see the header): it leaves
 * at once.  Placed, it would take position 0 and wait for a copy the
 * secondary need not send, holding all after it until the next checkpoint.
 */
static bool tcp_resends_flushed(const ColoConn *c, const ColoPacketInfo *info)
{
    uint8_t flags = info->tcp_flags;
    uint32_t span = info->payload_len + (flags & COLO_TCP_FIN ? 1 : 0);

    return c->flushed_known && !c->base_known &&
           !(flags & (COLO_TCP_SYN | COLO_TCP_RST)) && span &&
           seq_le(info->tcp_seq + span, c->flushed_end);
}

/*
 * A flush is about to release all c holds: start c afresh, noting where
 * the primary's bytes released so far end, unless a new SYN renumbered it
 * meanwhile.  Returns whether there is such an end (else c can go).  The
 * held queues stay as they are, for the flush to empty.
 */
static bool tcp_note_flushed(ColoConn *c)
{
    bool known = c->flushed_known && !c->base_known;
    uint32_t end = c->flushed_end;
    ColoHeld *h;

    if (c->renumbered || c->key.kind != COLO_PKT_TCP) {
        return false;
    }
    if (c->base_known) {
        QTAILQ_FOREACH(h, &c->held[COLO_PRIMARY], conn_link) {
            if (seq_lt(c->pri_end, h->rel_start + h->span)) {
                c->pri_end = h->rel_start + h->span;
            }
        }
        if (c->pri_end) {
            end = c->base + c->pri_end;
            known = true;
        }
    }
    *c = (ColoConn) {
        .key = c->key,
        .held = { c->held[COLO_PRIMARY], c->held[COLO_SECONDARY] },
        .nheld = { c->nheld[COLO_PRIMARY], c->nheld[COLO_SECONDARY] },
        .lru_link = c->lru_link,
        .last_seen_ns = c->last_seen_ns,
        .period = c->period,
        .flushed_known = known,
        .flushed_end = end,
    };
    return known;
}

ColoCheckpointReason colo_engine_input(ColoEngine *e, ColoSide side,
                                       const uint8_t *frame, size_t len,
                                       uint32_t vnet_hdr_len, int64_t now_ns,
                                       ColoParseError *parse_err)
{
    ColoCheckpointReason reason = COLO_REASON_NONE;
    ColoPacketInfo info;
    ColoParseError err;
    ColoConnKey key;
    ColoConn *c;
    ColoHeld *h;

    if (vnet_hdr_len > len) {
        err = COLO_PARSE_SHORT_ETH;
    } else {
        err = colo_packet_parse(frame + vnet_hdr_len, len - vnet_hdr_len,
                                &info);
    }
    if (parse_err) {
        *parse_err = err;
    }
    if (err != COLO_PARSE_OK) {
        e->stats.malformed[side]++;
        return COLO_REASON_NONE;
    }
    e->stats.packets_in[side]++;
    e->stats.bytes_in[side] += len;
    if (is_link_control(frame + vnet_hdr_len, &info)) {
        pass_link_control(e, side, frame, len, vnet_hdr_len);
        return COLO_REASON_NONE;
    }

    make_key(&info, &key);
    c = conn_get(e, &key, now_ns);
    if (!c) {
        e->stats.table_full++;
        e->stats.dropped_over_limit++;
        return COLO_REASON_TABLE_FULL;
    }

    if (info.kind == COLO_PKT_TCP && side == COLO_PRIMARY &&
        tcp_resends_flushed(c, &info)) {
        release_frame(e, frame, len, vnet_hdr_len, 0);
        return COLO_REASON_NONE;
    }

    h = g_new0(ColoHeld, 1);
    h->side = side;
    h->info = info;
    h->arrival_ns = now_ns;
    h->len = len;
    h->vnet_hdr_len = vnet_hdr_len;

    if (info.kind == COLO_PKT_TCP) {
        if (!tcp_place(c, h) && !c->diverged) {
            c->diverged = true;
            e->stats.mismatches[COLO_PKT_TCP]++;
            reason = COLO_REASON_MISMATCH;
        }
        if (side == COLO_SECONDARY && h->has_ack &&
            (!c->sec_ack_known || seq_lt(c->sec_max_ack, h->ack))) {
            c->sec_max_ack = h->ack;
            c->sec_ack_known = true;
        }
        if (side == COLO_SECONDARY && !h->span && !h->paired &&
            !c->diverged) {
            /* A pure ACK: only its ACK number matters, and it is noted. */
            e->stats.secondary_dropped++;
            g_free(h);
            return tcp_progress(e, c, now_ns);
        }
    }

    if (c->nheld[side] >= e->cfg.max_queue_size ||
        e->stats.queued[COLO_PRIMARY] + e->stats.queued[COLO_SECONDARY] >=
        e->cfg.max_total_packets) {
        e->stats.queue_full++;
        e->stats.dropped_over_limit++;
        g_free(h);
        return COLO_REASON_QUEUE_FULL;
    }
    h->buf = h->frame = g_memdup2(frame, len);
    enqueue(e, c, h);

    if (info.kind == COLO_PKT_TCP) {
        if (side == COLO_PRIMARY && h->span && !c->diverged &&
            !tcp_agrees_with_held(c, h)) {
            c->diverged = true;
            e->stats.mismatches[COLO_PKT_TCP]++;
            reason = COLO_REASON_MISMATCH;
        }
        return reason ?: tcp_progress(e, c, now_ns);
    }
    return flow_progress(e, c, now_ns);
}

ColoCheckpointReason colo_engine_expire(ColoEngine *e, int64_t now_ns)
{
    ColoCheckpointReason reason = COLO_REASON_NONE;
    ColoConn *c, *next;
    ColoHeld *h;
    int side;

    for (side = 0; side < 2; side++) {
        QTAILQ_FOREACH(h, &e->all[side], side_link) {
            if (now_ns - h->arrival_ns < e->cfg.compare_timeout_ns) {
                break;
            }
            reason = COLO_REASON_TIMEOUT;
            if (!h->timed_out) {
                h->timed_out = true;
                e->stats.timeouts++;
            }
        }
    }
    QTAILQ_FOREACH_SAFE(c, &e->lru, lru_link, next) {
        if (now_ns - c->last_seen_ns < e->cfg.conn_idle_ns) {
            break;
        }
        if (!c->nheld[COLO_PRIMARY] && !c->nheld[COLO_SECONDARY]) {
            conn_remove(e, c);
            e->stats.connections_aged++;
        }
    }
    return reason;
}

/*
 * Was c seen since the previous flush?  Those are the last on the LRU
 * list.  Each of the others holds nothing, is TCP and was started afresh by
 * that flush, which the next would not change: the flush skips them.  It
 * runs inside the checkpoint pause, and the table keeps up to
 * max_connections idle ones (a walk of 4096 took 90 us, bench-colo-compare).
 */
static bool conn_seen_this_period(ColoEngine *e, ColoConn *c)
{
    return c->period == e->stats.flushes;
}

void colo_engine_flush(ColoEngine *e, int64_t now_ns)
{
    ColoHeld *h;
    ColoConn *c, *prev;

    /* Before the held packets go: their ends count in what is released. */
    for (c = QTAILQ_LAST(&e->lru); c && conn_seen_this_period(e, c);
         c = QTAILQ_PREV(c, lru_link)) {
        if (!tcp_note_flushed(c)) {
            c->flushed_known = false;   /* removed below, once empty */
        }
    }
    while ((h = QTAILQ_FIRST(&e->all[COLO_PRIMARY]))) {
        release_primary(e, h, now_ns, false);
    }
    while ((h = QTAILQ_FIRST(&e->all[COLO_SECONDARY]))) {
        drop_secondary(e, h);
    }
    for (c = QTAILQ_LAST(&e->lru); c && conn_seen_this_period(e, c);
         c = prev) {
        prev = QTAILQ_PREV(c, lru_link);
        if (!c->flushed_known) {
            conn_remove(e, c);
        }
    }
    e->stats.flushes++;
}

const ColoEngineStats *colo_engine_stats(ColoEngine *e)
{
    return &e->stats;
}

int64_t colo_engine_oldest_ns(ColoEngine *e)
{
    ColoHeld *p = QTAILQ_FIRST(&e->all[COLO_PRIMARY]);
    ColoHeld *s = QTAILQ_FIRST(&e->all[COLO_SECONDARY]);
    int64_t oldest = INT64_MAX;

    if (p) {
        oldest = p->arrival_ns;
    }
    if (s && s->arrival_ns < oldest) {
        oldest = s->arrival_ns;
    }
    return oldest;
}

const char *colo_reason_name(ColoCheckpointReason reason)
{
    switch (reason) {
    case COLO_REASON_NONE:
        return "none";
    case COLO_REASON_MISMATCH:
        return "mismatch";
    case COLO_REASON_TIMEOUT:
        return "timeout";
    case COLO_REASON_QUEUE_FULL:
        return "queue-full";
    case COLO_REASON_TABLE_FULL:
        return "table-full";
    default:
        return "unknown";
    }
}
