/*
 * COLO proxy: helpers shared by colo-compare and the COLO filters
 *
 * Copyright (c) 2026 The qemu-colo authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef NET_COLO_H
#define NET_COLO_H

#include "chardev/char-fe.h"

/*
 * Attach @be to the chardev @id that @owner was given as property @prop.
 * @from_iothread: the chardev will be read from an iothread, which needs a
 * chardev that supports other main contexts (sockets do).  On failure sets
 * @errp with a message naming the owner, the property and the chardev.
 */
bool colo_proxy_attach_chardev(CharBackend *be, Object *owner,
                               const char *prop, const char *id,
                               bool from_iothread, Error **errp);

/*
 * IOCanReadHandler for proxy chardevs: the frame readers take any amount,
 * offer room for one whole frame at a time.
 */
int colo_proxy_can_read(void *opaque);

/*
 * COLO's input and output marks (net/colo-input.h, net/colo-output.h):
 * lines "<netdev id> <frames>\n".  colo_marks_foreach() calls @fn for each
 * line; false with @errp set at the first malformed one.
 */
typedef void ColoMarkFn(const char *netdev, uint64_t frames, void *opaque);
void colo_mark_append(GString *marks, const char *netdev, uint64_t frames);
bool colo_marks_foreach(const char *marks, size_t len, ColoMarkFn *fn,
                        void *opaque, Error **errp);

/*
 * Writes frames to a chardev without ever blocking the calling thread.
 *
 * A proxy object that blocked writing to a peer that does not read (a
 * hung secondary, a stalled link, a busy main loop) stopped its thread:
 * the primary's main loop froze under a client's flood while the secondary
 * hung, and colo-compare's iothread deadlocked with the main loop.  What
 * the chardev does not take at once waits here, in order, and is written
 * when it is writable again; beyond @max_bytes waiting, frames are lost as
 * on a congested link (for COLO: the secondary misses input and differs,
 * a checkpoint; a released packet is retransmitted by its sender), and
 * counted.  A partly written frame is lost when the chardev disconnects,
 * so that its next peer starts at a frame boundary: the owner calls
 * colo_chr_writer_reset() on CHR_EVENT_CLOSED.
 *
 * @ctx is the context of the calling thread (NULL: the main loop's).  A
 * chardev whose handlers run in @ctx and that can be watched (sockets,
 * fds) is written so; another is written whole, blocking, as QEMU's
 * chardev layer does.  Initialise after setting @be's handlers.
 */
typedef struct ColoChrWriter {
    CharBackend *be;
    GMainContext *ctx;          /* the caller's; NULL: the main loop */
    size_t max_bytes;
    bool nonblocking;           /* false: the chardev cannot be watched */
    GQueue pending;             /* GByteArray; the head may be partly written */
    size_t pending_bytes;
    guint watch;                /* waits for @be to be writable */
    uint64_t frames_lost;       /* over the bound, write error, disconnect */
} ColoChrWriter;

void colo_chr_writer_init(ColoChrWriter *w, CharBackend *be,
                          GMainContext *ctx, size_t max_bytes);
/*
 * Send @len bytes (one frame, header included) whole or not at all.
 * Returns false when the frame is lost (counted in frames_lost).
 */
bool colo_chr_writer_send(ColoChrWriter *w, const uint8_t *buf, size_t len);
/* Forget what waits (counted as lost): the chardev disconnected. */
void colo_chr_writer_reset(ColoChrWriter *w);
void colo_chr_writer_destroy(ColoChrWriter *w);

#endif /* NET_COLO_H */
