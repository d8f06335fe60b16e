/*
 * Benchmark of the `replication` block driver (not a test: prints figures)
 *
 * Copyright (c) 2026 The qemu-colo authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * 1. Checkpoint cost of the disk part on the secondary: with N MiB written
 *    by the primary (copied into the hidden disk by copy-before-write) and
 *    N MiB written by the secondary VM (in the active disk) since the last
 *    checkpoint, how long replication_do_checkpoint_all() takes (emptying
 *    active and hidden, re-arming copy-before-write).
 * 2. Block-layer write throughput on the primary, sequential 4 KiB and
 *    64 KiB writes: a raw image alone, and the documented quorum of that
 *    image plus a replication node in primary mode, over a second raw image
 *    and over an NBD client to qemu-nbd on this host (-1: no qemu-nbd).
 *    No guest: this is the block layer's cost.
 *
 * Images live in $TMPDIR (default /tmp); run by bench/replication.sh.
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qobject/qdict.h"
#include "qemu/main-loop.h"
#include "qemu/module.h"
#include "qobject/qstring.h"
#include "block/block_int.h"
#include "block/replication.h"
#include "system/block-backend.h"

#define MiB (1024 * 1024)
#define CHAIN_SIZE (256 * MiB)
#define WRITE_CHUNK MiB
#define ROUNDS 3

static char *tmp_dir;

static char *image(const char *name)
{
    return g_strdup_printf("%s/%s", tmp_dir, name);
}

static BlockBackend *open_blk(QDict *opts)
{
    return blk_new_open(NULL, NULL, opts, BDRV_O_RDWR, &error_abort);
}

static void put_file(QDict *opts, const char *prefix, const char *fmt,
                     const char *path)
{
    g_autofree char *drv = g_strdup_printf("%sdriver", prefix);
    g_autofree char *fdrv = g_strdup_printf("%sfile.driver", prefix);
    g_autofree char *fname = g_strdup_printf("%sfile.filename", prefix);
    g_autofree char *flock = g_strdup_printf("%sfile.locking", prefix);

    qdict_put_str(opts, drv, fmt);
    qdict_put_str(opts, fdrv, "file");
    qdict_put_str(opts, fname, path);
    qdict_put_str(opts, flock, "off");
}

static double now_ms(void)
{
    return g_get_monotonic_time() / 1000.0;
}

static void write_range(BlockBackend *blk, int64_t offset, int64_t bytes,
                        uint8_t fill)
{
    g_autofree uint8_t *buf = g_malloc(WRITE_CHUNK);
    int64_t done;

    memset(buf, fill, WRITE_CHUNK);
    for (done = 0; done < bytes; done += WRITE_CHUNK) {
        int ret = blk_pwrite(blk, offset + done, MIN(WRITE_CHUNK, bytes - done),
                             buf, 0);
        g_assert(ret == 0);
    }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

static void bench_checkpoint(bool no_flush)
{
    g_autofree char *secondary = image("bench-secondary.raw");
    g_autofree char *active = image("bench-active.qcow2");
    g_autofree char *hidden = image("bench-hidden.qcow2");
    static const int sizes_mib[] = { 1, 10, 100 };
    BlockBackend *disk, *top;
    QDict *opts;
    size_t i;
    int round;

    bdrv_img_create(secondary, "raw", NULL, NULL, NULL, CHAIN_SIZE,
                    BDRV_O_RDWR, true, &error_abort);
    bdrv_img_create(active, "qcow2", NULL, NULL, NULL, CHAIN_SIZE,
                    BDRV_O_RDWR, true, &error_abort);
    bdrv_img_create(hidden, "qcow2", NULL, NULL, NULL, CHAIN_SIZE,
                    BDRV_O_RDWR, true, &error_abort);

    opts = qdict_new();
    put_file(opts, "", "raw", secondary);
    qdict_put_str(opts, "node-name", "bench-secondary");
    disk = open_blk(opts);
    /* Data everywhere, as a real secondary disk has. */
    write_range(disk, 0, CHAIN_SIZE, 0x11);

    opts = qdict_new();
    qdict_put_str(opts, "driver", "replication");
    qdict_put_str(opts, "mode", "secondary");
    qdict_put_str(opts, "top-id", "bench-top");
    put_file(opts, "file.", "qcow2", active);
    put_file(opts, "file.backing.", "qcow2", hidden);
    if (no_flush) {
        /* Throwaway overlays: emptying them need not sync to the disk. */
        qdict_put_str(opts, "file.cache.no-flush", "on");
        qdict_put_str(opts, "file.backing.cache.no-flush", "on");
    }
    qdict_put_str(opts, "file.backing.backing", "bench-secondary");
    top = open_blk(opts);
    monitor_add_blk(top, "bench-top", &error_abort);

    replication_start_all(REPLICATION_MODE_SECONDARY, &error_abort);
    printf("== secondary checkpoint cost (empty active + hidden), "
           "qcow2 overlays%s, %d rounds\n",
           no_flush ? " with cache.no-flush=on" : "", ROUNDS);
    printf("%-34s %10s %10s\n", "written since last checkpoint", "min ms",
           "median ms");
    for (i = 0; i < ARRAY_SIZE(sizes_mib); i++) {
        int64_t bytes = (int64_t)sizes_mib[i] * MiB;
        double ms[ROUNDS];

        for (round = 0; round < ROUNDS; round++) {
            double t0;

            /* Primary writes (saved into hidden), then the SVM's (active). */
            write_range(disk, 0, bytes, 0x22 + round);
            write_range(top, CHAIN_SIZE / 2, bytes, 0x33 + round);
            t0 = now_ms();
            replication_do_checkpoint_all(&error_abort);
            ms[round] = now_ms() - t0;
        }
        qsort(ms, ROUNDS, sizeof(ms[0]), cmp_double);
        printf("%4d MiB primary + %4d MiB secondary %10.2f %10.2f\n",
               sizes_mib[i], sizes_mib[i], ms[0], ms[ROUNDS / 2]);
    }
    replication_stop_all(false, &error_abort);

    monitor_remove_blk(top);
    blk_unref(top);
    blk_unref(disk);
    unlink(secondary);
    unlink(active);
    unlink(hidden);
}

static double write_throughput(BlockBackend *blk, int64_t block, int64_t total)
{
    g_autofree uint8_t *buf = g_malloc(block);
    int64_t offset;
    double t0;

    memset(buf, 0x5a, block);
    t0 = now_ms();
    for (offset = 0; offset < total; offset += block) {
        int ret = blk_pwrite(blk, offset, block, buf, 0);

        g_assert(ret == 0);
    }
    g_assert(blk_flush(blk) == 0);
    return (total / (double)MiB) / ((now_ms() - t0) / 1000.0);
}

static BlockBackend *open_replicated(const char *local, QDict *child_file)
{
    QDict *opts = qdict_new();
    const QDictEntry *e;

    qdict_put_str(opts, "driver", "quorum");
    qdict_put_str(opts, "vote-threshold", "1");
    qdict_put_str(opts, "read-pattern", "fifo");
    put_file(opts, "children.0.", "raw", local);
    qdict_put_str(opts, "children.1.driver", "replication");
    qdict_put_str(opts, "children.1.mode", "primary");
    for (e = qdict_first(child_file); e; e = qdict_next(child_file, e)) {
        g_autofree char *key = g_strdup_printf("children.1.file.%s", e->key);

        qdict_put_str(opts, key, qstring_get_str(qobject_to(QString,
                                                            e->value)));
    }
    qobject_unref(child_file);
    return open_blk(opts);
}

/* Start qemu-nbd on @image (unix socket @sock); returns its pid or -1. */
static pid_t start_qemu_nbd(const char *binary, const char *image,
                            const char *sock, const char *pid_file)
{
    const char *argv[] = {
        binary, "--fork", "-f", "raw", "--cache=writeback", "-k", sock,
        "--pid-file", pid_file, image, NULL
    };
    g_autofree char *pid_text = NULL;
    gint status;

    if (!g_file_test(binary, G_FILE_TEST_IS_EXECUTABLE) ||
        !g_spawn_sync(NULL, (char **)argv, NULL, G_SPAWN_DEFAULT, NULL, NULL,
                      NULL, NULL, &status, NULL) ||
        !WIFEXITED(status) || WEXITSTATUS(status) != 0 ||
        !g_file_get_contents(pid_file, &pid_text, NULL, NULL)) {
        return -1;
    }
    return atoi(pid_text);
}

/* Quorum + replication over an NBD client to qemu-nbd; -1 if unavailable. */
static double primary_nbd_throughput(const char *qemu_nbd, const char *local,
                                     const char *remote, int64_t block,
                                     int64_t total)
{
    g_autofree char *sock = image("bench-nbd.sock");
    g_autofree char *pid_file = image("bench-nbd.pid");
    BlockBackend *blk;
    QDict *file;
    double result;
    pid_t pid;

    pid = start_qemu_nbd(qemu_nbd, remote, sock, pid_file);
    if (pid <= 0) {
        return -1;
    }
    file = qdict_new();
    qdict_put_str(file, "driver", "nbd");
    qdict_put_str(file, "server.type", "unix");
    qdict_put_str(file, "server.path", sock);
    blk = open_replicated(local, file);
    replication_start_all(REPLICATION_MODE_PRIMARY, &error_abort);
    result = write_throughput(blk, block, total);
    replication_get_error_all(&error_abort);
    replication_stop_all(false, &error_abort);
    blk_unref(blk);
    /* qemu-nbd exits when its only client disconnects (no --persistent). */
    kill(pid, SIGTERM);
    unlink(pid_file);
    return result;
}

static void bench_primary_throughput(const char *qemu_nbd)
{
    g_autofree char *local = image("bench-primary.raw");
    g_autofree char *remote = image("bench-remote.raw");
    static const int64_t blocks[] = { 4096, 65536 };
    const int64_t total = 64 * MiB;
    size_t i;

    bdrv_img_create(local, "raw", NULL, NULL, NULL, total, BDRV_O_RDWR, true,
                    &error_abort);
    bdrv_img_create(remote, "raw", NULL, NULL, NULL, total, BDRV_O_RDWR,
                    true, &error_abort);

    printf("== primary sequential write throughput, block layer only, "
           "%" PRId64 " MiB, flush at end\n", total / MiB);
    printf("%-8s %16s %20s %20s\n", "block", "plain raw MiB/s",
           "+ replication(raw)", "+ replication(NBD)");
    for (i = 0; i < ARRAY_SIZE(blocks); i++) {
        BlockBackend *blk;
        QDict *opts;
        double plain, replicated, over_nbd;

        opts = qdict_new();
        put_file(opts, "", "raw", local);
        blk = open_blk(opts);
        plain = write_throughput(blk, blocks[i], total);
        blk_unref(blk);

        opts = qdict_new();
        qdict_put_str(opts, "driver", "raw");
        qdict_put_str(opts, "file.driver", "file");
        qdict_put_str(opts, "file.filename", remote);
        qdict_put_str(opts, "file.locking", "off");
        blk = open_replicated(local, opts);
        replication_start_all(REPLICATION_MODE_PRIMARY, &error_abort);
        replicated = write_throughput(blk, blocks[i], total);
        replication_get_error_all(&error_abort);
        replication_stop_all(false, &error_abort);
        blk_unref(blk);

        over_nbd = primary_nbd_throughput(qemu_nbd, local, remote,
                                          blocks[i], total);
        printf("%-8" PRId64 " %16.1f %20.1f %20.1f\n", blocks[i], plain,
               replicated, over_nbd);
    }
    unlink(local);
    unlink(remote);
}

int main(int argc, char **argv)
{
    g_autofree char *dir = g_path_get_dirname(argv[0]);
    g_autofree char *qemu_nbd = g_strdup(g_getenv("QEMU_NBD"));
    struct sigaction sigact = { .sa_handler = SIG_IGN };

    if (!qemu_nbd) {
        /* The build tree: tests/unit/colo/ is three levels below. */
        qemu_nbd = g_build_filename(dir, "..", "..", "..", "qemu-nbd", NULL);
    }
    sigaction(SIGPIPE, &sigact, NULL);
    module_call_init(MODULE_INIT_QOM);  /* QIOChannel types, for NBD */
    qemu_init_main_loop(&error_fatal);
    bdrv_init();
    tmp_dir = g_dir_make_tmp("colo-bench-XXXXXX", NULL);
    g_assert(tmp_dir);

    bench_checkpoint(false);
    bench_checkpoint(true);
    bench_primary_throughput(qemu_nbd);

    rmdir(tmp_dir);
    g_free(tmp_dir);
    return 0;
}
