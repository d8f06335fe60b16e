/*
 * COLO proxy: the frame format of the proxy chardevs
 *
 * Copyright (c) 2026 The qemu-colo authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * Threads: a reader is used by the one thread that owns its chardev
 * handlers (main loop for the filters, the iothread for colo-compare).
 */

#include "qemu/osdep.h"
#include "qemu/bswap.h"
#include "net/colo-frame.h"

void colo_frame_reader_init(ColoFrameReader *r, bool vnet_hdr,
                            uint32_t max_len, ColoFrameFn *on_frame,
                            ColoFrameRejectFn *on_reject, void *opaque)
{
    memset(r, 0, sizeof(*r));
    r->vnet_hdr = vnet_hdr;
    r->max_len = max_len ? max_len : COLO_FRAME_DEFAULT_MAX;
    r->on_frame = on_frame;
    r->on_reject = on_reject;
    r->opaque = opaque;
    r->buf = g_malloc(r->max_len);
    r->state = COLO_FRAME_WANT_LEN;
}

void colo_frame_reader_destroy(ColoFrameReader *r)
{
    g_free(r->buf);
    r->buf = NULL;
}

void colo_frame_reader_reset(ColoFrameReader *r)
{
    r->state = COLO_FRAME_WANT_LEN;
    r->word_fill = 0;
    r->buf_fill = 0;
    r->skip_left = 0;
}

static void reject(ColoFrameReader *r, ColoFrameError err)
{
    r->rejected++;
    if (r->on_reject) {
        r->on_reject(r->opaque, err, r->len, r->vnet_hdr_len);
    }
    if (r->len == 0) {
        r->state = COLO_FRAME_WANT_LEN;
    } else {
        r->skip_left = r->len;
        r->state = COLO_FRAME_SKIPPING;
    }
}

/* The length word(s) are complete: decide what comes next. */
static void header_done(ColoFrameReader *r)
{
    if (r->len == 0) {
        reject(r, COLO_FRAME_ZERO_LENGTH);
    } else if (r->len > r->max_len) {
        reject(r, COLO_FRAME_OVERSIZED);
    } else if (r->vnet_hdr_len > r->len) {
        reject(r, COLO_FRAME_BAD_VNET_LEN);
    } else {
        r->buf_fill = 0;
        r->state = COLO_FRAME_WANT_DATA;
    }
}

void colo_frame_reader_feed(ColoFrameReader *r, const uint8_t *data,
                            size_t size)
{
    while (size > 0) {
        size_t n;

        switch (r->state) {
        case COLO_FRAME_WANT_LEN:
        case COLO_FRAME_WANT_VNET_LEN:
            n = MIN(size, 4 - r->word_fill);
            memcpy(r->word + r->word_fill, data, n);
            r->word_fill += n;
            if (r->word_fill == 4) {
                uint32_t v = ldl_be_p(r->word);

                r->word_fill = 0;
                if (r->state == COLO_FRAME_WANT_LEN) {
                    r->len = v;
                    r->vnet_hdr_len = 0;
                    if (r->vnet_hdr) {
                        r->state = COLO_FRAME_WANT_VNET_LEN;
                    } else {
                        header_done(r);
                    }
                } else {
                    r->vnet_hdr_len = v;
                    header_done(r);
                }
            }
            break;
        case COLO_FRAME_WANT_DATA:
            n = MIN(size, r->len - r->buf_fill);
            memcpy(r->buf + r->buf_fill, data, n);
            r->buf_fill += n;
            if (r->buf_fill == r->len) {
                r->frames++;
                r->state = COLO_FRAME_WANT_LEN;
                r->on_frame(r->opaque, r->buf, r->len, r->vnet_hdr_len);
            }
            break;
        case COLO_FRAME_SKIPPING:
        default:
            n = MIN(size, r->skip_left);
            r->skip_left -= n;
            if (r->skip_left == 0) {
                r->state = COLO_FRAME_WANT_LEN;
            }
            break;
        }
        data += n;
        size -= n;
    }
}

size_t colo_frame_header(uint8_t hdr[8], bool vnet_hdr, uint32_t len,
                         uint32_t vnet_hdr_len)
{
    stl_be_p(hdr, len);
    if (!vnet_hdr) {
        return 4;
    }
    stl_be_p(hdr + 4, vnet_hdr_len);
    return 8;
}

const char *colo_frame_error_name(ColoFrameError err)
{
    switch (err) {
    case COLO_FRAME_ZERO_LENGTH:
        return "zero-length";
    case COLO_FRAME_OVERSIZED:
        return "oversized";
    case COLO_FRAME_BAD_VNET_LEN:
        return "vnet-header-longer-than-frame";
    default:
        return "unknown";
    }
}
