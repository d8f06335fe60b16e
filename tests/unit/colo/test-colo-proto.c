/*
 * Unit tests of the COLO checkpoint protocol messages (migration/colo-proto.c)
 *
 * Copyright (c) 2026 The qemu-colo authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qapi/error.h"

/* Built with -DCOLO_PROTO_NO_QEMUFILE (meson.build): the pure encoding. */
#include "../../../migration/colo-proto.h"

static void test_round_trip(void)
{
    ColoMsg in = {
        .type = COLO_MSG_DEVICE_STATE, .seq = 0xfffffffe,
        .length = 0x123456789ULL, .crc = 0xdeadbeef, .flags = COLO_FLAG_RUN,
    };
    ColoMsg out = { 0 };
    uint8_t buf[COLO_MSG_WIRE_SIZE];

    colo_msg_encode(&in, buf);
    /* Big-endian on the wire, whatever the host. */
    g_assert_cmpint(buf[3], ==, COLO_MSG_DEVICE_STATE);
    g_assert_cmpint(buf[4], ==, 0xff);
    g_assert_true(colo_msg_decode(buf, &out, &error_abort));
    g_assert_cmpint(out.type, ==, in.type);
    g_assert_cmpuint(out.seq, ==, in.seq);
    g_assert_cmpuint(out.length, ==, in.length);
    g_assert_cmpuint(out.crc, ==, in.crc);
    g_assert_cmpuint(out.flags, ==, in.flags);
}

static void test_every_bit_flip_is_caught(void)
{
    ColoMsg msg = { .type = COLO_MSG_CHECKPOINT_REQUEST, .seq = 7 };
    uint8_t buf[COLO_MSG_WIRE_SIZE];

    colo_msg_encode(&msg, buf);
    for (int bit = 0; bit < COLO_MSG_WIRE_SIZE * 8; bit++) {
        ColoMsg out;
        Error *err = NULL;

        buf[bit / 8] ^= 1 << (bit % 8);
        g_assert_false(colo_msg_decode(buf, &out, &err));
        g_assert_nonnull(err);
        error_free(err);
        buf[bit / 8] ^= 1 << (bit % 8);
    }
}

static void test_unknown_type_refused(void)
{
    ColoMsg msg = { .type = COLO_MSG__MAX, .seq = 1 };
    uint8_t buf[COLO_MSG_WIRE_SIZE];
    ColoMsg out;
    Error *err = NULL;

    /* A well-formed record whose type this version does not know. */
    colo_msg_encode(&msg, buf);
    g_assert_false(colo_msg_decode(buf, &out, &err));
    g_assert_nonnull(strstr(error_get_pretty(err), "unknown control message"));
    error_free(err);
}

static void test_check(void)
{
    ColoMsg msg = { .type = COLO_MSG_RECEIVED, .seq = 5 };
    Error *err = NULL;

    g_assert_true(colo_msg_check(&msg, COLO_MSG_RECEIVED, 5, &error_abort));

    g_assert_false(colo_msg_check(&msg, COLO_MSG_LOADED, 5, &err));
    g_assert_cmpstr(error_get_pretty(err), ==,
                    "COLO: expected message 'loaded', got 'received'");
    error_free(err);
    err = NULL;

    g_assert_false(colo_msg_check(&msg, COLO_MSG_RECEIVED, 6, &err));
    g_assert_nonnull(strstr(error_get_pretty(err), "for checkpoint 5"));
    error_free(err);
}

static void test_device_state_limit(void)
{
    ColoMsg msg = { .type = COLO_MSG_DEVICE_STATE, .seq = 1,
                    .length = COLO_DEVICE_STATE_MAX };
    Error *err = NULL;

    g_assert_true(colo_msg_check(&msg, COLO_MSG_DEVICE_STATE, 1,
                                 &error_abort));
    msg.length++;
    g_assert_false(colo_msg_check(&msg, COLO_MSG_DEVICE_STATE, 1, &err));
    g_assert_nonnull(strstr(error_get_pretty(err), "exceeds the limit"));
    error_free(err);
}

/* Input marks, and the output marks that come with RECEIVED. */
static void test_marks_limit(void)
{
    static const ColoMsgType types[] = {
        COLO_MSG_INPUT_MARKS, COLO_MSG_RECEIVED,
    };

    for (int i = 0; i < ARRAY_SIZE(types); i++) {
        ColoMsg msg = { .type = types[i], .seq = 1,
                        .length = COLO_MARKS_MAX };
        Error *err = NULL;

        g_assert_true(colo_msg_check(&msg, types[i], 1, &error_abort));
        msg.length++;
        g_assert_false(colo_msg_check(&msg, types[i], 1, &err));
        g_assert_nonnull(strstr(error_get_pretty(err), "exceed the limit"));
        error_free(err);
    }
}

static void test_hello_version(void)
{
    ColoMsg msg = { .type = COLO_MSG_HELLO, .length = COLO_PROTO_MAGIC,
                    .crc = COLO_PROTO_VERSION };
    Error *err = NULL;

    g_assert_true(colo_msg_check(&msg, COLO_MSG_HELLO, 0, &error_abort));

    msg.crc = COLO_PROTO_VERSION + 1;
    g_assert_false(colo_msg_check(&msg, COLO_MSG_HELLO, 0, &err));
    g_assert_nonnull(strstr(error_get_pretty(err), "use the same QEMU build"));
    error_free(err);
    err = NULL;

    msg.crc = COLO_PROTO_VERSION;
    msg.length = 0x51454d55;    /* "QEMU": not our magic */
    g_assert_false(colo_msg_check(&msg, COLO_MSG_HELLO, 0, &err));
    g_assert_nonnull(strstr(error_get_pretty(err), "bad magic"));
    error_free(err);
}

static void test_device_state_crc(void)
{
    uint8_t data[4096];

    for (int i = 0; i < sizeof(data); i++) {
        data[i] = i * 31;
    }
    uint32_t crc = colo_device_state_crc(data, sizeof(data));
    data[2000] ^= 4;
    g_assert_cmpuint(colo_device_state_crc(data, sizeof(data)), !=, crc);
    g_assert_cmpstr(colo_msg_name(COLO_MSG_LOADED), ==, "loaded");
    g_assert_cmpstr(colo_msg_name(0), ==, "invalid");
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/colo-proto/round-trip", test_round_trip);
    g_test_add_func("/colo-proto/bit-flips", test_every_bit_flip_is_caught);
    g_test_add_func("/colo-proto/unknown-type", test_unknown_type_refused);
    g_test_add_func("/colo-proto/check", test_check);
    g_test_add_func("/colo-proto/device-state-limit", test_device_state_limit);
    g_test_add_func("/colo-proto/marks-limit", test_marks_limit);
    g_test_add_func("/colo-proto/hello-version", test_hello_version);
    g_test_add_func("/colo-proto/device-state-crc", test_device_state_crc);
    return g_test_run();
}
