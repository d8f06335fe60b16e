/*
 * COLO proxy: the filter-rewriter engine, unit tests (no VM)
 *
 * Copyright (c) 2026 The qemu-colo authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "net/colo-rewriter.h"
#include "colo-test-frames.h"

#define MS 1000000LL
#define SEC 1000000000LL

#define GUEST_PORT 80
#define CLIENT_PORT 40000

static uint32_t sum16(const uint8_t *p, size_t len, uint32_t sum)
{
    size_t i;

    for (i = 0; i + 1 < len; i += 2) {
        sum += (p[i] << 8) | p[i + 1];
    }
    if (len & 1) {
        sum += p[len - 1] << 8;
    }
    return sum;
}

/* The full TCP checksum of an untagged IPv4/TCP frame. */
static uint16_t tcp_csum(const uint8_t *frame, size_t len)
{
    const uint8_t *ip = frame + 14;
    size_t tcp_len = lduw_be_p(ip + 2) - 20;
    uint32_t sum = 0;

    sum = sum16(ip + 12, 8, sum);
    sum += 6 + tcp_len;
    sum = sum16(ip + 20, tcp_len, sum);
    while (sum >> 16) {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    return ~sum;
}

static void set_csum(uint8_t *frame, size_t len)
{
    stw_be_p(frame + 34 + 16, 0);
    stw_be_p(frame + 34 + 16, tcp_csum(frame, len));
}

static bool csum_ok(const uint8_t *frame, size_t len)
{
    return tcp_csum(frame, len) == 0;
}

typedef struct Pkt {
    uint8_t buf[512];
    size_t len;
} Pkt;

/* A segment @t from the guest (port 80) or from the client (to port 80). */
static void mk_segment(Pkt *p, bool from_guest, TfTcp t, const char *data)
{
    if (from_guest) {
        t.src_ip = TF_GUEST_IP;
        t.dst_ip = TF_CLIENT_IP;
        t.sport = GUEST_PORT;
        t.dport = CLIENT_PORT;
    } else {
        t.src_ip = TF_CLIENT_IP;
        t.dst_ip = TF_GUEST_IP;
        t.sport = CLIENT_PORT;
        t.dport = GUEST_PORT;
    }
    p->len = tf_tcp(p->buf, &t, data, data ? strlen(data) : 0);
    set_csum(p->buf, p->len);
}

static void mk(Pkt *p, bool from_guest, uint32_t seq, uint32_t ack,
               uint8_t flags, const char *data)
{
    mk_segment(p, from_guest,
               (TfTcp) { .seq = seq, .ack = ack, .flags = flags }, data);
}

/* ... with a timestamp option (RFC 7323): TSval @val, TSecr @ecr. */
static void mk_ts(Pkt *p, bool from_guest, uint32_t seq, uint32_t ack,
                  uint8_t flags, const char *data, uint32_t val, uint32_t ecr)
{
    mk_segment(p, from_guest,
               (TfTcp) { .seq = seq, .ack = ack, .flags = flags,
                         .opt_len = 12, .ts_val = val, .ts_ecr = ecr }, data);
}

static uint32_t seq_of(Pkt *p)
{
    return ldl_be_p(p->buf + 34 + 4);
}

static uint32_t ack_of(Pkt *p)
{
    return ldl_be_p(p->buf + 34 + 8);
}

static bool run(ColoRewriter *r, ColoRewriteDir dir, Pkt *p, int64_t now)
{
    bool changed = colo_rewriter_packet(r, dir, p->buf, p->len, false, now,
                                        NULL);

    g_assert(csum_ok(p->buf, p->len));
    return changed;
}

#define SYN COLO_TCP_SYN
#define ACK COLO_TCP_ACK
#define FIN COLO_TCP_FIN
#define RST COLO_TCP_RST

static const uint32_t primary_isn = 0x10000000;
static const uint32_t secondary_isn = 0x20000000;

/* The guest is the server: client SYN, guest SYN-ACK, client ACK. */
static void handshake_server(ColoRewriter *r)
{
    Pkt p;

    mk(&p, false, 5000, 0, SYN, NULL);
    g_assert_false(run(r, COLO_TO_GUEST, &p, 0));
    mk(&p, true, secondary_isn, 5001, SYN | ACK, NULL);
    g_assert_false(run(r, COLO_FROM_GUEST, &p, 0));
    g_assert_cmpuint(seq_of(&p), ==, secondary_isn);
    /* the client acknowledges the primary's SYN-ACK */
    mk(&p, false, 5001, primary_isn + 1, ACK, NULL);
    g_assert_true(run(r, COLO_TO_GUEST, &p, 0));
    g_assert_cmpuint(ack_of(&p), ==, secondary_isn + 1);
}

static void test_server_connection(void)
{
    ColoRewriter *r = colo_rewriter_new(16, 60 * SEC, 5 * SEC);
    uint32_t offset;
    Pkt p;

    handshake_server(r);
    g_assert_true(colo_rewriter_offset(r, TF_GUEST_IP, GUEST_PORT,
                                       TF_CLIENT_IP, CLIENT_PORT, &offset));
    g_assert_cmpuint(offset, ==, primary_isn - secondary_isn);
    /* request in, answer out in the primary's numbering */
    mk(&p, false, 5001, primary_isn + 1, ACK | COLO_TCP_PSH, "GET /");
    g_assert_true(run(r, COLO_TO_GUEST, &p, 0));
    g_assert_cmpuint(ack_of(&p), ==, secondary_isn + 1);
    mk(&p, true, secondary_isn + 1, 5006, ACK | COLO_TCP_PSH, "200 OK");
    g_assert_true(run(r, COLO_FROM_GUEST, &p, 0));
    g_assert_cmpuint(seq_of(&p), ==, primary_isn + 1);
    g_assert_cmpuint(ack_of(&p), ==, 5006);
    g_assert_cmpuint(colo_rewriter_stats(r)->offsets_learned, ==, 1);
    colo_rewriter_free(r);
}

/* The guest opens the connection: guest SYN, client SYN-ACK. */
static void test_client_connection(void)
{
    ColoRewriter *r = colo_rewriter_new(16, 60 * SEC, 5 * SEC);
    Pkt p;
    TfTcp t = { .seq = secondary_isn, .flags = SYN, .sport = 50000,
                .dport = 443 };

    p.len = tf_tcp(p.buf, &t, NULL, 0);
    set_csum(p.buf, p.len);
    g_assert_false(run(r, COLO_FROM_GUEST, &p, 0));
    t = (TfTcp) { .src_ip = TF_CLIENT_IP, .dst_ip = TF_GUEST_IP,
                  .sport = 443, .dport = 50000, .seq = 7000,
                  .ack = primary_isn + 1, .flags = SYN | ACK };
    p.len = tf_tcp(p.buf, &t, NULL, 0);
    set_csum(p.buf, p.len);
    g_assert_true(run(r, COLO_TO_GUEST, &p, 0));
    g_assert_cmpuint(ack_of(&p), ==, secondary_isn + 1);
    t = (TfTcp) { .seq = secondary_isn + 1, .ack = 7001, .flags = ACK,
                  .sport = 50000, .dport = 443 };
    p.len = tf_tcp(p.buf, &t, NULL, 0);
    set_csum(p.buf, p.len);
    g_assert_true(run(r, COLO_FROM_GUEST, &p, 0));
    g_assert_cmpuint(seq_of(&p), ==, primary_isn + 1);
    colo_rewriter_free(r);
}

/* Offsets across the 2^32 wrap, and SACK blocks from the client. */
static void test_wrap_and_sack(void)
{
    ColoRewriter *r = colo_rewriter_new(16, 60 * SEC, 5 * SEC);
    TfTcp t = { .src_ip = TF_CLIENT_IP, .dst_ip = TF_GUEST_IP,
                .sport = CLIENT_PORT, .dport = GUEST_PORT, .seq = 5001,
                .ack = 10, .flags = ACK, .opt_len = 12 };
    uint32_t sec = 0xfffffff0u;
    Pkt p;

    mk(&p, true, sec, 5001, SYN | ACK, NULL);
    run(r, COLO_FROM_GUEST, &p, 0);
    mk(&p, false, 5001, 10, ACK, NULL);         /* primary ISN 9 */
    g_assert_true(run(r, COLO_TO_GUEST, &p, 0));
    g_assert_cmpuint(ack_of(&p), ==, sec + 1);
    mk(&p, true, sec + 100, 5001, ACK, "x");    /* wraps: 0x54 */
    g_assert_true(run(r, COLO_FROM_GUEST, &p, 0));
    g_assert_cmpuint(seq_of(&p), ==, 109);
    /* client SACK: NOP NOP SACK(len 10) one block, in our numbering */
    p.len = tf_tcp(p.buf, &t, NULL, 0);
    p.buf[54] = 1;
    p.buf[55] = 1;
    p.buf[56] = 5;
    p.buf[57] = 10;
    stl_be_p(p.buf + 58, 200);
    stl_be_p(p.buf + 62, 300);
    set_csum(p.buf, p.len);
    g_assert_true(run(r, COLO_TO_GUEST, &p, 0));
    g_assert_cmpuint(ack_of(&p), ==, sec + 1);
    g_assert_cmpuint(ldl_be_p(p.buf + 58), ==, 200 - 9 + sec);
    g_assert_cmpuint(ldl_be_p(p.buf + 62), ==, 300 - 9 + sec);
    colo_rewriter_free(r);
}

/* After a checkpoint the secondary numbers like the primary. */
static void test_checkpoint_resets_offset(void)
{
    ColoRewriter *r = colo_rewriter_new(16, 60 * SEC, 5 * SEC);
    Pkt p;

    handshake_server(r);
    colo_rewriter_checkpoint(r, true);
    mk(&p, true, primary_isn + 1, 5001, ACK | COLO_TCP_PSH, "data");
    g_assert_false(run(r, COLO_FROM_GUEST, &p, 0));
    g_assert_cmpuint(seq_of(&p), ==, primary_isn + 1);
    mk(&p, false, 5001, primary_isn + 5, ACK, NULL);
    g_assert_false(run(r, COLO_TO_GUEST, &p, 0));
    colo_rewriter_free(r);
}

/*
 * A checkpoint replaces only the secondary's guest.  A former secondary that
 * took over and is re-protected checkpoints as the primary: its guest keeps
 * its own numbering and the client its, so the offsets must survive.
 */
static void test_checkpoint_as_primary_keeps_offset(void)
{
    ColoRewriter *r = colo_rewriter_new(16, 60 * SEC, 5 * SEC);
    uint32_t offset;
    Pkt p;

    handshake_server(r);
    colo_rewriter_failover(r);
    colo_rewriter_checkpoint(r, false);
    g_assert_true(colo_rewriter_offset(r, TF_GUEST_IP, GUEST_PORT,
                                       TF_CLIENT_IP, CLIENT_PORT, &offset));
    g_assert_cmpuint(offset, ==, primary_isn - secondary_isn);
    mk(&p, true, secondary_isn + 1, 5001, ACK | COLO_TCP_PSH, "data");
    g_assert_true(run(r, COLO_FROM_GUEST, &p, 0));
    g_assert_cmpuint(seq_of(&p), ==, primary_isn + 1);
    mk(&p, false, 5001, primary_isn + 5, ACK, NULL);
    g_assert_true(run(r, COLO_TO_GUEST, &p, 0));
    g_assert_cmpuint(ack_of(&p), ==, secondary_isn + 5);
    /* the same checkpoint on the secondary: its guest is the primary's */
    colo_rewriter_checkpoint(r, true);
    g_assert_true(colo_rewriter_offset(r, TF_GUEST_IP, GUEST_PORT,
                                       TF_CLIENT_IP, CLIENT_PORT, &offset));
    g_assert_cmpuint(offset, ==, 0);
    colo_rewriter_free(r);
}

/* After failover, new connections are left alone, old ones continue. */
static void test_failover(void)
{
    ColoRewriter *r = colo_rewriter_new(16, 60 * SEC, 5 * SEC);
    TfTcp t = { .seq = 123, .flags = SYN, .sport = 50001, .dport = 22 };
    Pkt p;

    handshake_server(r);
    colo_rewriter_failover(r);
    mk(&p, true, secondary_isn + 1, 5001, ACK, "still");
    g_assert_true(run(r, COLO_FROM_GUEST, &p, 0));
    g_assert_cmpuint(seq_of(&p), ==, primary_isn + 1);
    p.len = tf_tcp(p.buf, &t, NULL, 0);
    set_csum(p.buf, p.len);
    g_assert_false(run(r, COLO_FROM_GUEST, &p, 0));
    t = (TfTcp) { .src_ip = TF_CLIENT_IP, .dst_ip = TF_GUEST_IP,
                  .sport = 22, .dport = 50001, .seq = 1, .ack = 124,
                  .flags = SYN | ACK };
    p.len = tf_tcp(p.buf, &t, NULL, 0);
    set_csum(p.buf, p.len);
    g_assert_false(run(r, COLO_TO_GUEST, &p, 0));
    g_assert_cmpuint(ack_of(&p), ==, 124);
    g_assert_cmpuint(colo_rewriter_stats(r)->untracked_after_failover, ==, 1);
    colo_rewriter_free(r);
}

/* FIN both ways or RST: closed, aged out after closed_ns; idle aging. */
static void test_close_and_aging(void)
{
    ColoRewriter *r = colo_rewriter_new(16, 60 * SEC, 5 * SEC);
    Pkt p;

    handshake_server(r);
    mk(&p, true, secondary_isn + 1, 5001, FIN | ACK, NULL);
    run(r, COLO_FROM_GUEST, &p, 1 * SEC);
    mk(&p, false, 5001, primary_isn + 2, FIN | ACK, NULL);
    g_assert_true(run(r, COLO_TO_GUEST, &p, 1 * SEC));
    g_assert_cmpuint(ack_of(&p), ==, secondary_isn + 2);
    colo_rewriter_expire(r, 3 * SEC);
    g_assert_cmpuint(colo_rewriter_stats(r)->connections, ==, 1);
    colo_rewriter_expire(r, 6 * SEC);
    g_assert_cmpuint(colo_rewriter_stats(r)->connections, ==, 0);
    g_assert_cmpuint(colo_rewriter_stats(r)->connections_closed, ==, 1);

    handshake_server(r);
    mk(&p, false, 5001, primary_isn + 1, RST | ACK, NULL);
    g_assert_true(run(r, COLO_TO_GUEST, &p, 1 * SEC));
    colo_rewriter_expire(r, 7 * SEC);
    g_assert_cmpuint(colo_rewriter_stats(r)->connections, ==, 0);

    handshake_server(r);
    colo_rewriter_expire(r, 59 * SEC);
    g_assert_cmpuint(colo_rewriter_stats(r)->connections, ==, 1);
    colo_rewriter_expire(r, 60 * SEC);
    g_assert_cmpuint(colo_rewriter_stats(r)->connections, ==, 0);
    g_assert_cmpuint(colo_rewriter_stats(r)->connections_aged, ==, 1);
    colo_rewriter_free(r);
}

/* IPv6: the same, with the IPv6 pseudo-header in the checksum. */
static void test_ipv6(void)
{
    ColoRewriter *r = colo_rewriter_new(16, 60 * SEC, 5 * SEC);
    TfTcp t = { .seq = secondary_isn, .ack = 5001, .flags = SYN | ACK };
    uint8_t buf[256];
    size_t len;
    uint32_t sum;

    len = tf_tcp6(buf, &t, false, NULL, 0);
    g_assert_false(colo_rewriter_packet(r, COLO_FROM_GUEST, buf, len, false,
                                        0, NULL));
    t = (TfTcp) { .seq = 5001, .ack = primary_isn + 1, .flags = ACK,
                  .sport = CLIENT_PORT, .dport = GUEST_PORT };
    len = tf_tcp6(buf, &t, true, NULL, 0);
    g_assert_true(colo_rewriter_packet(r, COLO_TO_GUEST, buf, len, false, 0,
                                       NULL));
    g_assert_cmpuint(ldl_be_p(buf + 54 + 8), ==, secondary_isn + 1);
    t = (TfTcp) { .seq = secondary_isn + 1, .ack = 5001, .flags = ACK };
    len = tf_tcp6(buf, &t, false, "v6 data", 7);
    /* a correct checksum first: pseudo-header + segment */
    sum = sum16(buf + 22, 32, 0) + 6 + 27;
    sum = sum16(buf + 54, 27, sum);
    while (sum >> 16) {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    stw_be_p(buf + 54 + 16, ~sum);
    g_assert_true(colo_rewriter_packet(r, COLO_FROM_GUEST, buf, len, false,
                                       0, NULL));
    g_assert_cmpuint(ldl_be_p(buf + 54 + 4), ==, primary_isn + 1);
    sum = sum16(buf + 22, 32, 0) + 6 + 27;
    sum = sum16(buf + 54, 27, sum);
    while (sum >> 16) {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    g_assert_cmpuint(sum, ==, 0xffff);
    colo_rewriter_free(r);
}

/* A bounded table: connections beyond it are not tracked. */
static void test_table_bound(void)
{
    ColoRewriter *r = colo_rewriter_new(2, 60 * SEC, 5 * SEC);
    TfTcp t = { .seq = 1, .flags = SYN, .dport = 1 };
    Pkt p;
    int i;

    for (i = 0; i < 3; i++) {
        t.sport = 1000 + i;
        p.len = tf_tcp(p.buf, &t, NULL, 0);
        colo_rewriter_packet(r, COLO_FROM_GUEST, p.buf, p.len, false, 0,
                             NULL);
    }
    g_assert_cmpuint(colo_rewriter_stats(r)->connections, ==, 2);
    g_assert_cmpuint(colo_rewriter_stats(r)->connections_opened, ==, 2);
    colo_rewriter_free(r);
}

/* Malformed, non-TCP and unknown-connection frames pass unchanged. */
static void test_passthrough(void)
{
    ColoRewriter *r = colo_rewriter_new(16, 60 * SEC, 5 * SEC);
    ColoParseError err;
    Pkt p, copy;

    p.len = tf_udp(p.buf, 53, 53, "dns", 3, 1);
    copy = p;
    g_assert_false(colo_rewriter_packet(r, COLO_FROM_GUEST, p.buf, p.len,
                                        false, 0, &err));
    g_assert(memcmp(p.buf, copy.buf, p.len) == 0);
    g_assert_false(colo_rewriter_packet(r, COLO_FROM_GUEST, p.buf, 20, false,
                                        0, &err));
    g_assert_cmpint(err, ==, COLO_PARSE_SHORT_IP);
    mk(&p, true, 42, 1, ACK, "mid-stream");
    g_assert_false(run(r, COLO_FROM_GUEST, &p, 0));
    g_assert_cmpuint(seq_of(&p), ==, 42);
    g_assert_cmpuint(colo_rewriter_stats(r)->malformed, ==, 1);
    colo_rewriter_free(r);
}

/* Checksum offload: the checksum field is left for the device. */
static void test_csum_partial(void)
{
    ColoRewriter *r = colo_rewriter_new(16, 60 * SEC, 5 * SEC);
    Pkt p;

    handshake_server(r);
    mk(&p, true, secondary_isn + 1, 5001, ACK, "abc");
    stw_be_p(p.buf + 34 + 16, 0x1234);
    g_assert_true(colo_rewriter_packet(r, COLO_FROM_GUEST, p.buf, p.len, true,
                                       0, NULL));
    g_assert_cmpuint(lduw_be_p(p.buf + 34 + 16), ==, 0x1234);
    g_assert_cmpuint(seq_of(&p), ==, primary_isn + 1);
    colo_rewriter_free(r);
}

static uint32_t tsval_of(Pkt *p)
{
    return ldl_be_p(p->buf + 34 + 24);
}

static uint32_t tsecr_of(Pkt *p)
{
    return ldl_be_p(p->buf + 34 + 28);
}

/*
 * Each guest stamps its segments with its own clock and a random offset
 * per connection (Linux: secure_tcp_ts_off()).  The client echoes the
 * primary's; the secondary's own must not reach it.
 */
static const uint32_t primary_ts = 0x0a16b2a4;      /* 169259684 */
static const uint32_t secondary_ts = 0xf8436a84;    /* ~3.5 days away */

static void handshake_server_ts(ColoRewriter *r)
{
    Pkt p;

    mk_ts(&p, false, 5000, 0, SYN, NULL, 7000, 0);
    g_assert_false(run(r, COLO_TO_GUEST, &p, 0));
    mk_ts(&p, true, secondary_isn, 5001, SYN | ACK, NULL, secondary_ts, 7000);
    g_assert_false(run(r, COLO_FROM_GUEST, &p, 0));
    /* the client acknowledges the primary's SYN-ACK and echoes its TSval */
    mk_ts(&p, false, 5001, primary_isn + 1, ACK, NULL, 7001, primary_ts);
    g_assert_true(run(r, COLO_TO_GUEST, &p, 0));
    g_assert_cmpuint(ack_of(&p), ==, secondary_isn + 1);
    g_assert_cmpuint(tsecr_of(&p), ==, secondary_ts);
}

/*
 * A connection opened since the last checkpoint carries the secondary
 * guest's own timestamps.  Should it take over before the next
 * checkpoint, its TSvals must continue the primary's, or the client
 * drops every segment as old (PAWS, RFC 7323 section 5) and the
 * connection stalls: seen after a guest reboot, when the guests' secrets
 * for timestamp offsets differ.
 */
static void test_timestamps(void)
{
    ColoRewriter *r = colo_rewriter_new(16, 60 * SEC, 5 * SEC);
    Pkt p;

    handshake_server_ts(r);
    mk_ts(&p, true, secondary_isn + 1, 5001, ACK | COLO_TCP_PSH, "answer",
          secondary_ts + 40, 7001);
    g_assert_true(run(r, COLO_FROM_GUEST, &p, 0));
    g_assert_cmpuint(seq_of(&p), ==, primary_isn + 1);
    g_assert_cmpuint(tsval_of(&p), ==, primary_ts + 40);
    g_assert_cmpuint(tsecr_of(&p), ==, 7001);

    colo_rewriter_failover(r);
    mk_ts(&p, false, 5001, primary_isn + 7, ACK | COLO_TCP_PSH, "next",
          7100, primary_ts + 40);
    g_assert_true(run(r, COLO_TO_GUEST, &p, 0));
    g_assert_cmpuint(tsecr_of(&p), ==, secondary_ts + 40);
    mk_ts(&p, true, secondary_isn + 7, 5005, ACK | COLO_TCP_PSH, "again",
          secondary_ts + 90, 7100);
    g_assert_true(run(r, COLO_FROM_GUEST, &p, 0));
    g_assert_cmpuint(seq_of(&p), ==, primary_isn + 7);
    g_assert_cmpuint(tsval_of(&p), ==, primary_ts + 90);
    colo_rewriter_free(r);
}

/* A checkpoint makes the guest stamp like the primary's: nothing to do. */
static void test_timestamps_after_checkpoint(void)
{
    ColoRewriter *r = colo_rewriter_new(16, 60 * SEC, 5 * SEC);
    Pkt p;

    handshake_server_ts(r);
    colo_rewriter_checkpoint(r, true);
    mk_ts(&p, true, primary_isn + 1, 5001, ACK | COLO_TCP_PSH, "answer",
          primary_ts + 40, 7001);
    g_assert_false(run(r, COLO_FROM_GUEST, &p, 0));
    g_assert_cmpuint(tsval_of(&p), ==, primary_ts + 40);
    mk_ts(&p, false, 5001, primary_isn + 7, ACK, NULL, 7100, primary_ts + 40);
    g_assert_false(run(r, COLO_TO_GUEST, &p, 0));
    g_assert_cmpuint(tsecr_of(&p), ==, primary_ts + 40);
    colo_rewriter_free(r);
}

/*
 * After failover a guest whose clock lags the primary's (a secondary is
 * stopped longer at each checkpoint) would stamp older than what the
 * client last saw from the primary: PAWS drops those segments.  The
 * survivor's TSvals are raised to the client's latest echo, and its echoes
 * lowered by as much, so its own clock stays consistent.
 */
static void test_timestamps_lagging_clock(void)
{
    ColoRewriter *r = colo_rewriter_new(16, 60 * SEC, 5 * SEC);
    Pkt p;

    handshake_server_ts(r);
    colo_rewriter_checkpoint(r, true);
    /* the primary ran 500 ms further than the secondary's clock shows */
    mk_ts(&p, false, 5001, primary_isn + 1, ACK | COLO_TCP_PSH, "req",
          7200, primary_ts + 500);
    g_assert_false(run(r, COLO_TO_GUEST, &p, 0));
    colo_rewriter_failover(r);
    mk_ts(&p, true, primary_isn + 1, 5004, ACK | COLO_TCP_PSH, "answer",
          primary_ts + 300, 7200);
    g_assert_true(run(r, COLO_FROM_GUEST, &p, 0));
    g_assert_cmpuint(seq_of(&p), ==, primary_isn + 1);
    g_assert_cmpuint(tsval_of(&p), ==, primary_ts + 500);
    mk_ts(&p, false, 5004, primary_isn + 7, ACK, NULL, 7300, primary_ts + 500);
    g_assert_true(run(r, COLO_TO_GUEST, &p, 0));
    g_assert_cmpuint(tsecr_of(&p), ==, primary_ts + 300);
    mk_ts(&p, true, primary_isn + 7, 5004, ACK | COLO_TCP_PSH, "more",
          primary_ts + 350, 7300);
    g_assert_true(run(r, COLO_FROM_GUEST, &p, 0));
    g_assert_cmpuint(tsval_of(&p), ==, primary_ts + 550);
    colo_rewriter_free(r);
}

/*
 * A connection opened since the last checkpoint, carried through a
 * re-protection: the new secondary takes over and must stamp like the
 * client expects too.
 */
static void test_timestamps_carried(void)
{
    ColoRewriter *b = colo_rewriter_new(16, 60 * SEC, 5 * SEC);
    ColoRewriter *a = colo_rewriter_new(16, 60 * SEC, 5 * SEC);
    g_autofree uint8_t *buf = NULL;
    size_t len;
    Pkt p;

    handshake_server_ts(b);
    colo_rewriter_failover(b);
    /* a: the new secondary, a copy of b's guest (b's numbering) */
    len = colo_rewriter_save(b, &buf);
    g_assert_true(colo_rewriter_load(a, buf, len, 0));
    colo_rewriter_failover(a);
    mk_ts(&p, true, secondary_isn + 1, 5001, ACK | COLO_TCP_PSH, "answer",
          secondary_ts + 40, 7001);
    g_assert_true(run(a, COLO_FROM_GUEST, &p, 0));
    g_assert_cmpuint(seq_of(&p), ==, primary_isn + 1);
    g_assert_cmpuint(tsval_of(&p), ==, primary_ts + 40);
    colo_rewriter_free(a);
    colo_rewriter_free(b);
}

/* What a copy of @from's guest needs: @from's save, loaded into @to. */
static void carry(ColoRewriter *from, ColoRewriter *to)
{
    g_autofree uint8_t *buf = NULL;
    size_t len = colo_rewriter_save(from, &buf);

    g_assert_true(colo_rewriter_load(to, buf, len, 0));
}

static bool carried_of(ColoRewriter *r, uint32_t *carried)
{
    return colo_rewriter_carried(r, TF_GUEST_IP, GUEST_PORT, TF_CLIENT_IP,
                                 CLIENT_PORT, carried);
}

/*
 * The numbering a node's netdev side needs for the connection of
 * handshake_server(): the client's request acknowledging the primary's
 * byte @n reaches the guest acknowledging the secondary's byte @n, and
 * the guest's byte @n leaves as the primary's.
 */
static void check_faces_client(ColoRewriter *r, uint32_t n)
{
    Pkt p;

    mk(&p, false, 5001, primary_isn + n, ACK | COLO_TCP_PSH, "req");
    g_assert_true(run(r, COLO_TO_GUEST, &p, 0));
    g_assert_cmpuint(ack_of(&p), ==, secondary_isn + n);
    mk(&p, true, secondary_isn + n, 5004, ACK | COLO_TCP_PSH, "answer");
    g_assert_true(run(r, COLO_FROM_GUEST, &p, 0));
    g_assert_cmpuint(seq_of(&p), ==, primary_isn + n);
}

/* ... and a secondary behind the primary's rewriter changes nothing. */
static void check_behind_primary(ColoRewriter *r, uint32_t n)
{
    Pkt p;

    mk(&p, false, 5001, secondary_isn + n, ACK | COLO_TCP_PSH, "req");
    g_assert_false(run(r, COLO_TO_GUEST, &p, 0));
    g_assert_cmpuint(ack_of(&p), ==, secondary_isn + n);
    mk(&p, true, secondary_isn + n, 5004, ACK | COLO_TCP_PSH, "answer");
    g_assert_false(run(r, COLO_FROM_GUEST, &p, 0));
    g_assert_cmpuint(seq_of(&p), ==, secondary_isn + n);
}

/*
 * A connection the secondary (b) learned an offset for, then: b takes
 * over; a new secondary (a) gets b's offsets with its migration and every
 * checkpoint and must not apply them while b rewrites at its netdev; a
 * takes over and must; and again with a third copy.
 */
static void test_carry_chain(void)
{
    ColoRewriter *b = colo_rewriter_new(16, 60 * SEC, 5 * SEC);
    ColoRewriter *a = colo_rewriter_new(16, 60 * SEC, 5 * SEC);
    ColoRewriter *c = colo_rewriter_new(16, 60 * SEC, 5 * SEC);
    uint32_t v;

    handshake_server(b);
    g_assert_false(colo_rewriter_failed_over(b));
    colo_rewriter_failover(b);
    g_assert_true(colo_rewriter_failed_over(b));
    check_faces_client(b, 10);

    carry(b, a);                        /* the re-protection's migration */
    g_assert_true(carried_of(a, &v));
    g_assert_cmpuint(v, ==, primary_isn - secondary_isn);
    g_assert_cmpuint(colo_rewriter_stats(a)->offsets_carried, ==, 1);
    check_behind_primary(a, 20);
    carry(b, a);                        /* a checkpoint: load, then event */
    colo_rewriter_checkpoint(a, true);
    colo_rewriter_checkpoint(b, false);
    check_behind_primary(a, 30);
    check_faces_client(b, 30);

    colo_rewriter_failover(a);          /* b died */
    g_assert_false(carried_of(a, &v));
    g_assert_true(colo_rewriter_offset(a, TF_GUEST_IP, GUEST_PORT,
                                       TF_CLIENT_IP, CLIENT_PORT, &v));
    g_assert_cmpuint(v, ==, primary_isn - secondary_isn);
    check_faces_client(a, 40);

    carry(a, c);                        /* re-protected again */
    colo_rewriter_checkpoint(c, true);
    colo_rewriter_checkpoint(a, false);
    check_behind_primary(c, 50);
    colo_rewriter_failover(c);
    check_faces_client(c, 60);
    colo_rewriter_free(a);
    colo_rewriter_free(b);
    colo_rewriter_free(c);
}

/*
 * On a secondary the offset it learned (S - G) and the one carried
 * (C - S) add up at failover; connections the primary does not rewrite
 * carry nothing; a checkpoint without the primary's offsets on them
 * clears them.
 */
static void test_carry_composed(void)
{
    ColoRewriter *a = colo_rewriter_new(16, 60 * SEC, 5 * SEC);
    ColoRewriter *b = colo_rewriter_new(16, 60 * SEC, 5 * SEC);
    ColoRewriter *fresh = colo_rewriter_new(16, 60 * SEC, 5 * SEC);
    g_autofree uint8_t *buf = NULL;
    uint32_t v;
    Pkt p;

    /* b's offset for the connection is 1000 (its guest numbers lower) */
    mk(&p, true, secondary_isn - 1000, 5001, SYN | ACK, NULL);
    run(b, COLO_FROM_GUEST, &p, 0);
    mk(&p, false, 5001, secondary_isn + 1, ACK, NULL);
    g_assert_true(run(b, COLO_TO_GUEST, &p, 0));
    colo_rewriter_failover(b);
    /* a learned its own offset (its guest numbers apart from b's) */
    handshake_server(a);
    carry(b, a);
    g_assert_true(carried_of(a, &v));
    g_assert_cmpuint(v, ==, 1000);
    colo_rewriter_failover(a);
    g_assert_true(colo_rewriter_offset(a, TF_GUEST_IP, GUEST_PORT,
                                       TF_CLIENT_IP, CLIENT_PORT, &v));
    g_assert_cmpuint(v, ==, primary_isn - secondary_isn + 1000);
    colo_rewriter_free(a);

    /* nothing to carry from a primary that rewrites nothing */
    g_assert_cmpuint(colo_rewriter_save(fresh, &buf), ==, 0);
    g_assert_null(buf);
    a = colo_rewriter_new(16, 60 * SEC, 5 * SEC);
    carry(b, a);
    g_assert_true(carried_of(a, &v));
    g_assert_true(colo_rewriter_load(a, NULL, 0, 0));
    g_assert_false(carried_of(a, &v));
    g_assert_cmpuint(colo_rewriter_stats(a)->offsets_carried, ==, 0);
    colo_rewriter_failover(a);
    check_behind_primary(a, 5);
    /* a secondary's own offsets, reset by a checkpoint, carry nothing */
    colo_rewriter_free(a);
    a = colo_rewriter_new(16, 60 * SEC, 5 * SEC);
    handshake_server(a);
    g_assert_cmpuint(colo_rewriter_save(a, &buf), >, 0);
    g_clear_pointer(&buf, g_free);
    colo_rewriter_checkpoint(a, true);
    g_assert_cmpuint(colo_rewriter_save(a, &buf), ==, 0);
    colo_rewriter_free(a);
    colo_rewriter_free(b);
    colo_rewriter_free(fresh);
}

/* A malformed string is refused whole; what was carried stays. */
static void test_carry_malformed(void)
{
    ColoRewriter *b = colo_rewriter_new(16, 60 * SEC, 5 * SEC);
    ColoRewriter *a = colo_rewriter_new(1, 60 * SEC, 5 * SEC);
    ColoRewriter *big = colo_rewriter_new(16, 60 * SEC, 5 * SEC);
    g_autofree uint8_t *buf = NULL;
    g_autofree uint8_t *two = NULL;
    size_t len, two_len;
    uint32_t v;
    TfTcp t;
    Pkt p;

    handshake_server(b);
    colo_rewriter_failover(b);
    len = colo_rewriter_save(b, &buf);
    g_assert_cmpuint(len, ==, 8 + COLO_REWRITER_RECORD_LEN);
    g_assert_cmpuint(colo_rewriter_save(b, NULL), ==, len);
    g_assert_true(colo_rewriter_load(a, buf, len, 0));
    g_assert_false(colo_rewriter_load(a, buf, len - 1, 0));
    g_assert_false(colo_rewriter_load(a, buf, 4, 0));
    buf[3] = COLO_REWRITER_SAVE_VERSION + 1;        /* version */
    g_assert_false(colo_rewriter_load(a, buf, len, 0));
    buf[3] = COLO_REWRITER_SAVE_VERSION;
    buf[7] = 2;                                     /* count */
    g_assert_false(colo_rewriter_load(a, buf, len, 0));
    buf[7] = 1;
    buf[8 + 47] = 8;                                /* unknown flag */
    g_assert_false(colo_rewriter_load(a, buf, len, 0));
    buf[8 + 47] = COLO_RW_F_CLOSED;
    g_assert_true(carried_of(a, &v));
    g_assert_cmpuint(v, ==, primary_isn - secondary_isn);

    /* two connections for a table of one: more than it may hold */
    handshake_server(big);
    t = (TfTcp) { .seq = 77, .ack = 9001, .flags = SYN | ACK, .sport = 22,
                  .dport = 40001 };
    p.len = tf_tcp(p.buf, &t, NULL, 0);
    set_csum(p.buf, p.len);
    run(big, COLO_FROM_GUEST, &p, 0);
    t = (TfTcp) { .src_ip = TF_CLIENT_IP, .dst_ip = TF_GUEST_IP,
                  .sport = 40001, .dport = 22, .seq = 9001, .ack = 1000,
                  .flags = ACK };
    p.len = tf_tcp(p.buf, &t, NULL, 0);
    set_csum(p.buf, p.len);
    g_assert_true(run(big, COLO_TO_GUEST, &p, 0));
    colo_rewriter_failover(big);
    two_len = colo_rewriter_save(big, &two);
    g_assert_cmpuint(two_len, ==, 8 + 2 * COLO_REWRITER_RECORD_LEN);
    g_assert_false(colo_rewriter_load(a, two, two_len, 0));
    /* a closed connection from the primary ages out as closed */
    g_assert_true(colo_rewriter_load(a, buf, len, 0));
    colo_rewriter_expire(a, 5 * SEC);
    g_assert_cmpuint(colo_rewriter_stats(a)->connections, ==, 0);
    g_assert_cmpuint(colo_rewriter_stats(a)->connections_closed, ==, 1);
    colo_rewriter_free(a);
    colo_rewriter_free(b);
    colo_rewriter_free(big);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/colo-rewriter/server-connection",
                    test_server_connection);
    g_test_add_func("/colo-rewriter/client-connection",
                    test_client_connection);
    g_test_add_func("/colo-rewriter/wrap-and-sack", test_wrap_and_sack);
    g_test_add_func("/colo-rewriter/checkpoint", test_checkpoint_resets_offset);
    g_test_add_func("/colo-rewriter/checkpoint-as-primary",
                    test_checkpoint_as_primary_keeps_offset);
    g_test_add_func("/colo-rewriter/failover", test_failover);
    g_test_add_func("/colo-rewriter/close-and-aging", test_close_and_aging);
    g_test_add_func("/colo-rewriter/ipv6", test_ipv6);
    g_test_add_func("/colo-rewriter/table-bound", test_table_bound);
    g_test_add_func("/colo-rewriter/passthrough", test_passthrough);
    g_test_add_func("/colo-rewriter/csum-partial", test_csum_partial);
    g_test_add_func("/colo-rewriter/carry/chain", test_carry_chain);
    g_test_add_func("/colo-rewriter/carry/composed", test_carry_composed);
    g_test_add_func("/colo-rewriter/carry/malformed", test_carry_malformed);
    g_test_add_func("/colo-rewriter/timestamps", test_timestamps);
    g_test_add_func("/colo-rewriter/timestamps/after-checkpoint",
                    test_timestamps_after_checkpoint);
    g_test_add_func("/colo-rewriter/timestamps/lagging-clock",
                    test_timestamps_lagging_clock);
    g_test_add_func("/colo-rewriter/timestamps/carried",
                    test_timestamps_carried);
    return g_test_run();
}
