/*
 * The `shared-undo` block driver: COLO on one shared disk image
 *
 * Copyright (c) 2026 The qemu-colo authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * Both hosts open the same raw image (`file`) and the same raw undo image
 * (`undo`, layout in include/block/shared-undo.h).  The design and why it
 * holds at every crash point: docs/system/qemu-colo.rst, "Shared storage".
 *
 * Primary role: before a write changes a region for the first time in the
 * current epoch, the region's old content and a record (epoch, crc) go into
 * the undo image and are flushed; then the write proceeds.  The epoch
 * advances when the secondary has received a checkpoint: one header write.
 *
 * Secondary role: the node is the backing of the secondary VM's active
 * overlay and presents the shared image as of the epoch of the last
 * checkpoint applied (regions saved in that epoch are read from the undo
 * image).  It never writes the shared image and takes no write permission on
 * it until failover, which copies the saved regions back, commits the active
 * overlay into this node and makes it a plain pass-through (role plain).
 * A plain node may be started as primary (re-protection).
 *
 * Locking: the ReplicationOps callbacks, open and close run with the BQL;
 * role and epoch change only in drained sections, so request coroutines see
 * them stable.  save_lock serialises the saving of regions; the saved bitmap
 * is only touched in the node's AioContext or drained.
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qemu/bitmap.h"
#include "qemu/units.h"
#include "qemu/crc32c.h"
#include "qemu/cutils.h"
#include "qemu/module.h"
#include "qemu/option.h"
#include "qemu/coroutine.h"
#include "block/block_int.h"
#include "block/blockjob.h"
#include "block/replication.h"
#include "block/shared-undo.h"
#include "system/block-backend.h"
#include "trace.h"

typedef enum SharedUndoRole {
    SHARED_UNDO_PRIMARY,
    SHARED_UNDO_SECONDARY,
    SHARED_UNDO_PLAIN,          /* failed over: pass-through */
} SharedUndoRole;

static const char *const shared_undo_role_names[] = {
    [SHARED_UNDO_PRIMARY] = "primary",
    [SHARED_UNDO_SECONDARY] = "secondary",
    [SHARED_UNDO_PLAIN] = "plain",
};

typedef struct BDRVSharedUndoState {
    BlockDriverState *bs;
    ReplicationState *rs;
    BdrvChild *undo;
    SharedUndoRole role;
    bool running;               /* started, not stopped */
    bool failover_write;        /* failover: write permission on file */

    uint32_t granularity;
    int64_t disk_size;
    uint64_t nregions;
    int64_t data_off;

    /*
     * Primary: the undo image's epoch (the header's, once written).
     * Secondary: the epoch of the last checkpoint applied (0: none yet).
     */
    uint64_t epoch;
    uint64_t view_epoch;

    /* Primary: regions saved in this epoch; save_lock serialises saving. */
    unsigned long *saved;
    CoMutex save_lock;
    Error *save_error;          /* first saving failure since start */

    /* Secondary failover refused: the view is not the checkpoint's. */
    bool mismatched;

    /* Secondary failover: the commit of the active overlay into us. */
    bool commit_running;
    int commit_ret;

    /* The epoch's place in the checkpoint stream (system emulators). */
    void *stream;
} BDRVSharedUndoState;

#define SHARED_UNDO_OPT_MODE "mode"
#define SHARED_UNDO_OPT_GRANULARITY "granularity"
#define SHARED_UNDO_DEFAULT_GRANULARITY (64 * KiB)

static QemuOptsList shared_undo_runtime_opts = {
    .name = "shared-undo",
    .head = QTAILQ_HEAD_INITIALIZER(shared_undo_runtime_opts.head),
    .desc = {
        {
            .name = SHARED_UNDO_OPT_MODE,
            .type = QEMU_OPT_STRING,
            .help = "role at open: primary or secondary",
        },
        {
            .name = SHARED_UNDO_OPT_GRANULARITY,
            .type = QEMU_OPT_SIZE,
            .help = "region size in bytes (power of 2, 4 KiB to 16 MiB)",
        },
        { /* end of list */ }
    },
};

static const char *shared_undo_name(BDRVSharedUndoState *s)
{
    return bdrv_get_device_or_node_name(s->bs);
}

static void shared_undo_set_role(BDRVSharedUndoState *s, SharedUndoRole role,
                                 bool running)
{
    trace_shared_undo_role(s->bs, shared_undo_role_names[s->role],
                           shared_undo_role_names[role], running);
    s->role = role;
    s->running = running;
}

/* ---- undo image header and records -------------------------------- */

static uint32_t shared_undo_header_crc(const SharedUndoHeader *h)
{
    return crc32c(0xffffffff, (const uint8_t *)h,
                  offsetof(SharedUndoHeader, crc));
}

/*
 * Read both header slots; *epoch is the newest valid one, 0 if none is
 * valid (a fresh undo image).  A valid header of another geometry is an
 * error only if @geometry_errp is set.
 */
static int GRAPH_RDLOCK
shared_undo_read_header(BDRVSharedUndoState *s, uint64_t *epoch,
                        bool check_geometry, Error **errp)
{
    uint8_t buf[2 * SHARED_UNDO_SLOT_SIZE];
    int ret;

    *epoch = 0;
    ret = bdrv_pread(s->undo, 0, sizeof(buf), buf, 0);
    if (ret < 0) {
        error_setg_errno(errp, -ret, "shared-undo: cannot read the header "
                         "of the undo image");
        return ret;
    }
    for (int slot = 0; slot < 2; slot++) {
        SharedUndoHeader h;

        memcpy(&h, buf + slot * SHARED_UNDO_SLOT_SIZE, sizeof(h));
        if (memcmp(h.magic, SHARED_UNDO_MAGIC, sizeof(h.magic)) ||
            le32_to_cpu(h.crc) != shared_undo_header_crc(&h) ||
            le64_to_cpu(h.epoch) % 2 != slot) {
            continue;       /* never written, or torn */
        }
        if (check_geometry &&
            (le32_to_cpu(h.version) != SHARED_UNDO_VERSION ||
             le32_to_cpu(h.granularity) != s->granularity ||
             le64_to_cpu(h.disk_size) != s->disk_size)) {
            error_setg(errp, "shared-undo: the undo image was written for "
                       "another disk (version %u, granularity %u, disk size "
                       "%" PRIu64 "; this node: version %u, granularity %u, "
                       "disk size %" PRId64 ")",
                       le32_to_cpu(h.version), le32_to_cpu(h.granularity),
                       le64_to_cpu(h.disk_size), SHARED_UNDO_VERSION,
                       s->granularity, s->disk_size);
            return -EINVAL;
        }
        *epoch = MAX(*epoch, le64_to_cpu(h.epoch));
    }
    return 0;
}

/*
 * Make @epoch the undo image's epoch: one sector into the slot that does
 * not hold the current epoch, then, with @flush, a flush.  A torn write
 * leaves the other slot valid.  This is what empties the undo image.
 * Without @flush the next save's flush makes it durable (same image),
 * before the shared image changes in the new epoch.
 */
static int GRAPH_RDLOCK
shared_undo_write_header(BDRVSharedUndoState *s, uint64_t epoch,
                         bool flush, Error **errp)
{
    uint8_t buf[SHARED_UNDO_SLOT_SIZE] = { 0 };
    SharedUndoHeader h = { .magic = SHARED_UNDO_MAGIC };
    int ret;

    h.version = cpu_to_le32(SHARED_UNDO_VERSION);
    h.granularity = cpu_to_le32(s->granularity);
    h.disk_size = cpu_to_le64(s->disk_size);
    h.epoch = cpu_to_le64(epoch);
    h.crc = cpu_to_le32(shared_undo_header_crc(&h));
    memcpy(buf, &h, sizeof(h));

    trace_shared_undo_epoch(s->bs, epoch);
    ret = bdrv_pwrite(s->undo, (epoch % 2) * SHARED_UNDO_SLOT_SIZE,
                      sizeof(buf), buf, 0);
    if (ret >= 0 && flush) {
        ret = bdrv_flush(s->undo->bs);
    }
    if (ret < 0) {
        error_setg_errno(errp, -ret, "shared-undo: cannot write epoch %"
                         PRIu64 " into the undo image of node '%s'", epoch,
                         shared_undo_name(s));
    }
    return ret;
}

static int64_t shared_undo_record_offset(uint64_t region)
{
    return SHARED_UNDO_RECORDS_OFFSET + region * SHARED_UNDO_RECORD_SIZE;
}

static uint32_t shared_undo_region_len(BDRVSharedUndoState *s,
                                       uint64_t region)
{
    return MIN(s->granularity, s->disk_size - region * s->granularity);
}

/* ---- primary: copy before the first write of an epoch ------------- */

static int coroutine_fn GRAPH_RDLOCK
shared_undo_save_region(BDRVSharedUndoState *s, uint64_t region,
                        uint8_t *buf)
{
    int64_t start = region * s->granularity;
    uint32_t len = shared_undo_region_len(s, region);
    SharedUndoRecord rec;
    int ret;

    ret = bdrv_co_pread(s->bs->file, start, len, buf, 0);
    if (ret < 0) {
        return ret;
    }
    ret = bdrv_co_pwrite(s->undo, s->data_off + start, len, buf, 0);
    if (ret < 0) {
        return ret;
    }
    rec = (SharedUndoRecord) {
        .epoch = cpu_to_le64(s->epoch),
        .crc = cpu_to_le32(crc32c(0xffffffff, buf, len)),
        .length = cpu_to_le32(len),
    };
    return bdrv_co_pwrite(s->undo, shared_undo_record_offset(region),
                          sizeof(rec), &rec, 0);
}

/*
 * Save every region of [offset, offset + bytes) not yet saved in this
 * epoch, durably, before the caller writes there.  Record and data are
 * flushed together: a record whose data did not make it fails its crc at
 * roll-back, and then its region was never written either.
 */
static int coroutine_fn GRAPH_RDLOCK
shared_undo_save(BDRVSharedUndoState *s, int64_t offset, int64_t bytes)
{
    uint64_t first, last, region;
    g_autofree uint8_t *buf = NULL;
    int ret = 0;

    if (bytes <= 0 || offset >= s->disk_size) {
        return 0;
    }
    first = offset / s->granularity;
    last = (MIN(offset + bytes, s->disk_size) - 1) / s->granularity;
    if (find_next_zero_bit(s->saved, last + 1, first) > last) {
        return 0;
    }

    qemu_co_mutex_lock(&s->save_lock);
    if (s->save_error) {
        ret = -EIO;
        goto out;
    }
    buf = qemu_try_blockalign(s->bs->file->bs, s->granularity);
    if (!buf) {
        ret = -ENOMEM;
        goto out;
    }
    for (region = first; region <= last; region++) {
        if (!test_bit(region, s->saved)) {
            ret = shared_undo_save_region(s, region, buf);
            if (ret < 0) {
                goto out;
            }
        }
    }
    ret = bdrv_co_flush(s->undo->bs);
    if (ret < 0) {
        goto out;
    }
    trace_shared_undo_saved(s->bs, s->epoch, first, last);
    bitmap_set(s->saved, first, last - first + 1);
out:
    if (ret < 0) {
        trace_shared_undo_save_error(s->bs, offset, bytes, ret);
        if (!s->save_error) {
            error_setg_errno(&s->save_error, -ret, "shared-undo: saving the "
                             "old content at offset %" PRId64 " of node "
                             "'%s' into the undo image failed", offset,
                             shared_undo_name(s));
        }
    }
    qemu_co_mutex_unlock(&s->save_lock);
    return ret;
}

/* ---- secondary: the shared image as of view_epoch ------------------ */

static int coroutine_fn GRAPH_RDLOCK
shared_undo_view_read(BDRVSharedUndoState *s, int64_t offset, int64_t bytes,
                      QEMUIOVector *qiov, size_t qiov_offset,
                      BdrvRequestFlags flags)
{
    uint64_t first, last, n;
    g_autofree SharedUndoRecord *recs = NULL;
    g_autofree uint8_t *buf = NULL;
    int ret;

    /* The shared image first, the records second: see the header. */
    ret = bdrv_co_preadv_part(s->bs->file, offset, bytes, qiov, qiov_offset,
                              flags);
    if (ret < 0 || s->view_epoch == 0 || offset >= s->disk_size) {
        return ret;
    }
    first = offset / s->granularity;
    last = (MIN(offset + bytes, s->disk_size) - 1) / s->granularity;
    n = last - first + 1;
    recs = g_new(SharedUndoRecord, n);
    ret = bdrv_co_pread(s->undo, shared_undo_record_offset(first),
                        n * sizeof(*recs), recs, 0);
    if (ret < 0) {
        return ret;
    }
    for (uint64_t i = 0; i < n; i++) {
        uint64_t region = first + i;
        int64_t start = region * s->granularity;
        uint32_t len = shared_undo_region_len(s, region);
        int64_t from, to;

        if (le64_to_cpu(recs[i].epoch) != s->view_epoch ||
            le32_to_cpu(recs[i].length) != len) {
            continue;
        }
        if (!buf) {
            buf = qemu_try_blockalign(s->undo->bs, s->granularity);
            if (!buf) {
                return -ENOMEM;
            }
        }
        ret = bdrv_co_pread(s->undo, s->data_off + start, len, buf, 0);
        if (ret < 0) {
            return ret;
        }
        if (crc32c(0xffffffff, buf, len) != le32_to_cpu(recs[i].crc)) {
            continue;   /* a save in progress: the region is unchanged */
        }
        from = MAX(offset, start);
        to = MIN(offset + bytes, start + len);
        qemu_iovec_from_buf(qiov, qiov_offset + (from - offset),
                            buf + (from - start), to - from);
    }
    return 0;
}

/* ---- secondary: start, checkpoint, failover ------------------------ */

/* The active overlay whose backing we are (graph lock held). */
static BlockDriverState * GRAPH_RDLOCK
shared_undo_active(BDRVSharedUndoState *s, Error **errp)
{
    BlockDriverState *active = NULL;
    BdrvChild *c;

    QLIST_FOREACH(c, &s->bs->parents, next_parent) {
        if (c->klass == &child_of_bds && (c->role & BDRV_CHILD_COW)) {
            if (active) {
                error_setg(errp, "shared-undo: node '%s' is the backing of "
                           "more than one node", shared_undo_name(s));
                return NULL;
            }
            active = c->opaque;
        }
    }
    if (!active) {
        error_setg(errp, "shared-undo: secondary node '%s' must be the "
                   "backing of the secondary's active overlay (a qcow2 "
                   "image the secondary VM writes)", shared_undo_name(s));
        return NULL;
    }
    if (!active->drv || !active->drv->bdrv_make_empty) {
        error_setg(errp, "shared-undo: the active overlay '%s' (format "
                   "'%s') cannot be emptied; use qcow2",
                   bdrv_get_device_or_node_name(active),
                   active->drv ? active->drv->format_name : "none");
        return NULL;
    }
    return active;
}

/*
 * Empty the active overlay above us.  The BlockBackend lives only for this:
 * held across checkpoints it would keep active, and so us, alive forever.
 */
static int shared_undo_empty_active(BDRVSharedUndoState *s, Error **errp)
{
    BlockDriverState *active;
    BlockBackend *blk;
    int ret;

    bdrv_graph_rdlock_main_loop();
    active = shared_undo_active(s, errp);
    bdrv_graph_rdunlock_main_loop();
    if (!active) {
        return -EINVAL;
    }
    /*
     * WRITE_UNCHANGED, which the guest's device shares (it unshares
     * WRITE): the guest is stopped for the checkpoint, and emptying puts
     * back what the checkpoint says it sees.
     */
    blk = blk_new(bdrv_get_aio_context(active), BLK_PERM_WRITE_UNCHANGED,
                  BLK_PERM_ALL);
    ret = blk_insert_bs(blk, active, errp);
    if (ret < 0) {
        error_prepend(errp, "shared-undo: cannot get write access to the "
                      "active overlay: ");
        blk_unref(blk);
        return ret;
    }
    bdrv_drained_begin(s->bs);
    ret = blk_make_empty(blk, errp);
    bdrv_drained_end(s->bs);
    blk_unref(blk);
    if (ret < 0) {
        error_prepend(errp, "shared-undo: emptying the active overlay: ");
    }
    return ret;
}

static void shared_undo_secondary_start(BDRVSharedUndoState *s, Error **errp)
{
    if (s->view_epoch == 0) {
        error_setg(errp, "shared-undo: node '%s' has no checkpoint epoch "
                   "from the primary (is the primary's shared-undo node "
                   "named '%s' too?)", shared_undo_name(s),
                   shared_undo_name(s));
        return;
    }
    /* Start from the state the controller just copied. */
    if (shared_undo_empty_active(s, errp) < 0) {
        return;
    }
    bdrv_drained_begin(s->bs);
    shared_undo_set_role(s, SHARED_UNDO_SECONDARY, true);
    bdrv_drained_end(s->bs);
}

/* Take or drop write permission on the shared image (role decides). */
static int shared_undo_refresh_perms(BDRVSharedUndoState *s, Error **errp)
{
    int ret;

    bdrv_graph_rdlock_main_loop();
    ret = bdrv_child_refresh_perms(s->bs, s->bs->file, errp);
    bdrv_graph_rdunlock_main_loop();
    return ret;
}

/* Copy back every region saved in view_epoch. */
static int GRAPH_RDLOCK shared_undo_roll_back(BDRVSharedUndoState *s,
                                              uint64_t *undone, Error **errp)
{
    g_autofree uint8_t *buf = qemu_blockalign(s->undo->bs, s->granularity);
    SharedUndoRecord rec;
    int ret;

    *undone = 0;
    for (uint64_t region = 0; region < s->nregions; region++) {
        uint32_t len = shared_undo_region_len(s, region);

        ret = bdrv_pread(s->undo, shared_undo_record_offset(region),
                         sizeof(rec), &rec, 0);
        if (ret < 0) {
            error_setg_errno(errp, -ret, "shared-undo: reading the undo "
                             "records");
            return ret;
        }
        if (le64_to_cpu(rec.epoch) != s->view_epoch ||
            le32_to_cpu(rec.length) != len) {
            continue;
        }
        ret = bdrv_pread(s->undo, s->data_off + region * s->granularity,
                         len, buf, 0);
        if (ret < 0) {
            error_setg_errno(errp, -ret, "shared-undo: reading the undo "
                             "data");
            return ret;
        }
        if (crc32c(0xffffffff, buf, len) != le32_to_cpu(rec.crc)) {
            continue;   /* never finished saving: never overwritten */
        }
        ret = bdrv_pwrite(s->bs->file, region * s->granularity, len, buf, 0);
        if (ret < 0) {
            error_setg_errno(errp, -ret, "shared-undo: writing the old "
                             "content back into the shared image");
            return ret;
        }
        (*undone)++;
    }
    ret = bdrv_flush(s->bs->file->bs);
    if (ret < 0) {
        error_setg_errno(errp, -ret, "shared-undo: flushing the shared "
                         "image");
    }
    return ret;
}

static void shared_undo_commit_done(void *opaque, int ret)
{
    BDRVSharedUndoState *s = opaque;

    s->commit_ret = ret;
    s->commit_running = false;
    aio_wait_kick();
}

static void shared_undo_secondary_failover(BDRVSharedUndoState *s,
                                           Error **errp)
{
    BlockDriverState *active;
    BlockJob *job;
    uint64_t header_epoch, undone = 0;
    int ret;

    /*
     * The primary is gone: take write access to the shared and the undo
     * image (a secondary opened as a backing file is read-only).
     */
    s->failover_write = true;
    if (bdrv_is_read_only(s->bs)) {
        ret = bdrv_reopen_set_read_only(s->bs, false, errp);
    } else {
        ret = shared_undo_refresh_perms(s, errp);
    }
    if (ret < 0) {
        error_prepend(errp, "shared-undo: cannot get write access to the "
                      "shared image: ");
        goto fail;
    }

    bdrv_graph_rdlock_main_loop();
    ret = shared_undo_read_header(s, &header_epoch, true, errp);
    if (ret >= 0 && header_epoch == s->view_epoch) {
        ret = shared_undo_roll_back(s, &undone, errp);
    } else if (ret >= 0 && header_epoch + 1 != s->view_epoch) {
        /*
         * Not this checkpoint's undo image: touch nothing, and serve no
         * I/O: what the view shows no longer matches the checkpoint.
         */
        error_setg(errp, "shared-undo: node '%s' resumes from the "
                   "checkpoint of epoch %" PRIu64 " but the undo image is at "
                   "epoch %" PRIu64 " (the primary ran on without this "
                   "secondary?); the shared image is left as it is and "
                   "the node fails all I/O", shared_undo_name(s),
                   s->view_epoch, header_epoch);
        s->mismatched = true;
        ret = -EINVAL;
    }
    bdrv_graph_rdunlock_main_loop();
    trace_shared_undo_roll_back(s->bs, s->view_epoch, header_epoch, undone,
                                ret);
    if (ret < 0) {
        goto fail;
    }

    /* Rolled back: the node now shows the shared image as it is. */
    bdrv_drained_begin(s->bs);
    shared_undo_set_role(s, SHARED_UNDO_PLAIN, false);
    bdrv_drained_end(s->bs);

    bdrv_graph_rdlock_main_loop();
    active = shared_undo_active(s, errp);
    bdrv_graph_rdunlock_main_loop();
    if (!active) {
        goto fail;
    }
    s->commit_running = true;
    s->commit_ret = 0;
    job = commit_active_start(NULL, active, s->bs, JOB_INTERNAL, 0,
                              BLOCKDEV_ON_ERROR_REPORT, NULL,
                              shared_undo_commit_done, s, true, errp);
    if (!job) {
        s->commit_running = false;
        error_prepend(errp, "shared-undo: cannot commit the active overlay "
                      "into the shared image: ");
        goto fail;
    }
    AIO_WAIT_WHILE(NULL, s->commit_running);
    trace_shared_undo_commit_done(s->bs, s->commit_ret);
    if (s->commit_ret < 0) {
        error_setg_errno(errp, -s->commit_ret, "shared-undo: committing the "
                         "active overlay into the shared image failed; its "
                         "data is still in the active overlay");
        goto fail;
    }

    /* Nothing left to undo, for anyone. */
    s->epoch = MAX(header_epoch, s->view_epoch) + 1;
    bdrv_graph_rdlock_main_loop();
    ret = shared_undo_write_header(s, s->epoch, true, errp);
    bdrv_graph_rdunlock_main_loop();
    if (ret < 0) {
        return;
    }
    s->view_epoch = 0;
    return;

fail:
    /* Roll-back and commit are idempotent: a new failover redoes both. */
    bdrv_drained_begin(s->bs);
    shared_undo_set_role(s, SHARED_UNDO_SECONDARY, true);
    s->failover_write = false;
    bdrv_drained_end(s->bs);
    shared_undo_refresh_perms(s, NULL);
}

/* ---- primary: start, checkpoint, stop ------------------------------ */

static void shared_undo_primary_start(BDRVSharedUndoState *s, Error **errp)
{
    uint64_t header_epoch;
    int ret;

    bdrv_graph_rdlock_main_loop();
    ret = shared_undo_read_header(s, &header_epoch, false, errp);
    bdrv_graph_rdunlock_main_loop();
    if (ret < 0) {
        return;
    }
    if (header_epoch > s->epoch) {
        /* Someone wrote it since we read it: the stream carried less. */
        error_setg(errp, "shared-undo: the undo image of node '%s' is at "
                   "epoch %" PRIu64 ", beyond this node's %" PRIu64 "; "
                   "is another primary using it?", shared_undo_name(s),
                   header_epoch, s->epoch);
        return;
    }

    s->failover_write = false;
    bdrv_drained_begin(s->bs);
    shared_undo_set_role(s, SHARED_UNDO_PRIMARY, false);
    bdrv_drained_end(s->bs);
    if (shared_undo_refresh_perms(s, errp) < 0) {
        return;
    }

    /* The secondary holds the state the stream carried: s->epoch + 1. */
    bdrv_drained_begin(s->bs);
    bdrv_graph_rdlock_main_loop();
    ret = shared_undo_write_header(s, s->epoch + 1, true, errp);
    bdrv_graph_rdunlock_main_loop();
    if (ret >= 0) {
        s->epoch++;
        bitmap_zero(s->saved, s->nregions);
        error_free(s->save_error);
        s->save_error = NULL;
        shared_undo_set_role(s, SHARED_UNDO_PRIMARY, true);
    }
    bdrv_drained_end(s->bs);
}

/* The checkpoint was received: open the next epoch (empties the undo). */
static void shared_undo_checkpoint_received(ReplicationState *rs,
                                            Error **errp)
{
    BlockDriverState *bs = rs->opaque;
    BDRVSharedUndoState *s = bs->opaque;
    Error *local_err = NULL;
    int ret;

    if (s->role != SHARED_UNDO_PRIMARY || !s->running) {
        return;
    }
    bdrv_drained_begin(bs);
    bdrv_graph_rdlock_main_loop();
    /* In the checkpoint's pause: no flush of its own (see the function). */
    ret = shared_undo_write_header(s, s->epoch + 1, false, &local_err);
    bdrv_graph_rdunlock_main_loop();
    if (ret >= 0) {
        s->epoch++;
        bitmap_zero(s->saved, s->nregions);
    } else if (!s->save_error) {
        /* Whether the header landed is unknown: nothing may be saved. */
        s->save_error = error_copy(local_err);
    }
    bdrv_drained_end(bs);
    error_propagate(errp, local_err);
}

static void shared_undo_primary_stop(BDRVSharedUndoState *s, Error **errp)
{
    bdrv_drained_begin(s->bs);
    shared_undo_set_role(s, SHARED_UNDO_PRIMARY, false);
    /*
     * From now on nothing is saved: move the epoch out of reach of any
     * secondary (it is at most one ahead of the header).
     */
    s->epoch += 2;
    bdrv_graph_rdlock_main_loop();
    shared_undo_write_header(s, s->epoch, true, errp);
    bdrv_graph_rdunlock_main_loop();
    bdrv_drained_end(s->bs);
}

/* ---- ReplicationOps ------------------------------------------------- */

static void shared_undo_start(ReplicationState *rs, ReplicationMode mode,
                              Error **errp)
{
    BlockDriverState *bs = rs->opaque;
    BDRVSharedUndoState *s = bs->opaque;

    trace_shared_undo_start(bs, ReplicationMode_str(mode),
                            shared_undo_role_names[s->role], s->running);
    if (s->running) {
        error_setg(errp, "shared-undo: node '%s' is already replicating",
                   shared_undo_name(s));
        return;
    }
    if (mode == REPLICATION_MODE_PRIMARY) {
        if (s->role == SHARED_UNDO_SECONDARY) {
            error_setg(errp, "shared-undo: node '%s' is a secondary that "
                       "has not failed over and cannot be started as "
                       "primary", shared_undo_name(s));
            return;
        }
        shared_undo_primary_start(s, errp);
        return;
    }
    if (s->role != SHARED_UNDO_SECONDARY) {
        error_setg(errp, "shared-undo: node '%s' is in the %s role and "
                   "cannot be started as secondary", shared_undo_name(s),
                   shared_undo_role_names[s->role]);
        return;
    }
    shared_undo_secondary_start(s, errp);
}

static void shared_undo_do_checkpoint(ReplicationState *rs, Error **errp)
{
    BlockDriverState *bs = rs->opaque;
    BDRVSharedUndoState *s = bs->opaque;
    int ret;

    trace_shared_undo_checkpoint(bs, shared_undo_role_names[s->role],
                                 s->running);
    if (!s->running) {
        if (s->role != SHARED_UNDO_PLAIN) {
            error_setg(errp, "shared-undo: node '%s' is not replicating, "
                       "cannot checkpoint", shared_undo_name(s));
        }
        return;
    }
    if (s->role == SHARED_UNDO_SECONDARY) {
        shared_undo_empty_active(s, errp);
        return;
    }
    if (s->save_error) {
        error_propagate(errp, error_copy(s->save_error));
        return;
    }
    /* The checkpoint covers every write the guest saw complete. */
    bdrv_graph_rdlock_main_loop();
    ret = bdrv_flush(bs->file->bs);
    bdrv_graph_rdunlock_main_loop();
    if (ret < 0) {
        error_setg_errno(errp, -ret, "shared-undo: flushing the shared "
                         "image of node '%s'", shared_undo_name(s));
    }
}

static void shared_undo_get_error(ReplicationState *rs, Error **errp)
{
    BlockDriverState *bs = rs->opaque;
    BDRVSharedUndoState *s = bs->opaque;

    if (s->save_error) {
        error_propagate(errp, error_copy(s->save_error));
    }
}

static void shared_undo_stop(ReplicationState *rs, bool failover,
                             Error **errp)
{
    BlockDriverState *bs = rs->opaque;
    BDRVSharedUndoState *s = bs->opaque;

    trace_shared_undo_stop(bs, failover, shared_undo_role_names[s->role],
                           s->running);
    if (!s->running) {
        return;
    }
    if (s->role == SHARED_UNDO_PRIMARY) {
        shared_undo_primary_stop(s, errp);
    } else if (failover) {
        shared_undo_secondary_failover(s, errp);
    } else {
        /* Plain stop: the active overlay keeps what the VM wrote. */
        bdrv_drained_begin(bs);
        shared_undo_set_role(s, SHARED_UNDO_SECONDARY, false);
        bdrv_drained_end(bs);
    }
}

static const ReplicationOps shared_undo_ops = {
    .start = shared_undo_start,
    .do_checkpoint = shared_undo_do_checkpoint,
    .checkpoint_received = shared_undo_checkpoint_received,
    .get_error = shared_undo_get_error,
    .stop = shared_undo_stop,
};

/* ---- the epoch in the checkpoint stream ----------------------------- */

const SharedUndoStreamOps *shared_undo_stream_ops;

uint64_t shared_undo_outgoing_epoch(BlockDriverState *bs)
{
    BDRVSharedUndoState *s = bs->opaque;

    return s->epoch + 1;
}

void shared_undo_incoming_epoch(BlockDriverState *bs, uint64_t epoch)
{
    BDRVSharedUndoState *s = bs->opaque;

    trace_shared_undo_incoming_epoch(bs, epoch);
    if (s->role == SHARED_UNDO_SECONDARY) {
        s->view_epoch = epoch;
    }
}

/* ---- block driver ---------------------------------------------------- */

static bool shared_undo_check_raw(BlockDriverState *child, const char *what,
                                  Error **errp)
{
    if (child->drv->protocol_name || !strcmp(child->drv->format_name, "raw")) {
        return true;
    }
    error_setg(errp, "shared-undo: the %s '%s' must be raw (the format "
               "'raw' or a protocol node), not '%s': a format with metadata "
               "would be cached by the host that does not write it", what,
               bdrv_get_device_or_node_name(child), child->drv->format_name);
    return false;
}

static int shared_undo_open(BlockDriverState *bs, QDict *options, int flags,
                            Error **errp)
{
    BDRVSharedUndoState *s = bs->opaque;
    QemuOpts *opts;
    const char *mode;
    uint64_t granularity;
    int64_t undo_len, need;
    int ret;

    s->bs = bs;
    opts = qemu_opts_create(&shared_undo_runtime_opts, NULL, 0,
                            &error_abort);
    if (!qemu_opts_absorb_qdict(opts, options, errp)) {
        ret = -EINVAL;
        goto out;
    }
    mode = qemu_opt_get(opts, SHARED_UNDO_OPT_MODE);
    if (!mode) {
        error_setg(errp, "shared-undo: the option 'mode' is required "
                   "('primary' or 'secondary')");
        ret = -EINVAL;
        goto out;
    }
    if (!strcmp(mode, "primary")) {
        s->role = SHARED_UNDO_PRIMARY;
    } else if (!strcmp(mode, "secondary")) {
        s->role = SHARED_UNDO_SECONDARY;
    } else {
        error_setg(errp, "shared-undo: invalid mode '%s' (expected "
                   "'primary' or 'secondary')", mode);
        ret = -EINVAL;
        goto out;
    }
    granularity = qemu_opt_get_size(opts, SHARED_UNDO_OPT_GRANULARITY,
                                    SHARED_UNDO_DEFAULT_GRANULARITY);
    if (granularity < 4 * KiB || granularity > 16 * MiB ||
        !is_power_of_2(granularity)) {
        error_setg(errp, "shared-undo: granularity %" PRIu64 " is not a "
                   "power of two from 4096 to 16777216", granularity);
        ret = -EINVAL;
        goto out;
    }
    s->granularity = granularity;
    if (bs->node_name[0] == '#' || !bs->node_name[0]) {
        error_setg(errp, "shared-undo: the node needs a node-name, the same "
                   "on both hosts (it names the epoch in the checkpoint "
                   "stream)");
        ret = -EINVAL;
        goto out;
    }

    ret = bdrv_open_file_child(NULL, options, "file", bs, errp);
    if (ret < 0) {
        goto out;
    }
    s->undo = bdrv_open_child(NULL, options, "undo", bs, &child_of_bds,
                              BDRV_CHILD_DATA | BDRV_CHILD_METADATA, false,
                              errp);
    if (!s->undo) {
        ret = -EINVAL;
        goto out;
    }

    bdrv_graph_rdlock_main_loop();
    ret = -EINVAL;
    if (!shared_undo_check_raw(bs->file->bs, "shared image", errp) ||
        !shared_undo_check_raw(s->undo->bs, "undo image", errp)) {
        goto unlock;
    }
    s->disk_size = bdrv_getlength(bs->file->bs);
    undo_len = bdrv_getlength(s->undo->bs);
    if (s->disk_size < 0 || undo_len < 0) {
        error_setg(errp, "shared-undo: cannot get the length of the shared "
                   "or the undo image");
        goto unlock;
    }
    s->nregions = DIV_ROUND_UP(s->disk_size, s->granularity);
    s->data_off = ROUND_UP(shared_undo_record_offset(s->nregions),
                           s->granularity);
    need = s->data_off + s->nregions * s->granularity;
    if (undo_len < need) {
        error_setg(errp, "shared-undo: the undo image '%s' has %" PRId64
                   " bytes; with a %" PRId64 "-byte disk and granularity %u "
                   "it needs at least %" PRId64 " bytes",
                   bdrv_get_device_or_node_name(s->undo->bs), undo_len,
                   s->disk_size, s->granularity, need);
        goto unlock;
    }
    bs->supported_write_flags = BDRV_REQ_WRITE_UNCHANGED |
        (BDRV_REQ_FUA & bs->file->bs->supported_write_flags);
    bs->supported_zero_flags = BDRV_REQ_WRITE_UNCHANGED |
        ((BDRV_REQ_FUA | BDRV_REQ_MAY_UNMAP | BDRV_REQ_NO_FALLBACK) &
         bs->file->bs->supported_zero_flags);
    ret = 0;
    if (s->role == SHARED_UNDO_PRIMARY) {
        /* A fresh undo image is epoch 0; another geometry is rewritten. */
        ret = shared_undo_read_header(s, &s->epoch, false, errp);
    }
unlock:
    bdrv_graph_rdunlock_main_loop();
    if (ret < 0) {
        goto out;
    }

    s->saved = bitmap_new(s->nregions);
    qemu_co_mutex_init(&s->save_lock);
    if (shared_undo_stream_ops) {
        s->stream = shared_undo_stream_ops->attach(bs, errp);
        if (!s->stream) {
            g_free(s->saved);
            ret = -EINVAL;
            goto out;
        }
    }
    s->rs = replication_new(bs, &shared_undo_ops);
out:
    if (ret < 0 && s->undo) {
        /* The block layer drops only the file child of a failed open. */
        bdrv_graph_wrlock();
        bdrv_unref_child(bs, s->undo);
        bdrv_graph_wrunlock();
        s->undo = NULL;
    }
    qemu_opts_del(opts);
    return ret;
}

static void shared_undo_close(BlockDriverState *bs)
{
    BDRVSharedUndoState *s = bs->opaque;

    /* Writes nothing: a closing primary must look like a dying one. */
    if (s->stream) {
        shared_undo_stream_ops->detach(s->stream);
    }
    replication_remove(s->rs);
    error_free(s->save_error);
    g_free(s->saved);
}

static void GRAPH_RDLOCK
shared_undo_child_perm(BlockDriverState *bs, BdrvChild *c, BdrvChildRole role,
                       BlockReopenQueue *reopen_queue,
                       uint64_t perm, uint64_t shared,
                       uint64_t *nperm, uint64_t *nshared)
{
    BDRVSharedUndoState *s = bs->opaque;

    if (c != bs->file) {
        /* The undo image: both hosts use it; a secondary only reads. */
        *nperm = BLK_PERM_CONSISTENT_READ;
        if (s->role != SHARED_UNDO_SECONDARY || s->failover_write) {
            *nperm |= BLK_PERM_WRITE;
        }
        *nshared = BLK_PERM_ALL;
        return;
    }
    if (s->role == SHARED_UNDO_SECONDARY && !s->failover_write) {
        /*
         * The primary writes the shared image: never take write access
         * while it may live (file locking then refuses a second writer).
         */
        *nperm = BLK_PERM_CONSISTENT_READ;
        *nshared = BLK_PERM_ALL;
        return;
    }
    *nperm = (perm & (BLK_PERM_WRITE | BLK_PERM_WRITE_UNCHANGED)) |
             BLK_PERM_CONSISTENT_READ;
    if (s->role == SHARED_UNDO_SECONDARY || s->failover_write) {
        *nperm |= BLK_PERM_WRITE;       /* the roll-back writes */
    }
    *nshared = shared | BLK_PERM_CONSISTENT_READ | BLK_PERM_WRITE_UNCHANGED;
}

static int64_t coroutine_fn GRAPH_RDLOCK
shared_undo_co_getlength(BlockDriverState *bs)
{
    return bdrv_co_getlength(bs->file->bs);
}

static int coroutine_fn GRAPH_RDLOCK
shared_undo_co_preadv_part(BlockDriverState *bs, int64_t offset,
                           int64_t bytes, QEMUIOVector *qiov,
                           size_t qiov_offset, BdrvRequestFlags flags)
{
    BDRVSharedUndoState *s = bs->opaque;

    if (s->role == SHARED_UNDO_SECONDARY) {
        if (s->mismatched) {
            return -EIO;
        }
        return shared_undo_view_read(s, offset, bytes, qiov, qiov_offset,
                                     flags);
    }
    return bdrv_co_preadv_part(bs->file, offset, bytes, qiov, qiov_offset,
                               flags);
}

/* Writes: saved first on a running primary, refused on a secondary. */
static int coroutine_fn GRAPH_RDLOCK
shared_undo_write_gate(BDRVSharedUndoState *s, int64_t offset, int64_t bytes,
                       BdrvRequestFlags flags)
{
    if (s->role == SHARED_UNDO_SECONDARY) {
        return -EPERM;
    }
    if (s->role == SHARED_UNDO_PRIMARY && s->running &&
        !(flags & BDRV_REQ_WRITE_UNCHANGED)) {
        return shared_undo_save(s, offset, bytes);
    }
    return 0;
}

static int coroutine_fn GRAPH_RDLOCK
shared_undo_co_pwritev_part(BlockDriverState *bs, int64_t offset,
                            int64_t bytes, QEMUIOVector *qiov,
                            size_t qiov_offset, BdrvRequestFlags flags)
{
    int ret = shared_undo_write_gate(bs->opaque, offset, bytes, flags);

    if (ret < 0) {
        return ret;
    }
    return bdrv_co_pwritev_part(bs->file, offset, bytes, qiov, qiov_offset,
                                flags);
}

static int coroutine_fn GRAPH_RDLOCK
shared_undo_co_pwrite_zeroes(BlockDriverState *bs, int64_t offset,
                             int64_t bytes, BdrvRequestFlags flags)
{
    int ret = shared_undo_write_gate(bs->opaque, offset, bytes, flags);

    if (ret < 0) {
        return ret;
    }
    return bdrv_co_pwrite_zeroes(bs->file, offset, bytes, flags);
}

static int coroutine_fn GRAPH_RDLOCK
shared_undo_co_flush(BlockDriverState *bs)
{
    return bdrv_co_flush(bs->file->bs);
}

/* Failover reopens a secondary opened as a backing file read-write. */
static int shared_undo_reopen_prepare(BDRVReopenState *state,
                                      BlockReopenQueue *queue, Error **errp)
{
    return 0;
}

static const char *const shared_undo_fixed_opts[] = {
    SHARED_UNDO_OPT_MODE, SHARED_UNDO_OPT_GRANULARITY, NULL
};

static BlockDriver shared_undo_driver = {
    .format_name = "shared-undo",
    /* Not a filter: a secondary's reads are not its file child's. */
    .strong_runtime_opts = shared_undo_fixed_opts,
    .instance_size = sizeof(BDRVSharedUndoState),
    .bdrv_child_perm = shared_undo_child_perm,
    .bdrv_open = shared_undo_open,
    .bdrv_close = shared_undo_close,
    .bdrv_reopen_prepare = shared_undo_reopen_prepare,
    .bdrv_co_preadv_part = shared_undo_co_preadv_part,
    .bdrv_co_pwritev_part = shared_undo_co_pwritev_part,
    .bdrv_co_pwrite_zeroes = shared_undo_co_pwrite_zeroes,
    .bdrv_co_flush = shared_undo_co_flush,
    .bdrv_co_getlength = shared_undo_co_getlength,
};

static void shared_undo_driver_register(void)
{
    bdrv_register(&shared_undo_driver);
}

block_init(shared_undo_driver_register);
