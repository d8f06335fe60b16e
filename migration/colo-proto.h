/*
 * COLO checkpoint protocol: control messages between primary and secondary
 *
 * Copyright (c) 2026 The qemu-colo authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * Control messages travel on the migration stream (primary to secondary) and
 * on its return path (secondary to primary).  Each is a fixed-size record with
 * its own CRC32C, so a corrupt or truncated message is detected, never acted
 * upon.  One checkpoint, numbered by @seq:
 *
 *   P -> S  CHECKPOINT_REQUEST    the primary starts a checkpoint
 *   S -> P  CHECKPOINT_REPLY      the secondary is ready for the RAM;
 *                                 its guest runs on
 *   P -> S  RAM                   followed by a migration stream of RAM
 *                                 sections ending with QEMU_VM_EOF; the
 *                                 first while the primary's guest runs
 *                                 (live RAM phase), the rest after it
 *                                 stopped; the secondary stops its guest
 *                                 at QEMU_VM_EOF
 *   P -> S  DEVICE_STATE          @length bytes of device state follow, with
 *                                 CRC32C @crc; @flags has COLO_FLAG_RUN
 *                                 when the guest is to run afterwards
 *   P -> S  INPUT_MARKS           @length bytes follow, with CRC32C @crc:
 *                                 for each mirrored NIC, how many client
 *                                 frames the primary had mirrored when it
 *                                 stopped (net/colo-input.h)
 *   S -> P  RECEIVED              all of it arrived intact; the secondary's
 *                                 disks are checkpointed; it will apply it;
 *                                 @length bytes follow, with CRC32C @crc:
 *                                 for each redirector of its guest's
 *                                 output, how many frames it had sent when
 *                                 its guest stopped (net/colo-output.h)
 *   S -> P  LOADED                the secondary applied it
 *
 * Once, when the secondary enters COLO:  S -> P  HELLO (magic, version).
 * A peer with another version is refused with a clear error.
 *
 * When the secondary stops its guest is its own affair: the messages and
 * their order do not depend on it, so a secondary that stops at the
 * request and one that runs until QEMU_VM_EOF work with the same primary.
 * It runs meanwhile so that colo-compare has its output to compare the
 * primary's with during the live RAM phase; see colo-incoming.c for why
 * the checkpoint stays exact.
 */

#ifndef MIGRATION_COLO_PROTO_H
#define MIGRATION_COLO_PROTO_H

#define COLO_PROTO_MAGIC    0x434f4c4fu   /* "COLO" */
#define COLO_PROTO_VERSION  3     /* 2: INPUT_MARKS, 3: output marks */
#define COLO_MSG_WIRE_SIZE  28
/* A device state larger than this is refused as corrupt. */
#define COLO_DEVICE_STATE_MAX  (256 * 1024 * 1024)
/* Input or output marks larger than this are refused as corrupt. */
#define COLO_MARKS_MAX         (64 * 1024)

typedef enum ColoMsgType {
    COLO_MSG_HELLO = 1,
    COLO_MSG_CHECKPOINT_REQUEST,
    COLO_MSG_CHECKPOINT_REPLY,
    COLO_MSG_RAM,
    COLO_MSG_DEVICE_STATE,
    COLO_MSG_RECEIVED,
    COLO_MSG_LOADED,
    COLO_MSG_INPUT_MARKS,
    COLO_MSG__MAX,
} ColoMsgType;

#define COLO_FLAG_RUN  1u

typedef struct ColoMsg {
    ColoMsgType type;
    uint32_t seq;
    /* DEVICE_STATE, INPUT_MARKS, RECEIVED: bytes that follow; HELLO: magic */
    uint64_t length;
    uint32_t crc;       /* CRC32C of them; HELLO: version */
    uint32_t flags;     /* DEVICE_STATE: COLO_FLAG_* */
} ColoMsg;

const char *colo_msg_name(ColoMsgType type);

/* Pure encoding, testable without a VM. */
void colo_msg_encode(const ColoMsg *msg, uint8_t buf[COLO_MSG_WIRE_SIZE]);
bool colo_msg_decode(const uint8_t buf[COLO_MSG_WIRE_SIZE], ColoMsg *msg,
                     Error **errp);
/* Check that @msg is a @type for checkpoint @seq (and sane for its type). */
bool colo_msg_check(const ColoMsg *msg, ColoMsgType type, uint32_t seq,
                    Error **errp);
uint32_t colo_device_state_crc(const uint8_t *data, size_t len);

#ifndef COLO_PROTO_NO_QEMUFILE
#include "qemu-file.h"

/* Write and flush one message; false with @errp set on a stream error. */
bool colo_msg_send(QEMUFile *f, const ColoMsg *msg, Error **errp);
/* Read one message of @type for checkpoint @seq; blocks on @f. */
bool colo_msg_expect(QEMUFile *f, ColoMsgType type, uint32_t seq,
                     ColoMsg *msg, Error **errp);
/*
 * Queue @msg followed by the @len bytes of @data, with their length and
 * CRC32C set in @msg; colo_msg_flush() sends what is queued (a full
 * buffer is written on the way).
 */
void colo_msg_put_payload(QEMUFile *f, ColoMsg *msg, const void *data,
                          size_t len);
/* Send what is queued; @msg names the last message for errors. */
bool colo_msg_flush(QEMUFile *f, const ColoMsg *msg, Error **errp);
/*
 * Read the @msg->length bytes that follow @msg (@what: for errors) into a
 * new buffer and check their CRC32C; NULL with @errp set on failure.
 */
uint8_t *colo_msg_receive_payload(QEMUFile *f, const ColoMsg *msg,
                                  const char *what, Error **errp);
#endif

#endif /* MIGRATION_COLO_PROTO_H */
