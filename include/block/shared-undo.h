/*
 * The `shared-undo` block driver: COLO on one shared disk image
 *
 * Copyright (c) 2026 The qemu-colo authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * Layout of the undo image (little endian), see docs/system/qemu-colo.rst
 * "Shared storage":
 *
 *   0 and 512   two header slots; the one holding epoch E is slot E % 2
 *   4096        one record per region: epoch (u64), crc32c (u32), length (u32)
 *   data_off    region i's saved content at data_off + i * granularity,
 *               data_off = 4096 + records rounded up to the granularity
 */

#ifndef BLOCK_SHARED_UNDO_H
#define BLOCK_SHARED_UNDO_H

#define SHARED_UNDO_MAGIC           "COLOUNDO"
#define SHARED_UNDO_VERSION         1
#define SHARED_UNDO_SLOT_SIZE       512
#define SHARED_UNDO_RECORDS_OFFSET  4096
#define SHARED_UNDO_RECORD_SIZE     16

typedef struct SharedUndoHeader {
    char magic[8];
    uint32_t version;
    uint32_t granularity;
    uint64_t disk_size;
    uint64_t epoch;
    uint32_t crc;               /* crc32c of the bytes above */
} QEMU_PACKED SharedUndoHeader;

typedef struct SharedUndoRecord {
    uint64_t epoch;             /* epoch in which the region was saved */
    uint32_t crc;               /* crc32c of the saved bytes */
    uint32_t length;            /* saved bytes (the last region is short) */
} QEMU_PACKED SharedUndoRecord;

/*
 * The epoch the checkpoint stream carries for @bs (a shared-undo node on
 * the primary): the undo image's epoch once this checkpoint is received.
 * Its vmstate section calls it; so do tests, which have no stream.
 */
uint64_t shared_undo_outgoing_epoch(BlockDriverState *bs);

/*
 * The secondary applied a checkpoint that carried @epoch for @bs (ignored
 * unless @bs is in the secondary role).
 */
void shared_undo_incoming_epoch(BlockDriverState *bs, uint64_t epoch);

/*
 * How a node's epoch rides the checkpoint stream: set by the system
 * emulator (block/shared-undo-stream.c, a vmstate section per node);
 * NULL in tools and unit tests.
 */
typedef struct SharedUndoStreamOps {
    void *(*attach)(BlockDriverState *bs, Error **errp);
    void (*detach)(void *stream);
} SharedUndoStreamOps;

extern const SharedUndoStreamOps *shared_undo_stream_ops;

#endif /* BLOCK_SHARED_UNDO_H */
