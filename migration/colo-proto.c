/*
 * COLO checkpoint protocol (see colo-proto.h)
 *
 * Copyright (c) 2026 The qemu-colo authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * Locking: none; each QEMUFile is used by one COLO thread at a time.
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qemu/bswap.h"
#include "qemu/crc32c.h"
#include "colo-proto.h"

static const char *const colo_msg_names[COLO_MSG__MAX] = {
    [COLO_MSG_HELLO] = "hello",
    [COLO_MSG_CHECKPOINT_REQUEST] = "checkpoint-request",
    [COLO_MSG_CHECKPOINT_REPLY] = "checkpoint-reply",
    [COLO_MSG_RAM] = "ram",
    [COLO_MSG_DEVICE_STATE] = "device-state",
    [COLO_MSG_RECEIVED] = "received",
    [COLO_MSG_LOADED] = "loaded",
    [COLO_MSG_INPUT_MARKS] = "input-marks",
};

const char *colo_msg_name(ColoMsgType type)
{
    if (type <= 0 || type >= COLO_MSG__MAX) {
        return "invalid";
    }
    return colo_msg_names[type];
}

/*
 * Wire layout: be32 type, be32 seq, be64 length, be32 crc, be32 flags,
 * be32 CRC32C of the 24 bytes before it.
 */
void colo_msg_encode(const ColoMsg *msg, uint8_t buf[COLO_MSG_WIRE_SIZE])
{
    stl_be_p(buf, msg->type);
    stl_be_p(buf + 4, msg->seq);
    stq_be_p(buf + 8, msg->length);
    stl_be_p(buf + 16, msg->crc);
    stl_be_p(buf + 20, msg->flags);
    stl_be_p(buf + 24, crc32c(0xffffffff, buf, 24));
}

bool colo_msg_decode(const uint8_t buf[COLO_MSG_WIRE_SIZE], ColoMsg *msg,
                     Error **errp)
{
    uint32_t type = ldl_be_p(buf);

    if (ldl_be_p(buf + 24) != crc32c(0xffffffff, buf, 24)) {
        error_setg(errp, "COLO: corrupt control message (bad checksum)");
        return false;
    }
    if (type == 0 || type >= COLO_MSG__MAX) {
        error_setg(errp, "COLO: unknown control message type %" PRIu32, type);
        return false;
    }
    msg->type = type;
    msg->seq = ldl_be_p(buf + 4);
    msg->length = ldq_be_p(buf + 8);
    msg->crc = ldl_be_p(buf + 16);
    msg->flags = ldl_be_p(buf + 20);
    return true;
}

bool colo_msg_check(const ColoMsg *msg, ColoMsgType type, uint32_t seq,
                    Error **errp)
{
    if (msg->type != type) {
        error_setg(errp, "COLO: expected message '%s', got '%s'",
                   colo_msg_name(type), colo_msg_name(msg->type));
        return false;
    }
    switch (type) {
    case COLO_MSG_HELLO:
        if (msg->length != COLO_PROTO_MAGIC) {
            error_setg(errp, "COLO: the peer does not speak this COLO "
                       "protocol (bad magic 0x%" PRIx64 ")", msg->length);
            return false;
        }
        if (msg->crc != COLO_PROTO_VERSION) {
            error_setg(errp, "COLO: the peer speaks protocol version %" PRIu32
                       ", this QEMU speaks version %d: use the same QEMU "
                       "build on both sides", msg->crc, COLO_PROTO_VERSION);
            return false;
        }
        return true;
    case COLO_MSG_DEVICE_STATE:
        if (msg->length > COLO_DEVICE_STATE_MAX) {
            error_setg(errp, "COLO: device state of %" PRIu64 " bytes "
                       "exceeds the limit of %d bytes", msg->length,
                       COLO_DEVICE_STATE_MAX);
            return false;
        }
        break;
    case COLO_MSG_INPUT_MARKS:
    case COLO_MSG_RECEIVED:
        if (msg->length > COLO_MARKS_MAX) {
            error_setg(errp, "COLO: %s marks of %" PRIu64 " bytes "
                       "exceed the limit of %d bytes",
                       type == COLO_MSG_RECEIVED ? "output" : "input",
                       msg->length, COLO_MARKS_MAX);
            return false;
        }
        break;
    default:
        break;
    }
    if (msg->seq != seq) {
        error_setg(errp, "COLO: message '%s' is for checkpoint %" PRIu32
                   ", expected checkpoint %" PRIu32,
                   colo_msg_name(type), msg->seq, seq);
        return false;
    }
    return true;
}

uint32_t colo_device_state_crc(const uint8_t *data, size_t len)
{
    return crc32c(0xffffffff, data, len);
}

#ifndef COLO_PROTO_NO_QEMUFILE
static void colo_msg_put(QEMUFile *f, const ColoMsg *msg)
{
    uint8_t buf[COLO_MSG_WIRE_SIZE];

    colo_msg_encode(msg, buf);
    qemu_put_buffer(f, buf, sizeof(buf));
}

void colo_msg_put_payload(QEMUFile *f, ColoMsg *msg, const void *data,
                          size_t len)
{
    msg->length = len;
    msg->crc = colo_device_state_crc(data, len);
    colo_msg_put(f, msg);
    qemu_put_buffer(f, data, len);
}

bool colo_msg_flush(QEMUFile *f, const ColoMsg *msg, Error **errp)
{
    if (qemu_fflush(f) < 0) {
        error_setg(errp, "COLO: cannot send '%s': %s",
                   colo_msg_name(msg->type),
                   strerror(-qemu_file_get_error(f)));
        return false;
    }
    return true;
}

bool colo_msg_send(QEMUFile *f, const ColoMsg *msg, Error **errp)
{
    colo_msg_put(f, msg);
    return colo_msg_flush(f, msg, errp);
}

bool colo_msg_expect(QEMUFile *f, ColoMsgType type, uint32_t seq,
                     ColoMsg *msg, Error **errp)
{
    uint8_t buf[COLO_MSG_WIRE_SIZE];

    if (qemu_get_buffer(f, buf, sizeof(buf)) != sizeof(buf) ||
        qemu_file_get_error(f)) {
        error_setg(errp, "COLO: connection lost while waiting for '%s'",
                   colo_msg_name(type));
        return false;
    }
    return colo_msg_decode(buf, msg, errp) &&
           colo_msg_check(msg, type, seq, errp);
}


uint8_t *colo_msg_receive_payload(QEMUFile *f, const ColoMsg *msg,
                                  const char *what, Error **errp)
{
    g_autofree uint8_t *data = g_try_malloc(MAX(msg->length, 1));

    if (!data) {
        error_setg(errp, "COLO: cannot allocate %" PRIu64 " bytes for the "
                   "%s", msg->length, what);
        return NULL;
    }
    if (qemu_get_buffer(f, data, msg->length) != msg->length ||
        qemu_file_get_error(f)) {
        error_setg(errp, "COLO: connection lost while receiving the %s",
                   what);
        return NULL;
    }
    if (colo_device_state_crc(data, msg->length) != msg->crc) {
        error_setg(errp, "COLO: corrupt %s (bad checksum)", what);
        return NULL;
    }
    return g_steal_pointer(&data);
}
#endif /* COLO_PROTO_NO_QEMUFILE */
