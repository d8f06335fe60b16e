/*
 * Unit tests of the HeartBeat engine (tools/colo/colo-heartbeat.c)
 *
 * Copyright (c) 2026 The qemu-colo authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * Time is an input of the engine: the tests pass milliseconds, no sleeps.
 */

#include "qemu/osdep.h"
#include "../../../tools/colo/colo-heartbeat.h"

#define INTERVAL 100
#define TIMEOUT  1000
/* the wall clock (ms since the epoch) at monotonic 0 of a test */
#define WALL0    INT64_C(1764500000000)

static const uint8_t key_bytes[] = "0123456789abcdef0123456789abcdef";
static const ColoHbKey key = { key_bytes, 32 };
static const uint8_t other_bytes[] = "0123456789abcdef0123456789abcdeF";
static const ColoHbKey other_key = { other_bytes, 32 };
static const ColoHbKey no_key = { NULL, 0 };

static void setup_key(ColoHeartbeat *hb, bool quorum, const ColoHbKey *k)
{
    ColoHbConfig cfg = {
        .pair = "pair1", .peer = "nodeB",
        .interval_ms = INTERVAL, .timeout_ms = TIMEOUT,
        .use_quorum = quorum, .key = *k,
    };

    colo_hb_init(hb, &cfg, 0);
    colo_hb_set_local_health(hb, 0, COLO_HEALTH_RUNNING);
}

static void setup(ColoHeartbeat *hb, bool quorum)
{
    setup_key(hb, quorum, &key);
}

/* A genuine datagram of the peer's current boot (0x1234) sent at @now */
static void genuine(uint8_t *buf, int64_t now, uint64_t seq,
                    ColoHealth health, ColoHbMode mode)
{
    ColoHbMsg msg = {
        .seq = seq, .boot_id = 0x1234, .wall_ms = WALL0 + now,
        .health = health, .mode = mode, .pair = "pair1", .node = "nodeB",
    };

    colo_hb_encode(&msg, &key, buf);
}

/* A heartbeat from the peer at @now (the clocks of both hosts agree). */
static bool beat(ColoHeartbeat *hb, int64_t now, uint64_t seq,
                 ColoHealth health, ColoHbMode mode)
{
    uint8_t buf[COLO_HB_WIRE_LEN];

    genuine(buf, now, seq, health, mode);
    return colo_hb_receive(hb, now, WALL0 + now, buf, sizeof(buf));
}

static bool receive_msg(ColoHeartbeat *hb, int64_t now, const ColoHbMsg *m,
                        const ColoHbKey *k)
{
    uint8_t buf[COLO_HB_WIRE_LEN];

    colo_hb_encode(m, k, buf);
    return colo_hb_receive(hb, now, WALL0 + now, buf, sizeof(buf));
}

static void test_wire_roundtrip(void)
{
    ColoHbMsg in = {
        .seq = 0xdeadbeef01020304ULL, .boot_id = 0x0102030405060708ULL,
        .wall_ms = WALL0,
        .health = COLO_HEALTH_STOPPED, .mode = COLO_HB_MODE_SECONDARY,
        .pair = "a-pair", .node = "n1",
    }, out;
    uint8_t buf[COLO_HB_WIRE_LEN];
    const char *why = NULL;

    g_assert_cmpint(COLO_HB_WIRE_LEN, ==, 128);
    colo_hb_encode(&in, &key, buf);
    g_assert_cmpint(colo_hb_decode(buf, sizeof(buf), &key, &out, &why), ==,
                    COLO_HB_RX_OK);
    g_assert_cmpuint(out.seq, ==, in.seq);
    g_assert_cmpuint(out.boot_id, ==, in.boot_id);
    g_assert_cmpint(out.wall_ms, ==, in.wall_ms);
    g_assert_cmpint(out.health, ==, in.health);
    g_assert_cmpint(out.mode, ==, in.mode);
    g_assert_cmpstr(out.pair, ==, "a-pair");
    g_assert_cmpstr(out.node, ==, "n1");
    /* network byte order, version 2, HMAC-SHA256 */
    g_assert_cmpuint(buf[4], ==, 2);
    g_assert_cmpuint(buf[7], ==, COLO_HB_AUTH_HMAC);
    g_assert_cmpuint(buf[8], ==, 0xde);
    g_assert_cmpuint(buf[15], ==, 0x04);
    /* the MAC is HMAC-SHA256(key, bytes 0..95) */
    {
        g_autoptr(GHmac) h = g_hmac_new(G_CHECKSUM_SHA256, key.data, key.len);
        uint8_t mac[32];
        gsize maclen = sizeof(mac);

        g_hmac_update(h, buf, COLO_HB_BODY_LEN);
        g_hmac_get_digest(h, mac, &maclen);
        g_assert_cmpmem(mac, 32, buf + COLO_HB_BODY_LEN, 32);
    }
    /* without a key: auth 0, MAC zero */
    colo_hb_encode(&in, &no_key, buf);
    g_assert_cmpuint(buf[7], ==, COLO_HB_AUTH_NONE);
    for (int i = COLO_HB_BODY_LEN; i < COLO_HB_WIRE_LEN; i++) {
        g_assert_cmpuint(buf[i], ==, 0);
    }
    g_assert_cmpint(colo_hb_decode(buf, sizeof(buf), &no_key, &out, &why), ==,
                    COLO_HB_RX_OK);
}

/* Re-sign @buf after editing it: the malformed checks behind the MAC */
static void resign(uint8_t *buf)
{
    g_autoptr(GHmac) h = g_hmac_new(G_CHECKSUM_SHA256, key.data, key.len);
    gsize maclen = COLO_HB_MAC_LEN;

    g_hmac_update(h, buf, COLO_HB_BODY_LEN);
    g_hmac_get_digest(h, buf + COLO_HB_BODY_LEN, &maclen);
}

static void test_wire_garbage(void)
{
    ColoHbMsg in = {
        .seq = 1, .boot_id = 1, .wall_ms = WALL0,
        .health = COLO_HEALTH_RUNNING,
        .mode = COLO_HB_MODE_PRIMARY, .pair = "pair1", .node = "nodeB",
    }, out;
    uint8_t good[COLO_HB_WIRE_LEN], buf[COLO_HB_WIRE_LEN + 1];
    const char *why;

    colo_hb_encode(&in, &key, good);
    g_assert_cmpint(colo_hb_decode(good, sizeof(good) - 1, &key, &out, &why),
                    ==, COLO_HB_RX_MALFORMED);
    g_assert_cmpstr(why, ==, "wrong length");
    memcpy(buf, good, sizeof(good));
    g_assert_cmpint(colo_hb_decode(buf, sizeof(good) + 1, &key, &out, &why),
                    ==, COLO_HB_RX_MALFORMED);
    /* the former 84-byte version 1 datagram */
    g_assert_cmpint(colo_hb_decode(buf, 84, &key, &out, &why), ==,
                    COLO_HB_RX_MALFORMED);

    memcpy(buf, good, sizeof(good));
    buf[0] = 'X';
    g_assert_cmpint(colo_hb_decode(buf, sizeof(good), &key, &out, &why), ==,
                    COLO_HB_RX_MALFORMED);
    g_assert_cmpstr(why, ==, "bad magic");

    memcpy(buf, good, sizeof(good));
    buf[4] = 1;
    g_assert_cmpint(colo_hb_decode(buf, sizeof(good), &key, &out, &why), ==,
                    COLO_HB_RX_MALFORMED);
    g_assert_cmpstr(why, ==, "unknown version");

    /* no MAC where one is required: forged; one where none is: mismatch */
    colo_hb_encode(&in, &no_key, buf);
    g_assert_cmpint(colo_hb_decode(buf, sizeof(good), &key, &out, &why), ==,
                    COLO_HB_RX_FORGED);
    g_assert_cmpint(colo_hb_decode(good, sizeof(good), &no_key, &out, &why),
                    ==, COLO_HB_RX_MALFORMED);
    g_assert_nonnull(strstr(why, "heartbeat-auth"));

    /* authentic but malformed fields (a peer with a bug) */
    memcpy(buf, good, sizeof(good));
    buf[5] = COLO_HEALTH__MAX;
    resign(buf);
    g_assert_cmpint(colo_hb_decode(buf, sizeof(good), &key, &out, &why), ==,
                    COLO_HB_RX_MALFORMED);
    memcpy(buf, good, sizeof(good));
    buf[7] = 2;
    resign(buf);
    g_assert_cmpint(colo_hb_decode(buf, sizeof(good), &key, &out, &why), ==,
                    COLO_HB_RX_MALFORMED);

    /* a name that fills its field (no NUL), an empty one, a control char */
    memcpy(buf, good, sizeof(good));
    memset(buf + 32, 'a', COLO_HB_NAME_MAX + 1);
    resign(buf);
    g_assert_cmpint(colo_hb_decode(buf, sizeof(good), &key, &out, &why), ==,
                    COLO_HB_RX_MALFORMED);
    g_assert_cmpstr(why, ==, "bad pair or node name");
    memcpy(buf, good, sizeof(good));
    buf[64] = 0;
    resign(buf);
    g_assert_cmpint(colo_hb_decode(buf, sizeof(good), &key, &out, &why), ==,
                    COLO_HB_RX_MALFORMED);
    memcpy(buf, good, sizeof(good));
    buf[33] = '\n';
    resign(buf);
    g_assert_cmpint(colo_hb_decode(buf, sizeof(good), &key, &out, &why), ==,
                    COLO_HB_RX_MALFORMED);
}

/* Random datagrams of every length are refused and counted. */
static void test_receive_random(void)
{
    ColoHeartbeat hb;
    uint8_t buf[200];
    GRand *r = g_rand_new_with_seed(42);

    setup(&hb, false);
    for (int i = 0; i < 20000; i++) {
        size_t len = g_rand_int_range(r, 0, sizeof(buf));

        for (size_t j = 0; j < len; j++) {
            buf[j] = g_rand_int(r);
        }
        if (i % 2 && len >= 8) {
            /* get past the first checks now and then */
            memcpy(buf, COLO_HB_MAGIC, 4);
            buf[4] = COLO_HB_VERSION;
            len = COLO_HB_WIRE_LEN;
        }
        g_assert_false(colo_hb_receive(&hb, 10, WALL0 + 10, buf, len));
    }
    g_assert_cmpuint(hb.rx_bad + hb.rx_forged, ==, 20000);
    g_assert_cmpuint(hb.rx_forged, >, 5000);
    g_assert_cmpuint(hb.rx_ok, ==, 0);
    g_assert_false(hb.peer_seen);
    g_rand_free(r);
}

static void test_receive_filters(void)
{
    ColoHeartbeat hb;
    ColoHbMsg msg = {
        .seq = 1, .boot_id = 7, .wall_ms = WALL0 + 1,
        .health = COLO_HEALTH_GONE,
        .mode = COLO_HB_MODE_PRIMARY, .pair = "other", .node = "nodeB",
    };

    setup(&hb, false);
    g_assert_false(receive_msg(&hb, 1, &msg, &key));
    g_assert_cmpstr(hb.last_bad, ==, "from another pair");
    strcpy(msg.pair, "pair1");
    strcpy(msg.node, "nodeA");      /* our own name: a loop, not the peer */
    g_assert_false(receive_msg(&hb, 1, &msg, &key));
    g_assert_cmpstr(hb.last_bad, ==, "not from the peer node");
    g_assert_cmpint(hb.last_verdict, ==, COLO_HB_RX_FOREIGN);
    g_assert_cmpuint(hb.rx_bad, ==, 2);
    g_assert_false(hb.peer_seen);

    /* in order, then a duplicate and an old one are replays */
    g_assert_true(beat(&hb, 10, 5, COLO_HEALTH_RUNNING, COLO_HB_MODE_PRIMARY));
    g_assert_false(beat(&hb, 20, 5, COLO_HEALTH_GONE, COLO_HB_MODE_PRIMARY));
    g_assert_false(beat(&hb, 20, 4, COLO_HEALTH_GONE, COLO_HB_MODE_PRIMARY));
    g_assert_cmpuint(hb.rx_replayed, ==, 2);
    g_assert_cmpint(hb.peer_health, ==, COLO_HEALTH_RUNNING);
    g_assert_cmpint(colo_hb_silence_ms(&hb, 30), ==, 20);

    /* a restarted agent (new boot id, fresh timestamp) starts again at 1 */
    msg.seq = 1;
    msg.boot_id = 8;
    msg.wall_ms = WALL0 + 40;
    msg.health = COLO_HEALTH_RUNNING;
    strcpy(msg.node, "nodeB");
    g_assert_true(receive_msg(&hb, 40, &msg, &key));
    g_assert_cmpuint(hb.rx_ok, ==, 2);
}

/* ---- authentication and replay ------------------------------------- */

/* The right format, the peer's names, but not the pair's key. */
static void test_auth_forged_mac(void)
{
    ColoHeartbeat hb;
    uint8_t buf[COLO_HB_WIRE_LEN];
    ColoHbMsg msg = {
        .seq = 1, .boot_id = 0xf00d, .wall_ms = WALL0 + 10,
        .health = COLO_HEALTH_GONE, .mode = COLO_HB_MODE_PRIMARY,
        .pair = "pair1", .node = "nodeB",
    };

    setup(&hb, false);
    colo_hb_set_local_mode(&hb, COLO_HB_MODE_SECONDARY);
    /* a random MAC */
    colo_hb_encode(&msg, &key, buf);
    for (int i = COLO_HB_BODY_LEN; i < COLO_HB_WIRE_LEN; i++) {
        buf[i] = g_random_int();
    }
    g_assert_false(colo_hb_receive(&hb, 10, WALL0 + 10, buf, sizeof(buf)));
    g_assert_cmpint(hb.last_verdict, ==, COLO_HB_RX_FORGED);
    /* no MAC at all (auth none) */
    g_assert_false(receive_msg(&hb, 11, &msg, &no_key));
    g_assert_cmpint(hb.last_verdict, ==, COLO_HB_RX_FORGED);
    /* a MAC with another key */
    g_assert_false(receive_msg(&hb, 12, &msg, &other_key));
    g_assert_cmpint(hb.last_verdict, ==, COLO_HB_RX_FORGED);
    /* the MAC of another datagram (a genuine "running") on this one */
    genuine(buf, 13, 1, COLO_HEALTH_RUNNING, COLO_HB_MODE_PRIMARY);
    buf[5] = COLO_HEALTH_GONE;
    g_assert_false(colo_hb_receive(&hb, 13, WALL0 + 13, buf, sizeof(buf)));
    g_assert_cmpuint(hb.rx_forged, ==, 4);
    g_assert_cmpuint(hb.rx_ok, ==, 0);
    g_assert_false(hb.peer_seen);
    g_assert_cmpint(hb.peer_health, ==, COLO_HEALTH_UNKNOWN);
    g_assert_cmpint(colo_hb_decide(&hb, 20), ==, COLO_HB_NOTHING);
}

/* Every single-bit flip of a genuine datagram is refused. */
static void test_auth_bit_flips(void)
{
    ColoHeartbeat hb;
    uint8_t good[COLO_HB_WIRE_LEN], buf[COLO_HB_WIRE_LEN];
    uint64_t refused = 0;

    setup(&hb, false);
    colo_hb_set_local_mode(&hb, COLO_HB_MODE_SECONDARY);
    g_assert_true(beat(&hb, 10, 1, COLO_HEALTH_RUNNING,
                       COLO_HB_MODE_PRIMARY));
    /* the peer reports its QEMU gone: the flips must not look like it */
    genuine(good, 20, 2, COLO_HEALTH_RUNNING, COLO_HB_MODE_PRIMARY);
    for (int bit = 0; bit < COLO_HB_WIRE_LEN * 8; bit++) {
        memcpy(buf, good, sizeof(buf));
        buf[bit / 8] ^= 1 << (bit % 8);
        g_assert_false(colo_hb_receive(&hb, 20, WALL0 + 20, buf,
                                       sizeof(buf)));
        g_assert_cmpint(hb.last_verdict, !=, COLO_HB_RX_OK);
        refused++;
    }
    g_assert_cmpuint(hb.rx_ok, ==, 1);
    g_assert_cmpuint(hb.peer_seq, ==, 1);
    g_assert_cmpuint(hb.rx_bad + hb.rx_forged + hb.rx_corrupt, ==, refused);
    /* most flips leave a well-formed datagram of this boot: corrupt */
    g_assert_cmpuint(hb.rx_corrupt, >, COLO_HB_WIRE_LEN * 8 / 2);
    /* the genuine one is still good */
    g_assert_true(colo_hb_receive(&hb, 20, WALL0 + 20, good, sizeof(good)));
}

/* Replays of accepted datagrams of this boot are refused and counted. */
static void test_auth_replay(void)
{
    ColoHeartbeat hb;
    uint8_t gone[COLO_HB_WIRE_LEN], running[COLO_HB_WIRE_LEN];

    setup(&hb, false);
    colo_hb_set_local_mode(&hb, COLO_HB_MODE_SECONDARY);
    genuine(running, 100, 1, COLO_HEALTH_RUNNING, COLO_HB_MODE_PRIMARY);
    genuine(gone, 150, 2, COLO_HEALTH_GONE, COLO_HB_MODE_PRIMARY);
    g_assert_true(colo_hb_receive(&hb, 100, WALL0 + 100, running,
                                  sizeof(running)));
    g_assert_true(colo_hb_receive(&hb, 150, WALL0 + 150, gone,
                                  sizeof(gone)));
    /* the peer is back with a new QEMU, same agent */
    g_assert_true(beat(&hb, 200, 3, COLO_HEALTH_RUNNING,
                       COLO_HB_MODE_NONE));
    colo_hb_set_local_mode(&hb, COLO_HB_MODE_NONE);
    colo_hb_set_local_mode(&hb, COLO_HB_MODE_SECONDARY);
    g_assert_true(beat(&hb, 300, 4, COLO_HEALTH_RUNNING,
                       COLO_HB_MODE_PRIMARY));
    /* the earlier "gone" again, at once and much later */
    g_assert_false(colo_hb_receive(&hb, 310, WALL0 + 310, gone,
                                   sizeof(gone)));
    g_assert_cmpint(hb.last_verdict, ==, COLO_HB_RX_REPLAYED);
    g_assert_false(colo_hb_receive(&hb, 90000, WALL0 + 90000, gone,
                                   sizeof(gone)));
    g_assert_false(colo_hb_receive(&hb, 90000, WALL0 + 90000, running,
                                   sizeof(running)));
    g_assert_cmpuint(hb.rx_replayed, ==, 3);
    g_assert_cmpint(hb.peer_health, ==, COLO_HEALTH_RUNNING);
    g_assert_cmpint(colo_hb_decide(&hb, 310), ==, COLO_HB_NOTHING);
    g_assert_cmpstr(hb.reason, ==, "protecting");
}

/*
 * A datagram captured in an earlier run of the peer's agent: another boot
 * id, and a timestamp from then.  Refused whether this agent has heard the
 * current run or not (it restarted too); a datagram of the previous boot
 * that is still within the timeout is refused once the current boot was
 * accepted (its timestamp is older).
 */
static void test_auth_earlier_run(void)
{
    ColoHeartbeat hb;
    ColoHbMsg old = {
        .seq = 77, .boot_id = 0x9999, .wall_ms = WALL0 - 3600 * 1000,
        .health = COLO_HEALTH_GONE, .mode = COLO_HB_MODE_PRIMARY,
        .pair = "pair1", .node = "nodeB",
    };

    setup(&hb, false);
    colo_hb_set_local_mode(&hb, COLO_HB_MODE_SECONDARY);
    /* before the current run is heard from */
    g_assert_false(receive_msg(&hb, 50, &old, &key));
    g_assert_cmpint(hb.last_verdict, ==, COLO_HB_RX_STALE);
    g_assert_false(hb.peer_seen);
    g_assert_true(beat(&hb, 100, 1, COLO_HEALTH_RUNNING,
                       COLO_HB_MODE_PRIMARY));
    g_assert_false(receive_msg(&hb, 150, &old, &key));
    g_assert_cmpint(hb.last_verdict, ==, COLO_HB_RX_STALE);
    /* just before the timeout's edge: still too old */
    old.wall_ms = WALL0 + 200 - TIMEOUT - 1;
    g_assert_false(receive_msg(&hb, 200, &old, &key));
    /* recent enough, but older than the current boot's last datagram */
    old.wall_ms = WALL0 + 99;
    g_assert_false(receive_msg(&hb, 200, &old, &key));
    g_assert_cmpint(hb.last_verdict, ==, COLO_HB_RX_STALE);
    /* from the future (beyond the timeout) */
    old.wall_ms = WALL0 + 200 + TIMEOUT + 1;
    g_assert_false(receive_msg(&hb, 200, &old, &key));
    g_assert_cmpuint(hb.rx_stale, ==, 5);
    g_assert_cmpuint(hb.peer_boot_id, ==, 0x1234);
    g_assert_cmpint(hb.peer_health, ==, COLO_HEALTH_RUNNING);
    g_assert_cmpint(colo_hb_decide(&hb, 200), ==, COLO_HB_NOTHING);
}

/* A restarted peer agent (new boot id, fresh timestamp) is accepted. */
static void test_auth_new_boot(void)
{
    ColoHeartbeat hb;
    ColoHbMsg next = {
        .seq = 1, .boot_id = 0x5678, .wall_ms = WALL0 + 500,
        .health = COLO_HEALTH_GONE, .mode = COLO_HB_MODE_NONE,
        .pair = "pair1", .node = "nodeB",
    };

    setup(&hb, false);
    colo_hb_set_local_mode(&hb, COLO_HB_MODE_SECONDARY);
    g_assert_true(beat(&hb, 100, 41, COLO_HEALTH_RUNNING,
                       COLO_HB_MODE_PRIMARY));
    /* its clock a little behind ours, within the timeout: fine */
    next.wall_ms = WALL0 + 200;
    g_assert_true(receive_msg(&hb, 600, &next, &key));
    g_assert_cmpuint(hb.peer_boot_id, ==, 0x5678);
    g_assert_cmpuint(hb.peer_seq, ==, 1);
    /*
     * A datagram of the old boot, however fresh it looks, is from a run
     * that ended: refused (else two captured runs could alternate).
     */
    g_assert_false(beat(&hb, 650, 42, COLO_HEALTH_RUNNING,
                        COLO_HB_MODE_PRIMARY));
    g_assert_cmpint(hb.last_verdict, ==, COLO_HB_RX_STALE);
    g_assert_cmpint(colo_hb_decide(&hb, 650), ==, COLO_HB_TAKE_OVER);
}

/*
 * The primary died; an attacker keeps sending "running" datagrams with its
 * names, the next sequence numbers and its boot id (all readable on the
 * link), without the key: the secondary still takes over.
 */
static void test_auth_forged_stream(void)
{
    ColoHeartbeat hb;
    ColoHbMsg forged = {
        .boot_id = 0x1234, .health = COLO_HEALTH_RUNNING,
        .mode = COLO_HB_MODE_PRIMARY, .pair = "pair1", .node = "nodeB",
    };

    setup(&hb, false);
    colo_hb_set_local_mode(&hb, COLO_HB_MODE_SECONDARY);
    g_assert_true(beat(&hb, 100, 1, COLO_HEALTH_RUNNING,
                       COLO_HB_MODE_PRIMARY));
    colo_hb_link_lost(&hb);
    g_assert_true(beat(&hb, 120, 2, COLO_HEALTH_GONE, COLO_HB_MODE_PRIMARY));
    for (int i = 0; i < 50; i++) {
        forged.seq = 3 + i;
        forged.wall_ms = WALL0 + 121 + i;
        g_assert_false(receive_msg(&hb, 121 + i, &forged,
                                   i % 2 ? &other_key : &no_key));
    }
    g_assert_cmpuint(hb.rx_forged + hb.rx_corrupt, ==, 50);
    g_assert_cmpint(hb.peer_health, ==, COLO_HEALTH_GONE);
    g_assert_false(hb.stale);
    g_assert_cmpint(colo_hb_decide(&hb, 171), ==, COLO_HB_TAKE_OVER);

    /* the same on a primary: a silent secondary is not kept alive */
    setup(&hb, false);
    colo_hb_set_local_mode(&hb, COLO_HB_MODE_PRIMARY);
    g_assert_true(beat(&hb, 100, 1, COLO_HEALTH_RUNNING,
                       COLO_HB_MODE_SECONDARY));
    forged.mode = COLO_HB_MODE_SECONDARY;
    for (int i = 0; i < 20; i++) {
        forged.seq = 2 + i;
        forged.wall_ms = WALL0 + 150 + i * INTERVAL;
        receive_msg(&hb, 150 + i * INTERVAL, &forged, &other_key);
    }
    g_assert_cmpint(colo_hb_decide(&hb, 100 + TIMEOUT), ==,
                    COLO_HB_TAKE_OVER);
}

/* A peer configured with another key is never heard. */
static void test_auth_wrong_key(void)
{
    ColoHeartbeat hb;

    setup_key(&hb, false, &other_key);
    colo_hb_set_local_mode(&hb, COLO_HB_MODE_SECONDARY);
    g_assert_false(beat(&hb, 100, 1, COLO_HEALTH_RUNNING,
                        COLO_HB_MODE_PRIMARY));
    g_assert_cmpint(hb.last_verdict, ==, COLO_HB_RX_FORGED);
    g_assert_false(beat(&hb, 200, 2, COLO_HEALTH_GONE,
                        COLO_HB_MODE_PRIMARY));
    g_assert_cmpuint(hb.rx_forged, ==, 2);
    g_assert_false(hb.peer_seen);
    g_assert_cmpint(colo_hb_decide(&hb, 200), ==, COLO_HB_NOTHING);
}

/* heartbeat-auth = none: no MAC, the replay rules still hold. */
static void test_auth_none(void)
{
    ColoHeartbeat hb;
    ColoHbMsg msg = {
        .seq = 1, .boot_id = 0x42, .wall_ms = WALL0 + 100,
        .health = COLO_HEALTH_RUNNING, .mode = COLO_HB_MODE_PRIMARY,
        .pair = "pair1", .node = "nodeB",
    };

    setup_key(&hb, false, &no_key);
    g_assert_true(receive_msg(&hb, 100, &msg, &no_key));
    g_assert_false(receive_msg(&hb, 110, &msg, &no_key));
    g_assert_cmpint(hb.last_verdict, ==, COLO_HB_RX_REPLAYED);
    /* a peer that signs: a configuration mismatch, said so */
    msg.seq = 2;
    g_assert_false(receive_msg(&hb, 120, &msg, &key));
    g_assert_cmpint(hb.last_verdict, ==, COLO_HB_RX_MALFORMED);
    g_assert_nonnull(strstr(hb.last_bad, "heartbeat-auth"));
}

static void test_peer_states(void)
{
    ColoHeartbeat hb;

    setup(&hb, false);
    g_assert_cmpint(colo_hb_peer_state(&hb, 0), ==, COLO_PEER_SILENT);
    beat(&hb, 100, 1, COLO_HEALTH_RUNNING, COLO_HB_MODE_PRIMARY);
    g_assert_cmpint(colo_hb_peer_state(&hb, 150), ==, COLO_PEER_ALIVE);
    g_assert_cmpint(colo_hb_peer_state(&hb, 100 + 2 * INTERVAL), ==,
                    COLO_PEER_ALIVE);
    g_assert_cmpint(colo_hb_peer_state(&hb, 101 + 2 * INTERVAL), ==,
                    COLO_PEER_SILENT);
    /* silence alone never makes it gone without corosync */
    g_assert_cmpint(colo_hb_peer_state(&hb, 100 + 100 * TIMEOUT), ==,
                    COLO_PEER_SILENT);
    beat(&hb, 500, 2, COLO_HEALTH_STOPPED, COLO_HB_MODE_PRIMARY);
    g_assert_cmpint(colo_hb_peer_state(&hb, 510), ==, COLO_PEER_SILENT);
    beat(&hb, 600, 3, COLO_HEALTH_GONE, COLO_HB_MODE_PRIMARY);
    g_assert_cmpint(colo_hb_peer_state(&hb, 610), ==, COLO_PEER_GONE);
    beat(&hb, 700, 4, COLO_HEALTH_RUNNING, COLO_HB_MODE_PRIMARY);
    g_assert_cmpint(colo_hb_peer_state(&hb, 710), ==, COLO_PEER_ALIVE);
}

/* Without corosync the secondary waits for proof: a silent primary is not. */
static void test_secondary_no_quorum(void)
{
    ColoHeartbeat hb;

    setup(&hb, false);
    colo_hb_set_local_mode(&hb, COLO_HB_MODE_SECONDARY);
    beat(&hb, 100, 1, COLO_HEALTH_RUNNING, COLO_HB_MODE_PRIMARY);
    g_assert_cmpint(colo_hb_decide(&hb, 150), ==, COLO_HB_NOTHING);
    g_assert_cmpstr(hb.reason, ==, "protecting");
    colo_hb_link_lost(&hb);
    g_assert_cmpint(colo_hb_decide(&hb, 100 + 10 * TIMEOUT), ==,
                    COLO_HB_NOTHING);
    g_assert_nonnull(strstr(hb.reason, "not provably gone"));

    /* the primary's agent says its QEMU is gone: take over, once */
    beat(&hb, 20000, 2, COLO_HEALTH_GONE, COLO_HB_MODE_UNKNOWN);
    g_assert_cmpint(colo_hb_decide(&hb, 20000), ==, COLO_HB_TAKE_OVER);
    g_assert_nonnull(strstr(hb.reason, "reports its QEMU gone"));
    g_assert_cmpint(colo_hb_decide(&hb, 20001), ==, COLO_HB_NOTHING);
    colo_hb_set_local_mode(&hb, COLO_HB_MODE_NONE);
    colo_hb_action_done(&hb, COLO_HB_TAKE_OVER, true, 20100);
    g_assert_cmpint(colo_hb_decide(&hb, 20200), ==, COLO_HB_NOTHING);
    g_assert_cmpint(colo_hb_decide(&hb, 90000), ==, COLO_HB_NOTHING);

    /* re-protected: a new session, and the same rules again */
    beat(&hb, 90000, 3, COLO_HEALTH_RUNNING, COLO_HB_MODE_PRIMARY);
    colo_hb_set_local_mode(&hb, COLO_HB_MODE_SECONDARY);
    g_assert_cmpint(colo_hb_decide(&hb, 90010), ==, COLO_HB_NOTHING);
    beat(&hb, 90020, 4, COLO_HEALTH_GONE, COLO_HB_MODE_PRIMARY);
    g_assert_cmpint(colo_hb_decide(&hb, 90020), ==, COLO_HB_TAKE_OVER);
}

static void test_secondary_quorum(void)
{
    ColoHeartbeat hb;

    setup(&hb, true);
    colo_hb_set_local_mode(&hb, COLO_HB_MODE_SECONDARY);
    colo_hb_set_quorum(&hb, COLO_HB_QUORUM_QUORATE, true, 0);
    beat(&hb, 100, 1, COLO_HEALTH_RUNNING, COLO_HB_MODE_PRIMARY);
    /* silent, still a member: wait */
    g_assert_cmpint(colo_hb_decide(&hb, 100 + 2 * TIMEOUT), ==,
                    COLO_HB_NOTHING);
    /* inquorate and the peer gone from our view: never */
    colo_hb_set_quorum(&hb, COLO_HB_QUORUM_INQUORATE, false, 3000);
    g_assert_cmpint(colo_hb_decide(&hb, 100 + 3 * TIMEOUT), ==,
                    COLO_HB_NOTHING);
    /* quorate without the peer, but it spoke just now: not yet */
    colo_hb_set_quorum(&hb, COLO_HB_QUORUM_QUORATE, false, 3100);
    beat(&hb, 5000, 2, COLO_HEALTH_RUNNING, COLO_HB_MODE_PRIMARY);
    g_assert_cmpint(colo_hb_decide(&hb, 5000 + TIMEOUT - 1), ==,
                    COLO_HB_NOTHING);
    g_assert_cmpint(colo_hb_peer_state(&hb, 5000 + TIMEOUT), ==,
                    COLO_PEER_GONE);
    g_assert_cmpint(colo_hb_decide(&hb, 5000 + TIMEOUT), ==,
                    COLO_HB_TAKE_OVER);
    g_assert_nonnull(strstr(hb.reason, "quorate membership"));

    /*
     * Long silent, then voted out: a grace of a few intervals first, so
     * that the other partition can learn it lost quorum and fence itself.
     */
    setup(&hb, true);
    colo_hb_set_local_mode(&hb, COLO_HB_MODE_SECONDARY);
    colo_hb_set_quorum(&hb, COLO_HB_QUORUM_QUORATE, true, 0);
    beat(&hb, 100, 1, COLO_HEALTH_RUNNING, COLO_HB_MODE_PRIMARY);
    colo_hb_set_quorum(&hb, COLO_HB_QUORUM_QUORATE, false, 5000);
    g_assert_cmpint(colo_hb_decide(&hb, 5000), ==, COLO_HB_NOTHING);
    g_assert_cmpint(colo_hb_decide(&hb, 4999 + COLO_HB_VOTED_OUT_GRACE *
                                    INTERVAL), ==, COLO_HB_NOTHING);
    /* a repeated report does not restart the grace */
    colo_hb_set_quorum(&hb, COLO_HB_QUORUM_QUORATE, false, 5200);
    g_assert_cmpint(colo_hb_decide(&hb, 5000 + COLO_HB_VOTED_OUT_GRACE *
                                    INTERVAL), ==, COLO_HB_TAKE_OVER);
}

static void test_primary(void)
{
    ColoHeartbeat hb;

    setup(&hb, false);
    colo_hb_set_local_mode(&hb, COLO_HB_MODE_PRIMARY);
    /* a secondary never heard from is no reason to drop protection */
    g_assert_cmpint(colo_hb_decide(&hb, 10 * TIMEOUT), ==, COLO_HB_NOTHING);
    beat(&hb, 100, 1, COLO_HEALTH_RUNNING, COLO_HB_MODE_SECONDARY);
    g_assert_cmpint(colo_hb_decide(&hb, 99 + TIMEOUT), ==, COLO_HB_NOTHING);
    g_assert_cmpint(colo_hb_decide(&hb, 100 + TIMEOUT), ==,
                    COLO_HB_TAKE_OVER);
    /* it failed (QMP error): retried after the timeout */
    colo_hb_action_done(&hb, COLO_HB_TAKE_OVER, false, 1200);
    g_assert_cmpint(colo_hb_decide(&hb, 1300), ==, COLO_HB_NOTHING);
    g_assert_cmpint(colo_hb_decide(&hb, 1200 + TIMEOUT), ==,
                    COLO_HB_TAKE_OVER);
    colo_hb_action_done(&hb, COLO_HB_TAKE_OVER, true, 2300);
    colo_hb_set_local_mode(&hb, COLO_HB_MODE_NONE);
    g_assert_cmpint(colo_hb_decide(&hb, 5000), ==, COLO_HB_NOTHING);

    /* the link breaks (QEMU left COLO by itself): clean up at once */
    setup(&hb, false);
    colo_hb_set_local_mode(&hb, COLO_HB_MODE_PRIMARY);
    beat(&hb, 100, 1, COLO_HEALTH_RUNNING, COLO_HB_MODE_SECONDARY);
    colo_hb_link_lost(&hb);
    colo_hb_set_local_mode(&hb, COLO_HB_MODE_NONE);
    g_assert_cmpint(colo_hb_decide(&hb, 110), ==, COLO_HB_TAKE_OVER);
    g_assert_nonnull(strstr(hb.reason, "link"));

    /* the secondary's QEMU is gone */
    setup(&hb, false);
    colo_hb_set_local_mode(&hb, COLO_HB_MODE_PRIMARY);
    beat(&hb, 100, 1, COLO_HEALTH_GONE, COLO_HB_MODE_SECONDARY);
    g_assert_cmpint(colo_hb_decide(&hb, 110), ==, COLO_HB_TAKE_OVER);
}

static void test_primary_quorum(void)
{
    ColoHeartbeat hb;

    setup(&hb, true);
    colo_hb_set_local_mode(&hb, COLO_HB_MODE_PRIMARY);
    beat(&hb, 100, 1, COLO_HEALTH_RUNNING, COLO_HB_MODE_SECONDARY);
    /* silent secondary, quorum not known yet: wait */
    g_assert_cmpint(colo_hb_decide(&hb, 100 + TIMEOUT), ==, COLO_HB_NOTHING);
    g_assert_nonnull(strstr(hb.reason, "quorate"));
    /* quorate, the secondary still a member (stale view): wait too */
    colo_hb_set_quorum(&hb, COLO_HB_QUORUM_QUORATE, true, 1100);
    g_assert_cmpint(colo_hb_decide(&hb, 1150), ==, COLO_HB_NOTHING);
    g_assert_nonnull(strstr(hb.reason, "output held"));
    /* inquorate with a live peer: nothing (the peer is no threat) */
    colo_hb_set_quorum(&hb, COLO_HB_QUORUM_INQUORATE, true, 1500);
    beat(&hb, 2000, 2, COLO_HEALTH_RUNNING, COLO_HB_MODE_SECONDARY);
    g_assert_cmpint(colo_hb_decide(&hb, 2010), ==, COLO_HB_NOTHING);
    /* inquorate and the peer silent: fence */
    g_assert_cmpint(colo_hb_decide(&hb, 2001 + 2 * INTERVAL), ==,
                    COLO_HB_FENCE);
    colo_hb_action_done(&hb, COLO_HB_FENCE, true, 2300);
    g_assert_cmpint(colo_hb_decide(&hb, 9000), ==, COLO_HB_NOTHING);

    /* quorate without the secondary: drop protection once it is silent */
    setup(&hb, true);
    colo_hb_set_local_mode(&hb, COLO_HB_MODE_PRIMARY);
    colo_hb_set_quorum(&hb, COLO_HB_QUORUM_QUORATE, true, 0);
    beat(&hb, 100, 1, COLO_HEALTH_RUNNING, COLO_HB_MODE_SECONDARY);
    colo_hb_set_quorum(&hb, COLO_HB_QUORUM_QUORATE, false, 900);
    g_assert_cmpint(colo_hb_decide(&hb, 100 + TIMEOUT), ==, COLO_HB_NOTHING);
    g_assert_cmpint(colo_hb_decide(&hb, 900 + COLO_HB_VOTED_OUT_GRACE *
                                    INTERVAL), ==, COLO_HB_TAKE_OVER);
    colo_hb_action_done(&hb, COLO_HB_TAKE_OVER, true, 1250);
    colo_hb_set_local_mode(&hb, COLO_HB_MODE_NONE);
    /* ... and if quorum goes later, the alone-serving primary fences too */
    colo_hb_set_quorum(&hb, COLO_HB_QUORUM_INQUORATE, false, 1300);
    g_assert_cmpint(colo_hb_decide(&hb, 1300), ==, COLO_HB_FENCE);
}

static void test_local_stopped(void)
{
    ColoHeartbeat hb;

    setup(&hb, false);
    colo_hb_set_local_mode(&hb, COLO_HB_MODE_PRIMARY);
    beat(&hb, 100, 1, COLO_HEALTH_RUNNING, COLO_HB_MODE_SECONDARY);
    colo_hb_set_local_health(&hb, 200, COLO_HEALTH_STOPPED);
    beat(&hb, 250, 2, COLO_HEALTH_RUNNING, COLO_HB_MODE_SECONDARY);
    g_assert_cmpint(colo_hb_decide(&hb, 250), ==, COLO_HB_NOTHING);
    /* still stopped (the timeout counts from the first sight) */
    colo_hb_set_local_health(&hb, 900, COLO_HEALTH_STOPPED);
    beat(&hb, 1150, 3, COLO_HEALTH_RUNNING, COLO_HB_MODE_SECONDARY);
    g_assert_cmpint(colo_hb_decide(&hb, 199 + TIMEOUT), ==, COLO_HB_NOTHING);
    g_assert_cmpint(colo_hb_decide(&hb, 200 + TIMEOUT), ==, COLO_HB_FENCE);
    colo_hb_action_done(&hb, COLO_HB_FENCE, true, 1250);
    colo_hb_set_local_health(&hb, 1260, COLO_HEALTH_GONE);
    g_assert_cmpint(colo_hb_decide(&hb, 1300), ==, COLO_HB_NOTHING);

    /* stopped, but the peer is silent: killing ours would lose the guest */
    setup(&hb, false);
    colo_hb_set_local_mode(&hb, COLO_HB_MODE_PRIMARY);
    beat(&hb, 100, 1, COLO_HEALTH_RUNNING, COLO_HB_MODE_SECONDARY);
    colo_hb_set_local_health(&hb, 200, COLO_HEALTH_STOPPED);
    g_assert_cmpint(colo_hb_decide(&hb, 200 + 5 * TIMEOUT), ==,
                    COLO_HB_NOTHING);
    /* it runs again */
    colo_hb_set_local_health(&hb, 6000, COLO_HEALTH_RUNNING);
    beat(&hb, 6000, 2, COLO_HEALTH_RUNNING, COLO_HB_MODE_SECONDARY);
    g_assert_cmpint(colo_hb_decide(&hb, 6010), ==, COLO_HB_NOTHING);
    g_assert_cmpstr(hb.reason, ==, "protecting");
}

/*
 * A secondary whose COLO link broke while the primary ran on is stale:
 * every answer and write of the primary since the break is missing from
 * its state, so it must never take over, however the primary ends later.
 */
static void test_secondary_stale(void)
{
    ColoHeartbeat hb;

    /* the primary runs on alone after the break, dies hours later */
    setup(&hb, false);
    colo_hb_set_local_mode(&hb, COLO_HB_MODE_SECONDARY);
    beat(&hb, 100, 1, COLO_HEALTH_RUNNING, COLO_HB_MODE_PRIMARY);
    colo_hb_link_lost(&hb);
    beat(&hb, 200, 2, COLO_HEALTH_RUNNING, COLO_HB_MODE_NONE);
    g_assert_cmpint(colo_hb_decide(&hb, 210), ==, COLO_HB_NOTHING);
    g_assert_nonnull(strstr(hb.reason, "stale"));
    beat(&hb, 3600 * 1000, 3, COLO_HEALTH_GONE, COLO_HB_MODE_UNKNOWN);
    g_assert_cmpint(colo_hb_peer_state(&hb, 3600 * 1000), ==, COLO_PEER_GONE);
    g_assert_cmpint(colo_hb_decide(&hb, 3600 * 1000), ==, COLO_HB_NOTHING);
    g_assert_nonnull(strstr(hb.reason, "stale"));
    g_assert_cmpint(colo_hb_decide(&hb, 7200 * 1000), ==, COLO_HB_NOTHING);

    /* re-protected (a new COLO session): it may take over again */
    colo_hb_set_local_mode(&hb, COLO_HB_MODE_NONE);
    colo_hb_set_local_mode(&hb, COLO_HB_MODE_SECONDARY);
    beat(&hb, 7300 * 1000, 4, COLO_HEALTH_RUNNING, COLO_HB_MODE_PRIMARY);
    g_assert_cmpint(colo_hb_decide(&hb, 7300 * 1000), ==, COLO_HB_NOTHING);
    g_assert_cmpstr(hb.reason, ==, "protecting");
    beat(&hb, 7301 * 1000, 5, COLO_HEALTH_GONE, COLO_HB_MODE_PRIMARY);
    g_assert_cmpint(colo_hb_decide(&hb, 7301 * 1000), ==, COLO_HB_TAKE_OVER);

    /*
     * Still reported in COLO after the break: its agent may not have read
     * the new mode yet while the guest already runs alone.
     */
    setup(&hb, false);
    colo_hb_set_local_mode(&hb, COLO_HB_MODE_SECONDARY);
    beat(&hb, 100, 1, COLO_HEALTH_RUNNING, COLO_HB_MODE_PRIMARY);
    colo_hb_link_lost(&hb);
    beat(&hb, 200, 2, COLO_HEALTH_RUNNING, COLO_HB_MODE_PRIMARY);
    beat(&hb, 300, 3, COLO_HEALTH_GONE, COLO_HB_MODE_PRIMARY);
    g_assert_cmpint(colo_hb_decide(&hb, 300), ==, COLO_HB_NOTHING);
    g_assert_nonnull(strstr(hb.reason, "stale"));

    /* already reported alone when the break is seen */
    setup(&hb, false);
    colo_hb_set_local_mode(&hb, COLO_HB_MODE_SECONDARY);
    beat(&hb, 50, 1, COLO_HEALTH_RUNNING, COLO_HB_MODE_PRIMARY);
    beat(&hb, 100, 2, COLO_HEALTH_RUNNING, COLO_HB_MODE_NONE);
    colo_hb_link_lost(&hb);
    beat(&hb, 150, 3, COLO_HEALTH_GONE, COLO_HB_MODE_NONE);
    g_assert_cmpint(colo_hb_decide(&hb, 150), ==, COLO_HB_NOTHING);
    g_assert_nonnull(strstr(hb.reason, "stale"));

    /* the local QEMU was replaced (a fresh secondary): history */
    colo_hb_set_local_health(&hb, 200, COLO_HEALTH_GONE);
    colo_hb_set_local_health(&hb, 300, COLO_HEALTH_RUNNING);
    colo_hb_set_local_mode(&hb, COLO_HB_MODE_SECONDARY);
    beat(&hb, 400, 4, COLO_HEALTH_GONE, COLO_HB_MODE_NONE);
    g_assert_cmpint(colo_hb_decide(&hb, 400), ==, COLO_HB_TAKE_OVER);
}

/*
 * query-colo-status says the session failed.  In the first report of this
 * QEMU (the agent started since the break) the primary's doings are
 * unknown: stale.  After earlier reports, as COLO_LINK_LOST.
 */
static void test_secondary_session_broken(void)
{
    ColoHeartbeat hb;

    setup(&hb, false);
    colo_hb_set_local_mode(&hb, COLO_HB_MODE_SECONDARY);
    colo_hb_session_broken(&hb);
    g_assert_true(hb.link_lost);
    beat(&hb, 100, 1, COLO_HEALTH_GONE, COLO_HB_MODE_NONE);
    g_assert_cmpint(colo_hb_decide(&hb, 100), ==, COLO_HB_NOTHING);
    g_assert_nonnull(strstr(hb.reason, "stale"));
    g_assert_nonnull(strstr(hb.stale_why, "before this agent watched"));

    /*
     * Watched since before the session (a fresh secondary): the session
     * broke before the first report of it, with the primary
     */
    setup(&hb, false);
    colo_hb_set_local_mode(&hb, COLO_HB_MODE_NONE);
    beat(&hb, 100, 1, COLO_HEALTH_RUNNING, COLO_HB_MODE_PRIMARY);
    colo_hb_set_local_mode(&hb, COLO_HB_MODE_SECONDARY);
    colo_hb_session_broken(&hb);
    beat(&hb, 120, 2, COLO_HEALTH_GONE, COLO_HB_MODE_PRIMARY);
    g_assert_cmpint(colo_hb_decide(&hb, 120), ==, COLO_HB_TAKE_OVER);

    setup(&hb, false);
    colo_hb_set_local_mode(&hb, COLO_HB_MODE_SECONDARY);
    beat(&hb, 100, 1, COLO_HEALTH_RUNNING, COLO_HB_MODE_PRIMARY);
    colo_hb_set_local_mode(&hb, COLO_HB_MODE_SECONDARY);
    colo_hb_session_broken(&hb);
    colo_hb_set_local_mode(&hb, COLO_HB_MODE_SECONDARY);
    colo_hb_session_broken(&hb);
    beat(&hb, 200, 2, COLO_HEALTH_GONE, COLO_HB_MODE_PRIMARY);
    g_assert_cmpint(colo_hb_decide(&hb, 200), ==, COLO_HB_TAKE_OVER);
}

/*
 * The primary reported in COLO, then running outside it: it left COLO and
 * serves alone, which breaks our session too; stale even before our QEMU
 * notices.  A report of "none" before it ever reported "primary" is the
 * start of the session (its agent reads the mode a little later).
 */
static void test_secondary_stale_primary_left(void)
{
    ColoHeartbeat hb;

    setup(&hb, false);
    colo_hb_set_local_mode(&hb, COLO_HB_MODE_SECONDARY);
    beat(&hb, 100, 1, COLO_HEALTH_RUNNING, COLO_HB_MODE_PRIMARY);
    beat(&hb, 200, 2, COLO_HEALTH_RUNNING, COLO_HB_MODE_NONE);
    beat(&hb, 300, 3, COLO_HEALTH_GONE, COLO_HB_MODE_NONE);
    colo_hb_link_lost(&hb);
    g_assert_cmpint(colo_hb_decide(&hb, 300), ==, COLO_HB_NOTHING);
    g_assert_nonnull(strstr(hb.reason, "stale"));

    setup(&hb, false);
    colo_hb_set_local_mode(&hb, COLO_HB_MODE_SECONDARY);
    beat(&hb, 100, 1, COLO_HEALTH_RUNNING, COLO_HB_MODE_NONE);
    beat(&hb, 200, 2, COLO_HEALTH_RUNNING, COLO_HB_MODE_PRIMARY);
    colo_hb_link_lost(&hb);
    beat(&hb, 300, 3, COLO_HEALTH_GONE, COLO_HB_MODE_PRIMARY);
    g_assert_cmpint(colo_hb_decide(&hb, 300), ==, COLO_HB_TAKE_OVER);
}

/* Not stale: the primary died with the link, or was stopped then fenced. */
static void test_secondary_not_stale(void)
{
    ColoHeartbeat hb;

    /* kill -9: the link breaks, its agent reports it gone */
    setup(&hb, false);
    colo_hb_set_local_mode(&hb, COLO_HB_MODE_SECONDARY);
    beat(&hb, 100, 1, COLO_HEALTH_RUNNING, COLO_HB_MODE_PRIMARY);
    colo_hb_link_lost(&hb);
    beat(&hb, 120, 2, COLO_HEALTH_GONE, COLO_HB_MODE_PRIMARY);
    g_assert_cmpint(colo_hb_decide(&hb, 120), ==, COLO_HB_TAKE_OVER);

    /* stopped (it cannot run alone), then fenced by its agent */
    setup(&hb, false);
    colo_hb_set_local_mode(&hb, COLO_HB_MODE_SECONDARY);
    beat(&hb, 100, 1, COLO_HEALTH_RUNNING, COLO_HB_MODE_PRIMARY);
    beat(&hb, 200, 2, COLO_HEALTH_STOPPED, COLO_HB_MODE_PRIMARY);
    colo_hb_link_lost(&hb);
    beat(&hb, 1200, 3, COLO_HEALTH_STOPPED, COLO_HB_MODE_PRIMARY);
    g_assert_cmpint(colo_hb_decide(&hb, 1200), ==, COLO_HB_NOTHING);
    g_assert_null(strstr(hb.reason, "stale"));
    beat(&hb, 1300, 4, COLO_HEALTH_GONE, COLO_HB_MODE_PRIMARY);
    g_assert_cmpint(colo_hb_decide(&hb, 1300), ==, COLO_HB_TAKE_OVER);

    /* running reports before the break are no evidence */
    setup(&hb, false);
    colo_hb_set_local_mode(&hb, COLO_HB_MODE_SECONDARY);
    for (uint32_t i = 1; i <= 10; i++) {
        beat(&hb, i * INTERVAL, i, COLO_HEALTH_RUNNING, COLO_HB_MODE_PRIMARY);
    }
    colo_hb_link_lost(&hb);
    g_assert_cmpint(colo_hb_decide(&hb, 5000), ==, COLO_HB_NOTHING);
    g_assert_null(strstr(hb.reason, "stale"));
    beat(&hb, 5000, 11, COLO_HEALTH_GONE, COLO_HB_MODE_PRIMARY);
    g_assert_cmpint(colo_hb_decide(&hb, 5000), ==, COLO_HB_TAKE_OVER);
}

/* With corosync: quorate and the primary voted out is no excuse either. */
static void test_secondary_stale_quorum(void)
{
    ColoHeartbeat hb;

    setup(&hb, true);
    colo_hb_set_local_mode(&hb, COLO_HB_MODE_SECONDARY);
    colo_hb_set_quorum(&hb, COLO_HB_QUORUM_QUORATE, true, 0);
    beat(&hb, 100, 1, COLO_HEALTH_RUNNING, COLO_HB_MODE_PRIMARY);
    colo_hb_link_lost(&hb);
    beat(&hb, 200, 2, COLO_HEALTH_RUNNING, COLO_HB_MODE_NONE);
    colo_hb_set_quorum(&hb, COLO_HB_QUORUM_QUORATE, false, 5000);
    g_assert_cmpint(colo_hb_peer_state(&hb, 9000), ==, COLO_PEER_GONE);
    g_assert_cmpint(colo_hb_decide(&hb, 9000), ==, COLO_HB_NOTHING);
    g_assert_nonnull(strstr(hb.reason, "stale"));

    /* the same without the report after the break: take over */
    setup(&hb, true);
    colo_hb_set_local_mode(&hb, COLO_HB_MODE_SECONDARY);
    colo_hb_set_quorum(&hb, COLO_HB_QUORUM_QUORATE, true, 0);
    beat(&hb, 100, 1, COLO_HEALTH_RUNNING, COLO_HB_MODE_PRIMARY);
    colo_hb_link_lost(&hb);
    colo_hb_set_quorum(&hb, COLO_HB_QUORUM_QUORATE, false, 5000);
    g_assert_cmpint(colo_hb_decide(&hb, 9000), ==, COLO_HB_TAKE_OVER);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/colo-heartbeat/wire/roundtrip", test_wire_roundtrip);
    g_test_add_func("/colo-heartbeat/wire/garbage", test_wire_garbage);
    g_test_add_func("/colo-heartbeat/receive/random", test_receive_random);
    g_test_add_func("/colo-heartbeat/receive/filters", test_receive_filters);
    g_test_add_func("/colo-heartbeat/auth/forged-mac", test_auth_forged_mac);
    g_test_add_func("/colo-heartbeat/auth/bit-flips", test_auth_bit_flips);
    g_test_add_func("/colo-heartbeat/auth/replay", test_auth_replay);
    g_test_add_func("/colo-heartbeat/auth/earlier-run",
                    test_auth_earlier_run);
    g_test_add_func("/colo-heartbeat/auth/new-boot", test_auth_new_boot);
    g_test_add_func("/colo-heartbeat/auth/forged-stream",
                    test_auth_forged_stream);
    g_test_add_func("/colo-heartbeat/auth/wrong-key", test_auth_wrong_key);
    g_test_add_func("/colo-heartbeat/auth/none", test_auth_none);
    g_test_add_func("/colo-heartbeat/peer-states", test_peer_states);
    g_test_add_func("/colo-heartbeat/secondary/no-quorum",
                    test_secondary_no_quorum);
    g_test_add_func("/colo-heartbeat/secondary/quorum",
                    test_secondary_quorum);
    g_test_add_func("/colo-heartbeat/secondary/stale", test_secondary_stale);
    g_test_add_func("/colo-heartbeat/secondary/stale-primary-left",
                    test_secondary_stale_primary_left);
    g_test_add_func("/colo-heartbeat/secondary/session-broken",
                    test_secondary_session_broken);
    g_test_add_func("/colo-heartbeat/secondary/not-stale",
                    test_secondary_not_stale);
    g_test_add_func("/colo-heartbeat/secondary/stale-quorum",
                    test_secondary_stale_quorum);
    g_test_add_func("/colo-heartbeat/primary/no-quorum", test_primary);
    g_test_add_func("/colo-heartbeat/primary/quorum", test_primary_quorum);
    g_test_add_func("/colo-heartbeat/local-stopped", test_local_stopped);
    return g_test_run();
}
