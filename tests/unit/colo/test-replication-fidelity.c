/*
 * Data fidelity of the `replication` block driver (block/replication.c)
 *
 * Copyright (c) 2026 The qemu-colo authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * No VM: the block layer is linked in and driven directly.  On the secondary
 * side, "primary" writes go straight into the secondary disk (as the NBD
 * server would write them) and "secondary VM" writes go through the top of
 * the replication chain.  Two models follow what each disk must hold; after
 * every step the disks are read back block by block and compared with them:
 *
 *   primary_model    what the primary's disk holds (all primary writes)
 *   secondary_model  what the secondary VM must see: the primary disk as of
 *                    the last checkpoint plus the secondary's own writes
 *
 * At failover the secondary disk file must equal secondary_model.  On the
 * primary side, the replication node sits in a quorum next to the primary's
 * own disk, with an injected write error on its file child: the guest never
 * sees an error, the error is latched and reported, and the primary's disk
 * holds every guest write.
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qobject/qdict.h"
#include "qemu/main-loop.h"
#include "qemu/module.h"
#include "block/block_int.h"
#include "block/replication.h"
#include "system/block-backend.h"

#define DISK_SIZE (4 * 1024 * 1024)
#define BLOCK_SIZE 4096
#define TOP_NAME "colo-top"

typedef struct Images {
    char *dir;
    char *secondary;
    char *active;
    char *hidden;
    char *primary;
} Images;

static Images img;

static char *image_path(const char *name)
{
    return g_strdup_printf("%s/%s", img.dir, name);
}

static void create_image(const char *path, const char *fmt, int64_t size)
{
    bdrv_img_create(path, fmt, NULL, NULL, NULL, size, BDRV_O_RDWR, true,
                    &error_abort);
}

/* Fresh images for one test: raw secondary disk, qcow2 active and hidden. */
static void images_create(void)
{
    create_image(img.secondary, "raw", DISK_SIZE);
    create_image(img.active, "qcow2", DISK_SIZE);
    create_image(img.hidden, "qcow2", DISK_SIZE);
    create_image(img.primary, "raw", DISK_SIZE);
}

static BlockBackend *open_blk(QDict *opts, Error **errp)
{
    return blk_new_open(NULL, NULL, opts, BDRV_O_RDWR, errp);
}

static BlockBackend *open_file_blk(const char *path, const char *fmt,
                                   const char *node_name)
{
    QDict *opts = qdict_new();

    qdict_put_str(opts, "driver", fmt);
    qdict_put_str(opts, "file.driver", "file");
    qdict_put_str(opts, "file.filename", path);
    qdict_put_str(opts, "file.locking", "off");
    if (node_name) {
        qdict_put_str(opts, "node-name", node_name);
    }
    return open_blk(opts, &error_abort);
}

/* Options of a secondary replication node over active/hidden/@backing. */
static QDict *secondary_opts(const char *backing, const char *top_id)
{
    QDict *opts = qdict_new();

    qdict_put_str(opts, "driver", "replication");
    qdict_put_str(opts, "mode", "secondary");
    if (top_id) {
        qdict_put_str(opts, "top-id", top_id);
    }
    qdict_put_str(opts, "file.driver", "qcow2");
    qdict_put_str(opts, "file.file.filename", img.active);
    qdict_put_str(opts, "file.file.locking", "off");
    qdict_put_str(opts, "file.backing.driver", "qcow2");
    qdict_put_str(opts, "file.backing.file.filename", img.hidden);
    qdict_put_str(opts, "file.backing.file.locking", "off");
    qdict_put_str(opts, "file.backing.backing", backing);
    return opts;
}

/* ---- patterns and models --------------------------------------------- */

/* Bytes no two writes share: (write id, offset) stamped every 16 bytes. */
static void fill_pattern(uint8_t *buf, int64_t offset, int64_t bytes,
                         uint32_t write_id)
{
    int64_t i;

    for (i = 0; i < bytes; i += 16) {
        uint64_t where = offset + i;
        uint64_t stamp[2] = { where, write_id | ((uint64_t)0xc0105eed << 32) };

        memcpy(buf + i, stamp, MIN(16, bytes - i));
    }
}

typedef struct Models {
    uint8_t *primary;           /* what the primary disk holds */
    uint8_t *secondary;         /* what the secondary VM must see */
    uint32_t next_write_id;
    int64_t primary_end;        /* primary writes stay below this */
    GRand *rand;
} Models;

static void models_init(Models *m, uint32_t seed)
{
    m->primary = g_malloc0(DISK_SIZE);
    m->secondary = g_malloc0(DISK_SIZE);
    m->next_write_id = 1;
    m->primary_end = DISK_SIZE;
    m->rand = g_rand_new_with_seed(seed);
}

static void models_free(Models *m)
{
    g_free(m->primary);
    g_free(m->secondary);
    g_rand_free(m->rand);
}

/*
 * A random write below @end: 512-byte aligned, 512 B to 192 KiB, may span
 * clusters.
 */
static void random_extent_below(Models *m, int64_t end, int64_t *offset,
                                int64_t *bytes)
{
    int64_t sectors = g_rand_int_range(m->rand, 1, 385);
    int64_t start = g_rand_int_range(m->rand, 0, end / 512 - sectors);

    *offset = start * 512;
    *bytes = sectors * 512;
}

static void random_extent(Models *m, int64_t *offset, int64_t *bytes)
{
    random_extent_below(m, DISK_SIZE, offset, bytes);
}

static void write_blk(BlockBackend *blk, int64_t offset, int64_t bytes,
                      const uint8_t *buf)
{
    int ret = blk_pwrite(blk, offset, bytes, buf, 0);

    g_assert_cmpint(ret, ==, 0);
}

/* The primary guest writes: into the secondary disk, as NBD would. */
static void primary_write(Models *m, BlockBackend *secondary_disk)
{
    int64_t offset, bytes;

    random_extent_below(m, m->primary_end, &offset, &bytes);
    fill_pattern(m->primary + offset, offset, bytes, m->next_write_id++);
    write_blk(secondary_disk, offset, bytes, m->primary + offset);
}

/* The secondary VM writes through the top of its chain. */
static void secondary_write(Models *m, BlockBackend *top)
{
    int64_t offset, bytes;

    random_extent(m, &offset, &bytes);
    fill_pattern(m->secondary + offset, offset, bytes, m->next_write_id++);
    write_blk(top, offset, bytes, m->secondary + offset);
}

/* Compare a whole disk with @model block by block; name the first miss. */
static void check_disk(BlockBackend *blk, const uint8_t *model,
                       const char *what)
{
    g_autofree uint8_t *buf = g_malloc(DISK_SIZE);
    int64_t block;
    int ret;

    ret = blk_pread(blk, 0, DISK_SIZE, buf, 0);
    g_assert_cmpint(ret, ==, 0);
    for (block = 0; block < DISK_SIZE / BLOCK_SIZE; block++) {
        if (memcmp(buf + block * BLOCK_SIZE, model + block * BLOCK_SIZE,
                   BLOCK_SIZE)) {
            g_test_message("%s differs from its model at block %" PRId64
                           " (offset %" PRId64 ")", what, block,
                           block * BLOCK_SIZE);
            g_assert_not_reached();
        }
    }
}

/* Check a disk image file by opening it afresh (after failover). */
static void check_image_file(const char *path, const char *fmt,
                             const uint8_t *model, const char *what)
{
    BlockBackend *blk = open_file_blk(path, fmt, NULL);

    check_disk(blk, model, what);
    blk_unref(blk);
}

static void expect_error(Error *err, const char *needle)
{
    g_assert(err);
    if (!strstr(error_get_pretty(err), needle)) {
        g_test_message("error '%s' lacks '%s'", error_get_pretty(err),
                       needle);
        g_assert_not_reached();
    }
    error_free(err);
}

/* ---- the secondary side ---------------------------------------------- */

typedef struct Secondary {
    BlockBackend *disk;         /* the NBD server's view: the secondary disk */
    BlockBackend *top;          /* the secondary VM's disk */
} Secondary;

/* Secondary disk with random content; primary and secondary agree on it. */
/* @no_flush: active and hidden with cache.no-flush=on, as documented. */
static void secondary_setup_flush(Secondary *sec, Models *m, bool no_flush)
{
    QDict *opts;

    images_create();
    sec->disk = open_file_blk(img.secondary, "raw", "secondary-disk");
    fill_pattern(m->primary, 0, DISK_SIZE, 0);
    write_blk(sec->disk, 0, DISK_SIZE, m->primary);
    memcpy(m->secondary, m->primary, DISK_SIZE);

    opts = secondary_opts("secondary-disk", TOP_NAME);
    qdict_put_str(opts, "node-name", "replication0");
    if (no_flush) {
        qdict_put_str(opts, "file.cache.no-flush", "on");
        qdict_put_str(opts, "file.backing.cache.no-flush", "on");
    }
    sec->top = open_blk(opts, &error_abort);
    monitor_add_blk(sec->top, TOP_NAME, &error_abort);
}

static void secondary_setup(Secondary *sec, Models *m)
{
    secondary_setup_flush(sec, m, false);
}

static void secondary_teardown(Secondary *sec)
{
    monitor_remove_blk(sec->top);
    blk_unref(sec->top);
    blk_unref(sec->disk);
}

/* Both writers work between two checkpoints, then both disks are checked. */
static void run_epoch(Models *m, Secondary *sec, int primary_writes,
                      int secondary_writes)
{
    while (primary_writes > 0 || secondary_writes > 0) {
        if (primary_writes > 0) {
            primary_write(m, sec->disk);
            primary_writes--;
        }
        if (secondary_writes > 0) {
            secondary_write(m, sec->top);
            secondary_writes--;
        }
    }
    check_disk(sec->disk, m->primary, "secondary disk (primary's writes)");
    check_disk(sec->top, m->secondary, "secondary VM's view");
}

static void checkpoint(Models *m, Secondary *sec)
{
    replication_do_checkpoint_all(&error_abort);
    /* The secondary VM is now a copy of the primary. */
    memcpy(m->secondary, m->primary, DISK_SIZE);
    check_disk(sec->top, m->secondary, "secondary VM's view after checkpoint");
}

static void test_secondary_failover_after_epochs(gconstpointer no_flush)
{
    Models m;
    Secondary sec;
    int epoch;

    models_init(&m, no_flush ? 17 : 5);
    secondary_setup_flush(&sec, &m, no_flush != NULL);
    replication_start_all(REPLICATION_MODE_SECONDARY, &error_abort);
    check_disk(sec.top, m.secondary, "secondary VM's view after start");

    for (epoch = 0; epoch < 4; epoch++) {
        run_epoch(&m, &sec, 20, 20);
        checkpoint(&m, &sec);
    }
    /* The primary dies in the middle of an epoch. */
    run_epoch(&m, &sec, 25, 15);
    replication_stop_all(true, &error_abort);

    /* The survivor continues on the secondary disk itself. */
    check_disk(sec.top, m.secondary, "survivor's disk after failover");
    secondary_write(&m, sec.top);
    check_disk(sec.top, m.secondary, "survivor's disk, written after failover");
    replication_get_error_all(&error_abort);

    /* Later requests are ignored, as after any failover. */
    replication_do_checkpoint_all(&error_abort);
    replication_stop_all(true, &error_abort);
    secondary_teardown(&sec);

    check_image_file(img.secondary, "raw", m.secondary,
                     "secondary disk file after failover");
    models_free(&m);
}

static void test_secondary_failover_right_after_checkpoint(void)
{
    Models m;
    Secondary sec;

    models_init(&m, 6);
    secondary_setup(&sec, &m);
    replication_start_all(REPLICATION_MODE_SECONDARY, &error_abort);
    run_epoch(&m, &sec, 30, 30);
    checkpoint(&m, &sec);
    replication_stop_all(true, &error_abort);
    check_disk(sec.top, m.secondary, "survivor's disk after failover");
    secondary_teardown(&sec);
    check_image_file(img.secondary, "raw", m.secondary,
                     "secondary disk file after failover");
    models_free(&m);
}

static void test_secondary_failover_only_primary_wrote(void)
{
    Models m;
    Secondary sec;

    models_init(&m, 7);
    secondary_setup(&sec, &m);
    replication_start_all(REPLICATION_MODE_SECONDARY, &error_abort);
    run_epoch(&m, &sec, 10, 10);
    checkpoint(&m, &sec);
    /* Everything the primary wrote since must be rolled back. */
    run_epoch(&m, &sec, 40, 0);
    replication_stop_all(true, &error_abort);
    secondary_teardown(&sec);
    check_image_file(img.secondary, "raw", m.secondary,
                     "secondary disk file after failover");
    models_free(&m);
}

/* Stop without failover and start again: replication resumes correctly. */
static void test_secondary_restart(void)
{
    Models m;
    Secondary sec;
    int round;

    models_init(&m, 8);
    secondary_setup(&sec, &m);
    for (round = 0; round < 3; round++) {
        replication_start_all(REPLICATION_MODE_SECONDARY, &error_abort);
        /* A start is a checkpoint: the secondary matches the primary. */
        memcpy(m.secondary, m.primary, DISK_SIZE);
        check_disk(sec.top, m.secondary, "secondary VM's view after start");
        run_epoch(&m, &sec, 15, 15);
        checkpoint(&m, &sec);
        run_epoch(&m, &sec, 15, 15);
        replication_stop_all(false, &error_abort);
        /* Stopping changes nothing the secondary VM sees. */
        check_disk(sec.top, m.secondary, "secondary VM's view after stop");
    }
    replication_start_all(REPLICATION_MODE_SECONDARY, &error_abort);
    memcpy(m.secondary, m.primary, DISK_SIZE);
    run_epoch(&m, &sec, 10, 10);
    replication_stop_all(true, &error_abort);
    secondary_teardown(&sec);
    check_image_file(img.secondary, "raw", m.secondary,
                     "secondary disk file after failover");
    models_free(&m);
}

/*
 * The commit at failover fails (the secondary disk refuses one write): the
 * error is reported, the survivor still sees its data, and failing over
 * again completes the commit.  The secondary disk is blkdebug over the raw
 * image, failing the first write to its last 64 KiB, which only the commit
 * writes: the primary writes below it.
 */
static void test_secondary_failover_commit_fails(void)
{
    Models m;
    Secondary sec;
    QDict *opts;
    Error *err = NULL;
    const int64_t trap = DISK_SIZE - 65536;
    g_autofree char *trap_sector = g_strdup_printf("%" PRId64, trap / 512);
    BlockBackend *blk;

    models_init(&m, 14);
    m.primary_end = trap;
    images_create();
    fill_pattern(m.primary, 0, DISK_SIZE, 0);
    memcpy(m.secondary, m.primary, DISK_SIZE);
    blk = open_file_blk(img.secondary, "raw", NULL);
    write_blk(blk, 0, DISK_SIZE, m.primary);
    blk_unref(blk);

    opts = qdict_new();
    qdict_put_str(opts, "driver", "blkdebug");
    qdict_put_str(opts, "node-name", "secondary-disk");
    qdict_put_str(opts, "image.driver", "raw");
    qdict_put_str(opts, "image.file.driver", "file");
    qdict_put_str(opts, "image.file.filename", img.secondary);
    qdict_put_str(opts, "image.file.locking", "off");
    qdict_put_str(opts, "inject-error.0.event", "pwritev");
    qdict_put_str(opts, "inject-error.0.sector", trap_sector);
    qdict_put_str(opts, "inject-error.0.errno", "5");
    qdict_put_str(opts, "inject-error.0.once", "on");
    qdict_put_str(opts, "inject-error.0.iotype", "write");
    sec.disk = open_blk(opts, &error_abort);
    opts = secondary_opts("secondary-disk", TOP_NAME);
    sec.top = open_blk(opts, &error_abort);
    monitor_add_blk(sec.top, TOP_NAME, &error_abort);

    replication_start_all(REPLICATION_MODE_SECONDARY, &error_abort);
    run_epoch(&m, &sec, 20, 20);
    checkpoint(&m, &sec);
    run_epoch(&m, &sec, 20, 20);
    /* The secondary VM writes the trapped region: the commit must copy it. */
    fill_pattern(m.secondary + trap, trap, 65536, m.next_write_id++);
    write_blk(sec.top, trap, 65536, m.secondary + trap);

    replication_stop_all(true, &err);
    expect_error(err, "committing the active disk into the secondary disk "
                 "failed");
    err = NULL;
    replication_get_error_all(&err);
    expect_error(err, "committing the active disk");
    err = NULL;
    /* Nothing lost: the survivor still reads its disk through the chain. */
    check_disk(sec.top, m.secondary, "survivor's disk after a failed commit");

    replication_stop_all(true, &error_abort);
    replication_get_error_all(&error_abort);
    check_disk(sec.top, m.secondary, "survivor's disk after failover");
    secondary_teardown(&sec);
    check_image_file(img.secondary, "raw", m.secondary,
                     "secondary disk file after failover");
    models_free(&m);
}

/*
 * A secondary VM read and a primary write of the same region race: the read
 * is suspended while it reads the secondary disk (blkdebug breakpoint), the
 * primary write is issued, then the read resumes.  The read must return the
 * old data, whatever the interleaving: the secondary VM sees the last
 * checkpoint, never half of the primary's next epoch.
 */
typedef struct AioResult {
    bool done;
    int ret;
} AioResult;

static void aio_result_cb(void *opaque, int ret)
{
    AioResult *r = opaque;

    r->ret = ret;
    r->done = true;
}

static void poll_until(AioResult *r, gint64 timeout_us)
{
    gint64 deadline = g_get_monotonic_time() + timeout_us;

    while (!r->done && g_get_monotonic_time() < deadline) {
        if (!aio_poll(qemu_get_aio_context(), false)) {
            g_usleep(1000);
        }
    }
}

static void test_secondary_read_races_primary_write(void)
{
    Models m;
    Secondary sec;
    QDict *opts;
    BlockDriverState *disk_bs;
    const int64_t offset = 1024 * 1024, bytes = 65536;
    g_autofree uint8_t *read_buf = g_malloc(bytes);
    g_autofree uint8_t *write_buf = g_malloc(bytes);
    QEMUIOVector read_qiov, write_qiov;
    AioResult read_res = { 0 }, write_res = { 0 };
    gint64 deadline;

    models_init(&m, 16);
    images_create();
    fill_pattern(m.primary, 0, DISK_SIZE, 0);
    memcpy(m.secondary, m.primary, DISK_SIZE);
    sec.disk = open_file_blk(img.secondary, "raw", NULL);
    write_blk(sec.disk, 0, DISK_SIZE, m.primary);
    blk_unref(sec.disk);

    /* raw over blkdebug: raw's reads raise read_aio on blkdebug. */
    opts = qdict_new();
    qdict_put_str(opts, "driver", "raw");
    qdict_put_str(opts, "node-name", "secondary-disk");
    qdict_put_str(opts, "file.driver", "blkdebug");
    qdict_put_str(opts, "file.image.driver", "file");
    qdict_put_str(opts, "file.image.filename", img.secondary);
    qdict_put_str(opts, "file.image.locking", "off");
    sec.disk = open_blk(opts, &error_abort);
    sec.top = open_blk(secondary_opts("secondary-disk", TOP_NAME),
                       &error_abort);
    monitor_add_blk(sec.top, TOP_NAME, &error_abort);
    replication_start_all(REPLICATION_MODE_SECONDARY, &error_abort);

    disk_bs = bdrv_find_node("secondary-disk");
    g_assert(disk_bs);
    g_assert_cmpint(bdrv_debug_breakpoint(disk_bs, "read_aio", "svm-read"),
                    ==, 0);
    qemu_iovec_init_buf(&read_qiov, read_buf, bytes);
    blk_aio_preadv(sec.top, offset, &read_qiov, 0, aio_result_cb, &read_res);
    deadline = g_get_monotonic_time() + 10 * G_USEC_PER_SEC;
    while (!bdrv_debug_is_suspended(disk_bs, "svm-read")) {
        g_assert(!read_res.done);
        g_assert(g_get_monotonic_time() < deadline);
        aio_poll(qemu_get_aio_context(), false);
    }

    /* The primary overwrites the region the secondary VM is reading. */
    fill_pattern(write_buf, offset, bytes, m.next_write_id++);
    qemu_iovec_init_buf(&write_qiov, write_buf, bytes);
    blk_aio_pwritev(sec.disk, offset, &write_qiov, 0, aio_result_cb,
                    &write_res);
    /* Let it go as far as it can (it may have to wait for the read). */
    poll_until(&write_res, 300 * 1000);
    g_test_message("primary write %s before the read resumed",
                   write_res.done ? "completed" : "still waiting");
    g_assert_cmpint(bdrv_debug_resume(disk_bs, "svm-read"), ==, 0);
    poll_until(&read_res, 10 * G_USEC_PER_SEC);
    poll_until(&write_res, 10 * G_USEC_PER_SEC);
    g_assert(read_res.done && write_res.done);
    g_assert_cmpint(read_res.ret, ==, 0);
    g_assert_cmpint(write_res.ret, ==, 0);
    if (memcmp(read_buf, m.secondary + offset, bytes)) {
        g_test_message("the secondary VM read the primary's new data");
        g_assert_not_reached();
    }
    memcpy(m.primary + offset, write_buf, bytes);
    check_disk(sec.top, m.secondary, "secondary VM's view after the race");
    check_disk(sec.disk, m.primary, "secondary disk after the race");

    replication_stop_all(true, &error_abort);
    secondary_teardown(&sec);
    check_image_file(img.secondary, "raw", m.secondary,
                     "secondary disk file after failover");
    models_free(&m);
}

/* ---- state errors ---------------------------------------------------- */

static void test_secondary_state_errors(void)
{
    Models m;
    Secondary sec;
    Error *err = NULL;

    models_init(&m, 9);
    secondary_setup(&sec, &m);

    replication_do_checkpoint_all(&err);
    expect_error(err, "is not replicating");
    err = NULL;
    replication_start_all(REPLICATION_MODE_PRIMARY, &err);
    expect_error(err, "is in secondary mode and cannot be started in "
                 "primary mode");
    err = NULL;
    /* Stop is fine in every state. */
    replication_stop_all(false, &error_abort);
    replication_stop_all(true, &error_abort);

    replication_start_all(REPLICATION_MODE_SECONDARY, &error_abort);
    replication_start_all(REPLICATION_MODE_SECONDARY, &err);
    expect_error(err, "is already replicating");
    err = NULL;
    replication_stop_all(true, &error_abort);
    replication_start_all(REPLICATION_MODE_SECONDARY, &err);
    expect_error(err, "has failed over");
    secondary_teardown(&sec);
    models_free(&m);
}

static void test_secondary_bad_top_id(void)
{
    Models m;
    BlockBackend *disk, *other, *top;
    QDict *opts;
    Error *err = NULL;

    models_init(&m, 10);
    images_create();
    disk = open_file_blk(img.secondary, "raw", "secondary-disk");

    opts = secondary_opts("secondary-disk", "no-such-node");
    top = open_blk(opts, &error_abort);
    replication_start_all(REPLICATION_MODE_SECONDARY, &err);
    expect_error(err, "top-id 'no-such-node' does not name a block device "
                 "or node");
    blk_unref(top);

    /* A node that exists but is not above the replication node. */
    other = open_file_blk(img.primary, "raw", "unrelated");
    opts = secondary_opts("secondary-disk", "unrelated");
    top = open_blk(opts, &error_abort);
    err = NULL;
    replication_start_all(REPLICATION_MODE_SECONDARY, &err);
    expect_error(err, "is not below top-id 'unrelated'");
    blk_unref(top);
    blk_unref(other);
    blk_unref(disk);
    models_free(&m);
}

/* ---- invalid options ------------------------------------------------- */

static void expect_open_error(QDict *opts, const char *needle)
{
    Error *err = NULL;
    BlockBackend *blk = open_blk(opts, &err);

    g_assert(!blk);
    expect_error(err, needle);
}

static void expect_open_error2(QDict *opts, const char *needle1,
                               const char *needle2)
{
    Error *err = NULL;
    BlockBackend *blk = open_blk(opts, &err);

    g_assert(!blk);
    g_assert(err);
    g_assert(strstr(error_get_pretty(err), needle1));
    expect_error(err, needle2);
}

static void test_invalid_options(void)
{
    BlockBackend *disk;
    g_autofree char *short_hidden = image_path("short-hidden.qcow2");
    QDict *opts;

    images_create();
    disk = open_file_blk(img.secondary, "raw", "secondary-disk");

    opts = qdict_new();
    qdict_put_str(opts, "driver", "replication");
    qdict_put_str(opts, "file", "secondary-disk");
    expect_open_error(opts, "the option 'mode' is required");

    opts = qdict_new();
    qdict_put_str(opts, "driver", "replication");
    qdict_put_str(opts, "mode", "tertiary");
    qdict_put_str(opts, "file", "secondary-disk");
    expect_open_error(opts, "invalid mode 'tertiary'");

    opts = qdict_new();
    qdict_put_str(opts, "driver", "replication");
    qdict_put_str(opts, "mode", "primary");
    qdict_put_str(opts, "top-id", "x");
    qdict_put_str(opts, "file", "secondary-disk");
    expect_open_error(opts, "'top-id' is only valid in secondary mode");

    expect_open_error(secondary_opts("secondary-disk", NULL),
                      "'top-id' is required in secondary mode");

    /* Active disk without a hidden disk below it. */
    opts = qdict_new();
    qdict_put_str(opts, "driver", "replication");
    qdict_put_str(opts, "mode", "secondary");
    qdict_put_str(opts, "top-id", TOP_NAME);
    qdict_put_str(opts, "file.driver", "qcow2");
    qdict_put_str(opts, "file.file.filename", img.active);
    qdict_put_null(opts, "file.backing");
    expect_open_error(opts, "must have a backing file (the hidden disk)");

    /* Hidden disk without a secondary disk below it. */
    opts = secondary_opts("secondary-disk", TOP_NAME);
    qdict_put_null(opts, "file.backing.backing");
    expect_open_error(opts, "must have a backing file (the secondary disk)");

    /* Lengths differ. */
    create_image(short_hidden, "qcow2", DISK_SIZE / 2);
    opts = secondary_opts("secondary-disk", TOP_NAME);
    qdict_put_str(opts, "file.backing.file.filename", short_hidden);
    expect_open_error(opts, "must have the same length");

    /* Active or hidden disk in a format that cannot be emptied. */
    opts = secondary_opts("secondary-disk", TOP_NAME);
    qdict_del(opts, "file.backing.driver");
    qdict_del(opts, "file.backing.file.filename");
    qdict_del(opts, "file.backing.file.locking");
    qdict_del(opts, "file.backing.backing");
    qdict_put_str(opts, "file.driver", "raw");
    expect_open_error2(opts, "the active disk",
                       "(format 'raw') cannot be emptied");
    opts = secondary_opts("secondary-disk", TOP_NAME);
    qdict_put_str(opts, "file.backing.driver", "raw");
    qdict_del(opts, "file.backing.backing");
    expect_open_error2(opts, "the hidden disk",
                       "(format 'raw') cannot be emptied");

    blk_unref(disk);
    unlink(short_hidden);
}

/* ---- the primary side ------------------------------------------------ */

/*
 * quorum(children.0 = primary disk, children.1 = replication primary over
 * blkdebug over the "secondary" image), as the documented setup has it with
 * an NBD client in blkdebug's place.  Writes covering @fail_sector fail.
 */
static BlockBackend *primary_open(int64_t fail_sector)
{
    QDict *opts = qdict_new();

    qdict_put_str(opts, "driver", "quorum");
    qdict_put_str(opts, "vote-threshold", "1");
    qdict_put_str(opts, "read-pattern", "fifo");
    qdict_put_str(opts, "children.0.driver", "raw");
    qdict_put_str(opts, "children.0.file.driver", "file");
    qdict_put_str(opts, "children.0.file.filename", img.primary);
    qdict_put_str(opts, "children.0.file.locking", "off");
    qdict_put_str(opts, "children.1.driver", "replication");
    qdict_put_str(opts, "children.1.mode", "primary");
    qdict_put_str(opts, "children.1.node-name", "replication-primary");
    qdict_put_str(opts, "children.1.file.driver", "blkdebug");
    qdict_put_str(opts, "children.1.file.image.driver", "raw");
    qdict_put_str(opts, "children.1.file.image.file.driver", "file");
    qdict_put_str(opts, "children.1.file.image.file.filename",
                  img.secondary);
    qdict_put_str(opts, "children.1.file.image.file.locking", "off");
    if (fail_sector >= 0) {
        g_autofree char *sector = g_strdup_printf("%" PRId64, fail_sector);

        qdict_put_str(opts, "children.1.file.inject-error.0.event",
                      "pwritev");
        qdict_put_str(opts, "children.1.file.inject-error.0.errno", "5");
        qdict_put_str(opts, "children.1.file.inject-error.0.sector", sector);
    }
    return open_blk(opts, &error_abort);
}

static void guest_write(Models *m, BlockBackend *blk, int64_t offset,
                        int64_t bytes)
{
    fill_pattern(m->primary + offset, offset, bytes, m->next_write_id++);
    /* Never an I/O error for the guest, whatever the secondary does. */
    write_blk(blk, offset, bytes, m->primary + offset);
}

static void test_primary_forwards_writes(void)
{
    Models m;
    BlockBackend *guest;
    int i;

    models_init(&m, 11);
    images_create();
    guest = primary_open(-1);
    replication_start_all(REPLICATION_MODE_PRIMARY, &error_abort);
    for (i = 0; i < 40; i++) {
        int64_t offset, bytes;

        random_extent(&m, &offset, &bytes);
        guest_write(&m, guest, offset, bytes);
    }
    check_disk(guest, m.primary, "primary's disk");
    replication_do_checkpoint_all(&error_abort);
    replication_get_error_all(&error_abort);
    replication_stop_all(false, &error_abort);
    blk_unref(guest);
    check_image_file(img.primary, "raw", m.primary, "primary disk file");
    /* Every write reached the secondary's disk as well. */
    check_image_file(img.secondary, "raw", m.primary,
                     "secondary disk file (through the replication node)");
    models_free(&m);
}

static void test_primary_child_error_latched(void)
{
    Models m;
    BlockBackend *guest;
    g_autofree uint8_t *before = g_malloc(DISK_SIZE);
    g_autofree uint8_t *secondary = g_malloc(DISK_SIZE);
    const int64_t fail_offset = 1024 * 1024;
    Error *err = NULL;
    BlockBackend *blk;

    models_init(&m, 12);
    images_create();
    guest = primary_open(fail_offset / 512);
    replication_start_all(REPLICATION_MODE_PRIMARY, &error_abort);

    guest_write(&m, guest, 0, 65536);
    replication_do_checkpoint_all(&error_abort);
    replication_get_error_all(&error_abort);
    memcpy(before, m.primary, DISK_SIZE);

    /* The connection "drops": this write fails below the replication node. */
    guest_write(&m, guest, fail_offset, 8192);
    /* Later writes are not sent to the broken secondary any more. */
    guest_write(&m, guest, 2 * 1024 * 1024, 65536);
    check_disk(guest, m.primary, "primary's disk after the secondary failed");

    replication_get_error_all(&err);
    expect_error(err, "writing to the secondary disk through node "
                 "'replication-primary' failed");
    err = NULL;
    replication_do_checkpoint_all(&err);
    g_assert(err);
    error_free(err);
    err = NULL;

    /* Failover on the primary: it carries on alone, its disk intact. */
    replication_stop_all(true, &error_abort);
    guest_write(&m, guest, 3 * 1024 * 1024, 4096);
    check_disk(guest, m.primary, "primary's disk after failover");

    /* Starting again clears the latched error. */
    replication_start_all(REPLICATION_MODE_PRIMARY, &error_abort);
    replication_get_error_all(&error_abort);
    replication_stop_all(false, &error_abort);
    blk_unref(guest);
    check_image_file(img.primary, "raw", m.primary, "primary disk file");

    /* The secondary image got what was written before the failure only. */
    blk = open_file_blk(img.secondary, "raw", NULL);
    g_assert_cmpint(blk_pread(blk, 0, DISK_SIZE, secondary, 0), ==, 0);
    blk_unref(blk);
    g_assert(!memcmp(secondary, before, 65536));
    g_assert(!memcmp(secondary + 2 * 1024 * 1024,
                     before + 2 * 1024 * 1024, 65536));
    models_free(&m);
}

static char *qemu_nbd_binary;
static pid_t qemu_nbd_pid;      /* running qemu-nbd, killed if we abort */

static void kill_qemu_nbd_on_abort(int signo)
{
    if (qemu_nbd_pid > 0) {
        kill(qemu_nbd_pid, SIGKILL);
    }
}

static bool process_gone(pid_t pid)
{
    return kill(pid, 0) < 0 && errno == ESRCH;
}

/*
 * The documented primary: its replication child is an NBD client, here to a
 * qemu-nbd serving the "secondary" image.  qemu-nbd is killed between two
 * guest writes: the guest sees no error, the error is latched and reported,
 * the primary fails over and its own disk holds every write.
 */
static void test_primary_nbd_connection_dropped(void)
{
    Models m;
    BlockBackend *guest, *blk;
    g_autofree char *sock = image_path("nbd.sock");
    g_autofree char *pid_file = image_path("nbd.pid");
    g_autofree char *pid_text = NULL;
    g_autofree uint8_t *secondary = g_malloc(DISK_SIZE);
    const char *argv[] = {
        qemu_nbd_binary, "--fork", "--persistent", "-f", "raw",
        "-k", sock, "--pid-file", pid_file, img.secondary, NULL
    };
    Error *err = NULL;
    gint status;
    pid_t pid;
    QDict *opts;
    int i;
    gint64 deadline;

    models_init(&m, 15);
    images_create();
    if (!g_file_test(qemu_nbd_binary, G_FILE_TEST_IS_EXECUTABLE)) {
        g_test_message("qemu-nbd not found at %s (set QEMU_NBD)",
                       qemu_nbd_binary);
        g_assert_not_reached();
    }
    /* --fork returns once the server listens. */
    g_assert(g_spawn_sync(NULL, (char **)argv, NULL, G_SPAWN_DEFAULT, NULL,
                          NULL, NULL, NULL, &status, NULL));
    g_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    g_assert(g_file_get_contents(pid_file, &pid_text, NULL, NULL));
    pid = atoi(pid_text);
    g_assert_cmpint(pid, >, 0);
    qemu_nbd_pid = pid;

    opts = qdict_new();
    qdict_put_str(opts, "driver", "quorum");
    qdict_put_str(opts, "vote-threshold", "1");
    qdict_put_str(opts, "read-pattern", "fifo");
    qdict_put_str(opts, "children.0.driver", "raw");
    qdict_put_str(opts, "children.0.file.driver", "file");
    qdict_put_str(opts, "children.0.file.filename", img.primary);
    qdict_put_str(opts, "children.0.file.locking", "off");
    qdict_put_str(opts, "children.1.driver", "replication");
    qdict_put_str(opts, "children.1.mode", "primary");
    qdict_put_str(opts, "children.1.node-name", "replication-nbd");
    qdict_put_str(opts, "children.1.file.driver", "nbd");
    qdict_put_str(opts, "children.1.file.server.type", "unix");
    qdict_put_str(opts, "children.1.file.server.path", sock);
    guest = open_blk(opts, &error_abort);

    replication_start_all(REPLICATION_MODE_PRIMARY, &error_abort);
    for (i = 0; i < 20; i++) {
        int64_t offset, bytes;

        random_extent(&m, &offset, &bytes);
        guest_write(&m, guest, offset, bytes);
    }
    g_assert_cmpint(blk_flush(guest), ==, 0);
    replication_do_checkpoint_all(&error_abort);
    replication_get_error_all(&error_abort);

    /* Up to here the secondary got every write. */
    blk = open_file_blk(img.secondary, "raw", NULL);
    g_assert_cmpint(blk_pread(blk, 0, DISK_SIZE, secondary, 0), ==, 0);
    blk_unref(blk);
    g_assert(!memcmp(secondary, m.primary, DISK_SIZE));

    /* The secondary's host dies. */
    g_assert_cmpint(kill(pid, SIGKILL), ==, 0);
    qemu_nbd_pid = 0;
    deadline = g_get_monotonic_time() + 10 * G_USEC_PER_SEC;
    while (!process_gone(pid)) {
        g_assert(g_get_monotonic_time() < deadline);
        g_usleep(10000);
    }
    for (i = 0; i < 20; i++) {
        int64_t offset, bytes;

        random_extent(&m, &offset, &bytes);
        guest_write(&m, guest, offset, bytes);
    }
    check_disk(guest, m.primary, "primary's disk after the secondary died");
    replication_get_error_all(&err);
    expect_error(err, "writing to the secondary disk through node "
                 "'replication-nbd' failed");
    err = NULL;
    replication_stop_all(true, &error_abort);
    guest_write(&m, guest, 0, 65536);
    check_disk(guest, m.primary, "primary's disk after failover");
    blk_unref(guest);
    check_image_file(img.primary, "raw", m.primary, "primary disk file");
    unlink(sock);
    unlink(pid_file);
    models_free(&m);
}

static void test_primary_refuses_reads(void)
{
    Models m;
    BlockBackend *blk;
    uint8_t buf[512];
    QDict *opts = qdict_new();

    models_init(&m, 13);
    images_create();
    qdict_put_str(opts, "driver", "replication");
    qdict_put_str(opts, "mode", "primary");
    qdict_put_str(opts, "file.driver", "raw");
    qdict_put_str(opts, "file.file.driver", "file");
    qdict_put_str(opts, "file.file.filename", img.secondary);
    blk = open_blk(opts, &error_abort);
    g_assert_cmpint(blk_pread(blk, 0, sizeof(buf), buf, 0), <, 0);
    /* Not started: nothing is forwarded. */
    memset(buf, 0x5a, sizeof(buf));
    g_assert_cmpint(blk_pwrite(blk, 0, sizeof(buf), buf, 0), <, 0);
    replication_start_all(REPLICATION_MODE_PRIMARY, &error_abort);
    g_assert_cmpint(blk_pread(blk, 0, sizeof(buf), buf, 0), <, 0);
    g_assert_cmpint(blk_pwrite(blk, 0, sizeof(buf), buf, 0), ==, 0);
    replication_stop_all(false, &error_abort);
    blk_unref(blk);
    models_free(&m);
}

int main(int argc, char **argv)
{
    struct sigaction sigact;
    int ret;

    module_call_init(MODULE_INIT_QOM);  /* QIOChannel types, for NBD */
    qemu_init_main_loop(&error_fatal);
    bdrv_init();
    g_test_init(&argc, &argv, NULL);
    /* A dead NBD peer must give EPIPE, not kill the test. */
    sigact = (struct sigaction) { .sa_handler = SIG_IGN };
    sigaction(SIGPIPE, &sigact, NULL);
    sigact = (struct sigaction) {
        .sa_handler = kill_qemu_nbd_on_abort,
        .sa_flags = SA_RESETHAND,
    };
    sigaction(SIGABRT, &sigact, NULL);
    qemu_nbd_binary = g_strdup(g_getenv("QEMU_NBD"));
    if (!qemu_nbd_binary) {
        g_autofree char *dir = g_path_get_dirname(argv[0]);

        /* The build tree: tests/unit/colo/ is three levels below. */
        qemu_nbd_binary = g_build_filename(dir, "..", "..", "..", "qemu-nbd",
                                           NULL);
    }

    img.dir = g_dir_make_tmp("colo-replication-XXXXXX", NULL);
    g_assert(img.dir);
    img.secondary = image_path("secondary.raw");
    img.active = image_path("active.qcow2");
    img.hidden = image_path("hidden.qcow2");
    img.primary = image_path("primary.raw");

    g_test_add_func("/replication-fidelity/options/invalid",
                    test_invalid_options);
    g_test_add_data_func("/replication-fidelity/secondary/"
                         "failover-after-epochs",
                         NULL, test_secondary_failover_after_epochs);
    g_test_add_data_func("/replication-fidelity/secondary/"
                         "failover-after-epochs-no-flush",
                         "no-flush", test_secondary_failover_after_epochs);
    g_test_add_func("/replication-fidelity/secondary/"
                    "failover-right-after-checkpoint",
                    test_secondary_failover_right_after_checkpoint);
    g_test_add_func("/replication-fidelity/secondary/"
                    "failover-only-primary-wrote",
                    test_secondary_failover_only_primary_wrote);
    g_test_add_func("/replication-fidelity/secondary/restart",
                    test_secondary_restart);
    g_test_add_func("/replication-fidelity/secondary/failover-commit-fails",
                    test_secondary_failover_commit_fails);
    g_test_add_func("/replication-fidelity/secondary/"
                    "read-races-primary-write",
                    test_secondary_read_races_primary_write);
    g_test_add_func("/replication-fidelity/secondary/state-errors",
                    test_secondary_state_errors);
    g_test_add_func("/replication-fidelity/secondary/bad-top-id",
                    test_secondary_bad_top_id);
    g_test_add_func("/replication-fidelity/primary/forwards-writes",
                    test_primary_forwards_writes);
    g_test_add_func("/replication-fidelity/primary/child-error-latched",
                    test_primary_child_error_latched);
    g_test_add_func("/replication-fidelity/primary/nbd-connection-dropped",
                    test_primary_nbd_connection_dropped);
    g_test_add_func("/replication-fidelity/primary/refuses-reads",
                    test_primary_refuses_reads);

    ret = g_test_run();

    unlink(img.secondary);
    unlink(img.active);
    unlink(img.hidden);
    unlink(img.primary);
    rmdir(img.dir);
    g_free(qemu_nbd_binary);
    return ret;
}
