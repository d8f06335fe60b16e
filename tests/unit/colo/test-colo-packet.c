/*
 * COLO proxy: packet parser and chardev frame reader, unit tests
 *
 * Copyright (c) 2026 The qemu-colo authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "net/colo-packet.h"
#include "net/colo-frame.h"
#include "colo-test-frames.h"

static uint8_t buf[2048];

static void test_parse_tcp(void)
{
    TfTcp t = { .seq = 1000, .ack = 77, .flags = COLO_TCP_ACK | COLO_TCP_PSH,
                .opt_len = 12, .ts_val = 5 };
    size_t len = tf_tcp(buf, &t, "hello", 5);
    ColoPacketInfo info;

    g_assert_cmpint(colo_packet_parse(buf, len, &info), ==, COLO_PARSE_OK);
    g_assert_cmpint(info.kind, ==, COLO_PKT_TCP);
    g_assert_cmpuint(info.tcp_seq, ==, 1000);
    g_assert_cmpuint(info.tcp_ack, ==, 77);
    g_assert_cmpuint(info.tcp_flags, ==, COLO_TCP_ACK | COLO_TCP_PSH);
    g_assert_cmpuint(info.tcp_hdr_len, ==, 32);
    g_assert_cmpuint(info.src_port, ==, 80);
    g_assert_cmpuint(info.dst_port, ==, 40000);
    g_assert_cmpuint(info.ip_src, ==, TF_GUEST_IP);
    g_assert_cmpuint(info.payload_len, ==, 5);
    g_assert(memcmp(buf + info.payload_offset, "hello", 5) == 0);
}

static void test_parse_padding_allowed(void)
{
    TfTcp t = { .seq = 1, .flags = COLO_TCP_ACK };
    size_t len = tf_tcp(buf, &t, NULL, 0);
    ColoPacketInfo info;

    /* Minimum Ethernet frame: 54 bytes padded to 60. */
    memset(buf + len, 0xee, 6);
    g_assert_cmpint(colo_packet_parse(buf, len + 6, &info), ==,
                    COLO_PARSE_OK);
    g_assert_cmpuint(info.payload_len, ==, 0);
}

static void test_parse_udp_icmp_arp_vlan(void)
{
    ColoPacketInfo info;
    size_t len;
    TfTcp t = { .seq = 9, .flags = COLO_TCP_ACK, .vlan = 42 };

    len = tf_udp(buf, 53, 1234, "abcd", 4, 1);
    g_assert_cmpint(colo_packet_parse(buf, len, &info), ==, COLO_PARSE_OK);
    g_assert_cmpint(info.kind, ==, COLO_PKT_UDP);
    g_assert_cmpuint(info.payload_len, ==, 4);
    g_assert_cmpuint(info.src_port, ==, 53);

    len = tf_icmp(buf, 0, 1, 2, "ping", 4);
    g_assert_cmpint(colo_packet_parse(buf, len, &info), ==, COLO_PARSE_OK);
    g_assert_cmpint(info.kind, ==, COLO_PKT_ICMP);
    g_assert_cmpuint(info.payload_len, ==, 12);

    len = tf_arp(buf, 1);
    g_assert_cmpint(colo_packet_parse(buf, len, &info), ==, COLO_PARSE_OK);
    g_assert_cmpint(info.kind, ==, COLO_PKT_NON_IP);
    g_assert_cmpuint(info.ethertype, ==, 0x0806);
    g_assert_cmpuint(info.payload_len, ==, len);

    len = tf_tcp(buf, &t, "x", 1);
    g_assert_cmpint(colo_packet_parse(buf, len, &info), ==, COLO_PARSE_OK);
    g_assert_cmpint(info.kind, ==, COLO_PKT_TCP);
    g_assert_cmpuint(info.vlan_tags, ==, 1);
    g_assert_cmpuint(info.vlan_key, ==, 42);
    g_assert_cmpuint(info.payload_len, ==, 1);
}

static void test_parse_ipv6(void)
{
    TfTcp t = { .seq = 77, .ack = 5, .flags = COLO_TCP_ACK };
    size_t len = tf_tcp6(buf, &t, false, "six", 3);
    ColoPacketInfo info;

    g_assert_cmpint(colo_packet_parse(buf, len, &info), ==, COLO_PARSE_OK);
    g_assert_cmpint(info.kind, ==, COLO_PKT_TCP);
    g_assert_true(info.ipv6);
    g_assert_cmpuint(info.tcp_seq, ==, 77);
    g_assert_cmpuint(info.payload_len, ==, 3);
    g_assert_cmpuint(info.src_addr[15], ==, 2);
    g_assert_cmpuint(info.dst_addr[0], ==, 0xfe);
    g_assert(memcmp(buf + info.payload_offset, "six", 3) == 0);
    /* truncated header, payload length beyond the frame, wrong version */
    g_assert_cmpint(colo_packet_parse(buf, 14 + 39, &info), ==,
                    COLO_PARSE_SHORT_IP);
    g_assert_cmpint(colo_packet_parse(buf, len - 1, &info), ==,
                    COLO_PARSE_BAD_IP_LEN);
    buf[14] = 0x40;
    g_assert_cmpint(colo_packet_parse(buf, len, &info), ==,
                    COLO_PARSE_BAD_IP_VERSION);
    buf[14] = 0x60;
    /* ICMPv6 */
    buf[14 + 6] = 58;
    g_assert_cmpint(colo_packet_parse(buf, len, &info), ==, COLO_PARSE_OK);
    g_assert_cmpint(info.kind, ==, COLO_PKT_ICMP);
    buf[14 + 6] = 6;
    /* IPv4 addresses appear v4-mapped */
    len = tf_udp(buf, 1, 2, "x", 1, 1);
    g_assert_cmpint(colo_packet_parse(buf, len, &info), ==, COLO_PARSE_OK);
    g_assert_false(info.ipv6);
    g_assert_cmpuint(info.src_addr[10], ==, 0xff);
    g_assert_cmpuint(ldl_be_p(info.src_addr + 12), ==, TF_GUEST_IP);
}

/*
 * The upper-layer header behind hop-by-hop, routing and destination
 * options headers: Linux sends every MLD report with a hop-by-hop Router
 * Alert, and it must still be seen as ICMPv6 (link control).  A fragment
 * header ends the walk (the upper-layer header is only in the first
 * fragment), as does any other header; a header cut off is malformed.
 */
static void test_parse_ipv6_extension_headers(void)
{
    uint8_t mld[24] = { 0, 0, 0, 1, 4, 0, 0, 0, 0xff, 0x02, [23] = 0xfb };
    TfTcp t = { .seq = 77, .ack = 5, .flags = COLO_TCP_ACK };
    ColoPacketInfo info;
    size_t len = tf_icmp6(buf, 143, false, 0x16, mld, sizeof(mld));

    len = tf_ext6(buf, len, 0, 8);
    g_assert_cmpint(colo_packet_parse(buf, len, &info), ==, COLO_PARSE_OK);
    g_assert_cmpint(info.kind, ==, COLO_PKT_ICMP);
    g_assert_cmpuint(info.icmp_type, ==, 143);
    g_assert_cmpuint(info.ip_proto, ==, 58);
    g_assert_cmpuint(info.ip_hdr_len, ==, 48);
    g_assert_cmpuint(info.payload_offset, ==, 14 + 48);
    g_assert_cmpuint(info.payload_len, ==, 4 + sizeof(mld));

    /* TCP behind hop-by-hop, routing and destination options (16 bytes) */
    len = tf_tcp6(buf, &t, false, "six", 3);
    len = tf_ext6(buf, len, 60, 16);
    len = tf_ext6(buf, len, 43, 8);
    len = tf_ext6(buf, len, 0, 8);
    g_assert_cmpint(colo_packet_parse(buf, len, &info), ==, COLO_PARSE_OK);
    g_assert_cmpint(info.kind, ==, COLO_PKT_TCP);
    g_assert_cmpuint(info.ip_hdr_len, ==, 72);
    g_assert_cmpuint(info.tcp_seq, ==, 77);
    g_assert_cmpuint(info.src_port, ==, 80);
    g_assert_cmpuint(info.payload_len, ==, 3);
    g_assert(memcmp(buf + info.payload_offset, "six", 3) == 0);
    /* every cut inside the headers is malformed, never read past */
    for (size_t cut = 14 + 40; cut < info.payload_offset; cut++) {
        g_autofree uint8_t *copy = g_memdup2(buf, cut);
        ColoPacketInfo cut_info;

        stw_be_p(copy + 14 + 4, cut - 14 - 40);
        g_assert_cmpint(colo_packet_parse(copy, cut, &cut_info), !=,
                        COLO_PARSE_OK);
    }
    /* a header whose length runs past the payload */
    buf[14 + 40 + 1] = 200;
    g_assert_cmpint(colo_packet_parse(buf, len, &info), ==,
                    COLO_PARSE_BAD_IP_EXT);

    /* a fragment header ends the walk: other IP, marked a fragment */
    len = tf_tcp6(buf, &t, false, "six", 3);
    len = tf_ext6(buf, len, 44, 8);
    len = tf_ext6(buf, len, 0, 8);
    g_assert_cmpint(colo_packet_parse(buf, len, &info), ==, COLO_PARSE_OK);
    g_assert_cmpint(info.kind, ==, COLO_PKT_IP_OTHER);
    g_assert_cmpuint(info.ip_proto, ==, 44);
    g_assert_true(info.ip_fragment);
    g_assert_cmpuint(info.payload_offset, ==, 14 + 48);
    g_assert_cmpuint(info.payload_len, ==, 8 + 20 + 3);
}

static void test_parse_fragment(void)
{
    size_t len = tf_udp(buf, 1, 2, "abcdefgh", 8, 3);
    ColoPacketInfo info;

    stw_be_p(buf + 14 + 6, 0x2000);     /* more fragments */
    g_assert_cmpint(colo_packet_parse(buf, len, &info), ==, COLO_PARSE_OK);
    g_assert_cmpint(info.kind, ==, COLO_PKT_IP_OTHER);
    g_assert(info.ip_fragment);
    g_assert_cmpuint(info.payload_len, ==, 16);
}

/*
 * Every truncation of a valid frame fails cleanly and never reads past the
 * end (run under ASan/valgrind to check the latter).
 */
static void test_parse_every_truncation(void)
{
    TfTcp t = { .seq = 1, .flags = COLO_TCP_ACK, .opt_len = 12 };
    size_t len = tf_tcp(buf, &t, "0123456789", 10);
    size_t cut;

    for (cut = 0; cut < len; cut++) {
        g_autofree uint8_t *copy = g_memdup2(buf, cut);
        ColoPacketInfo info;
        ColoParseError err = colo_packet_parse(copy, cut, &info);

        /* The IP total length covers the whole frame: any cut is bad. */
        g_assert_cmpint(err, !=, COLO_PARSE_OK);
        if (cut < 14) {
            g_assert_cmpint(err, ==, COLO_PARSE_SHORT_ETH);
        } else if (cut < 34) {
            g_assert_cmpint(err, ==, COLO_PARSE_SHORT_IP);
        } else {
            g_assert_cmpint(err, ==, COLO_PARSE_BAD_IP_LEN);
        }
    }
}

static void test_parse_malformed_headers(void)
{
    ColoPacketInfo info;
    TfTcp t = { .seq = 1, .flags = COLO_TCP_ACK };
    size_t len;

    /* IP version 6 under EtherType IPv4 */
    len = tf_tcp(buf, &t, "x", 1);
    buf[14] = 0x65;
    g_assert_cmpint(colo_packet_parse(buf, len, &info), ==,
                    COLO_PARSE_BAD_IP_VERSION);
    /* IHL below 5 */
    len = tf_tcp(buf, &t, "x", 1);
    buf[14] = 0x44;
    g_assert_cmpint(colo_packet_parse(buf, len, &info), ==,
                    COLO_PARSE_BAD_IHL);
    /* IHL beyond the frame */
    len = tf_tcp(buf, &t, "x", 1);
    buf[14] = 0x4f;
    g_assert_cmpint(colo_packet_parse(buf, 14 + 40, &info), ==,
                    COLO_PARSE_BAD_IHL);
    /* total length shorter than the header */
    len = tf_tcp(buf, &t, "x", 1);
    stw_be_p(buf + 16, 19);
    g_assert_cmpint(colo_packet_parse(buf, len, &info), ==,
                    COLO_PARSE_BAD_IP_LEN);
    /* total length beyond the frame */
    len = tf_tcp(buf, &t, "x", 1);
    stw_be_p(buf + 16, 1500);
    g_assert_cmpint(colo_packet_parse(buf, len, &info), ==,
                    COLO_PARSE_BAD_IP_LEN);
    /* TCP header cut: IP says only 10 bytes of TCP */
    len = tf_tcp(buf, &t, NULL, 0);
    stw_be_p(buf + 16, 30);
    g_assert_cmpint(colo_packet_parse(buf, len, &info), ==,
                    COLO_PARSE_SHORT_TCP);
    /* TCP data offset 4 and 15 (beyond the segment) */
    len = tf_tcp(buf, &t, NULL, 0);
    buf[34 + 12] = 4 << 4;
    g_assert_cmpint(colo_packet_parse(buf, len, &info), ==,
                    COLO_PARSE_BAD_TCP_OFF);
    buf[34 + 12] = 15 << 4;
    g_assert_cmpint(colo_packet_parse(buf, len, &info), ==,
                    COLO_PARSE_BAD_TCP_OFF);
    /* UDP header cut, UDP length too short and too long */
    len = tf_udp(buf, 1, 2, "abcd", 4, 1);
    stw_be_p(buf + 16, 20 + 6);
    g_assert_cmpint(colo_packet_parse(buf, len, &info), ==,
                    COLO_PARSE_SHORT_UDP);
    len = tf_udp(buf, 1, 2, "abcd", 4, 1);
    stw_be_p(buf + 34 + 4, 7);
    g_assert_cmpint(colo_packet_parse(buf, len, &info), ==,
                    COLO_PARSE_BAD_UDP_LEN);
    stw_be_p(buf + 34 + 4, 13);
    g_assert_cmpint(colo_packet_parse(buf, len, &info), ==,
                    COLO_PARSE_BAD_UDP_LEN);
    /* ICMP cut */
    len = tf_icmp(buf, 8, 1, 1, NULL, 0);
    stw_be_p(buf + 16, 20 + 4);
    g_assert_cmpint(colo_packet_parse(buf, len, &info), ==,
                    COLO_PARSE_SHORT_ICMP);
    /* VLAN tag cut, and three tags */
    len = tf_eth(buf, 0, 0x8100);
    g_assert_cmpint(colo_packet_parse(buf, len + 2, &info), ==,
                    COLO_PARSE_SHORT_VLAN);
    len = tf_eth(buf, 0, 0x8100);
    stw_be_p(buf + 16, 0x8100);
    stw_be_p(buf + 20, 0x8100);
    g_assert_cmpint(colo_packet_parse(buf, 40, &info), ==,
                    COLO_PARSE_TOO_MANY_TAGS);
    g_assert_cmpstr(colo_parse_error_name(COLO_PARSE_BAD_IHL), ==,
                    "bad-ip-header-length");
}

/* Random bytes: never crash, never read out of bounds. */
static void test_parse_random(void)
{
    GRand *rand = g_rand_new_with_seed(4);
    int i;

    for (i = 0; i < 20000; i++) {
        size_t len = g_rand_int_range(rand, 0, 120);
        g_autofree uint8_t *copy = g_malloc(len + 1);
        ColoPacketInfo info;
        size_t j;

        for (j = 0; j < len; j++) {
            copy[j] = g_rand_int(rand);
        }
        if (len > 14 && (i & 1)) {
            copy[12] = 0x08;
            copy[13] = 0x00;
            copy[14] = 0x40 | (copy[14] & 0x0f);
        }
        if (colo_packet_parse(copy, len, &info) == COLO_PARSE_OK) {
            g_assert_cmpuint(info.payload_offset + info.payload_len, <=, len);
        }
    }
    g_rand_free(rand);
}

/* ---- frame reader ------------------------------------------------------- */

typedef struct FrameLog {
    GPtrArray *frames;
    GArray *vnet;
    int rejects[3];
} FrameLog;

static void log_frame(void *opaque, const uint8_t *data, size_t len,
                      uint32_t vnet)
{
    FrameLog *log = opaque;

    g_ptr_array_add(log->frames, g_bytes_new(data, len));
    g_array_append_val(log->vnet, vnet);
}

static void log_reject(void *opaque, ColoFrameError err, uint32_t len,
                       uint32_t vnet)
{
    FrameLog *log = opaque;

    log->rejects[err]++;
}

static void log_init(FrameLog *log)
{
    log->frames = g_ptr_array_new_with_free_func((GDestroyNotify)g_bytes_unref);
    log->vnet = g_array_new(false, false, sizeof(uint32_t));
    memset(log->rejects, 0, sizeof(log->rejects));
}

static void log_free(FrameLog *log)
{
    g_ptr_array_free(log->frames, true);
    g_array_free(log->vnet, true);
}

static GByteArray *append_frame(GByteArray *s, bool vnet, uint32_t len,
                                uint32_t vnet_len, uint8_t fill)
{
    uint8_t hdr[8];
    size_t n = colo_frame_header(hdr, vnet, len, vnet_len);
    uint32_t i;

    g_byte_array_append(s, hdr, n);
    for (i = 0; i < len; i++) {
        g_byte_array_append(s, &fill, 1);
    }
    return s;
}

static void check_frame(FrameLog *log, guint i, size_t len, uint8_t fill)
{
    GBytes *b = g_ptr_array_index(log->frames, i);
    gsize n;
    const uint8_t *d = g_bytes_get_data(b, &n);

    g_assert_cmpuint(n, ==, len);
    g_assert_cmpuint(d[0], ==, fill);
    g_assert_cmpuint(d[n - 1], ==, fill);
}

/* Feeding byte by byte or all at once gives the same frames. */
static void test_frame_split_feeds(void)
{
    int chunk;

    for (chunk = 1; chunk <= 64; chunk *= 4) {
        g_autoptr(GByteArray) s = g_byte_array_new();
        ColoFrameReader r;
        FrameLog log;
        size_t off;

        log_init(&log);
        colo_frame_reader_init(&r, false, 100, log_frame, log_reject, &log);
        append_frame(s, false, 60, 0, 1);
        append_frame(s, false, 1, 0, 2);
        append_frame(s, false, 100, 0, 3);
        for (off = 0; off < s->len; off += chunk) {
            colo_frame_reader_feed(&r, s->data + off,
                                   MIN((size_t)chunk, s->len - off));
        }
        g_assert_cmpuint(log.frames->len, ==, 3);
        check_frame(&log, 0, 60, 1);
        check_frame(&log, 1, 1, 2);
        check_frame(&log, 2, 100, 3);
        g_assert_cmpuint(r.rejected, ==, 0);
        colo_frame_reader_destroy(&r);
        log_free(&log);
    }
}

static void test_frame_vnet(void)
{
    g_autoptr(GByteArray) s = g_byte_array_new();
    ColoFrameReader r;
    FrameLog log;

    log_init(&log);
    colo_frame_reader_init(&r, true, 200, log_frame, log_reject, &log);
    append_frame(s, true, 70, 10, 5);
    append_frame(s, true, 10, 11, 6);      /* vnet header > frame */
    append_frame(s, true, 20, 0, 7);
    colo_frame_reader_feed(&r, s->data, s->len);
    g_assert_cmpuint(log.frames->len, ==, 2);
    check_frame(&log, 0, 70, 5);
    check_frame(&log, 1, 20, 7);
    g_assert_cmpuint(g_array_index(log.vnet, uint32_t, 0), ==, 10);
    g_assert_cmpint(log.rejects[COLO_FRAME_BAD_VNET_LEN], ==, 1);
    colo_frame_reader_destroy(&r);
    log_free(&log);
}

/* Zero-length and oversized frames are rejected; the stream stays in step. */
static void test_frame_rejects(void)
{
    g_autoptr(GByteArray) s = g_byte_array_new();
    ColoFrameReader r;
    FrameLog log;

    log_init(&log);
    colo_frame_reader_init(&r, false, 100, log_frame, log_reject, &log);
    append_frame(s, false, 0, 0, 0);
    append_frame(s, false, 30, 0, 1);
    append_frame(s, false, 101, 0, 9);
    append_frame(s, false, 5000, 0, 9);
    append_frame(s, false, 40, 0, 2);
    colo_frame_reader_feed(&r, s->data, s->len);
    g_assert_cmpuint(log.frames->len, ==, 2);
    check_frame(&log, 0, 30, 1);
    check_frame(&log, 1, 40, 2);
    g_assert_cmpint(log.rejects[COLO_FRAME_ZERO_LENGTH], ==, 1);
    g_assert_cmpint(log.rejects[COLO_FRAME_OVERSIZED], ==, 2);
    g_assert_cmpuint(r.rejected, ==, 3);
    g_assert_cmpuint(r.frames, ==, 2);
    colo_frame_reader_destroy(&r);
    log_free(&log);
}

/* A reconnect in the middle of a frame: the partial frame is forgotten. */
static void test_frame_reset(void)
{
    g_autoptr(GByteArray) s = g_byte_array_new();
    ColoFrameReader r;
    FrameLog log;

    log_init(&log);
    colo_frame_reader_init(&r, false, 100, log_frame, log_reject, &log);
    append_frame(s, false, 50, 0, 1);
    colo_frame_reader_feed(&r, s->data, 20);
    colo_frame_reader_reset(&r);
    g_byte_array_set_size(s, 0);
    append_frame(s, false, 10, 0, 3);
    colo_frame_reader_feed(&r, s->data, s->len);
    g_assert_cmpuint(log.frames->len, ==, 1);
    check_frame(&log, 0, 10, 3);
    colo_frame_reader_destroy(&r);
    log_free(&log);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/colo-packet/parse/tcp", test_parse_tcp);
    g_test_add_func("/colo-packet/parse/padding", test_parse_padding_allowed);
    g_test_add_func("/colo-packet/parse/udp-icmp-arp-vlan",
                    test_parse_udp_icmp_arp_vlan);
    g_test_add_func("/colo-packet/parse/ipv6", test_parse_ipv6);
    g_test_add_func("/colo-packet/parse/ipv6-extension-headers",
                    test_parse_ipv6_extension_headers);
    g_test_add_func("/colo-packet/parse/fragment", test_parse_fragment);
    g_test_add_func("/colo-packet/parse/every-truncation",
                    test_parse_every_truncation);
    g_test_add_func("/colo-packet/parse/malformed-headers",
                    test_parse_malformed_headers);
    g_test_add_func("/colo-packet/parse/random", test_parse_random);
    g_test_add_func("/colo-packet/frame/split-feeds", test_frame_split_feeds);
    g_test_add_func("/colo-packet/frame/vnet", test_frame_vnet);
    g_test_add_func("/colo-packet/frame/rejects", test_frame_rejects);
    g_test_add_func("/colo-packet/frame/reset", test_frame_reset);
    return g_test_run();
}
