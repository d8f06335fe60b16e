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
 * Threads and locking: everything runs in the main loop under the big
 * QEMU lock (netfilter callbacks and chardev handlers in the default
 * context); no state is shared between filters.
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qemu/iov.h"
#include "chardev/char-fe.h"
#include "net/filter.h"
#include "net/net.h"
#include "net/colo.h"
#include "net/colo-frame.h"
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
};

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
    int ret;

    if (!size || size > UINT32_MAX) {
        return;
    }
    buf = g_malloc(8 + size);
    hdr_len = colo_frame_header(buf, s->vnet_hdr, size, vnet_len);
    iov_to_buf(iov, iovcnt, 0, buf + hdr_len, size);
    ret = qemu_chr_fe_write_all(&s->outdev, buf, hdr_len + size);
    if (ret != hdr_len + size) {
        trace_colo_filter_write_failed(object_get_canonical_path_component(
                                           OBJECT(s)), s->outdev_id,
                                       ret < 0 ? -errno : ret);
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

static void redirector_inject(void *opaque, const uint8_t *buf, size_t len,
                              uint32_t vnet_hdr_len)
{
    ColoMirrorState *s = opaque;
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
        /* A new peer starts with a new frame. */
        colo_frame_reader_reset(&s->reader);
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
    if (s->indev_id) {
        if (!attach_chardev(s, &s->indev, "indev", s->indev_id, errp)) {
            qemu_chr_fe_deinit(&s->outdev, false);
            return;
        }
        colo_frame_reader_init(&s->reader, s->vnet_hdr, 0, redirector_inject,
                               redirector_reject, s);
        s->reader_ready = true;
        redirector_set_handlers(s, nf->on);
    }
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

    qemu_chr_fe_deinit(&s->indev, false);
    qemu_chr_fe_deinit(&s->outdev, false);
    if (s->reader_ready) {
        colo_frame_reader_destroy(&s->reader);
        s->reader_ready = false;
    }
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
