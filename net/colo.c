/*
 * COLO proxy: helpers shared by colo-compare and the COLO filters
 *
 * Copyright (c) 2026 The qemu-colo authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * Threads: colo_proxy_attach_chardev() is called from the main loop with
 * the big QEMU lock held; a ColoChrWriter is used in the thread of its
 * chardev's context (see net/colo.h).
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qom/object.h"
#include "chardev/char.h"
#include "net/colo.h"
#include "net/colo-frame.h"
#include "trace.h"

bool colo_proxy_attach_chardev(CharBackend *be, Object *owner,
                               const char *prop, const char *id,
                               bool from_iothread, Error **errp)
{
    Chardev *chr = qemu_chr_find(id);
    const char *type = object_get_typename(owner);
    const char *name = object_get_canonical_path_component(owner) ?: "?";

    if (!chr) {
        error_setg(errp, "%s '%s': chardev '%s' given as '%s' not found",
                   type, name, id, prop);
        return false;
    }
    if (from_iothread &&
        !qemu_chr_has_feature(chr, QEMU_CHAR_FEATURE_GCONTEXT)) {
        error_setg(errp, "%s '%s': chardev '%s' given as '%s' cannot be "
                   "read from an iothread; use a socket chardev",
                   type, name, id, prop);
        return false;
    }
    return qemu_chr_fe_init(be, chr, errp);
}

int colo_proxy_can_read(void *opaque)
{
    return COLO_FRAME_DEFAULT_MAX;
}

static gboolean writer_writable(void *do_not_use, GIOCondition cond,
                                void *opaque);

/* One write: bytes taken (0 if the chardev is full), -1 on another error. */
static int writer_write(ColoChrWriter *w, const uint8_t *buf, size_t len)
{
    int n = qemu_chr_fe_write(w->be, buf, len);

    if (n < 0 && errno == EAGAIN) {
        return 0;
    }
    return n;
}

/* The watch may be in an iothread's context: g_source_remove() cannot. */
static void writer_unwatch(ColoChrWriter *w)
{
    GSource *src;

    if (w->watch) {
        src = g_main_context_find_source_by_id(w->ctx, w->watch);
        if (src) {
            g_source_destroy(src);
        }
        w->watch = 0;
    }
}

static void writer_wait_writable(ColoChrWriter *w)
{
    if (!w->watch) {
        w->watch = qemu_chr_fe_add_watch(w->be, G_IO_OUT | G_IO_HUP,
                                         writer_writable, w);
        if (!w->watch) {
            colo_chr_writer_reset(w);   /* the chardev went away */
        }
    }
}

/* Write what waits, in order, as far as the chardev takes it. */
static void writer_flush(ColoChrWriter *w)
{
    GByteArray *b;
    int n;

    while ((b = g_queue_peek_head(&w->pending))) {
        n = writer_write(w, b->data, b->len);
        if (n < 0) {
            colo_chr_writer_reset(w);
            return;
        }
        w->pending_bytes -= n;
        if (n < b->len) {
            g_byte_array_remove_range(b, 0, n);
            writer_wait_writable(w);
            return;
        }
        g_byte_array_unref(g_queue_pop_head(&w->pending));
    }
}

static gboolean writer_writable(void *do_not_use, GIOCondition cond,
                                void *opaque)
{
    ColoChrWriter *w = opaque;

    w->watch = 0;
    writer_flush(w);
    return G_SOURCE_REMOVE;
}

void colo_chr_writer_init(ColoChrWriter *w, CharBackend *be,
                          GMainContext *ctx, size_t max_bytes)
{
    Chardev *chr = qemu_chr_fe_get_driver(be);

    *w = (ColoChrWriter) {
        .be = be,
        .ctx = ctx,
        .max_bytes = max_bytes,
        /* the watch is dispatched in the chardev's context: it must be ours */
        .nonblocking = chr && CHARDEV_GET_CLASS(chr)->chr_add_watch &&
                       chr->gcontext == ctx,
    };
    g_queue_init(&w->pending);
}

bool colo_chr_writer_send(ColoChrWriter *w, const uint8_t *buf, size_t len)
{
    int written = 0;

    if (!w->nonblocking) {
        if (qemu_chr_fe_write_all(w->be, buf, len) != len) {
            w->frames_lost++;
            return false;
        }
        return true;
    }
    if (g_queue_is_empty(&w->pending)) {
        written = writer_write(w, buf, len);
        if (written < 0) {
            w->frames_lost++;
            return false;
        }
        if (written == len) {
            return true;
        }
    }
    /* Over the bound something waits already: nothing was written. */
    if (w->pending_bytes + len - written > w->max_bytes) {
        w->frames_lost++;
        trace_colo_chr_writer_lost(qemu_chr_fe_get_driver(w->be)->label,
                                   len, w->pending_bytes);
        return false;
    }
    g_queue_push_tail(&w->pending,
                      g_byte_array_append(g_byte_array_sized_new(len - written),
                                          buf + written, len - written));
    w->pending_bytes += len - written;
    writer_wait_writable(w);
    return true;
}

void colo_chr_writer_reset(ColoChrWriter *w)
{
    GByteArray *b;

    writer_unwatch(w);          /* it may watch a closed channel */
    while ((b = g_queue_pop_head(&w->pending))) {
        w->frames_lost++;
        g_byte_array_unref(b);
    }
    w->pending_bytes = 0;
}

void colo_chr_writer_destroy(ColoChrWriter *w)
{
    colo_chr_writer_reset(w);
}

/* ---- COLO marks --------------------------------------------------------- */

void colo_mark_append(GString *marks, const char *netdev, uint64_t frames)
{
    g_string_append_printf(marks, "%s %" PRIu64 "\n", netdev, frames);
}

bool colo_marks_foreach(const char *marks, size_t len, ColoMarkFn *fn,
                        void *opaque, Error **errp)
{
    g_autofree char *text = g_strndup(marks, len);
    g_auto(GStrv) lines = g_strsplit(text, "\n", -1);

    for (int i = 0; lines[i]; i++) {
        char netdev[64];
        uint64_t frames;

        if (!*lines[i]) {
            continue;
        }
        if (sscanf(lines[i], "%63s %" SCNu64, netdev, &frames) != 2) {
            error_setg(errp, "COLO: malformed mark '%s'", lines[i]);
            return false;
        }
        fn(netdev, frames, opaque);
    }
    return true;
}
