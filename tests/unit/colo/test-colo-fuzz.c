/*
 * COLO proxy: fuzz target for the frame reader, the packet parser, the
 * compare engine and the rewriter engine
 *
 * Copyright (c) 2026 The qemu-colo authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * Built two ways:
 *  - as a unit test (default): mutates valid frame streams with a fixed
 *    seed and feeds them through LLVMFuzzerTestOneInput(), checking the
 *    engine's invariants; run it under ASan/UBSan to catch memory errors;
 *  - with -DCOLO_LIBFUZZER and clang -fsanitize=fuzzer: a libFuzzer
 *    target (tests/colo/fuzz/build-libfuzzer.sh).
 *
 * Input: byte 0 selects vnet headers on the chardevs; then records of
 * [op][len16][len bytes]: op&3 = 0 primary_in bytes, 1 secondary_in
 * bytes, 2 advance the clock by len ms and run the expiry scan, 3 a
 * checkpoint (flush; rewriter offsets reset, unless op & 4: a checkpoint
 * as the primary, which keeps them).
 */

#include "qemu/osdep.h"
#include "net/colo-frame.h"
#include "net/colo-stream.h"
#include "net/colo-rewriter.h"
#include "colo-test-frames.h"

typedef struct FuzzCtx {
    ColoEngine *engine;
    ColoRewriter *rewriter;
    ColoSide side;
    int64_t now;
    uint64_t released;
} FuzzCtx;

static void fuzz_release(void *opaque, const uint8_t *frame, size_t len,
                         uint32_t vnet_hdr_len, int64_t hold_ns)
{
    FuzzCtx *ctx = opaque;

    assert(vnet_hdr_len <= len && hold_ns >= 0);
    ctx->released++;
}

static void fuzz_frame(void *opaque, const uint8_t *buf, size_t len,
                       uint32_t vnet_hdr_len)
{
    FuzzCtx *ctx = opaque;
    g_autofree uint8_t *copy = g_memdup2(buf + vnet_hdr_len,
                                         len - vnet_hdr_len);

    colo_engine_input(ctx->engine, ctx->side, buf, len, vnet_hdr_len,
                      ctx->now, NULL);
    colo_rewriter_packet(ctx->rewriter,
                         ctx->side == COLO_PRIMARY ? COLO_TO_GUEST :
                         COLO_FROM_GUEST, copy, len - vnet_hdr_len,
                         len & 1, ctx->now, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ColoEngineConfig cfg;
    ColoFrameReader reader[2];
    FuzzCtx ctx = { .now = 1000000000LL };
    const ColoEngineStats *st;
    bool vnet;
    size_t off = 1;
    int i;

    if (size < 1) {
        return 0;
    }
    vnet = data[0] & 1;
    colo_engine_default_config(&cfg);
    cfg.max_queue_size = 8;
    cfg.max_connections = 16;
    cfg.max_total_packets = 32;
    cfg.compare_timeout_ns = 50 * 1000000LL;
    cfg.conn_idle_ns = 500 * 1000000LL;
    ctx.engine = colo_engine_new(&cfg, fuzz_release, &ctx);
    ctx.rewriter = colo_rewriter_new(16, 500 * 1000000LL, 100 * 1000000LL);
    for (i = 0; i < 2; i++) {
        colo_frame_reader_init(&reader[i], vnet, 2048, fuzz_frame, NULL,
                               &ctx);
    }

    while (off + 3 <= size) {
        uint8_t op = data[off];
        size_t len = MIN((size_t)lduw_be_p(data + off + 1), size - off - 3);
        const uint8_t *chunk = data + off + 3;

        off += 3 + len;
        switch (op & 3) {
        case 0:
        case 1:
            ctx.side = (op & 3) ? COLO_SECONDARY : COLO_PRIMARY;
            colo_frame_reader_feed(&reader[op & 3], chunk, len);
            break;
        case 2:
            ctx.now += (int64_t)len * 1000000LL;
            colo_engine_expire(ctx.engine, ctx.now);
            colo_rewriter_expire(ctx.rewriter, ctx.now);
            break;
        default:
            colo_engine_flush(ctx.engine, ctx.now);
            colo_rewriter_checkpoint(ctx.rewriter, !(op & 4));
            break;
        }
        st = colo_engine_stats(ctx.engine);
        assert(st->queued[COLO_PRIMARY] + st->queued[COLO_SECONDARY] <=
               cfg.max_total_packets);
        assert(st->connections <= cfg.max_connections);
    }
    colo_engine_flush(ctx.engine, ctx.now);
    st = colo_engine_stats(ctx.engine);
    /* everything well-formed from the primary left, or was over a bound */
    assert(st->packets_released + st->dropped_over_limit >=
           st->packets_in[COLO_PRIMARY]);
    assert(st->queued[COLO_PRIMARY] == 0 && st->queued[COLO_SECONDARY] == 0);

    for (i = 0; i < 2; i++) {
        colo_frame_reader_destroy(&reader[i]);
    }
    colo_engine_free(ctx.engine);
    colo_rewriter_free(ctx.rewriter);
    return 0;
}

#ifndef COLO_LIBFUZZER

/* A valid input: a small TCP exchange, UDP and ARP on both sides. */
static GByteArray *seed_input(GRand *rand)
{
    GByteArray *in = g_byte_array_new();
    uint8_t b = 0;
    int n;

    g_byte_array_append(in, &b, 1);
    for (n = 0; n < 12; n++) {
        uint8_t frame[256], rec[3 + 4 + sizeof(frame)];
        TfTcp t = { .seq = 1000 + n * 10, .ack = 1, .flags = 0x18,
                    .opt_len = (n & 1) ? 12 : 0 };
        size_t len;

        switch (g_rand_int_range(rand, 0, 4)) {
        case 0:
            len = tf_udp(frame, 53, 1000 + n % 3, "query", 5, n);
            break;
        case 1:
            len = tf_arp(frame, n % 2);
            break;
        case 2:
            len = tf_icmp(frame, 0, 1, n, "ping", 4);
            break;
        default:
            len = tf_tcp(frame, &t, "0123456789", 10);
            break;
        }
        rec[0] = g_rand_int_range(rand, 0, 8) == 0 ? 2 : (n & 1);
        if (g_rand_int_range(rand, 0, 16) == 0) {
            rec[0] = 3;
        }
        stw_be_p(rec + 1, 4 + len);
        stl_be_p(rec + 3, len);
        memcpy(rec + 7, frame, len);
        g_byte_array_append(in, rec, 7 + len);
    }
    return in;
}

static void mutate(GRand *rand, GByteArray *in)
{
    int k, n = g_rand_int_range(rand, 1, 8);

    for (k = 0; k < n && in->len > 1; k++) {
        guint pos = g_rand_int_range(rand, 1, in->len);

        switch (g_rand_int_range(rand, 0, 4)) {
        case 0:
            in->data[pos] ^= 1 << g_rand_int_range(rand, 0, 8);
            break;
        case 1:
            in->data[pos] = g_rand_int(rand);
            break;
        case 2:
            g_byte_array_set_size(in, pos);
            break;
        default:
            in->data[pos] = (pos & 1) ? 0xff : 0;
            break;
        }
    }
}

static void test_fuzz_smoke(void)
{
    GRand *rand = g_rand_new_with_seed(0xc0105eed);
    int i;

    for (i = 0; i < 3000; i++) {
        g_autoptr(GByteArray) in = seed_input(rand);

        if (i % 4) {
            mutate(rand, in);
        }
        LLVMFuzzerTestOneInput(in->data, in->len);
    }
    g_rand_free(rand);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/colo-fuzz/smoke", test_fuzz_smoke);
    return g_test_run();
}

#endif
