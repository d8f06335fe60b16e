/*
 * The `replication` block driver (COLO disk replication)
 *
 * Copyright (c) 2026 The qemu-colo authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * A filter over one `file` child, driven by the replication framework
 * (include/block/replication.h) through start / checkpoint / error / stop.
 *
 * Primary mode: the file is an NBD client to the secondary's disk, and the
 * node sits as a quorum child next to the primary's own disk.  Writes are
 * forwarded; the first failure is latched (the guest never sees it: the write
 * is reported done, later writes are dropped) and get_error / checkpoint
 * report it, so the controller fails over cleanly to the primary alone.
 * Reads are never served from here.
 *
 * Secondary mode: the chain is
 *
 *     top (top-id) -> ... -> replication -> active -> hidden -> secondary
 *
 * The secondary VM writes into the active disk.  The primary's writes reach
 * the secondary disk over NBD; a copy-before-write filter inserted above the
 * secondary disk at start saves the old content of every region into the
 * hidden disk first, so the secondary VM keeps seeing the disk as of the last
 * checkpoint.  Because the hidden disk (the copy target) is backed by the
 * secondary disk (the copy source), block-copy writes into it as serialising
 * requests: a secondary VM read in flight through the hidden disk finishes
 * on the old data before the primary's write may proceed.  A checkpoint
 * empties active and hidden and re-arms the copy-before-write bitmap.
 * Failover commits the active disk (with the hidden disk below it) into the
 * secondary disk and the node becomes a plain pass-through over the
 * secondary disk.
 *
 * States (one enum, every change through replication_set_stage()):
 *
 *   IDLE --start--> RUNNING --stop--> STOPPED --start--> RUNNING
 *   RUNNING --failover (secondary)--> FAILOVER --ok--> DONE
 *                                              \--error--> FAILOVER_FAILED
 *   FAILOVER_FAILED --failover--> FAILOVER (retry)
 *
 * In primary mode failover is a plain stop (the secondary is gone).  DONE
 * ignores every later request: the node is then an ordinary filter.  A
 * secondary refuses I/O only before its first start (IDLE): nothing is set
 * up then; once STOPPED the chain still holds what the VM wrote.
 *
 * Locking: the ReplicationOps callbacks, open and close run with the big QEMU
 * lock held (main loop, or the COLO thread holding it).  They change the
 * stage and the secondary's graph only inside drained sections, so I/O
 * coroutines (running in the node's AioContext) never see a stage change in
 * the middle of a request.  The latched primary error is written from I/O
 * coroutines and read under the big lock: it is protected by error_lock.
 * The failover commit is waited for synchronously (AIO_WAIT_WHILE in the
 * main context); it is bounded by the amount of data in active and hidden
 * and by the storage answering, as any drain is.
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qapi/qapi-types-block-core.h"
#include "qapi/qapi-visit-block-core.h"
#include "qapi/qapi-commands-yank.h"
#include "qemu/module.h"
#include "qemu/option.h"
#include "qemu/main-loop.h"
#include "block/block_int.h"
#include "block/blockjob.h"
#include "block/replication.h"
#include "block/copy-before-write.h"
#include "block/dirty-bitmap.h"
#include "system/block-backend.h"
#include "trace.h"

typedef enum ReplicationStage {
    REPLICATION_STAGE_IDLE,
    REPLICATION_STAGE_RUNNING,
    REPLICATION_STAGE_STOPPED,
    REPLICATION_STAGE_FAILOVER,
    REPLICATION_STAGE_FAILOVER_FAILED,
    REPLICATION_STAGE_DONE,
} ReplicationStage;

static const char *const replication_stage_names[] = {
    [REPLICATION_STAGE_IDLE] = "idle",
    [REPLICATION_STAGE_RUNNING] = "running",
    [REPLICATION_STAGE_STOPPED] = "stopped",
    [REPLICATION_STAGE_FAILOVER] = "failover",
    [REPLICATION_STAGE_FAILOVER_FAILED] = "failover-failed",
    [REPLICATION_STAGE_DONE] = "done",
};

typedef struct BDRVReplicationState {
    BlockDriverState *bs;
    ReplicationState *rs;
    ReplicationMode mode;
    char *top_id;               /* secondary only */
    ReplicationStage stage;

    /* Primary: first forwarding failure since start (error_lock). */
    QemuMutex error_lock;
    Error *forward_error;

    /* Secondary, held from start to stop (references taken at start). */
    BlockDriverState *hidden_disk;
    BlockDriverState *secondary_disk;
    BlockBackend *active_blk;   /* write access for emptying */
    BlockBackend *hidden_blk;
    BlockDriverState *cbw;      /* copy-before-write over secondary_disk */
    BlockCopyState *bcs;
    bool hidden_made_writable;

    /* Secondary failover commit. */
    bool commit_running;
    int commit_ret;
    Error *failover_error;
} BDRVReplicationState;

#define REPLICATION_OPT_MODE "mode"
#define REPLICATION_OPT_TOP_ID "top-id"

static QemuOptsList replication_runtime_opts = {
    .name = "replication",
    .head = QTAILQ_HEAD_INITIALIZER(replication_runtime_opts.head),
    .desc = {
        {
            .name = REPLICATION_OPT_MODE,
            .type = QEMU_OPT_STRING,
            .help = "replication mode: primary or secondary",
        },
        {
            .name = REPLICATION_OPT_TOP_ID,
            .type = QEMU_OPT_STRING,
            .help = "top node of the secondary's disk (secondary mode)",
        },
        { /* end of list */ }
    },
};

static const char *replication_node_name(BDRVReplicationState *s)
{
    return bdrv_get_device_or_node_name(s->bs);
}

static void replication_set_stage(BDRVReplicationState *s,
                                  ReplicationStage stage)
{
    trace_replication_stage(s->bs, ReplicationMode_str(s->mode),
                            replication_stage_names[s->stage],
                            replication_stage_names[stage]);
    s->stage = stage;
}

/* ---- secondary chain checks ------------------------------------------ */

static bool replication_can_empty(BlockDriverState *disk, const char *what,
                                  Error **errp)
{
    if (!disk->drv || !disk->drv->bdrv_make_empty) {
        error_setg(errp, "replication: the %s disk '%s' (format '%s') "
                   "cannot be emptied; use a format such as qcow2", what,
                   bdrv_get_device_or_node_name(disk),
                   disk->drv ? disk->drv->format_name : "none");
        return false;
    }
    return true;
}

/*
 * The @what disk is an overlay the checkpoints empty: it must be emptiable
 * and backed by the @below disk, which is returned.  Graph lock held.
 */
static BlockDriverState *replication_overlay_backing(BlockDriverState *disk,
                                                     const char *what,
                                                     const char *below,
                                                     Error **errp)
{
    BlockDriverState *backing;

    /* Emptiability first: a format without it cannot have a backing. */
    if (!replication_can_empty(disk, what, errp)) {
        return NULL;
    }
    backing = bdrv_cow_bs(disk);
    if (!backing) {
        error_setg(errp, "replication: the %s disk '%s' must have a "
                   "backing file (the %s disk)", what,
                   bdrv_get_device_or_node_name(disk), below);
    }
    return backing;
}

/*
 * Find hidden and secondary disks below @active and check what the secondary
 * mode needs from them.  Called at open and again at start, since the graph
 * may have changed in between.
 */
static bool replication_check_chain(BlockDriverState *active,
                                    BlockDriverState **hidden_out,
                                    BlockDriverState **secondary_out,
                                    Error **errp)
{
    BlockDriverState *hidden, *secondary;
    int64_t active_len, hidden_len, secondary_len;

    GRAPH_RDLOCK_GUARD_MAINLOOP();

    hidden = replication_overlay_backing(active, "active", "hidden", errp);
    if (!hidden) {
        return false;
    }
    secondary = replication_overlay_backing(hidden, "hidden", "secondary",
                                            errp);
    if (!secondary) {
        return false;
    }

    active_len = bdrv_getlength(active);
    hidden_len = bdrv_getlength(hidden);
    secondary_len = bdrv_getlength(secondary);
    if (active_len < 0 || hidden_len < 0 || secondary_len < 0) {
        error_setg(errp, "replication: cannot get the length of the active, "
                   "hidden or secondary disk");
        return false;
    }
    if (active_len != hidden_len || hidden_len != secondary_len) {
        error_setg(errp, "replication: active disk (%" PRId64 " bytes), "
                   "hidden disk (%" PRId64 " bytes) and secondary disk (%"
                   PRId64 " bytes) must have the same length",
                   active_len, hidden_len, secondary_len);
        return false;
    }

    if (hidden_out) {
        *hidden_out = hidden;
    }
    if (secondary_out) {
        *secondary_out = secondary;
    }
    return true;
}

/* Is @needle reachable from @top through child links? */
static bool GRAPH_RDLOCK replication_node_below(BlockDriverState *top,
                                                BlockDriverState *needle)
{
    BdrvChild *child;

    if (top == needle) {
        return true;
    }
    QLIST_FOREACH(child, &top->children, next) {
        if (replication_node_below(child->bs, needle)) {
            return true;
        }
    }
    return false;
}

static bool replication_check_top(BDRVReplicationState *s, Error **errp)
{
    BlockDriverState *top;
    Error *local_err = NULL;

    top = bdrv_lookup_bs(s->top_id, s->top_id, &local_err);
    if (!top) {
        error_setg(errp, "replication: top-id '%s' does not name a block "
                   "device or node: %s", s->top_id,
                   error_get_pretty(local_err));
        error_free(local_err);
        return false;
    }

    GRAPH_RDLOCK_GUARD_MAINLOOP();
    if (!replication_node_below(top, s->bs)) {
        error_setg(errp, "replication: node '%s' is not below top-id '%s'",
                   replication_node_name(s), s->top_id);
        return false;
    }
    return true;
}

/* ---- secondary: start, checkpoint, stop ------------------------------ */

static BlockBackend *replication_writer_blk(BlockDriverState *node,
                                            const char *what, Error **errp)
{
    BlockBackend *blk;

    blk = blk_new(bdrv_get_aio_context(node), BLK_PERM_WRITE, BLK_PERM_ALL);
    if (blk_insert_bs(blk, node, errp) < 0) {
        error_prepend(errp, "replication: cannot get write access to the "
                      "%s disk: ", what);
        blk_unref(blk);
        return NULL;
    }
    return blk;
}

/* Empty active and hidden and re-arm copy-before-write; drained inside. */
static int replication_empty_disks(BDRVReplicationState *s, Error **errp)
{
    int64_t len;
    int ret;

    bdrv_drained_begin(s->secondary_disk);

    ret = blk_make_empty(s->active_blk, errp);
    if (ret < 0) {
        error_prepend(errp, "replication: emptying the active disk: ");
        goto out;
    }
    ret = blk_make_empty(s->hidden_blk, errp);
    if (ret < 0) {
        error_prepend(errp, "replication: emptying the hidden disk: ");
        goto out;
    }
    if (s->bcs) {
        /* Every region must again be saved before its first overwrite. */
        len = blk_getlength(s->hidden_blk);
        if (len < 0) {
            error_setg_errno(errp, -len, "replication: hidden disk length");
            ret = len;
            goto out;
        }
        bdrv_set_dirty_bitmap(block_copy_dirty_bitmap(s->bcs), 0, len);
    }
    ret = 0;
out:
    bdrv_drained_end(s->secondary_disk);
    return ret;
}

/* Undo what secondary_start set up; safe on a partly set-up state. */
static void replication_secondary_release(BDRVReplicationState *s,
                                          bool restore_read_only)
{
    if (s->cbw) {
        bdrv_cbw_drop(s->cbw);
        s->cbw = NULL;
        s->bcs = NULL;
    }
    blk_unref(s->active_blk);
    s->active_blk = NULL;
    blk_unref(s->hidden_blk);
    s->hidden_blk = NULL;
    if (s->hidden_made_writable && restore_read_only && s->hidden_disk) {
        Error *local_err = NULL;

        if (bdrv_reopen_set_read_only(s->hidden_disk, true, &local_err) < 0) {
            trace_replication_hidden_read_only_failed(
                s->bs, error_get_pretty(local_err));
            error_free(local_err);
        }
    }
    s->hidden_made_writable = false;
    if (s->hidden_disk) {
        bdrv_unref(s->hidden_disk);
        s->hidden_disk = NULL;
    }
    if (s->secondary_disk) {
        bdrv_unref(s->secondary_disk);
        s->secondary_disk = NULL;
    }
}

static void replication_secondary_start(BDRVReplicationState *s,
                                        Error **errp)
{
    BlockDriverState *active, *hidden, *secondary;

    if (!replication_check_top(s, errp)) {
        return;
    }
    bdrv_graph_rdlock_main_loop();
    active = s->bs->file ? s->bs->file->bs : NULL;
    bdrv_graph_rdunlock_main_loop();
    if (!active) {
        error_setg(errp, "replication: node '%s' has no active disk",
                   replication_node_name(s));
        return;
    }
    if (!replication_check_chain(active, &hidden, &secondary, errp)) {
        return;
    }

    bdrv_ref(hidden);
    s->hidden_disk = hidden;
    bdrv_ref(secondary);
    s->secondary_disk = secondary;

    if (bdrv_is_read_only(hidden)) {
        if (bdrv_reopen_set_read_only(hidden, false, errp) < 0) {
            error_prepend(errp, "replication: cannot make the hidden disk "
                          "'%s' writable: ",
                          bdrv_get_device_or_node_name(hidden));
            goto fail;
        }
        s->hidden_made_writable = true;
    }

    s->active_blk = replication_writer_blk(active, "active", errp);
    if (!s->active_blk) {
        goto fail;
    }
    s->hidden_blk = replication_writer_blk(hidden, "hidden", errp);
    if (!s->hidden_blk) {
        goto fail;
    }

    /* Start from the state the controller just copied: nothing diverged. */
    if (replication_empty_disks(s, errp) < 0) {
        goto fail;
    }

    s->cbw = bdrv_cbw_append(secondary, hidden, NULL, false, 0, &s->bcs,
                             errp);
    if (!s->cbw) {
        error_prepend(errp, "replication: cannot protect the secondary "
                      "disk '%s' with copy-before-write: ",
                      bdrv_get_device_or_node_name(secondary));
        goto fail;
    }

    bdrv_drained_begin(s->bs);
    replication_set_stage(s, REPLICATION_STAGE_RUNNING);
    bdrv_drained_end(s->bs);
    return;

fail:
    replication_secondary_release(s, true);
}

static void replication_commit_done(void *opaque, int ret)
{
    BDRVReplicationState *s = opaque;

    s->commit_ret = ret;
    s->commit_running = false;
    aio_wait_kick();
}

static void replication_secondary_failover(BDRVReplicationState *s,
                                           Error **errp)
{
    BlockDriverState *active;
    BlockJob *job;
    Error *local_err = NULL;

    replication_set_stage(s, REPLICATION_STAGE_FAILOVER);

    /* The primary is gone: stop saving old data, keep the chain. */
    if (s->cbw) {
        bdrv_cbw_drop(s->cbw);
        s->cbw = NULL;
        s->bcs = NULL;
    }
    blk_unref(s->active_blk);
    s->active_blk = NULL;
    blk_unref(s->hidden_blk);
    s->hidden_blk = NULL;

    bdrv_graph_rdlock_main_loop();
    active = s->bs->file->bs;
    bdrv_graph_rdunlock_main_loop();

    s->commit_running = true;
    s->commit_ret = 0;
    job = commit_active_start(NULL, active, s->secondary_disk, JOB_INTERNAL,
                              0, BLOCKDEV_ON_ERROR_REPORT, NULL,
                              replication_commit_done, s, true, &local_err);
    if (!job) {
        s->commit_running = false;
        s->commit_ret = -EIO;
    } else {
        trace_replication_commit_start(s->bs, active, s->secondary_disk);
        AIO_WAIT_WHILE(NULL, s->commit_running);
    }
    trace_replication_commit_done(s->bs, s->commit_ret);

    error_free(s->failover_error);
    s->failover_error = NULL;
    if (local_err) {
        error_prepend(&local_err, "replication: cannot commit the active "
                      "disk into the secondary disk: ");
    } else if (s->commit_ret < 0) {
        error_setg_errno(&local_err, -s->commit_ret, "replication: "
                         "committing the active disk into the secondary "
                         "disk failed; the data is still in the active and "
                         "hidden disks");
    }
    if (local_err) {
        s->failover_error = error_copy(local_err);
        error_propagate(errp, local_err);
        replication_set_stage(s, REPLICATION_STAGE_FAILOVER_FAILED);
        return;
    }

    /* The graph now has the secondary disk where the active disk was. */
    s->hidden_made_writable = false;
    replication_secondary_release(s, false);
    replication_set_stage(s, REPLICATION_STAGE_DONE);
}

/* ---- ReplicationOps -------------------------------------------------- */

static void replication_start(ReplicationState *rs, ReplicationMode mode,
                              Error **errp)
{
    BlockDriverState *bs = rs->opaque;
    BDRVReplicationState *s = bs->opaque;

    trace_replication_start(bs, ReplicationMode_str(mode),
                            replication_stage_names[s->stage]);
    switch (s->stage) {
    case REPLICATION_STAGE_DONE:
        if (mode == REPLICATION_MODE_PRIMARY) {
            /* A failed-over secondary serves as a plain disk from now on. */
            return;
        }
        error_setg(errp, "replication: node '%s' has failed over and "
                   "cannot take part in replication again",
                   replication_node_name(s));
        return;
    case REPLICATION_STAGE_RUNNING:
        error_setg(errp, "replication: node '%s' is already replicating",
                   replication_node_name(s));
        return;
    case REPLICATION_STAGE_FAILOVER:
    case REPLICATION_STAGE_FAILOVER_FAILED:
        error_setg(errp, "replication: node '%s' is failing over and "
                   "cannot be started", replication_node_name(s));
        return;
    case REPLICATION_STAGE_IDLE:
    case REPLICATION_STAGE_STOPPED:
        break;
    }
    if (mode != s->mode) {
        error_setg(errp, "replication: node '%s' is in %s mode and cannot "
                   "be started in %s mode", replication_node_name(s),
                   ReplicationMode_str(s->mode), ReplicationMode_str(mode));
        return;
    }

    if (s->mode == REPLICATION_MODE_PRIMARY) {
        bdrv_drained_begin(bs);
        qemu_mutex_lock(&s->error_lock);
        error_free(s->forward_error);
        s->forward_error = NULL;
        qemu_mutex_unlock(&s->error_lock);
        replication_set_stage(s, REPLICATION_STAGE_RUNNING);
        bdrv_drained_end(bs);
        return;
    }
    replication_secondary_start(s, errp);
}

/* Copy the latched primary error into @errp, if any. */
static bool replication_report_forward_error(BDRVReplicationState *s,
                                             Error **errp)
{
    bool failed;

    qemu_mutex_lock(&s->error_lock);
    failed = s->forward_error != NULL;
    if (failed) {
        error_setg(errp, "replication: writing to the secondary disk "
                   "through node '%s' failed: %s", replication_node_name(s),
                   error_get_pretty(s->forward_error));
    }
    qemu_mutex_unlock(&s->error_lock);
    return failed;
}

static void replication_do_checkpoint(ReplicationState *rs, Error **errp)
{
    BlockDriverState *bs = rs->opaque;
    BDRVReplicationState *s = bs->opaque;

    trace_replication_checkpoint(bs, replication_stage_names[s->stage]);
    if (s->stage == REPLICATION_STAGE_DONE) {
        return;
    }
    if (s->stage != REPLICATION_STAGE_RUNNING) {
        error_setg(errp, "replication: node '%s' is not replicating "
                   "(state %s), cannot checkpoint",
                   replication_node_name(s),
                   replication_stage_names[s->stage]);
        return;
    }
    if (s->mode == REPLICATION_MODE_PRIMARY) {
        replication_report_forward_error(s, errp);
        return;
    }
    replication_empty_disks(s, errp);
}

static void replication_get_error(ReplicationState *rs, Error **errp)
{
    BlockDriverState *bs = rs->opaque;
    BDRVReplicationState *s = bs->opaque;

    if (s->mode == REPLICATION_MODE_PRIMARY) {
        replication_report_forward_error(s, errp);
        return;
    }
    if (s->stage == REPLICATION_STAGE_FAILOVER_FAILED && s->failover_error) {
        error_setg(errp, "%s", error_get_pretty(s->failover_error));
    }
}

/*
 * Failover on the primary: the secondary is given up.  Writes in flight to
 * it must not hold the drain in replication_stop(): a secondary that stopped
 * answering (SIGSTOPped, or the link cut without a reset) never completes
 * them, and the drain holds the BQL, so the survivor would stop serving.
 * Yank the connection of the NBD node under us (the first node down the
 * file chain that registered for yank): its requests fail at once, and the
 * guest's writes still complete on the primary's own disk (quorum).
 */
static void replication_primary_abandon_secondary(BlockDriverState *bs)
{
    for (BdrvChild *c = bs->file; c; c = c->bs->file) {
        YankInstance inst = {
            .type = YANK_INSTANCE_TYPE_BLOCK_NODE,
            .u.block_node.node_name = (char *)bdrv_get_node_name(c->bs),
        };
        YankInstanceList list = { .value = &inst };
        Error *err = NULL;

        qmp_yank(&list, &err);
        if (!err) {
            trace_replication_secondary_yanked(bs, inst.u.block_node.node_name);
            return;
        }
        error_free(err);        /* not a node that can be yanked */
    }
}

static void replication_stop(ReplicationState *rs, bool failover,
                             Error **errp)
{
    BlockDriverState *bs = rs->opaque;
    BDRVReplicationState *s = bs->opaque;

    trace_replication_stop(bs, failover, replication_stage_names[s->stage]);
    if (s->mode == REPLICATION_MODE_PRIMARY) {
        /* Failover or not, the primary just stops forwarding. */
        if (s->stage == REPLICATION_STAGE_RUNNING) {
            if (failover) {
                replication_primary_abandon_secondary(bs);
            }
            bdrv_drained_begin(bs);
            replication_set_stage(s, REPLICATION_STAGE_STOPPED);
            bdrv_drained_end(bs);
        }
        return;
    }

    switch (s->stage) {
    case REPLICATION_STAGE_IDLE:
    case REPLICATION_STAGE_STOPPED:
    case REPLICATION_STAGE_DONE:
    case REPLICATION_STAGE_FAILOVER:
        return;
    case REPLICATION_STAGE_FAILOVER_FAILED:
        if (failover) {
            replication_secondary_failover(s, errp);
        }
        return;
    case REPLICATION_STAGE_RUNNING:
        break;
    }

    if (failover) {
        replication_secondary_failover(s, errp);
        return;
    }
    replication_secondary_release(s, true);
    bdrv_drained_begin(bs);
    replication_set_stage(s, REPLICATION_STAGE_STOPPED);
    bdrv_drained_end(bs);
}

static const ReplicationOps replication_ops = {
    .start = replication_start,
    .do_checkpoint = replication_do_checkpoint,
    .get_error = replication_get_error,
    .stop = replication_stop,
};

/* ---- block driver ---------------------------------------------------- */

static int replication_open(BlockDriverState *bs, QDict *options, int flags,
                            Error **errp)
{
    BDRVReplicationState *s = bs->opaque;
    QemuOpts *opts;
    const char *mode, *top_id;
    int ret;

    ret = bdrv_open_file_child(NULL, options, "file", bs, errp);
    if (ret < 0) {
        return ret;
    }

    opts = qemu_opts_create(&replication_runtime_opts, NULL, 0,
                            &error_abort);
    if (!qemu_opts_absorb_qdict(opts, options, errp)) {
        ret = -EINVAL;
        goto out;
    }

    mode = qemu_opt_get(opts, REPLICATION_OPT_MODE);
    top_id = qemu_opt_get(opts, REPLICATION_OPT_TOP_ID);
    if (!mode) {
        error_setg(errp, "replication: the option 'mode' is required "
                   "('primary' or 'secondary')");
        ret = -EINVAL;
        goto out;
    }
    if (!strcmp(mode, "primary")) {
        s->mode = REPLICATION_MODE_PRIMARY;
        if (top_id) {
            error_setg(errp, "replication: the option 'top-id' is only "
                       "valid in secondary mode");
            ret = -EINVAL;
            goto out;
        }
    } else if (!strcmp(mode, "secondary")) {
        s->mode = REPLICATION_MODE_SECONDARY;
        if (!top_id || !*top_id) {
            error_setg(errp, "replication: the option 'top-id' is required "
                       "in secondary mode");
            ret = -EINVAL;
            goto out;
        }
        if (!replication_check_chain(bs->file->bs, NULL, NULL, errp)) {
            ret = -EINVAL;
            goto out;
        }
        s->top_id = g_strdup(top_id);
    } else {
        error_setg(errp, "replication: invalid mode '%s' (expected "
                   "'primary' or 'secondary')", mode);
        ret = -EINVAL;
        goto out;
    }

    bdrv_graph_rdlock_main_loop();
    bs->supported_write_flags = BDRV_REQ_WRITE_UNCHANGED |
        (BDRV_REQ_FUA & bs->file->bs->supported_write_flags);
    bs->supported_zero_flags = BDRV_REQ_WRITE_UNCHANGED |
        ((BDRV_REQ_FUA | BDRV_REQ_MAY_UNMAP | BDRV_REQ_NO_FALLBACK) &
         bs->file->bs->supported_zero_flags);
    bdrv_graph_rdunlock_main_loop();

    s->bs = bs;
    s->stage = REPLICATION_STAGE_IDLE;
    qemu_mutex_init(&s->error_lock);
    s->rs = replication_new(bs, &replication_ops);
    ret = 0;
out:
    qemu_opts_del(opts);
    return ret;
}

static void replication_close(BlockDriverState *bs)
{
    BDRVReplicationState *s = bs->opaque;

    if (!s->rs) {
        return;
    }
    if (s->mode == REPLICATION_MODE_SECONDARY) {
        /*
         * Leave the chain as it is: the data stays in active and hidden.
         * No reopen here: the nodes around us may be closing too.
         */
        replication_secondary_release(s, false);
    }
    replication_remove(s->rs);
    s->rs = NULL;
    error_free(s->forward_error);
    error_free(s->failover_error);
    qemu_mutex_destroy(&s->error_lock);
    g_free(s->top_id);
}

static void GRAPH_RDLOCK
replication_child_perm(BlockDriverState *bs, BdrvChild *c, BdrvChildRole role,
                       BlockReopenQueue *reopen_queue,
                       uint64_t perm, uint64_t shared,
                       uint64_t *nperm, uint64_t *nshared)
{
    *nperm = perm & (BLK_PERM_CONSISTENT_READ | BLK_PERM_WRITE |
                     BLK_PERM_WRITE_UNCHANGED);
    /*
     * The secondary disk below the active disk is written by the NBD server
     * and the hidden disk by copy-before-write and the checkpoint: backing
     * children only share writes when their overlay's parents do, so share
     * them here.  Nobody may resize the chain while it is replicated.
     */
    *nshared = BLK_PERM_CONSISTENT_READ | BLK_PERM_WRITE |
               BLK_PERM_WRITE_UNCHANGED;
}

static int64_t coroutine_fn GRAPH_RDLOCK
replication_co_getlength(BlockDriverState *bs)
{
    return bdrv_co_getlength(bs->file->bs);
}

/* Primary: has forwarding failed already?  (error_lock) */
static bool replication_forward_failed(BDRVReplicationState *s)
{
    bool failed;

    qemu_mutex_lock(&s->error_lock);
    failed = s->forward_error != NULL;
    qemu_mutex_unlock(&s->error_lock);
    return failed;
}

/*
 * Primary: latch the first failure and report success to the quorum, so the
 * guest never sees the secondary's trouble; the controller learns it at the
 * next checkpoint.
 */
static int replication_forward_result(BDRVReplicationState *s,
                                      const char *what, int64_t offset,
                                      int64_t bytes, int ret)
{
    if (ret >= 0) {
        return ret;
    }
    trace_replication_forward_error(s->bs, what, offset, bytes, ret);
    qemu_mutex_lock(&s->error_lock);
    if (!s->forward_error) {
        error_setg_errno(&s->forward_error, -ret, "%s of %" PRId64
                         " bytes at offset %" PRId64, what, bytes, offset);
    }
    qemu_mutex_unlock(&s->error_lock);
    return 0;
}

/*
 * Whether a request may reach the file child: secondary before start is
 * refused (nothing set up), primary forwards only while running.
 * Returns 1 to forward, 0 to drop the request with success, or -errno.
 */
static int replication_io_gate(BDRVReplicationState *s)
{
    if (s->mode == REPLICATION_MODE_PRIMARY) {
        if (s->stage != REPLICATION_STAGE_RUNNING) {
            return -EIO;
        }
        return replication_forward_failed(s) ? 0 : 1;
    }
    return s->stage == REPLICATION_STAGE_IDLE ? -EIO : 1;
}

static int coroutine_fn GRAPH_RDLOCK
replication_co_preadv_part(BlockDriverState *bs, int64_t offset,
                           int64_t bytes, QEMUIOVector *qiov,
                           size_t qiov_offset, BdrvRequestFlags flags)
{
    BDRVReplicationState *s = bs->opaque;

    if (s->mode == REPLICATION_MODE_PRIMARY ||
        s->stage == REPLICATION_STAGE_IDLE) {
        /* The primary reads its own disk; the secondary is not set up. */
        return -EIO;
    }
    return bdrv_co_preadv_part(bs->file, offset, bytes, qiov, qiov_offset,
                               flags);
}

static int coroutine_fn GRAPH_RDLOCK
replication_co_pwritev_part(BlockDriverState *bs, int64_t offset,
                            int64_t bytes, QEMUIOVector *qiov,
                            size_t qiov_offset, BdrvRequestFlags flags)
{
    BDRVReplicationState *s = bs->opaque;
    int gate = replication_io_gate(s);
    int ret;

    if (gate <= 0) {
        return gate;
    }
    ret = bdrv_co_pwritev_part(bs->file, offset, bytes, qiov, qiov_offset,
                               flags);
    if (s->mode == REPLICATION_MODE_PRIMARY) {
        return replication_forward_result(s, "write", offset, bytes, ret);
    }
    return ret;
}

static int coroutine_fn GRAPH_RDLOCK
replication_co_pwrite_zeroes(BlockDriverState *bs, int64_t offset,
                             int64_t bytes, BdrvRequestFlags flags)
{
    BDRVReplicationState *s = bs->opaque;
    int gate = replication_io_gate(s);
    int ret;

    if (gate <= 0) {
        return gate;
    }
    ret = bdrv_co_pwrite_zeroes(bs->file, offset, bytes, flags);
    if (s->mode == REPLICATION_MODE_PRIMARY) {
        return replication_forward_result(s, "zero write", offset, bytes,
                                          ret);
    }
    return ret;
}

static int coroutine_fn GRAPH_RDLOCK
replication_co_flush(BlockDriverState *bs)
{
    BDRVReplicationState *s = bs->opaque;
    int ret;

    if (s->mode == REPLICATION_MODE_PRIMARY) {
        if (s->stage != REPLICATION_STAGE_RUNNING ||
            replication_forward_failed(s)) {
            return 0;
        }
        ret = bdrv_co_flush(bs->file->bs);
        return replication_forward_result(s, "flush", 0, 0, ret);
    }
    if (s->stage == REPLICATION_STAGE_IDLE) {
        return 0;
    }
    return bdrv_co_flush(bs->file->bs);
}

/* Options that may not change on reopen: they define what the node is. */
static const char *const replication_fixed_opts[] = {
    REPLICATION_OPT_MODE, REPLICATION_OPT_TOP_ID, NULL
};

static BlockDriver replication_driver = {
    .format_name = "replication",
    .is_filter = true,
    .strong_runtime_opts = replication_fixed_opts,
    .instance_size = sizeof(BDRVReplicationState),
    /* node life cycle */
    .bdrv_child_perm = replication_child_perm,
    .bdrv_open = replication_open,
    .bdrv_close = replication_close,
    /* I/O */
    .bdrv_co_preadv_part = replication_co_preadv_part,
    .bdrv_co_pwritev_part = replication_co_pwritev_part,
    .bdrv_co_pwrite_zeroes = replication_co_pwrite_zeroes,
    .bdrv_co_flush = replication_co_flush,
    .bdrv_co_getlength = replication_co_getlength,
};

static void replication_driver_register(void)
{
    bdrv_register(&replication_driver);
}

block_init(replication_driver_register);
