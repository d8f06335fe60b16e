/*
 * shared-undo: the epoch in the checkpoint stream (system emulators)
 *
 * Copyright (c) 2026 The qemu-colo authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * Each shared-undo node gets a vmstate section "shared-undo/<node-name>"
 * holding one number: on the primary, the epoch its undo image will have
 * once this checkpoint is received; on the secondary, loading it (with the
 * rest of the device state, so only for a checkpoint applied whole) sets
 * the epoch the node shows and rolls back to.  A node missing on one side
 * fails the migration, which is what a mismatched pair should do.
 * Kept apart from the driver: the tools link the block layer without
 * migration.
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qemu/module.h"
#include "block/block_int.h"
#include "block/shared-undo.h"
#include "migration/vmstate.h"

typedef struct SharedUndoStream {
    BlockDriverState *bs;
    uint64_t epoch;
    VMStateDescription vmsd;
    char *name;
} SharedUndoStream;

static int shared_undo_stream_pre_save(void *opaque)
{
    SharedUndoStream *st = opaque;

    st->epoch = shared_undo_outgoing_epoch(st->bs);
    return 0;
}

static int shared_undo_stream_post_load(void *opaque, int version_id)
{
    SharedUndoStream *st = opaque;

    shared_undo_incoming_epoch(st->bs, st->epoch);
    return 0;
}

static const VMStateDescription shared_undo_stream_template = {
    .version_id = 1,
    .minimum_version_id = 1,
    .pre_save = shared_undo_stream_pre_save,
    .post_load = shared_undo_stream_post_load,
    .fields = (const VMStateField[]) {
        VMSTATE_UINT64(epoch, SharedUndoStream),
        VMSTATE_END_OF_LIST()
    },
};

static void *shared_undo_stream_attach(BlockDriverState *bs, Error **errp)
{
    SharedUndoStream *st = g_new0(SharedUndoStream, 1);

    st->bs = bs;
    st->name = g_strdup_printf("shared-undo/%s", bs->node_name);
    st->vmsd = shared_undo_stream_template;
    st->vmsd.name = st->name;
    if (vmstate_register(NULL, 0, &st->vmsd, st) < 0) {
        error_setg(errp, "shared-undo: cannot register the migration state "
                   "'%s'", st->name);
        g_free(st->name);
        g_free(st);
        return NULL;
    }
    return st;
}

static void shared_undo_stream_detach(void *stream)
{
    SharedUndoStream *st = stream;

    vmstate_unregister(NULL, &st->vmsd, st);
    g_free(st->name);
    g_free(st);
}

static const SharedUndoStreamOps shared_undo_stream_ops_system = {
    .attach = shared_undo_stream_attach,
    .detach = shared_undo_stream_detach,
};

static void shared_undo_stream_init(void)
{
    shared_undo_stream_ops = &shared_undo_stream_ops_system;
}

block_init(shared_undo_stream_init);
