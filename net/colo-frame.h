/*
 * COLO proxy: the frame format of the proxy chardevs
 *
 * Copyright (c) 2026 The qemu-colo authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * On the wire a frame is: be32 length L; then, only when the vnet header
 * is enabled, be32 vnet header length V; then L bytes, of which the first
 * V are the vnet header.  The reader is fed with whatever the chardev
 * delivers and calls back once per complete frame.
 *
 * Limits: L must be 1..max_len and V must be <= L; a frame breaking them
 * is rejected (reject callback, counter) and its L bytes are skipped
 * without being stored, so the stream stays in step and memory stays
 * bounded by max_len.
 *
 * Pure C + GLib; one reader belongs to one thread.
 */

#ifndef NET_COLO_FRAME_H
#define NET_COLO_FRAME_H

/* A whole 64 KiB IP datagram plus Ethernet, VLAN tags and a vnet header */
#define COLO_FRAME_DEFAULT_MAX  (65536 + 256)

typedef enum ColoFrameError {
    COLO_FRAME_ZERO_LENGTH,
    COLO_FRAME_OVERSIZED,
    COLO_FRAME_BAD_VNET_LEN,
} ColoFrameError;

/* @buf is only valid during the call. */
typedef void ColoFrameFn(void *opaque, const uint8_t *buf, size_t len,
                         uint32_t vnet_hdr_len);
typedef void ColoFrameRejectFn(void *opaque, ColoFrameError err,
                               uint32_t len, uint32_t vnet_hdr_len);

typedef enum ColoFrameState {
    COLO_FRAME_WANT_LEN,
    COLO_FRAME_WANT_VNET_LEN,
    COLO_FRAME_WANT_DATA,
    COLO_FRAME_SKIPPING,
} ColoFrameState;

typedef struct ColoFrameReader {
    bool vnet_hdr;
    uint32_t max_len;
    ColoFrameFn *on_frame;
    ColoFrameRejectFn *on_reject;
    void *opaque;

    ColoFrameState state;
    uint8_t word[4];
    size_t word_fill;
    uint32_t len;
    uint32_t vnet_hdr_len;
    uint8_t *buf;               /* max_len bytes */
    size_t buf_fill;
    uint32_t skip_left;

    uint64_t frames;
    uint64_t rejected;
} ColoFrameReader;

void colo_frame_reader_init(ColoFrameReader *r, bool vnet_hdr,
                            uint32_t max_len, ColoFrameFn *on_frame,
                            ColoFrameRejectFn *on_reject, void *opaque);
void colo_frame_reader_destroy(ColoFrameReader *r);
/* Forget a partial frame (the chardev reconnected). */
void colo_frame_reader_reset(ColoFrameReader *r);
void colo_frame_reader_feed(ColoFrameReader *r, const uint8_t *data,
                            size_t size);

/*
 * Write the frame header for @len bytes (vnet header of @vnet_hdr_len
 * included) into @hdr; returns its size (4 or 8).
 */
size_t colo_frame_header(uint8_t hdr[8], bool vnet_hdr, uint32_t len,
                         uint32_t vnet_hdr_len);

const char *colo_frame_error_name(ColoFrameError err);

#endif /* NET_COLO_FRAME_H */
