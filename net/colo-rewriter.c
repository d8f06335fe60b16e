/*
 * COLO proxy: the filter-rewriter engine (TCP sequence number offsets)
 *
 * Copyright (c) 2026 The qemu-colo authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * Threads and locking: none inside; an engine is used by one thread.
 */

#include "qemu/osdep.h"
#include "qemu/bswap.h"
#include "net/colo-rewriter.h"

typedef struct RwKey {
    uint8_t guest_ip[16];       /* IPv4 as ::ffff:a.b.c.d */
    uint8_t peer_ip[16];
    uint32_t vlan_key;
    uint16_t guest_port;
    uint16_t peer_port;
} RwKey;

typedef struct RwConn {
    RwKey key;
    bool isn_known;
    uint32_t sec_isn;           /* the secondary guest's ISN */
    bool offset_known;
    uint32_t offset;            /* S - G (colo-rewriter.h) */
    uint32_t carried;           /* C - S: the primary's offset */
    bool ts_syn_known;
    uint32_t sec_ts_syn;        /* the TSval of the secondary guest's SYN */
    uint32_t ts_offset;         /* S - G for timestamps */
    uint32_t ts_carried;        /* C - S for timestamps */
    bool ts_echoed_known;
    uint32_t ts_echoed;         /* the peer's latest TSecr, in S */
    bool fin_guest;
    bool fin_peer;
    bool closed;
    int64_t last_ns;
} RwConn;

struct ColoRewriter {
    GHashTable *conns;          /* RwKey -> RwConn */
    uint32_t max_connections;
    int64_t idle_ns;
    int64_t closed_ns;
    bool failed_over;
    ColoRewriterStats stats;
};

#define SAVE_HEADER_LEN 8

static guint rw_key_hash(gconstpointer p)
{
    return colo_key_hash(p, sizeof(RwKey));
}

static gboolean rw_key_equal(gconstpointer a, gconstpointer b)
{
    return memcmp(a, b, sizeof(RwKey)) == 0;
}

ColoRewriter *colo_rewriter_new(uint32_t max_connections,
                                int64_t idle_ns, int64_t closed_ns)
{
    ColoRewriter *r = g_new0(ColoRewriter, 1);

    r->conns = g_hash_table_new_full(rw_key_hash, rw_key_equal, NULL,
                                     g_free);
    r->max_connections = max_connections;
    r->idle_ns = idle_ns;
    r->closed_ns = closed_ns;
    return r;
}

void colo_rewriter_free(ColoRewriter *r)
{
    if (r) {
        g_hash_table_destroy(r->conns);
        g_free(r);
    }
}

static uint16_t rd16(const uint8_t *p)
{
    return ((uint16_t)p[0] << 8) | p[1];
}

static void wr16(uint8_t *p, uint16_t v)
{
    p[0] = v >> 8;
    p[1] = v;
}

static uint32_t rd32(const uint8_t *p)
{
    return ((uint32_t)rd16(p) << 16) | rd16(p + 2);
}

static void wr32(uint8_t *p, uint32_t v)
{
    wr16(p, v >> 16);
    wr16(p + 2, v);
}

/* RFC 1624: HC' = ~(~HC + ~m + m') */
static uint16_t csum_replace16(uint16_t check, uint16_t old, uint16_t new)
{
    uint32_t sum = (uint16_t)~check + (uint16_t)~old + (uint32_t)new;

    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    return ~sum;
}

static void set32(uint8_t *field, uint32_t value, uint8_t *csum,
                  bool csum_partial)
{
    uint32_t old = rd32(field);

    if (!csum_partial) {
        uint16_t c = rd16(csum);

        c = csum_replace16(c, old >> 16, value >> 16);
        c = csum_replace16(c, old & 0xffff, value & 0xffff);
        wr16(csum, c);
    }
    wr16(field, value >> 16);
    wr16(field + 2, value);
}

/*
 * The TCP option of @kind in the options @opt (its kind byte), its whole
 * length in *@len; NULL if absent or the options are malformed before it.
 */
static uint8_t *find_option(uint8_t *opt, size_t opt_len, uint8_t kind,
                            size_t *len)
{
    size_t i = 0;

    while (i < opt_len && opt[i] != 0) {
        if (opt[i] == 1) {
            i++;
            continue;
        }
        if (i + 1 >= opt_len || opt[i + 1] < 2 || i + opt[i + 1] > opt_len) {
            break;
        }
        if (opt[i] == kind) {
            *len = opt[i + 1];
            return opt + i;
        }
        i += opt[i + 1];
    }
    return NULL;
}

/* Subtract @offset from both edges of every SACK block. */
static bool rewrite_sack(uint8_t *opt, size_t opt_len, uint32_t offset,
                         uint8_t *csum, bool csum_partial)
{
    size_t len, b;
    uint8_t *sack = find_option(opt, opt_len, 5, &len);
    bool changed = false;

    for (b = 2; sack && b + 8 <= len; b += 8) {
        set32(sack + b, rd32(sack + b) - offset, csum, csum_partial);
        set32(sack + b + 4, rd32(sack + b + 4) - offset, csum, csum_partial);
        changed = true;
    }
    return changed;
}

/* TSval and TSecr of the timestamp option (RFC 7323), or NULL. */
static uint8_t *find_timestamps(uint8_t *opt, size_t opt_len)
{
    size_t len;
    uint8_t *ts = find_option(opt, opt_len, 8, &len);

    return ts && len == 10 ? ts + 2 : NULL;
}

static RwConn *conn_new(ColoRewriter *r, const RwKey *key, int64_t now_ns)
{
    RwConn *c;

    if (g_hash_table_size(r->conns) >= r->max_connections) {
        colo_rewriter_expire(r, now_ns);
    }
    if (g_hash_table_size(r->conns) >= r->max_connections) {
        return NULL;
    }
    c = g_new0(RwConn, 1);
    c->key = *key;
    c->last_ns = now_ns;
    g_hash_table_insert(r->conns, &c->key, c);
    r->stats.connections_opened++;
    r->stats.connections = g_hash_table_size(r->conns);
    return c;
}

bool colo_rewriter_packet(ColoRewriter *r, ColoRewriteDir dir,
                          uint8_t *frame, size_t len, bool csum_partial,
                          int64_t now_ns, ColoParseError *parse_err)
{
    ColoPacketInfo info;
    ColoParseError err = colo_packet_parse(frame, len, &info);
    uint8_t *th, *csum, *ts;
    uint32_t tsval = 0, tsecr = 0;
    RwKey key;
    RwConn *c;
    bool syn, changed = false;

    if (parse_err) {
        *parse_err = err;
    }
    r->stats.packets++;
    if (err != COLO_PARSE_OK) {
        r->stats.malformed++;
        return false;
    }
    if (info.kind != COLO_PKT_TCP) {
        return false;
    }
    th = frame + info.l3_offset + info.ip_hdr_len;
    csum = th + 16;
    memset(&key, 0, sizeof(key));
    key.vlan_key = info.vlan_key;
    if (dir == COLO_FROM_GUEST) {
        memcpy(key.guest_ip, info.src_addr, 16);
        key.guest_port = info.src_port;
        memcpy(key.peer_ip, info.dst_addr, 16);
        key.peer_port = info.dst_port;
    } else {
        memcpy(key.guest_ip, info.dst_addr, 16);
        key.guest_port = info.dst_port;
        memcpy(key.peer_ip, info.src_addr, 16);
        key.peer_port = info.src_port;
    }
    c = g_hash_table_lookup(r->conns, &key);
    syn = info.tcp_flags & COLO_TCP_SYN;

    if (dir == COLO_FROM_GUEST && syn) {
        if (c && (!c->isn_known || c->sec_isn != info.tcp_seq)) {
            /* a new connection on the same addresses and ports */
            g_hash_table_remove(r->conns, &key);
            r->stats.connections_closed++;
            c = NULL;
        }
        if (!c) {
            if (r->failed_over) {
                r->stats.untracked_after_failover++;
                r->stats.connections = g_hash_table_size(r->conns);
                return false;
            }
            c = conn_new(r, &key, now_ns);
            if (!c) {
                return false;
            }
            c->isn_known = true;
            c->sec_isn = info.tcp_seq;
        }
    }
    if (!c) {
        /* not opened while we watched: same numbering on both guests */
        return false;
    }
    /* Parsed only for tracked connections: the option walk is per packet. */
    ts = info.tcp_hdr_len > 20 ? find_timestamps(th + 20, info.tcp_hdr_len - 20)
                               : NULL;
    if (ts) {
        tsval = rd32(ts);
        tsecr = rd32(ts + 4);
    }
    if (dir == COLO_FROM_GUEST && syn) {
        /* the TSval the peer will echo from the primary's SYN, in ours */
        c->ts_syn_known = ts != NULL;
        c->sec_ts_syn = tsval;
    }
    c->last_ns = now_ns;

    if (dir == COLO_TO_GUEST) {
        if (!c->offset_known && c->isn_known &&
            (info.tcp_flags & COLO_TCP_ACK) && !(info.tcp_flags &
                                                 COLO_TCP_RST)) {
            c->offset = info.tcp_ack - 1 - c->sec_isn;
            /* its TSecr echoes the TSval of the primary's SYN */
            c->ts_offset = ts && c->ts_syn_known ? tsecr - c->sec_ts_syn : 0;
            c->offset_known = true;
            r->stats.offsets_learned++;
        }
        if (ts && (info.tcp_flags & COLO_TCP_ACK)) {
            if (!c->ts_echoed_known || (int32_t)(tsecr - c->ts_echoed) > 0) {
                c->ts_echoed = tsecr;
                c->ts_echoed_known = true;
            }
            if (c->ts_offset) {
                set32(ts + 4, tsecr - c->ts_offset, csum, csum_partial);
                changed = true;
            }
        }
        if (c->offset_known && c->offset) {
            if (info.tcp_flags & COLO_TCP_ACK) {
                set32(th + 8, info.tcp_ack - c->offset, csum, csum_partial);
                changed = true;
            }
            if (info.tcp_hdr_len > 20 &&
                rewrite_sack(th + 20, info.tcp_hdr_len - 20, c->offset, csum,
                             csum_partial)) {
                changed = true;
            }
        }
        if (info.tcp_flags & COLO_TCP_FIN) {
            c->fin_peer = true;
        }
    } else {
        if (c->offset_known && c->offset) {
            set32(th + 4, info.tcp_seq + c->offset, csum, csum_partial);
            changed = true;
        }
        if (ts && c->offset_known) {
            uint32_t v = tsval + c->ts_offset;

            /*
             * After failover the client drops a TSval older than the last
             * one the primary sent it (PAWS, RFC 7323 section 5), and this
             * guest's clock lags the primary's by the extra time it was
             * stopped.  Never go below what the client last echoed.
             */
            if (r->failed_over && c->ts_echoed_known &&
                (int32_t)(v - c->ts_echoed) < 0) {
                c->ts_offset += c->ts_echoed - v;
                v = c->ts_echoed;
            }
            if (v != tsval) {
                set32(ts, v, csum, csum_partial);
                changed = true;
            }
        }
        if (info.tcp_flags & COLO_TCP_FIN) {
            c->fin_guest = true;
        }
    }
    if ((info.tcp_flags & COLO_TCP_RST) || (c->fin_guest && c->fin_peer)) {
        c->closed = true;
    }
    if (changed) {
        r->stats.rewritten++;
    }
    return changed;
}

void colo_rewriter_checkpoint(ColoRewriter *r, bool guest_replaced)
{
    GHashTableIter it;
    RwConn *c;

    if (!guest_replaced) {
        /*
         * The primary's guest (e.g. a former secondary re-protected after
         * failover) keeps running with its own numbering, and its clients
         * with theirs: resetting here would stall every such connection.
         */
        return;
    }
    g_hash_table_iter_init(&it, r->conns);
    while (g_hash_table_iter_next(&it, NULL, (gpointer *)&c)) {
        /* The secondary guest now numbers and stamps like the primary. */
        c->offset = 0;
        c->ts_offset = 0;
        c->offset_known = true;
    }
}

void colo_rewriter_failover(ColoRewriter *r)
{
    GHashTableIter it;
    RwConn *c;

    g_hash_table_iter_init(&it, r->conns);
    while (g_hash_table_iter_next(&it, NULL, (gpointer *)&c)) {
        /*
         * The netdev now faces the client: S becomes C.  An offset not yet
         * learned is learned from the client's ACK, already C - G.
         */
        if (c->offset_known) {
            c->offset += c->carried;
            c->ts_offset += c->ts_carried;
        }
        c->ts_echoed += c->ts_carried;
        c->carried = 0;
        c->ts_carried = 0;
    }
    r->failed_over = true;
}

bool colo_rewriter_failed_over(ColoRewriter *r)
{
    return r->failed_over;
}

static uint8_t conn_flags(const RwConn *c)
{
    return (c->fin_guest ? COLO_RW_F_FIN_GUEST : 0) |
           (c->fin_peer ? COLO_RW_F_FIN_PEER : 0) |
           (c->closed ? COLO_RW_F_CLOSED : 0);
}

/* A copy of this guest would need the connection rewritten. */
static bool conn_carries(const RwConn *c)
{
    return c->offset_known &&
           (c->offset + c->carried != 0 || c->ts_offset + c->ts_carried != 0);
}

size_t colo_rewriter_save(ColoRewriter *r, uint8_t **buf)
{
    GHashTableIter it;
    RwConn *c;
    uint32_t count = 0;
    size_t len;
    uint8_t *p;

    g_hash_table_iter_init(&it, r->conns);
    while (g_hash_table_iter_next(&it, NULL, (gpointer *)&c)) {
        count += conn_carries(c);
    }
    len = count ? SAVE_HEADER_LEN + (size_t)count * COLO_REWRITER_RECORD_LEN
                : 0;
    if (!buf) {
        return len;
    }
    *buf = NULL;
    if (!count) {
        return 0;
    }
    p = *buf = g_malloc0(len);
    wr32(p, COLO_REWRITER_SAVE_VERSION);
    wr32(p + 4, count);
    p += SAVE_HEADER_LEN;
    g_hash_table_iter_init(&it, r->conns);
    while (g_hash_table_iter_next(&it, NULL, (gpointer *)&c)) {
        if (!conn_carries(c)) {
            continue;
        }
        memcpy(p, c->key.guest_ip, 16);
        memcpy(p + 16, c->key.peer_ip, 16);
        wr32(p + 32, c->key.vlan_key);
        wr16(p + 36, c->key.guest_port);
        wr16(p + 38, c->key.peer_port);
        wr32(p + 40, c->offset + c->carried);
        wr32(p + 44, conn_flags(c));
        wr32(p + 48, c->ts_offset + c->ts_carried);
        p += COLO_REWRITER_RECORD_LEN;
    }
    return len;
}

bool colo_rewriter_load(ColoRewriter *r, const uint8_t *buf, size_t len,
                        int64_t now_ns)
{
    GHashTableIter it;
    RwConn *c;
    uint32_t count = 0, i;
    const uint8_t *p;

    if (len) {
        if (len < SAVE_HEADER_LEN ||
            rd32(buf) != COLO_REWRITER_SAVE_VERSION) {
            return false;
        }
        count = rd32(buf + 4);
        if (count > r->max_connections ||
            len != SAVE_HEADER_LEN + (size_t)count * COLO_REWRITER_RECORD_LEN) {
            return false;
        }
        for (i = 0; i < count; i++) {
            p = buf + SAVE_HEADER_LEN + (size_t)i * COLO_REWRITER_RECORD_LEN;
            if (rd32(p + 44) & ~(uint32_t)(COLO_RW_F_FIN_GUEST |
                                           COLO_RW_F_FIN_PEER |
                                           COLO_RW_F_CLOSED)) {
                return false;
            }
        }
    }

    g_hash_table_iter_init(&it, r->conns);
    while (g_hash_table_iter_next(&it, NULL, (gpointer *)&c)) {
        c->carried = 0;
        c->ts_carried = 0;
    }
    for (i = 0; i < count; i++) {
        RwKey key;
        uint32_t flags;

        p = buf + SAVE_HEADER_LEN + (size_t)i * COLO_REWRITER_RECORD_LEN;
        memset(&key, 0, sizeof(key));
        memcpy(key.guest_ip, p, 16);
        memcpy(key.peer_ip, p + 16, 16);
        key.vlan_key = rd32(p + 32);
        key.guest_port = rd16(p + 36);
        key.peer_port = rd16(p + 38);
        flags = rd32(p + 44);
        c = g_hash_table_lookup(r->conns, &key);
        if (!c) {
            c = conn_new(r, &key, now_ns);
            if (!c) {
                r->stats.carried_dropped++;
                continue;
            }
            /* this guest is (about to be) a copy of the primary's: S = G */
            c->offset_known = true;
            c->offset = 0;
        }
        c->carried = rd32(p + 40);
        c->ts_carried = rd32(p + 48);
        c->fin_guest |= !!(flags & COLO_RW_F_FIN_GUEST);
        c->fin_peer |= !!(flags & COLO_RW_F_FIN_PEER);
        c->closed |= !!(flags & COLO_RW_F_CLOSED);
        c->last_ns = now_ns;
    }
    r->stats.connections = g_hash_table_size(r->conns);
    return true;
}

void colo_rewriter_expire(ColoRewriter *r, int64_t now_ns)
{
    GHashTableIter it;
    RwConn *c;

    g_hash_table_iter_init(&it, r->conns);
    while (g_hash_table_iter_next(&it, NULL, (gpointer *)&c)) {
        int64_t idle = now_ns - c->last_ns;

        if ((c->closed && idle >= r->closed_ns) || idle >= r->idle_ns) {
            if (c->closed) {
                r->stats.connections_closed++;
            } else {
                r->stats.connections_aged++;
            }
            g_hash_table_iter_remove(&it);
        }
    }
    r->stats.connections = g_hash_table_size(r->conns);
}

const ColoRewriterStats *colo_rewriter_stats(ColoRewriter *r)
{
    GHashTableIter it;
    RwConn *c;

    r->stats.offsets_carried = 0;
    g_hash_table_iter_init(&it, r->conns);
    while (g_hash_table_iter_next(&it, NULL, (gpointer *)&c)) {
        r->stats.offsets_carried += c->carried != 0;
    }
    r->stats.connections = g_hash_table_size(r->conns);
    return &r->stats;
}

static void ipv4_key(RwKey *key, uint32_t guest_ip, uint16_t guest_port,
                     uint32_t peer_ip, uint16_t peer_port)
{
    memset(key, 0, sizeof(*key));
    key->guest_ip[10] = key->guest_ip[11] = 0xff;
    stl_be_p(key->guest_ip + 12, guest_ip);
    key->guest_port = guest_port;
    key->peer_ip[10] = key->peer_ip[11] = 0xff;
    stl_be_p(key->peer_ip + 12, peer_ip);
    key->peer_port = peer_port;
}

static RwConn *lookup_ipv4(ColoRewriter *r, uint32_t guest_ip,
                           uint16_t guest_port, uint32_t peer_ip,
                           uint16_t peer_port)
{
    RwKey key;

    ipv4_key(&key, guest_ip, guest_port, peer_ip, peer_port);
    return g_hash_table_lookup(r->conns, &key);
}

bool colo_rewriter_offset(ColoRewriter *r, uint32_t guest_ip,
                          uint16_t guest_port, uint32_t peer_ip,
                          uint16_t peer_port, uint32_t *offset)
{
    RwConn *c = lookup_ipv4(r, guest_ip, guest_port, peer_ip, peer_port);

    if (!c || !c->offset_known) {
        return false;
    }
    *offset = c->offset;
    return true;
}

bool colo_rewriter_carried(ColoRewriter *r, uint32_t guest_ip,
                           uint16_t guest_port, uint32_t peer_ip,
                           uint16_t peer_port, uint32_t *carried)
{
    RwConn *c = lookup_ipv4(r, guest_ip, guest_port, peer_ip, peer_port);

    if (!c || !c->carried) {
        return false;
    }
    *carried = c->carried;
    return true;
}
