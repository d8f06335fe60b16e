/*
 * COLO proxy: filter-mirror and filter-redirector
 *
 * Copyright (c) 2026 The qemu-colo authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * filter-mirror copies every packet of its netdev (in the directions of
 * its 'queue') to the chardev 'outdev' and lets it go on.
 * filter-redirector takes every packet to 'outdev' (when set) instead of
 * letting it go on, and injects the frames read from 'indev' (when set)
 * into the netdev's path right after itself: with queue=rx towards the
 * netdev (as if the guest sent them), otherwise towards the guest.
 * Frames on the chardevs use the proxy frame format (net/colo-frame.h).
 *
 * In COLO both keep count of the frames on their chardev, the primary's
 * mirror holds client frames read while its guest is stopped (they reach
 * its guest only after the checkpoint), and the secondary's redirector
 * holds client frames while its guest is stopped, so that input the
 * checkpoint already holds is not delivered twice (see net/colo-input.h);
 * the secondary's count of its guest's output marks where a checkpoint
 * begins in it (net/colo-output.h).
 *
 * Threads and locking: everything runs in the main loop under the big
 * QEMU lock (netfilter callbacks, chardev handlers in the default context,
 * VM state change handlers, and the COLO thread's calls into
 * colo-input.h, which take the BQL); the list of instances is only touched
 * under it too.
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qemu/iov.h"
#include "chardev/char-fe.h"
#include "net/filter.h"
#include "net/net.h"
#include "net/colo.h"
#include "net/colo-frame.h"
#include "net/colo-input.h"
#include "net/colo-output.h"
#include "migration/colo.h"
#include "system/runstate.h"
#include "trace.h"

#define TYPE_FILTER_MIRROR "filter-mirror"
#define TYPE_FILTER_REDIRECTOR "filter-redirector"

/* Both types share this state; a plain cast serves them both. */
typedef struct ColoMirrorState ColoMirrorState;
#define COLO_MIRROR(obj) ((ColoMirrorState *)(obj))

struct ColoMirrorState {
    NetFilterState parent_obj;

    char *indev_id;
    char *outdev_id;
    bool vnet_hdr;

    CharBackend indev;
    CharBackend outdev;
    ColoFrameReader reader;     /* frames from indev */
    bool reader_ready;
    uint64_t frames_rejected;

    /* COLO input marks (net/colo-input.h) */
    QTAILQ_ENTRY(ColoMirrorState) next;
    ColoChrWriter out;          /* to outdev, never blocking the main loop */
    uint64_t frames_mirrored;   /* sent whole to outdev since it opened */
    uint64_t frames_read;       /* redirector: read since indev opened */
    uint64_t input_mark;        /* redirector: frames below are in the guest */
    uint64_t frames_dropped;    /* redirector: below the mark, not delivered */
    GQueue held;                /* HeldFrame, guest stopped (see above) */
    size_t held_bytes;
    VMChangeStateEntry *vm_change;
};

/* A client frame held while the guest is stopped (index: redirector). */
typedef struct HeldFrame {
    uint64_t index;
    uint32_t vnet_hdr_len;
    size_t len;
    uint8_t data[];
} HeldFrame;

/*
 * Beyond this, held frames are not held: a redirector's go to the net
 * layer's queue, a mirror's to outdev at once, as without COLO.
 */
#define HELD_MAX_BYTES             (16 * 1024 * 1024)
/* Beyond this waiting for outdev, frames are lost (net/colo.h). */
#define OUTDEV_PENDING_MAX_BYTES   (16 * 1024 * 1024)

static QTAILQ_HEAD(, ColoMirrorState) colo_mirrors =
    QTAILQ_HEAD_INITIALIZER(colo_mirrors);

static bool is_redirector(ColoMirrorState *s)
{
    return object_dynamic_cast(OBJECT(s), TYPE_FILTER_REDIRECTOR) != NULL;
}

static void mirror_send(ColoMirrorState *s, const struct iovec *iov,
                        int iovcnt)
{
    NetFilterState *nf = NETFILTER(s);
    size_t size = iov_size(iov, iovcnt);
    uint32_t vnet_len = s->vnet_hdr ? nf->netdev->vnet_hdr_len : 0;
    g_autofree uint8_t *buf = NULL;
    size_t hdr_len;

    if (!size || size > UINT32_MAX) {
        return;
    }
    buf = g_malloc(8 + size);
    hdr_len = colo_frame_header(buf, s->vnet_hdr, size, vnet_len);
    iov_to_buf(iov, iovcnt, 0, buf + hdr_len, size);
    /*
     * Its peer reads this frame as the next one (the input marks count on
     * that), unless it is lost: then it never arrives.
     */
    if (colo_chr_writer_send(&s->out, buf, hdr_len + size)) {
        s->frames_mirrored++;
    } else {
        trace_colo_filter_frame_lost(object_get_canonical_path_component(
                                         OBJECT(s)), s->outdev_id,
                                     s->out.frames_lost);
    }
}

/*
 * Client input the COLO primary's netdev read while the guest is stopped
 * for a checkpoint (a netdev may read one frame more before it sees that
 * its NIC cannot take it): the frame waits in the net layer's queue and
 * reaches the guest when it runs again, after the checkpoint.  Mirrored
 * now, it would count in this checkpoint's input mark, though the
 * checkpoint does not hold it, and reach the secondary's guest while that
 * still runs (it stops later), to be lost with the state the load
 * replaces: the secondary would never see it, and the primary's answer
 * would wait for the secondary's (a SYN's: until the client's
 * retransmission, 1 s).
 * Held until the guest runs again, it is mirrored after the checkpoint,
 * above the mark, as the primary's guest takes it.
 */
static bool mirror_holds_input(ColoMirrorState *s)
{
    return !is_redirector(s) &&
           NETFILTER(s)->direction == NET_FILTER_DIRECTION_TX &&
           get_colo_mode() == COLO_MODE_PRIMARY && !runstate_is_running();
}

static void mirror_hold(ColoMirrorState *s, const struct iovec *iov,
                        int iovcnt)
{
    size_t len = iov_size(iov, iovcnt);
    HeldFrame *f = g_malloc(sizeof(*f) + len);

    *f = (HeldFrame) { .len = len };
    iov_to_buf(iov, iovcnt, 0, f->data, len);
    g_queue_push_tail(&s->held, f);
    s->held_bytes += len;
    trace_colo_filter_input_held(object_get_canonical_path_component(
                                     OBJECT(s)), len);
}

/* The guest runs again: mirror what its netdev read while it was stopped. */
static void mirror_vm_change(void *opaque, bool running, RunState state)
{
    ColoMirrorState *s = opaque;
    HeldFrame *f;

    while (running && (f = g_queue_pop_head(&s->held))) {
        struct iovec iov = { .iov_base = f->data, .iov_len = f->len };

        s->held_bytes -= f->len;
        if (qemu_chr_fe_backend_connected(&s->outdev)) {
            mirror_send(s, &iov, 1);
        }
        g_free(f);
    }
}

static ssize_t mirror_receive_iov(NetFilterState *nf, NetClientState *sender,
                                  unsigned flags, const struct iovec *iov,
                                  int iovcnt, NetPacketSent *sent_cb)
{
    ColoMirrorState *s = COLO_MIRROR(nf);

    if (!qemu_chr_fe_backend_connected(&s->outdev)) {
        return 0;
    }
    if (!is_redirector(s)) {
        if (mirror_holds_input(s) && s->held_bytes + iov_size(iov, iovcnt) <=
            HELD_MAX_BYTES) {
            mirror_hold(s, iov, iovcnt);
            return 0;
        }
        mirror_vm_change(s, runstate_is_running(), RUN_STATE__MAX);
    }
    mirror_send(s, iov, iovcnt);
    if (is_redirector(s)) {
        /* taken: it goes to outdev instead of on */
        return iov_size(iov, iovcnt);
    }
    return 0;
}

/* ---- indev (filter-redirector) ------------------------------------------ */

/* Large enough for every virtio-net header layout. */
#define REDIRECTOR_VNET_HDR_MAX 64

static void redirector_deliver(ColoMirrorState *s, const uint8_t *buf,
                               size_t len, uint32_t vnet_hdr_len);

/* Frames towards the guest of a COLO secondary: client input. */
static bool redirector_feeds_secondary(ColoMirrorState *s)
{
    NetFilterState *nf = NETFILTER(s);

    return nf->direction == NET_FILTER_DIRECTION_TX &&
           get_colo_mode() == COLO_MODE_SECONDARY;
}

static void redirector_drop_held_below_mark(ColoMirrorState *s)
{
    HeldFrame *f;

    while ((f = g_queue_peek_head(&s->held)) && f->index < s->input_mark) {
        g_queue_pop_head(&s->held);
        s->held_bytes -= f->len;
        s->frames_dropped++;
        g_free(f);
    }
}

static void redirector_release_held(ColoMirrorState *s)
{
    HeldFrame *f;

    redirector_drop_held_below_mark(s);
    while ((f = g_queue_pop_head(&s->held))) {
        s->held_bytes -= f->len;
        redirector_deliver(s, f->data, f->len, f->vnet_hdr_len);
        g_free(f);
    }
}

/* The guest runs again (after a checkpoint, or after failover). */
static void redirector_vm_change(void *opaque, bool running, RunState state)
{
    if (running) {
        redirector_release_held(opaque);
    }
}

static void redirector_inject(void *opaque, const uint8_t *buf, size_t len,
                              uint32_t vnet_hdr_len)
{
    ColoMirrorState *s = opaque;
    uint64_t index = s->frames_read++;
    HeldFrame *f;

    if (redirector_feeds_secondary(s)) {
        if (index < s->input_mark) {
            /* The last checkpoint holds the primary's answer to it. */
            s->frames_dropped++;
            return;
        }
        if (!runstate_is_running() &&
            s->held_bytes + len <= HELD_MAX_BYTES) {
            f = g_malloc(sizeof(*f) + len);
            *f = (HeldFrame) { .index = index, .vnet_hdr_len = vnet_hdr_len,
                               .len = len };
            memcpy(f->data, buf, len);
            g_queue_push_tail(&s->held, f);
            s->held_bytes += len;
            return;
        }
    }
    redirector_release_held(s);
    redirector_deliver(s, buf, len, vnet_hdr_len);
}

static void redirector_deliver(ColoMirrorState *s, const uint8_t *buf,
                               size_t len, uint32_t vnet_hdr_len)
{
    NetFilterState *nf = NETFILTER(s);
    uint8_t hdr[REDIRECTOR_VNET_HDR_MAX] = { 0 };
    struct iovec iov[2] = {
        { .iov_base = (void *)buf, .iov_len = len },
    };
    int iovcnt = 1;
    NetClientState *sender;
    uint32_t local_len;

    if (!nf->netdev || !nf->on) {
        return;
    }
    /*
     * The frame's virtio-net header has the layout of the sender's netdev
     * (e.g. 10 bytes, or 12 with mergeable rx buffers); the guest behind
     * this netdev may use another one, for instance while the two guests'
     * drivers are not at the same point.  Re-frame it: the common part is
     * kept, a longer local header is zero-padded, a shorter one truncated.
     */
    local_len = nf->netdev->vnet_hdr_len;
    if (s->vnet_hdr && vnet_hdr_len != local_len && vnet_hdr_len <= len &&
        local_len <= sizeof(hdr)) {
        memcpy(hdr, buf, MIN(vnet_hdr_len, local_len));
        iov[0] = (struct iovec) { .iov_base = hdr, .iov_len = local_len };
        iov[1] = (struct iovec) { .iov_base = (void *)(buf + vnet_hdr_len),
                                  .iov_len = len - vnet_hdr_len };
        iovcnt = 2;
        trace_colo_filter_vnet_hdr_reframed(
            object_get_canonical_path_component(OBJECT(s)), vnet_hdr_len,
            local_len);
    }
    if (nf->direction == NET_FILTER_DIRECTION_RX) {
        sender = nf->netdev->peer;      /* on its way to the netdev */
    } else {
        sender = nf->netdev;            /* on its way to the guest */
    }
    if (!sender) {
        return;
    }
    qemu_netfilter_pass_to_next(sender, 0, iov, iovcnt, nf);
}

static void redirector_reject(void *opaque, ColoFrameError err, uint32_t len,
                              uint32_t vnet_hdr_len)
{
    ColoMirrorState *s = opaque;

    s->frames_rejected++;
    trace_colo_filter_frame_rejected(
        object_get_canonical_path_component(OBJECT(s)),
        colo_frame_error_name(err), len);
}

static void redirector_read(void *opaque, const uint8_t *buf, int size)
{
    ColoMirrorState *s = opaque;

    colo_frame_reader_feed(&s->reader, buf, size);
}

static void redirector_chr_event(void *opaque, QEMUChrEvent event)
{
    ColoMirrorState *s = opaque;

    if (event == CHR_EVENT_OPENED || event == CHR_EVENT_CLOSED) {
        /* A new peer starts with a new frame, and counts from zero. */
        colo_frame_reader_reset(&s->reader);
        s->frames_read = 0;
        s->input_mark = 0;
    }
}

static void mirror_outdev_event(void *opaque, QEMUChrEvent event)
{
    ColoMirrorState *s = opaque;

    if (event == CHR_EVENT_OPENED) {
        /* The peer's redirector counts from zero too. */
        s->frames_mirrored = 0;
    } else if (event == CHR_EVENT_CLOSED) {
        /* The next peer starts with a whole frame. */
        colo_chr_writer_reset(&s->out);
    }
}

static void redirector_set_handlers(ColoMirrorState *s, bool on)
{
    if (!qemu_chr_fe_backend_connected(&s->indev)) {
        return;
    }
    if (on) {
        qemu_chr_fe_set_handlers(&s->indev, colo_proxy_can_read,
                                 redirector_read, redirector_chr_event,
                                 NULL, s, NULL, true);
    } else {
        qemu_chr_fe_set_handlers(&s->indev, NULL, NULL, NULL, NULL, NULL,
                                 NULL, true);
        colo_frame_reader_reset(&s->reader);
    }
}

static bool attach_chardev(ColoMirrorState *s, CharBackend *be,
                           const char *prop, const char *id, Error **errp)
{
    return colo_proxy_attach_chardev(be, OBJECT(s), prop, id, false, errp);
}

static void mirror_setup(NetFilterState *nf, Error **errp)
{
    ColoMirrorState *s = COLO_MIRROR(nf);
    const char *type = object_get_typename(OBJECT(nf));

    if (!is_redirector(s)) {
        if (!s->outdev_id) {
            error_setg(errp, "%s needs the chardev property 'outdev'", type);
            return;
        }
        if (s->indev_id) {
            error_setg(errp, "%s has no 'indev' (use filter-redirector)",
                       type);
            return;
        }
    } else if (!s->indev_id && !s->outdev_id) {
        error_setg(errp, "%s needs 'indev', 'outdev' or both", type);
        return;
    }
    if (s->indev_id && s->outdev_id && !strcmp(s->indev_id, s->outdev_id)) {
        error_setg(errp, "%s: 'indev' and 'outdev' must be different "
                   "chardevs, both are '%s'", type, s->indev_id);
        return;
    }
    if (s->outdev_id &&
        !attach_chardev(s, &s->outdev, "outdev", s->outdev_id, errp)) {
        return;
    }
    g_queue_init(&s->held);
    if (s->outdev_id) {
        qemu_chr_fe_set_handlers(&s->outdev, NULL, NULL, mirror_outdev_event,
                                 NULL, s, NULL, true);
        colo_chr_writer_init(&s->out, &s->outdev, NULL,
                             OUTDEV_PENDING_MAX_BYTES);
        if (!is_redirector(s)) {
            s->vm_change = qemu_add_vm_change_state_handler(mirror_vm_change,
                                                            s);
        }
    }
    if (s->indev_id) {
        if (!attach_chardev(s, &s->indev, "indev", s->indev_id, errp)) {
            qemu_chr_fe_deinit(&s->outdev, false);
            return;
        }
        colo_frame_reader_init(&s->reader, s->vnet_hdr, 0, redirector_inject,
                               redirector_reject, s);
        s->reader_ready = true;
        redirector_set_handlers(s, nf->on);
        s->vm_change = qemu_add_vm_change_state_handler(redirector_vm_change,
                                                        s);
    }
    QTAILQ_INSERT_TAIL(&colo_mirrors, s, next);
}

static void mirror_status_changed(NetFilterState *nf, Error **errp)
{
    ColoMirrorState *s = COLO_MIRROR(nf);

    if (s->indev_id) {
        redirector_set_handlers(s, nf->on);
    }
}

static void mirror_cleanup(NetFilterState *nf)
{
    ColoMirrorState *s = COLO_MIRROR(nf);
    HeldFrame *f;

    if (QTAILQ_IN_USE(s, next)) {
        QTAILQ_REMOVE(&colo_mirrors, s, next);
    }
    if (s->vm_change) {
        qemu_del_vm_change_state_handler(s->vm_change);
        s->vm_change = NULL;
    }
    while ((f = g_queue_pop_head(&s->held))) {
        g_free(f);
    }
    s->held_bytes = 0;
    qemu_chr_fe_deinit(&s->indev, false);
    if (s->outdev_id) {
        colo_chr_writer_destroy(&s->out);
    }
    qemu_chr_fe_deinit(&s->outdev, false);
    if (s->reader_ready) {
        colo_frame_reader_destroy(&s->reader);
        s->reader_ready = false;
    }
}

/* ---- COLO input marks (net/colo-input.h) -------------------------------- */

static const char *mirror_netdev_id(ColoMirrorState *s)
{
    NetFilterState *nf = NETFILTER(s);

    return nf->netdev ? nf->netdev->name : NULL;
}

/*
 * Append the marks of the filters that send on an outdev: mirrors (client
 * input) or redirectors (guest output), on their netdev's @direction.
 */
static void marks_save(GString *marks, bool redirectors,
                       NetFilterDirection direction)
{
    ColoMirrorState *s;

    QTAILQ_FOREACH(s, &colo_mirrors, next) {
        if (is_redirector(s) == redirectors && mirror_netdev_id(s) &&
            NETFILTER(s)->direction == direction &&
            qemu_chr_fe_backend_connected(&s->outdev)) {
            colo_mark_append(marks, mirror_netdev_id(s), s->frames_mirrored);
        }
    }
}

void colo_input_marks_save(GString *marks)
{
    marks_save(marks, false, NET_FILTER_DIRECTION_TX);
}

static void input_mark_apply(const char *netdev, uint64_t mark, void *opaque)
{
    ColoMirrorState *s;

    QTAILQ_FOREACH(s, &colo_mirrors, next) {
        if (s->indev_id && mirror_netdev_id(s) &&
            !strcmp(mirror_netdev_id(s), netdev) &&
            NETFILTER(s)->direction == NET_FILTER_DIRECTION_TX) {
            s->input_mark = mark;
            redirector_drop_held_below_mark(s);
            trace_colo_filter_input_mark(
                object_get_canonical_path_component(OBJECT(s)), mark,
                s->frames_read, s->frames_dropped);
        }
    }
}

bool colo_input_marks_apply(const char *marks, size_t len, Error **errp)
{
    return colo_marks_foreach(marks, len, input_mark_apply, NULL, errp);
}

/* ---- COLO output marks (net/colo-output.h) ------------------------------- */

void colo_output_marks_save(GString *marks)
{
    marks_save(marks, true, NET_FILTER_DIRECTION_RX);
}

/* ---- properties --------------------------------------------------------- */

static char *mirror_get_indev(Object *obj, Error **errp)
{
    return g_strdup(COLO_MIRROR(obj)->indev_id);
}

static char *mirror_get_outdev(Object *obj, Error **errp)
{
    return g_strdup(COLO_MIRROR(obj)->outdev_id);
}

static void mirror_set_indev(Object *obj, const char *value, Error **errp)
{
    g_free(COLO_MIRROR(obj)->indev_id);
    COLO_MIRROR(obj)->indev_id = g_strdup(value);
}

static void mirror_set_outdev(Object *obj, const char *value, Error **errp)
{
    g_free(COLO_MIRROR(obj)->outdev_id);
    COLO_MIRROR(obj)->outdev_id = g_strdup(value);
}

static bool mirror_get_vnet_hdr(Object *obj, Error **errp)
{
    return COLO_MIRROR(obj)->vnet_hdr;
}

static void mirror_set_vnet_hdr(Object *obj, bool value, Error **errp)
{
    COLO_MIRROR(obj)->vnet_hdr = value;
}

static void mirror_finalize(Object *obj)
{
    ColoMirrorState *s = COLO_MIRROR(obj);

    g_free(s->indev_id);
    g_free(s->outdev_id);
}

static void mirror_class_init_common(ObjectClass *oc)
{
    NetFilterClass *nfc = NETFILTER_CLASS(oc);

    object_class_property_add_str(oc, "outdev", mirror_get_outdev,
                                  mirror_set_outdev);
    object_class_property_add_bool(oc, "vnet_hdr_support",
                                   mirror_get_vnet_hdr, mirror_set_vnet_hdr);
    nfc->setup = mirror_setup;
    nfc->cleanup = mirror_cleanup;
    nfc->status_changed = mirror_status_changed;
    nfc->receive_iov = mirror_receive_iov;
}

static void filter_mirror_class_init(ObjectClass *oc, void *data)
{
    mirror_class_init_common(oc);
}

static void filter_redirector_class_init(ObjectClass *oc, void *data)
{
    mirror_class_init_common(oc);
    object_class_property_add_str(oc, "indev", mirror_get_indev,
                                  mirror_set_indev);
}

static const TypeInfo colo_mirror_types[] = {
    {
        .name = TYPE_FILTER_MIRROR,
        .parent = TYPE_NETFILTER,
        .instance_size = sizeof(ColoMirrorState),
        .instance_finalize = mirror_finalize,
        .class_init = filter_mirror_class_init,
    }, {
        .name = TYPE_FILTER_REDIRECTOR,
        .parent = TYPE_NETFILTER,
        .instance_size = sizeof(ColoMirrorState),
        .instance_finalize = mirror_finalize,
        .class_init = filter_redirector_class_init,
    },
};

DEFINE_TYPES(colo_mirror_types)
