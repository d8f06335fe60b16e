/*
 * COLO proxy: compare engine benchmark (prints figures, asserts nothing)
 *
 * Copyright (c) 2026 The qemu-colo authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * 1. Throughput on one core with matching streams: TCP segments of 1448
 *    bytes over 64 connections, both sides cut the same; then the secondary
 *    cut differently (random sizes).  Frame building is done beforehand
 *    and not timed.
 * 2. Added hold time per packet with equal streams: the secondary's copy
 *    is fed right after the primary's; the hold time is what the engine
 *    reports at release (clock: CLOCK_MONOTONIC), median and p99.
 * 3. HTTP-like workload: 200 connections (handshake with different ISNs,
 *    request, 64 KiB response, FIN); the guests segment the response
 *    differently and coalesce ACKs differently; counts checkpoint requests
 *    (target: zero).
 * 4. Flush cost (inside the checkpoint pause: the primary resumes after
 *    the compares flushed) with the connection table full of TCP
 *    connections, which a flush keeps (noting where each one's released
 *    bytes end): the first flush after all of them sent, then the median
 *    of flushes while they are idle, against an empty table.
 */

#include "qemu/osdep.h"
#include "net/colo-stream.h"
#include "colo-test-frames.h"

typedef struct Frame {
    uint8_t *data;
    size_t len;
    ColoSide side;
} Frame;

typedef struct Bench {
    GArray *holds;              /* int64_t */
    uint64_t released;
} Bench;

static int64_t mono_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void on_release(void *opaque, const uint8_t *frame, size_t len,
                       uint32_t vnet, int64_t hold_ns)
{
    Bench *b = opaque;

    b->released++;
    if (b->holds) {
        g_array_append_val(b->holds, hold_ns);
    }
}

static void add_frame(GArray *frames, ColoSide side, const TfTcp *t,
                      const uint8_t *data, size_t len)
{
    Frame f = { .data = g_malloc(128 + len), .side = side };

    f.len = tf_tcp(f.data, t, data, len);
    g_array_append_val(frames, f);
}

static void free_frames(GArray *frames)
{
    guint i;

    for (i = 0; i < frames->len; i++) {
        g_free(g_array_index(frames, Frame, i).data);
    }
    g_array_free(frames, true);
}

/* @conns connections x @bytes each; secondary cut randomly if @recut. */
static GArray *make_streams(int conns, size_t bytes, bool recut, GRand *rand)
{
    GArray *frames = g_array_new(false, false, sizeof(Frame));
    uint8_t *payload = g_malloc(bytes);
    size_t i;
    int c;

    for (i = 0; i < bytes; i++) {
        payload[i] = i * 13 + (i >> 8);
    }
    for (c = 0; c < conns; c++) {
        size_t offp = 0, offs = 0;
        TfTcp t = { .ack = 1, .flags = 0x18, .opt_len = 12,
                    .dport = 10000 + c };

        while (offp < bytes || offs < bytes) {
            if (offp < bytes) {
                size_t n = MIN(bytes - offp, 1448);

                t.seq = 1000 + offp;
                t.ts_val = offp;
                add_frame(frames, COLO_PRIMARY, &t, payload + offp, n);
                offp += n;
            }
            if (offs < bytes) {
                size_t n = recut ? g_rand_int_range(rand, 200, 1449) : 1448;

                n = MIN(bytes - offs, n);
                t.seq = 1000 + offs;
                t.ts_val = offs + 7;
                add_frame(frames, COLO_SECONDARY, &t, payload + offs, n);
                offs += n;
            }
        }
    }
    g_free(payload);
    return frames;
}

static void run_throughput(const char *what, bool recut, GRand *rand)
{
    GArray *frames = make_streams(64, 1448 * 1000, recut, rand);
    ColoEngineConfig cfg;
    Bench b = { 0 };
    ColoEngine *e;
    uint64_t primary = 0, bytes = 0;
    int64_t t0, t1;
    guint i;

    colo_engine_default_config(&cfg);
    e = colo_engine_new(&cfg, on_release, &b);
    t0 = mono_ns();
    for (i = 0; i < frames->len; i++) {
        Frame *f = &g_array_index(frames, Frame, i);

        colo_engine_input(e, f->side, f->data, f->len, 0, 1000, NULL);
    }
    t1 = mono_ns();
    for (i = 0; i < frames->len; i++) {
        Frame *f = &g_array_index(frames, Frame, i);

        if (f->side == COLO_PRIMARY) {
            primary++;
            bytes += f->len;
        }
    }
    printf("compare throughput, %s: %" PRIu64 " primary + %u secondary "
           "frames in %.3f s: %.0f primary packets/s, %.1f MB/s of primary "
           "frames (%" PRIu64 " released, %" PRIu64 " mismatches)\n",
           what, primary, frames->len - (guint)primary,
           (t1 - t0) / 1e9, primary / ((t1 - t0) / 1e9),
           bytes / ((t1 - t0) / 1e9) / 1e6, b.released,
           colo_engine_stats(e)->mismatches[COLO_PKT_TCP]);
    colo_engine_free(e);
    free_frames(frames);
}

static int cmp_i64(gconstpointer a, gconstpointer b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

    return x < y ? -1 : x > y;
}

static void run_hold_time(GRand *rand)
{
    GArray *frames = make_streams(16, 1448 * 2000, false, rand);
    ColoEngineConfig cfg;
    Bench b = { .holds = g_array_new(false, false, sizeof(int64_t)) };
    ColoEngine *e;
    guint i;

    colo_engine_default_config(&cfg);
    e = colo_engine_new(&cfg, on_release, &b);
    for (i = 0; i < frames->len; i++) {
        Frame *f = &g_array_index(frames, Frame, i);

        colo_engine_input(e, f->side, f->data, f->len, 0, mono_ns(), NULL);
    }
    g_array_sort(b.holds, cmp_i64);
    printf("added hold time per packet, equal streams, secondary copy fed "
           "right after the primary's (%u packets): median %.2f us, "
           "p99 %.2f us\n", b.holds->len,
           g_array_index(b.holds, int64_t, b.holds->len / 2) / 1e3,
           g_array_index(b.holds, int64_t, b.holds->len * 99 / 100) / 1e3);
    g_array_free(b.holds, true);
    colo_engine_free(e);
    free_frames(frames);
}

/* One HTTP exchange on connection @c, frames of both guests interleaved. */
static void http_exchange(GArray *frames, int c, GRand *rand)
{
    enum { RESPONSE = 65536 };
    static uint8_t body[RESPONSE];
    uint32_t pisn = g_rand_int(rand), sisn = g_rand_int(rand);
    uint32_t client_seq = 5000;
    TfTcp t = { .dport = 20000 + c, .opt_len = 12 };
    size_t offp = 0, offs = 0;
    int side_acks = 0;

    memset(body, 'x', sizeof(body));
    /* SYN-ACK: each guest its own ISN (the rewriter fixes the rest) */
    t.flags = 0x12;
    t.ack = client_seq + 1;
    t.seq = pisn;
    add_frame(frames, COLO_PRIMARY, &t, NULL, 0);
    t.seq = sisn;
    add_frame(frames, COLO_SECONDARY, &t, NULL, 0);
    /* ACK of the request: the primary acks it alone, the secondary not */
    t.flags = 0x10;
    t.seq = pisn + 1;
    t.ack = client_seq + 1 + 100;
    add_frame(frames, COLO_PRIMARY, &t, NULL, 0);
    /* the response, cut differently */
    t.flags = 0x18;
    while (offp < RESPONSE || offs < RESPONSE) {
        if (offp < RESPONSE && g_rand_boolean(rand)) {
            size_t n = MIN(RESPONSE - offp, 1448);

            t.seq = pisn + 1 + offp;
            add_frame(frames, COLO_PRIMARY, &t, body + offp, n);
            offp += n;
        } else if (offs < RESPONSE) {
            size_t n = MIN(RESPONSE - offs,
                           (size_t)g_rand_int_range(rand, 100, 4 * 1448));

            t.seq = pisn + 1 + offs;
            add_frame(frames, COLO_SECONDARY, &t, body + offs,
                      MIN(n, (size_t)1448 * 2));
            offs += MIN(n, (size_t)1448 * 2);
            if (++side_acks % 8 == 0) {
                /* a coalesced pure ACK from the secondary */
                TfTcp a = t;

                a.flags = 0x10;
                a.seq = pisn + 1 + offs;
                add_frame(frames, COLO_SECONDARY, &a, NULL, 0);
            }
        }
    }
    /* FIN from both; the secondary acks the client's FIN in the same */
    t.flags = 0x11;
    t.seq = pisn + 1 + RESPONSE;
    add_frame(frames, COLO_PRIMARY, &t, NULL, 0);
    t.ack = client_seq + 1 + 100 + 1;
    add_frame(frames, COLO_SECONDARY, &t, NULL, 0);
}

static void run_http(GRand *rand)
{
    GArray *frames = g_array_new(false, false, sizeof(Frame));
    ColoEngineConfig cfg;
    Bench b = { 0 };
    ColoEngine *e;
    uint64_t requests = 0;
    int64_t now = 1000000000LL;
    guint i;
    int c;

    for (c = 0; c < 200; c++) {
        http_exchange(frames, c, rand);
    }
    colo_engine_default_config(&cfg);
    e = colo_engine_new(&cfg, on_release, &b);
    for (i = 0; i < frames->len; i++) {
        Frame *f = &g_array_index(frames, Frame, i);

        now += 1000;
        if (colo_engine_input(e, f->side, f->data, f->len, 0, now, NULL) !=
            COLO_REASON_NONE) {
            requests++;
        }
    }
    if (colo_engine_expire(e, now + cfg.compare_timeout_ns) !=
        COLO_REASON_NONE) {
        requests++;
    }
    printf("HTTP-like workload, 200 connections x 64 KiB, responses cut "
           "differently, ACKs coalesced differently: %" PRIu64
           " checkpoint requests (target 0), %" PRIu64 " packets released, "
           "%u still held\n", requests, b.released,
           colo_engine_stats(e)->queued[COLO_PRIMARY]);
    colo_engine_free(e);
    free_frames(frames);
}

/* Median time of a flush of engine @e, over @rounds flushes. */
static int64_t flush_median_ns(ColoEngine *e, int rounds)
{
    GArray *t = g_array_new(false, false, sizeof(int64_t));
    int64_t med, t0, d;
    int i;

    for (i = 0; i < rounds; i++) {
        t0 = mono_ns();
        colo_engine_flush(e, 2000);
        d = mono_ns() - t0;
        g_array_append_val(t, d);
    }
    g_array_sort(t, cmp_i64);
    med = g_array_index(t, int64_t, rounds / 2);
    g_array_free(t, true);
    return med;
}

static void run_flush_cost(GRand *rand)
{
    ColoEngineConfig cfg;
    Bench b = { 0 };
    ColoEngine *e;
    GArray *frames;
    int64_t empty, first, idle, t0;
    uint32_t conns;
    guint i;

    colo_engine_default_config(&cfg);
    e = colo_engine_new(&cfg, on_release, &b);
    empty = flush_median_ns(e, 101);
    frames = make_streams(cfg.max_connections, 1448, false, rand);
    for (i = 0; i < frames->len; i++) {
        Frame *f = &g_array_index(frames, Frame, i);

        colo_engine_input(e, f->side, f->data, f->len, 0, 1000, NULL);
    }
    free_frames(frames);
    t0 = mono_ns();
    colo_engine_flush(e, 2000);
    first = mono_ns() - t0;
    idle = flush_median_ns(e, 101);
    conns = colo_engine_stats(e)->connections;
    printf("flush in the checkpoint pause, %u TCP connections kept: "
           "%.1f us after all of them sent, %.1f us while they are idle "
           "(median of 101); %.2f us with none\n",
           conns, first / 1e3, idle / 1e3, empty / 1e3);
    colo_engine_free(e);
}

int main(int argc, char **argv)
{
    GRand *rand = g_rand_new_with_seed(7);

    run_throughput("identical segmentation", false, rand);
    run_throughput("secondary cut differently", true, rand);
    run_hold_time(rand);
    run_http(rand);
    run_flush_cost(rand);
    g_rand_free(rand);
    return 0;
}
