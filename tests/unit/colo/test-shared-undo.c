/*
 * Data fidelity of the `shared-undo` block driver (block/shared-undo.c)
 *
 * Copyright (c) 2026 The qemu-colo authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * No VM: both sides' nodes live in this process on one shared raw image
 * and one undo image, and the test plays the controller: it calls each
 * node's replication callbacks and carries the epoch from the primary to
 * the secondary as the checkpoint stream would.  A primary "dies" by being
 * closed without another call (close writes nothing); torn header writes
 * and half-done saves are written into the undo image by hand.
 *
 * Three models:
 *
 *   shared   what the primary wrote (the primary VM's view)
 *   ckpt     shared as of the last checkpoint the secondary applied
 *   sec      what the secondary VM must see: ckpt plus its own writes
 *
 * The secondary VM's view is compared with `sec` after every step; after
 * failover the shared image, opened afresh, must equal `sec` block by
 * block.  Then the survivor is re-protected (started as primary, a new
 * secondary on the same images, nothing copied) and it all happens again.
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qobject/qdict.h"
#include "qemu/crc32c.h"
#include "qemu/units.h"
#include "qemu/main-loop.h"
#include "qemu/module.h"
#include "block/block_int.h"
#include "block/replication.h"
#include "block/shared-undo.h"
#include "system/block-backend.h"

#define DISK_SIZE (2 * MiB)
#define GRANULARITY (16 * KiB)
#define NREGIONS (DISK_SIZE / GRANULARITY)
#define BLOCK_SIZE 4096
/* 4096 + 16 * 128 records, rounded up to the granularity. */
#define DATA_OFF GRANULARITY
#define UNDO_SIZE (DATA_OFF + DISK_SIZE)

static char *dir, *shared_path, *undo_path;

static char *path_in_dir(const char *name)
{
    return g_strdup_printf("%s/%s", dir, name);
}

static void create_image(const char *path, const char *fmt, int64_t size)
{
    bdrv_img_create(path, fmt, NULL, NULL, NULL, size, BDRV_O_RDWR, true,
                    &error_abort);
}

static void put_file(QDict *opts, const char *prefix, const char *path)
{
    g_autofree char *drv = g_strdup_printf("%sdriver", prefix);
    g_autofree char *fn = g_strdup_printf("%sfilename", prefix);
    g_autofree char *lock = g_strdup_printf("%slocking", prefix);

    qdict_put_str(opts, drv, "file");
    qdict_put_str(opts, fn, path);
    qdict_put_str(opts, lock, "off");
}

/* Options of a shared-undo node, keys under @prefix. */
static void put_node(QDict *opts, const char *prefix, const char *node_name,
                     const char *mode)
{
    g_autofree char *k_drv = g_strdup_printf("%sdriver", prefix);
    g_autofree char *k_name = g_strdup_printf("%snode-name", prefix);
    g_autofree char *k_mode = g_strdup_printf("%smode", prefix);
    g_autofree char *k_gran = g_strdup_printf("%sgranularity", prefix);
    g_autofree char *k_file = g_strdup_printf("%sfile.", prefix);
    g_autofree char *k_undo = g_strdup_printf("%sundo.", prefix);

    qdict_put_str(opts, k_drv, "shared-undo");
    qdict_put_str(opts, k_name, node_name);
    qdict_put_str(opts, k_mode, mode);
    qdict_put_int(opts, k_gran, GRANULARITY);
    put_file(opts, k_file, shared_path);
    put_file(opts, k_undo, undo_path);
}

static BlockBackend *open_raw(const char *path)
{
    QDict *opts = qdict_new();

    qdict_put_str(opts, "driver", "raw");
    put_file(opts, "file.", path);
    return blk_new_open(NULL, NULL, opts, BDRV_O_RDWR, &error_abort);
}

static ReplicationState *rs_of(const char *node_name)
{
    BlockDriverState *bs = bdrv_find_node(node_name);
    ReplicationState *rs;

    g_assert(bs);
    rs = replication_find(bs);
    g_assert(rs);
    return rs;
}

/* ---- models ----------------------------------------------------------- */

typedef struct Models {
    uint8_t *shared;
    uint8_t *ckpt;
    uint8_t *sec;
    bool dirty[NREGIONS];       /* written by the primary this epoch */
    uint32_t next_id;
    GRand *rand;
} Models;

static void fill_pattern(uint8_t *buf, int64_t offset, int64_t bytes,
                         uint32_t id)
{
    for (int64_t i = 0; i < bytes; i += 16) {
        uint64_t stamp[2] = { offset + i, id | ((uint64_t)0x5ba7ed << 32) };

        memcpy(buf + i, stamp, MIN(16, bytes - i));
    }
}

static void random_extent(Models *m, int64_t *offset, int64_t *bytes)
{
    int64_t sectors = g_rand_int_range(m->rand, 1, 129);  /* to 64 KiB */
    int64_t start = g_rand_int_range(m->rand, 0, DISK_SIZE / 512 - sectors);

    *offset = start * 512;
    *bytes = sectors * 512;
}

static void check_disk(BlockBackend *blk, const uint8_t *model,
                       const char *what)
{
    g_autofree uint8_t *buf = g_malloc(DISK_SIZE);

    g_assert_cmpint(blk_pread(blk, 0, DISK_SIZE, buf, 0), ==, 0);
    for (int64_t b = 0; b < DISK_SIZE / BLOCK_SIZE; b++) {
        if (memcmp(buf + b * BLOCK_SIZE, model + b * BLOCK_SIZE,
                   BLOCK_SIZE)) {
            g_test_message("%s differs from its model at block %" PRId64
                           " (offset %" PRId64 ")", what, b, b * BLOCK_SIZE);
            g_assert_not_reached();
        }
    }
}

static void check_file(const char *path, const uint8_t *model,
                       const char *what)
{
    BlockBackend *blk = open_raw(path);

    check_disk(blk, model, what);
    blk_unref(blk);
}

/* ---- the pair ---------------------------------------------------------- */

typedef struct Pair {
    Models m;
    BlockBackend *primary;      /* the primary VM's disk */
    char *pnode;
    BlockBackend *top;          /* the secondary VM's disk: active overlay */
    char *snode;
    char *active_path;
    int generation;
} Pair;

static void primary_write(Pair *p)
{
    int64_t offset, bytes;

    random_extent(&p->m, &offset, &bytes);
    if (g_rand_int_range(p->m.rand, 0, 8) == 0) {
        memset(p->m.shared + offset, 0, bytes);
        g_assert_cmpint(blk_pwrite_zeroes(p->primary, offset, bytes, 0), ==,
                        0);
    } else {
        fill_pattern(p->m.shared + offset, offset, bytes, p->m.next_id++);
        g_assert_cmpint(blk_pwrite(p->primary, offset, bytes,
                                   p->m.shared + offset, 0), ==, 0);
    }
    for (int64_t r = offset / GRANULARITY;
         r <= (offset + bytes - 1) / GRANULARITY; r++) {
        p->m.dirty[r] = true;
    }
}

static void secondary_write(Pair *p)
{
    int64_t offset, bytes;

    random_extent(&p->m, &offset, &bytes);
    fill_pattern(p->m.sec + offset, offset, bytes, p->m.next_id++);
    g_assert_cmpint(blk_pwrite(p->top, offset, bytes, p->m.sec + offset, 0),
                    ==, 0);
}

/* Open the secondary: active overlay over a shared-undo secondary node. */
static void secondary_open(Pair *p)
{
    QDict *opts = qdict_new();

    p->generation++;
    g_free(p->active_path);
    g_free(p->snode);
    p->active_path = g_strdup_printf("%s/active%d.qcow2", dir,
                                     p->generation);
    p->snode = g_strdup_printf("sec%d", p->generation);
    create_image(p->active_path, "qcow2", DISK_SIZE);
    qdict_put_str(opts, "driver", "qcow2");
    put_file(opts, "file.", p->active_path);
    put_node(opts, "backing.", p->snode, "secondary");
    /* As a guest device: sharing no writes with others. */
    p->top = blk_new_open(NULL, NULL, opts, BDRV_O_RDWR | BDRV_O_NO_SHARE,
                          &error_abort);
}

/* The initial migration: the stream carries the epoch, both start. */
static void protect(Pair *p)
{
    uint64_t epoch;

    secondary_open(p);
    epoch = shared_undo_outgoing_epoch(bdrv_find_node(p->pnode));
    shared_undo_incoming_epoch(bdrv_find_node(p->snode), epoch);
    rs_of(p->snode)->ops->start(rs_of(p->snode), REPLICATION_MODE_SECONDARY,
                                &error_abort);
    rs_of(p->pnode)->ops->start(rs_of(p->pnode), REPLICATION_MODE_PRIMARY,
                                &error_abort);
    memcpy(p->m.ckpt, p->m.shared, DISK_SIZE);
    memcpy(p->m.sec, p->m.shared, DISK_SIZE);
    memset(p->m.dirty, 0, sizeof(p->m.dirty));
}

/* How far a checkpoint gets before the primary dies. */
typedef enum CrashPoint {
    CRASH_NONE,             /* the whole checkpoint */
    CRASH_RUNNING,          /* between checkpoints */
    CRASH_BEFORE_RECEIVED,  /* stopped and flushed, the secondary lacks it */
    CRASH_AFTER_RECEIVED,   /* the secondary applied it, not yet emptied */
    CRASH_TORN_EMPTYING,    /* the emptying's header write torn */
    CRASH_AFTER_EMPTYING,   /* emptied, the guest not yet run */
    CRASH_MID_SAVE_TORN,    /* a save's record written, its data torn */
    CRASH_MID_SAVE_WHOLE,   /* a save complete, the write not yet issued */
    CRASH__MAX,
} CrashPoint;

static const char *const crash_names[] = {
    [CRASH_NONE] = "none",
    [CRASH_RUNNING] = "running",
    [CRASH_BEFORE_RECEIVED] = "before-received",
    [CRASH_AFTER_RECEIVED] = "after-received",
    [CRASH_TORN_EMPTYING] = "torn-emptying",
    [CRASH_AFTER_EMPTYING] = "after-emptying",
    [CRASH_MID_SAVE_TORN] = "mid-save-torn",
    [CRASH_MID_SAVE_WHOLE] = "mid-save-whole",
};

/* A torn header: garbage in the slot the emptying writes. */
static void tear_header(uint64_t epoch)
{
    BlockBackend *undo = open_raw(undo_path);
    uint8_t junk[SHARED_UNDO_SLOT_SIZE];

    memset(junk, 0xa5, sizeof(junk));
    memcpy(junk, SHARED_UNDO_MAGIC, 8);     /* half a header */
    g_assert_cmpint(blk_pwrite(undo, (epoch % 2) * SHARED_UNDO_SLOT_SIZE,
                               sizeof(junk), junk, 0), ==, 0);
    blk_unref(undo);
}

/*
 * The primary saved region @r in @epoch and died before its write: with
 * @torn, the record made it but not all of the data.
 */
static void fake_save(Pair *p, int64_t r, uint64_t epoch, bool torn)
{
    BlockBackend *undo = open_raw(undo_path);
    SharedUndoRecord rec = {
        .epoch = cpu_to_le64(epoch),
        .crc = cpu_to_le32(crc32c(0xffffffff, p->m.shared + r * GRANULARITY,
                                  GRANULARITY)),
        .length = cpu_to_le32(GRANULARITY),
    };
    g_autofree uint8_t *data = g_memdup2(p->m.shared + r * GRANULARITY,
                                         GRANULARITY);

    if (torn) {
        memset(data + GRANULARITY / 2, 0x3c, GRANULARITY / 2);
    }
    g_assert_cmpint(blk_pwrite(undo, DATA_OFF + r * GRANULARITY, GRANULARITY,
                               data, 0), ==, 0);
    g_assert_cmpint(blk_pwrite(undo, SHARED_UNDO_RECORDS_OFFSET +
                               r * SHARED_UNDO_RECORD_SIZE, sizeof(rec),
                               &rec, 0), ==, 0);
    blk_unref(undo);
}

/*
 * One checkpoint, as the controller runs it, cut short at @crash.
 * Returns false when the primary died.
 */
static bool checkpoint(Pair *p, CrashPoint crash)
{
    ReplicationState *prs = rs_of(p->pnode), *srs = rs_of(p->snode);
    uint64_t epoch;

    if (crash == CRASH_RUNNING) {
        return false;
    }
    if (crash == CRASH_MID_SAVE_TORN || crash == CRASH_MID_SAVE_WHOLE) {
        int64_t r;

        for (r = 0; r < NREGIONS && p->m.dirty[r]; r++) {
            /* a region this epoch did not save yet */
        }
        if (r < NREGIONS) {
            fake_save(p, r, shared_undo_outgoing_epoch(
                          bdrv_find_node(p->pnode)) - 1,
                      crash == CRASH_MID_SAVE_TORN);
        }
        return false;
    }

    /* Both stop; the primary's disk checkpoint; the stream. */
    prs->ops->do_checkpoint(prs, &error_abort);
    epoch = shared_undo_outgoing_epoch(bdrv_find_node(p->pnode));
    if (crash == CRASH_BEFORE_RECEIVED) {
        return false;
    }
    /* The secondary has it all: disks, RECEIVED, apply. */
    srs->ops->do_checkpoint(srs, &error_abort);
    shared_undo_incoming_epoch(bdrv_find_node(p->snode), epoch);
    memcpy(p->m.ckpt, p->m.shared, DISK_SIZE);
    memcpy(p->m.sec, p->m.shared, DISK_SIZE);
    if (crash == CRASH_AFTER_RECEIVED) {
        return false;
    }
    if (crash == CRASH_TORN_EMPTYING) {
        tear_header(epoch);
        return false;
    }
    prs->ops->checkpoint_received(prs, &error_abort);
    memset(p->m.dirty, 0, sizeof(p->m.dirty));
    return crash != CRASH_AFTER_EMPTYING;
}

/* The primary dies: closed, no further call. */
static void kill_primary(Pair *p)
{
    blk_unref(p->primary);
    p->primary = NULL;
}

/* Failover to the secondary, then the survivor's disk against the model. */
static void failover(Pair *p, const char *what)
{
    ReplicationState *srs = rs_of(p->snode);

    srs->ops->stop(srs, true, &error_abort);
    check_disk(p->top, p->m.sec, what);
    check_file(shared_path, p->m.sec, what);
    /* The survivor's VM now writes the shared image directly. */
    memcpy(p->m.shared, p->m.sec, DISK_SIZE);
}

/* Some epochs of random writes on both sides. */
static void run_epochs(Pair *p, int epochs)
{
    for (int e = 0; e < epochs; e++) {
        int n = g_rand_int_range(p->m.rand, 0, 12);

        for (int i = 0; i < n; i++) {
            if (g_rand_boolean(p->m.rand)) {
                primary_write(p);
            } else {
                secondary_write(p);
            }
        }
        check_disk(p->top, p->m.sec, "secondary view");
        check_disk(p->primary, p->m.shared, "primary view");
        g_assert_true(checkpoint(p, CRASH_NONE));
        check_disk(p->top, p->m.sec, "secondary view after checkpoint");
    }
}

static void pair_init(Pair *p, uint32_t seed)
{
    QDict *opts = qdict_new();

    *p = (Pair) { 0 };
    p->m.shared = g_malloc0(DISK_SIZE);
    p->m.ckpt = g_malloc0(DISK_SIZE);
    p->m.sec = g_malloc0(DISK_SIZE);
    p->m.next_id = 1;
    p->m.rand = g_rand_new_with_seed(seed);
    create_image(shared_path, "raw", DISK_SIZE);
    create_image(undo_path, "raw", UNDO_SIZE);
    p->pnode = g_strdup("prim");
    put_node(opts, "", p->pnode, "primary");
    p->primary = blk_new_open(NULL, NULL, opts, BDRV_O_RDWR | BDRV_O_NO_SHARE,
                              &error_abort);
    /* Before protection the primary runs alone: nothing saved. */
    for (int i = 0; i < 20; i++) {
        primary_write(p);
    }
}

static void pair_free(Pair *p)
{
    blk_unref(p->primary);
    blk_unref(p->top);
    g_free(p->m.shared);
    g_free(p->m.ckpt);
    g_free(p->m.sec);
    g_rand_free(p->m.rand);
    g_free(p->pnode);
    g_free(p->snode);
    g_free(p->active_path);
}

/*
 * Random epochs, a crash at @data, failover; the survivor re-protected,
 * random epochs, a crash at the same point, failover again.
 */
static void test_crash_point(const void *data)
{
    CrashPoint crash = GPOINTER_TO_INT(data);

    for (uint32_t seed = 1; seed <= 4; seed++) {
        Pair p;

        pair_init(&p, seed * 100 + crash);
        protect(&p);
        for (int gen = 0; gen < 2; gen++) {
            g_autofree char *what = g_strdup_printf(
                "shared image after failover at %s (seed %u, generation %d)",
                crash_names[crash], seed, gen);

            run_epochs(&p, g_rand_int_range(p.m.rand, 1, 5));
            for (int i = 0; i < 8; i++) {
                primary_write(&p);
                secondary_write(&p);
            }
            check_disk(p.top, p.m.sec, "secondary view before the crash");
            g_assert_false(checkpoint(&p, crash));
            kill_primary(&p);
            failover(&p, what);

            /* Re-protect: the survivor is the primary, nothing copied. */
            p.primary = p.top;
            p.top = NULL;
            g_free(p.pnode);
            p.pnode = p.snode;
            p.snode = NULL;
            protect(&p);
        }
        pair_free(&p);
    }
}

/* ---- refusals ----------------------------------------------------------- */

static void expect_error(Error **errp, const char *needle)
{
    g_assert(*errp);
    if (!strstr(error_get_pretty(*errp), needle)) {
        g_test_message("error '%s' lacks '%s'", error_get_pretty(*errp),
                       needle);
        g_assert_not_reached();
    }
    error_free(*errp);
    *errp = NULL;
}

static void expect_open_error(QDict *opts, const char *needle)
{
    Error *err = NULL;
    BlockBackend *blk = blk_new_open(NULL, NULL, opts, BDRV_O_RDWR, &err);

    g_assert_null(blk);
    expect_error(&err, needle);
}

static void test_options(void)
{
    g_autofree char *qcow2_path = path_in_dir("shared.qcow2");
    QDict *opts;

    create_image(shared_path, "raw", DISK_SIZE);
    create_image(undo_path, "raw", UNDO_SIZE);
    create_image(qcow2_path, "qcow2", DISK_SIZE);

    opts = qdict_new();
    put_node(opts, "", "n", "primary");
    qdict_del(opts, "mode");
    expect_open_error(opts, "the option 'mode' is required");

    opts = qdict_new();
    put_node(opts, "", "n", "tertiary");
    expect_open_error(opts, "invalid mode 'tertiary'");

    opts = qdict_new();
    put_node(opts, "", "n", "primary");
    qdict_put_int(opts, "granularity", 3 * 4096);
    expect_open_error(opts, "is not a power of two");

    opts = qdict_new();
    put_node(opts, "", "n", "primary");
    qdict_del(opts, "node-name");
    expect_open_error(opts, "needs a node-name");

    opts = qdict_new();
    put_node(opts, "", "n", "primary");
    qdict_del(opts, "undo.driver");
    qdict_del(opts, "undo.filename");
    qdict_del(opts, "undo.locking");
    expect_open_error(opts, "undo");

    opts = qdict_new();
    put_node(opts, "", "n", "primary");
    qdict_put_str(opts, "file.driver", "qcow2");
    qdict_del(opts, "file.filename");
    qdict_del(opts, "file.locking");
    put_file(opts, "file.file.", qcow2_path);
    expect_open_error(opts, "must be raw");

    create_image(undo_path, "raw", UNDO_SIZE - 512);
    opts = qdict_new();
    put_node(opts, "", "n", "primary");
    expect_open_error(opts, "it needs at least 2113536 bytes");
    g_assert_null(bdrv_find_node("n"));
}

/* The secondary never writes the shared image before failover. */
static void test_secondary_refuses(void)
{
    g_autofree uint8_t *buf = g_malloc0(4096);
    ReplicationState *rs;
    BlockBackend *blk;
    Error *err = NULL;
    QDict *opts = qdict_new();

    create_image(shared_path, "raw", DISK_SIZE);
    create_image(undo_path, "raw", UNDO_SIZE);
    put_node(opts, "", "alone", "secondary");
    blk = blk_new_open(NULL, NULL, opts, BDRV_O_RDWR, &error_abort);
    g_assert_cmpint(blk_pwrite(blk, 0, 4096, buf, 0), ==, -EPERM);

    rs = rs_of("alone");
    rs->ops->start(rs, REPLICATION_MODE_SECONDARY, &err);
    expect_error(&err, "has no checkpoint epoch");
    shared_undo_incoming_epoch(bdrv_find_node("alone"), 1);
    rs->ops->start(rs, REPLICATION_MODE_SECONDARY, &err);
    expect_error(&err, "must be the backing of the secondary's active");
    rs->ops->start(rs, REPLICATION_MODE_PRIMARY, &err);
    expect_error(&err, "cannot be started as primary");
    blk_unref(blk);
}

/*
 * A primary that went on alone (it stopped replicating) moved the epoch
 * out of reach: the secondary's failover refuses and leaves the image.
 */
static void test_stale_secondary_refused(void)
{
    ReplicationState *prs, *srs;
    Error *err = NULL;
    Pair p;

    pair_init(&p, 7);
    protect(&p);
    run_epochs(&p, 2);
    primary_write(&p);
    prs = rs_of(p.pnode);
    prs->ops->stop(prs, true, &error_abort);
    primary_write(&p);              /* unsaved from now on */
    check_disk(p.primary, p.m.shared, "primary alone");
    kill_primary(&p);

    srs = rs_of(p.snode);
    srs->ops->stop(srs, true, &err);
    expect_error(&err, "the primary ran on without this secondary?");
    check_file(shared_path, p.m.shared, "shared image after the refusal");
    /* The secondary's view is no checkpoint's: its guest gets errors. */
    g_assert_cmpint(blk_pread(p.top, 0, DISK_SIZE, p.m.sec, 0), ==, -EIO);
    pair_free(&p);
}

/*
 * The undo image fails a save: the guest's write fails and never reaches
 * the shared image, the error is latched for the controller, and nothing
 * is saved (so nothing written) after it.
 */
static void test_save_error(void)
{
    g_autofree uint8_t *buf = g_malloc(2 * GRANULARITY);
    g_autofree uint8_t *model = g_malloc(DISK_SIZE);
    g_autofree char *sector = g_strdup_printf("%d", (int)(DATA_OFF / 512));
    QDict *opts = qdict_new();
    ReplicationState *rs;
    BlockBackend *blk;
    Error *err = NULL;

    create_image(shared_path, "raw", DISK_SIZE);
    create_image(undo_path, "raw", UNDO_SIZE);
    put_node(opts, "", "failing", "primary");
    qdict_del(opts, "undo.driver");
    qdict_del(opts, "undo.filename");
    qdict_del(opts, "undo.locking");
    qdict_put_str(opts, "undo.driver", "blkdebug");
    qdict_put_str(opts, "undo.inject-error.0.event", "pwritev");
    qdict_put_str(opts, "undo.inject-error.0.sector", sector);
    qdict_put_str(opts, "undo.inject-error.0.errno", "5");
    put_file(opts, "undo.image.", undo_path);
    blk = blk_new_open(NULL, NULL, opts, BDRV_O_RDWR | BDRV_O_NO_SHARE,
                       &error_abort);
    memset(model, 0x11, DISK_SIZE);
    g_assert_cmpint(blk_pwrite(blk, 0, DISK_SIZE, model, 0), ==, 0);

    rs = rs_of("failing");
    rs->ops->start(rs, REPLICATION_MODE_PRIMARY, &error_abort);
    memset(buf, 0x22, 2 * GRANULARITY);
    /* Region 0's data lies where the undo image fails. */
    g_assert_cmpint(blk_pwrite(blk, 512, 4096, buf, 0), ==, -EIO);
    rs->ops->get_error(rs, &err);
    expect_error(&err, "saving the old content at offset 512 of node "
                 "'failing' into the undo image failed");
    rs->ops->do_checkpoint(rs, &err);
    expect_error(&err, "into the undo image failed");
    /* Another region: not saved any more, so not written either. */
    g_assert_cmpint(blk_pwrite(blk, 5 * GRANULARITY, 4096, buf, 0), ==,
                    -EIO);
    check_file(shared_path, model, "shared image after failed saves");
    rs->ops->stop(rs, true, &error_abort);
    blk_unref(blk);
}

int main(int argc, char **argv)
{
    int ret;

    qemu_init_main_loop(&error_fatal);
    bdrv_init();
    g_test_init(&argc, &argv, NULL);

    dir = g_dir_make_tmp("colo-shared-undo-XXXXXX", NULL);
    g_assert(dir);
    shared_path = path_in_dir("shared.raw");
    undo_path = path_in_dir("undo.raw");

    g_test_add_func("/shared-undo/options", test_options);
    g_test_add_func("/shared-undo/secondary-refuses", test_secondary_refuses);
    g_test_add_func("/shared-undo/stale-secondary-refused",
                    test_stale_secondary_refused);
    g_test_add_func("/shared-undo/save-error", test_save_error);
    for (int c = CRASH_RUNNING; c < CRASH__MAX; c++) {
        g_autofree char *name = g_strdup_printf("/shared-undo/crash/%s",
                                                crash_names[c]);

        g_test_add_data_func(name, GINT_TO_POINTER(c), test_crash_point);
    }

    ret = g_test_run();

    g_autofree char *cmd = g_strdup_printf("rm -rf '%s'", dir);
    g_assert_cmpint(system(cmd), ==, 0);
    return ret;
}
