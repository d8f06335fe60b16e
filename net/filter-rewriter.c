/*
 * COLO proxy: filter-rewriter
 *
 * Copyright (c) 2026 The qemu-colo authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * On the secondary, keeps the secondary guest's TCP numbering consistent
 * with what the client saw from the primary; the logic lives in
 * net/colo-rewriter.c.  Packets the netdev sends to the guest are
 * COLO_TO_GUEST, packets the guest sends are COLO_FROM_GUEST.  A packet
 * that needs no change goes on untouched; a changed copy is passed to the
 * next filter instead of the original.
 *
 * COLO events: on the secondary a checkpoint sets every offset to 0 (the
 * secondary guest is now a copy of the primary); failover keeps rewriting
 * the connections it knows (the filter stays on) and leaves new ones alone.
 * A node that failed over and is re-protected keeps this filter and gets
 * checkpoint events as the primary: there the offsets stay, or its open
 * connections would stall.
 *
 * Migration: the filter has a vmstate section ("rew0/filter-rewriter" for
 * id rew0) holding the engine's offsets towards the client
 * (colo_rewriter_save()).  It travels with every checkpoint's device state
 * and with the first migration of a re-protection, so the secondary's
 * rewriter of the same id holds the primary's offsets and applies them if
 * it takes over (colo_rewriter_failover()): without them, connections the
 * primary rewrites would stall after that failover.  The section is sent
 * while a former secondary is the primary in COLO (an empty one clears
 * what the secondary carried) and otherwise only when there is something
 * to carry, so a migration to a QEMU without this filter (or a primary
 * that has one and was never a secondary) works unless it would break
 * connections.  On the secondary the load (carried offsets replaced) and
 * the checkpoint event (learned offsets reset) touch different fields, so
 * their order does not matter (migration/colo-incoming.c loads first, with
 * the BQL held until the event); no COLO protocol hook is needed.
 *
 * Threads and locking: main loop, big QEMU lock (netfilter callbacks and
 * COLO events); no state shared between filters.
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qapi/visitor.h"
#include "qemu/error-report.h"
#include "qemu/iov.h"
#include "qemu/timer.h"
#include "net/filter.h"
#include "net/net.h"
#include "migration/colo.h"
#include "migration/vmstate.h"
#include "net/colo-rewriter.h"
#include "trace.h"

#define TYPE_FILTER_REWRITER "filter-rewriter"
OBJECT_DECLARE_SIMPLE_TYPE(ColoRewriterFilter, FILTER_REWRITER)

#define REWRITER_MAX_CONNECTIONS    65536
#define REWRITER_IDLE_NS            (300 * NANOSECONDS_PER_SECOND)
#define REWRITER_CLOSED_NS          (30 * NANOSECONDS_PER_SECOND)
#define REWRITER_EXPIRE_EVERY_NS    NANOSECONDS_PER_SECOND
#define REWRITER_MAX_CARRY_LEN      (8 + REWRITER_MAX_CONNECTIONS * \
                                     COLO_REWRITER_RECORD_LEN)

/* virtio_net_hdr.flags: the checksum is left for the device to finish */
#define VNET_HDR_F_NEEDS_CSUM       1

struct ColoRewriterFilter {
    NetFilterState parent_obj;

    bool vnet_hdr;
    ColoRewriter *engine;
    int64_t last_expire_ns;
    bool vmstate_registered;
    /* the vmstate's buffer: colo_rewriter_save()'s string while saving */
    uint8_t *carry;
    uint32_t carry_len;
};

static const char *rewriter_id(ColoRewriterFilter *s)
{
    return object_get_canonical_path_component(OBJECT(s)) ?: "?";
}

static ssize_t rewriter_receive_iov(NetFilterState *nf, NetClientState *sender,
                                    unsigned flags, const struct iovec *iov,
                                    int iovcnt, NetPacketSent *sent_cb)
{
    ColoRewriterFilter *s = FILTER_REWRITER(nf);
    size_t size = iov_size(iov, iovcnt);
    size_t vnet_len = s->vnet_hdr ? nf->netdev->vnet_hdr_len : 0;
    int64_t now = qemu_clock_get_ns(QEMU_CLOCK_REALTIME);
    ColoRewriteDir dir;
    g_autofree uint8_t *buf = NULL;
    struct iovec out;
    ColoParseError err;
    bool csum_partial;

    if (!s->engine || size <= vnet_len) {
        return 0;
    }
    if (now - s->last_expire_ns >= REWRITER_EXPIRE_EVERY_NS) {
        colo_rewriter_expire(s->engine, now);
        s->last_expire_ns = now;
    }
    dir = sender == nf->netdev ? COLO_TO_GUEST : COLO_FROM_GUEST;
    buf = g_malloc(size);
    iov_to_buf(iov, iovcnt, 0, buf, size);
    csum_partial = vnet_len && (buf[0] & VNET_HDR_F_NEEDS_CSUM);
    if (!colo_rewriter_packet(s->engine, dir, buf + vnet_len, size - vnet_len,
                              csum_partial, now, &err)) {
        if (err != COLO_PARSE_OK) {
            trace_colo_rewriter_malformed(rewriter_id(s),
                                          colo_parse_error_name(err));
        }
        return 0;
    }
    out.iov_base = buf;
    out.iov_len = size;
    qemu_netfilter_pass_to_next(sender, flags, &out, 1, nf);
    return size;
}

static void rewriter_handle_event(NetFilterState *nf, int event, Error **errp)
{
    ColoRewriterFilter *s = FILTER_REWRITER(nf);
    bool replaced;

    if (!s->engine) {
        return;
    }
    switch (event) {
    case COLO_EVENT_CHECKPOINT:
        /*
         * The primary notifies filters of its checkpoints too; only a guest
         * the checkpoint replaced renumbers.  Anything but the primary
         * (the secondary; Xen's xen-colo-do-checkpoint without a COLO
         * session) is the replaced side.
         */
        replaced = get_colo_mode() != COLO_MODE_PRIMARY;
        colo_rewriter_checkpoint(s->engine, replaced);
        trace_colo_rewriter_conn(rewriter_id(s),
                                 replaced ? "checkpoint: offsets reset" :
                                 "checkpoint as primary: offsets kept", 0);
        break;
    case COLO_EVENT_FAILOVER:
        colo_rewriter_failover(s->engine);
        trace_colo_rewriter_conn(rewriter_id(s),
                                 "failover: new connections untracked", 0);
        break;
    default:
        break;
    }
}

static bool rewriter_vmstate_needed(void *opaque)
{
    ColoRewriterFilter *s = opaque;

    if (!s->engine) {
        return false;
    }
    return (get_colo_mode() == COLO_MODE_PRIMARY &&
            colo_rewriter_failed_over(s->engine)) ||
           colo_rewriter_save(s->engine, NULL) > 0;
}

static int rewriter_pre_save(void *opaque)
{
    ColoRewriterFilter *s = opaque;
    size_t len;

    g_free(s->carry);
    s->carry = NULL;
    len = s->engine ? colo_rewriter_save(s->engine, &s->carry) : 0;
    if (len > REWRITER_MAX_CARRY_LEN) {
        return -EINVAL;
    }
    s->carry_len = len;
    return 0;
}

static int rewriter_post_save(void *opaque)
{
    ColoRewriterFilter *s = opaque;

    g_free(s->carry);
    s->carry = NULL;
    s->carry_len = 0;
    return 0;
}

static int rewriter_pre_load(void *opaque)
{
    return rewriter_post_save(opaque);
}

static bool rewriter_carry_len_ok(void *opaque, int version_id)
{
    ColoRewriterFilter *s = opaque;

    return s->carry_len <= REWRITER_MAX_CARRY_LEN;
}

/*
 * A string the engine refuses (well framed, so the rest of the device
 * state is fine) is dropped with a warning, not fatal: failing here would
 * leave the secondary's guest half loaded, while without the offsets only
 * the connections they were for stall, and only after a failover.
 */
static int rewriter_post_load(void *opaque, int version_id)
{
    ColoRewriterFilter *s = opaque;
    int64_t now = qemu_clock_get_ns(QEMU_CLOCK_REALTIME);

    if (s->engine) {
        if (!colo_rewriter_load(s->engine, s->carry, s->carry_len, now)) {
            warn_report("filter-rewriter %s: malformed offsets from the "
                        "primary dropped", rewriter_id(s));
            colo_rewriter_load(s->engine, NULL, 0, now);
        }
        trace_colo_rewriter_conn(rewriter_id(s),
                                 "offsets carried from the primary (count)",
                                 colo_rewriter_stats(s->engine)->
                                 offsets_carried);
    }
    rewriter_post_save(s);
    return 0;
}

static const VMStateDescription vmstate_rewriter = {
    .name = TYPE_FILTER_REWRITER,
    .version_id = 1,
    .minimum_version_id = 1,
    .needed = rewriter_vmstate_needed,
    .pre_save = rewriter_pre_save,
    .post_save = rewriter_post_save,
    .pre_load = rewriter_pre_load,
    .post_load = rewriter_post_load,
    .fields = (const VMStateField[]) {
        VMSTATE_UINT32(carry_len, ColoRewriterFilter),
        VMSTATE_VALIDATE("carried offsets fit", rewriter_carry_len_ok),
        VMSTATE_VBUFFER_ALLOC_UINT32(carry, ColoRewriterFilter, 0, NULL,
                                     carry_len),
        VMSTATE_END_OF_LIST()
    },
};

static char *rewriter_vmstate_get_id(VMStateIf *obj)
{
    return g_strdup(object_get_canonical_path_component(OBJECT(obj)));
}

static void rewriter_setup(NetFilterState *nf, Error **errp)
{
    ColoRewriterFilter *s = FILTER_REWRITER(nf);

    if (vmstate_register_any(VMSTATE_IF(s), &vmstate_rewriter, s) < 0) {
        error_setg(errp, "filter-rewriter %s: cannot register its migration "
                   "state", rewriter_id(s));
        return;
    }
    s->vmstate_registered = true;
    s->engine = colo_rewriter_new(REWRITER_MAX_CONNECTIONS, REWRITER_IDLE_NS,
                                  REWRITER_CLOSED_NS);
    s->last_expire_ns = qemu_clock_get_ns(QEMU_CLOCK_REALTIME);
}

static void rewriter_cleanup(NetFilterState *nf)
{
    ColoRewriterFilter *s = FILTER_REWRITER(nf);

    if (s->vmstate_registered) {
        vmstate_unregister(VMSTATE_IF(s), &vmstate_rewriter, s);
        s->vmstate_registered = false;
    }
    colo_rewriter_free(s->engine);
    s->engine = NULL;
    g_free(s->carry);
    s->carry = NULL;
}

static bool rewriter_get_vnet_hdr(Object *obj, Error **errp)
{
    return FILTER_REWRITER(obj)->vnet_hdr;
}

static void rewriter_set_vnet_hdr(Object *obj, bool value, Error **errp)
{
    FILTER_REWRITER(obj)->vnet_hdr = value;
}

typedef enum {
    RW_STAT_CONNECTIONS,
    RW_STAT_PACKETS,
    RW_STAT_REWRITTEN,
    RW_STAT_OFFSETS_LEARNED,
    RW_STAT_MALFORMED,
    RW_STAT_UNTRACKED,
    RW_STAT_CARRIED,
    RW_STAT__MAX,
} RewriterStat;

static const char *const rw_stat_names[RW_STAT__MAX] = {
    [RW_STAT_CONNECTIONS] = "stat-connections",
    [RW_STAT_PACKETS] = "stat-packets",
    [RW_STAT_REWRITTEN] = "stat-rewritten",
    [RW_STAT_OFFSETS_LEARNED] = "stat-offsets-learned",
    [RW_STAT_MALFORMED] = "stat-malformed-packets",
    [RW_STAT_UNTRACKED] = "stat-untracked-after-failover",
    [RW_STAT_CARRIED] = "stat-offsets-carried",
};

static void rewriter_get_stat(Object *obj, Visitor *v, const char *name,
                              void *opaque, Error **errp)
{
    ColoRewriterFilter *s = FILTER_REWRITER(obj);
    const ColoRewriterStats *st;
    uint64_t value = 0;

    if (s->engine) {
        st = colo_rewriter_stats(s->engine);
        switch ((RewriterStat)(uintptr_t)opaque) {
        case RW_STAT_CONNECTIONS:
            value = st->connections;
            break;
        case RW_STAT_PACKETS:
            value = st->packets;
            break;
        case RW_STAT_REWRITTEN:
            value = st->rewritten;
            break;
        case RW_STAT_OFFSETS_LEARNED:
            value = st->offsets_learned;
            break;
        case RW_STAT_MALFORMED:
            value = st->malformed;
            break;
        case RW_STAT_UNTRACKED:
            value = st->untracked_after_failover;
            break;
        case RW_STAT_CARRIED:
            value = st->offsets_carried;
            break;
        default:
            break;
        }
    }
    visit_type_uint64(v, name, &value, errp);
}

static void filter_rewriter_class_init(ObjectClass *oc, void *data)
{
    NetFilterClass *nfc = NETFILTER_CLASS(oc);
    VMStateIfClass *vc = VMSTATE_IF_CLASS(oc);
    int i;

    object_class_property_add_bool(oc, "vnet_hdr_support",
                                   rewriter_get_vnet_hdr,
                                   rewriter_set_vnet_hdr);
    for (i = 0; i < RW_STAT__MAX; i++) {
        object_class_property_add(oc, rw_stat_names[i], "uint64",
                                  rewriter_get_stat, NULL, NULL,
                                  (void *)(uintptr_t)i);
    }
    nfc->setup = rewriter_setup;
    nfc->cleanup = rewriter_cleanup;
    nfc->handle_event = rewriter_handle_event;
    nfc->receive_iov = rewriter_receive_iov;
    vc->get_id = rewriter_vmstate_get_id;
}

static const TypeInfo colo_rewriter_types[] = {
    {
        .name = TYPE_FILTER_REWRITER,
        .parent = TYPE_NETFILTER,
        .instance_size = sizeof(ColoRewriterFilter),
        .class_init = filter_rewriter_class_init,
        .interfaces = (InterfaceInfo[]) {
            { TYPE_VMSTATE_IF },
            { }
        },
    },
};

DEFINE_TYPES(colo_rewriter_types)
