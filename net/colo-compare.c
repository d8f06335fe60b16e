/*
 * COLO proxy: colo-compare
 *
 * Copyright (c) 2026 The qemu-colo authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * Reads the frames the primary and the secondary guest sent (chardevs
 * primary_in and secondary_in), hands them to a compare engine
 * (net/colo-stream.c) and writes released primary frames to outdev.  When
 * the engine reports a mismatch, a timeout or a full bound, a checkpoint is
 * requested: from the COLO controller through the registered notifiers,
 * or, with notify_dev (Xen), by sending "DO_CHECKPOINT" on notify_dev.
 * At a checkpoint the engine is flushed, with the secondary's output
 * marks (net/colo-output.h) telling which of its frames read around it
 * the checkpoint covers; after failover primary frames are passed straight
 * through and secondary frames dropped.
 *
 * Threads and locking:
 *  - main loop (big QEMU lock): QOM properties, complete, finalize,
 *    request_bh (runs the checkpoint notifiers), colo_compare_cleanup.
 *  - the compare's iothread: chardev read/event handlers (outdev's too,
 *    when it is a socket, and its writable watch), the scan timer,
 *    event_bh; the engine, the frame readers and their counts, the
 *    secondary's frames set aside, the writers to outdev and notify_dev,
 *    checkpoint_wanted, failed_over and last_request_ns are only touched
 *    there (complete and finalize synchronise with
 *    aio_wait_bh_oneshot before/after; the chardevs' handlers are also
 *    removed there).
 *  - colo_notify_compares_event() may run in any thread (the COLO thread);
 *    it schedules event_bh on every instance and waits, at most
 *    COMPARE_EVENT_TIMEOUT_MS, for all of them.
 *  - compare_list_lock protects compare_list, the event fields of every
 *    instance (generations, output mark) and compare_event_deadline_ms,
 *    and goes with compare_list_cond.
 *  - compare_primary_stops is written by the COLO thread
 *    (colo_compare_primary_stopped()) and read atomically in iothreads.
 *  - stats_lock protects the statistics snapshot read by QOM getters.
 *  - notifier_lock protects checkpoint_notifiers: the controller
 *    registers and unregisters from its own thread, request_bh runs the
 *    notifiers in the main loop (a notifier must not register or
 *    unregister from inside its callback).
 */

#include "qemu/osdep.h"
#include "qemu/units.h"
#include "qapi/error.h"
#include "qapi/visitor.h"
#include "qemu/error-report.h"
#include "qemu/main-loop.h"
#include "qemu/notify.h"
#include "qemu/thread.h"
#include "qemu/timer.h"
#include "qom/object_interfaces.h"
#include "chardev/char-fe.h"
#include "chardev/char-socket.h"
#include "block/aio.h"
#include "block/aio-wait.h"
#include "system/iothread.h"
#include "migration/colo.h"
#include "net/colo.h"
#include "net/colo-compare.h"
#include "net/colo-frame.h"
#include "net/colo-output.h"
#include "net/colo-stream.h"
#include "trace.h"

#define TYPE_COLO_COMPARE "colo-compare"
OBJECT_DECLARE_SIMPLE_TYPE(ColoCompare, COLO_COMPARE)

#define COMPARE_EVENT_TIMEOUT_MS    5000
#define NOTIFY_MAX_LEN              256
/* Released bytes kept for an outdev that does not read, at most. */
#define OUT_PENDING_MAX             (64 * MiB)
#define NOTIFY_PENDING_MAX          (64 * KiB)
/*
 * The secondary's frames set aside from the primary's stop to its release,
 * at most (beyond, they go to the engine, in order, as without marks).
 */
#define ASIDE_MAX_BYTES             (16 * MiB)

#define XEN_MSG_PROXY_INIT          "COLO_USERSPACE_PROXY_INIT"
#define XEN_MSG_INIT_REPLY          "COLO_COMPARE_GET_XEN_INIT"
#define XEN_MSG_CHECKPOINT          "COLO_CHECKPOINT"
#define XEN_MSG_DO_CHECKPOINT       "DO_CHECKPOINT"

typedef struct ColoCompareInput {
    ColoCompare *owner;
    ColoSide side;
    const char *prop;
    CharBackend chr;
    ColoFrameReader reader;
    bool reader_ready;
    uint64_t frames_read;       /* whole or rejected, since chr opened */
} ColoCompareInput;

/* A secondary frame read between the primary's stop and its release. */
typedef struct AsideFrame {
    uint64_t index;             /* in ColoCompareInput.frames_read */
    uint32_t vnet_hdr_len;
    size_t len;
    uint8_t data[];
} AsideFrame;

/* Statistics beyond the engine's, kept by this file. */
typedef struct ColoCompareCounters {
    uint64_t frames_rejected;
    uint64_t checkpoint_requests;
    uint64_t passed_through;
    uint64_t write_errors;
    uint64_t secondary_kept;    /* read before a release, compared after */
    uint64_t secondary_late;    /* read after a release that covered them */
} ColoCompareCounters;

struct ColoCompare {
    Object parent;

    /* properties */
    char *pri_in_id;
    char *sec_in_id;
    char *outdev_id;
    char *notify_dev_id;
    char *iothread_id;
    uint64_t compare_timeout_ms;
    uint64_t expired_scan_cycle_ms;
    uint64_t max_queue_size;
    bool vnet_hdr;
    /* test-only; atomic, read in the iothread */
    bool test_hold_input[2];        /* indexed by ColoSide */
    bool test_hold_events;

    bool completed;
    IOThread *iothread;
    AioContext *ctx;
    ColoCompareInput in[2];         /* indexed by ColoSide */
    CharBackend chr_out;
    bool out_in_iothread;           /* outdev's handlers run there */
    ColoCompareInput notify;        /* only chr and reader are used */
    bool has_notify;

    /* iothread */
    ColoEngine *engine;
    QEMUTimer *scan_timer;
    GByteArray *out_buf;            /* send_frame(): header and frame */
    ColoChrWriter out;              /* to chr_out */
    ColoChrWriter notify_out;       /* to notify.chr */
    bool checkpoint_wanted;
    bool failed_over;
    int64_t last_request_ns;
    ColoCompareCounters counters;
    QEMUBH *event_bh;
    /* The secondary's output around a checkpoint (net/colo-output.h) */
    uint64_t sec_covered;           /* its frames below: in the checkpoint */
    unsigned sec_released_stops;    /* compare_primary_stops at the release */
    GQueue sec_aside;               /* AsideFrame, read since the stop */
    size_t sec_aside_bytes;

    /* main loop */
    QEMUBH *request_bh;
    /* Why request_bh runs: written before it is scheduled (iothread). */
    ColoCompareRequest request;

    /* compare_list_lock */
    QTAILQ_ENTRY(ColoCompare) next;
    int event;
    bool event_has_mark;            /* COLO_EVENT_CHECKPOINT: event_mark */
    uint64_t event_mark;            /* the secondary's output mark */
    uint64_t event_target_gen;
    uint64_t event_done_gen;

    /* stats_lock */
    QemuMutex stats_lock;
    ColoEngineStats stats;
    ColoCompareCounters counters_copy;
};

static QemuMutex compare_list_lock;
static QemuCond compare_list_cond;
static QTAILQ_HEAD(, ColoCompare) compare_list =
    QTAILQ_HEAD_INITIALIZER(compare_list);
static uint64_t compare_event_gen;
/* When colo_notify_compares_event() stops waiting (QEMU_CLOCK_REALTIME) */
static int64_t compare_event_deadline_ms;
static QemuMutex notifier_lock;
static NotifierList checkpoint_notifiers =
    NOTIFIER_LIST_INITIALIZER(checkpoint_notifiers);
/* How often the primary stopped for a checkpoint (atomic) */
static unsigned compare_primary_stops;

static const char *compare_id(ColoCompare *s)
{
    return object_get_canonical_path_component(OBJECT(s)) ?: "?";
}

static int64_t now_ns(void)
{
    return qemu_clock_get_ns(QEMU_CLOCK_REALTIME);
}

/* ---- iothread ------------------------------------------------------------ */

static void stats_publish(ColoCompare *s)
{
    qemu_mutex_lock(&s->stats_lock);
    s->stats = *colo_engine_stats(s->engine);
    s->counters_copy = s->counters;
    s->counters_copy.write_errors += s->out.frames_lost +
                                     s->notify_out.frames_lost;
    qemu_mutex_unlock(&s->stats_lock);
}

/*
 * Header and frame in one write: written apart, the header leaves as a
 * segment of its own on a TCP chardev, and with Nagle on the frame behind
 * it may wait for that segment's (delayed) acknowledgement.  Returns the
 * bytes in s->out_buf.
 */
static size_t frame_to_out_buf(ColoCompare *s, bool vnet_hdr,
                               const uint8_t *buf, size_t len,
                               uint32_t vnet_hdr_len)
{
    uint8_t hdr[8];
    size_t hdr_len = colo_frame_header(hdr, vnet_hdr, len, vnet_hdr_len);

    g_byte_array_set_size(s->out_buf, 0);
    g_byte_array_append(s->out_buf, hdr, hdr_len);
    g_byte_array_append(s->out_buf, buf, len);
    return s->out_buf->len;
}

/* A message to notify_dev (Xen's agent), which may stall as any peer. */
static void send_notify(ColoCompare *s, const char *msg)
{
    size_t n = frame_to_out_buf(s, false, (const uint8_t *)msg, strlen(msg),
                                0);

    colo_chr_writer_send(&s->notify_out, s->out_buf->data, n);
}

/*
 * Released frames go to outdev through a ColoChrWriter (net/colo.h): never
 * blocking this thread.  In the documented wiring outdev is read by the
 * main loop's redirector, and the main loop blocks writing the guest's
 * output to primary_in while that socket is full: had this thread blocked
 * writing to a full outdev, it would not read primary_in again, nor would
 * the main loop read outdev again, and QEMU hung.
 */
static void send_frame(ColoCompare *s, const uint8_t *buf, size_t len,
                       uint32_t vnet_hdr_len)
{
    size_t n = frame_to_out_buf(s, s->vnet_hdr, buf, len, vnet_hdr_len);

    colo_chr_writer_send(&s->out, s->out_buf->data, n);
}

static void out_chr_event(void *opaque, QEMUChrEvent event)
{
    ColoCompare *s = opaque;

    trace_colo_compare_chr_event(compare_id(s), "outdev", event);
    if (event == CHR_EVENT_CLOSED) {
        colo_chr_writer_reset(&s->out);
    }
}

static int out_can_read(void *opaque)
{
    return 0;                   /* nothing is read from outdev */
}

static void compare_release(void *opaque, const uint8_t *frame, size_t len,
                            uint32_t vnet_hdr_len, int64_t hold_ns)
{
    ColoCompare *s = opaque;

    send_frame(s, frame, len, vnet_hdr_len);
}

static void request_checkpoint(ColoCompare *s, ColoCheckpointReason reason)
{
    const char *why = colo_reason_name(reason);

    trace_colo_compare_checkpoint_request(compare_id(s), why);
    s->checkpoint_wanted = true;
    s->last_request_ns = now_ns();
    s->counters.checkpoint_requests++;
    if (s->has_notify) {
        send_notify(s, XEN_MSG_DO_CHECKPOINT);
        return;
    }
    qatomic_set(&s->request, reason == COLO_REASON_TIMEOUT ?
                COLO_COMPARE_REQUEST_TIMEOUT : COLO_COMPARE_REQUEST_MISMATCH);
    qemu_bh_schedule(s->request_bh);
}

static void handle_reason(ColoCompare *s, ColoCheckpointReason reason,
                          const char *side)
{
    if (reason == COLO_REASON_NONE) {
        return;
    }
    if (reason == COLO_REASON_QUEUE_FULL || reason == COLO_REASON_TABLE_FULL) {
        trace_colo_compare_over_limit(compare_id(s), side,
                                      colo_reason_name(reason));
    }
    if (!s->checkpoint_wanted) {
        request_checkpoint(s, reason);
    }
}

static void compare_flush(ColoCompare *s)
{
    colo_engine_flush(s->engine, now_ns());
    s->checkpoint_wanted = false;
    trace_colo_compare_flush(compare_id(s),
                             colo_engine_stats(s->engine)->packets_released);
}

static void compare_input(ColoCompare *s, ColoSide side, const uint8_t *buf,
                          size_t len, uint32_t vnet_hdr_len)
{
    const char *name = side == COLO_PRIMARY ? "primary" : "secondary";
    ColoCheckpointReason reason;
    ColoParseError err;

    reason = colo_engine_input(s->engine, side, buf, len, vnet_hdr_len,
                               now_ns(), &err);
    if (err != COLO_PARSE_OK) {
        trace_colo_compare_malformed(compare_id(s), name,
                                     colo_parse_error_name(err));
    }
    handle_reason(s, reason, name);
}

/* Frames set aside go to the engine (@mark on) or are dropped (below). */
static uint64_t take_aside(ColoCompare *s, uint64_t mark)
{
    uint64_t compared = 0;
    AsideFrame *f;

    while ((f = g_queue_pop_head(&s->sec_aside))) {
        s->sec_aside_bytes -= f->len;
        if (f->index >= mark) {
            compared++;
            compare_input(s, COLO_SECONDARY, f->data, f->len,
                          f->vnet_hdr_len);
        }
        g_free(f);
    }
    return compared;
}

/*
 * A frame of the secondary, as read: is it for the engine now?  Not when
 * the last checkpoint covers it (it was on its way, or waited in the
 * secondary's writer, at the release), nor from the primary's stop to its
 * release, when it waits aside for the output mark (net/colo-output.h).
 */
static bool secondary_frame_now(ColoCompare *s, uint64_t index,
                                const uint8_t *buf, size_t len,
                                uint32_t vnet_hdr_len)
{
    AsideFrame *f;

    if (index < s->sec_covered) {
        s->counters.secondary_late++;
        return false;
    }
    if (qatomic_load_acquire(&compare_primary_stops) ==
        s->sec_released_stops) {
        return true;
    }
    if (s->sec_aside_bytes + len > ASIDE_MAX_BYTES) {
        take_aside(s, 0);
        return true;
    }
    f = g_malloc(sizeof(*f) + len);
    *f = (AsideFrame) { .index = index, .vnet_hdr_len = vnet_hdr_len,
                        .len = len };
    memcpy(f->data, buf, len);
    g_queue_push_tail(&s->sec_aside, f);
    s->sec_aside_bytes += len;
    return false;
}

static void drop_aside(ColoCompare *s)
{
    g_queue_clear_full(&s->sec_aside, g_free);
    s->sec_aside_bytes = 0;
}

/*
 * The checkpoint's flush is done: of the secondary's frames set aside,
 * those from @mark on were sent after it and are compared now; the rest,
 * and those read from now on below @mark, it covers.  Without a mark all
 * set aside are dropped, as the flush drops what the engine holds.
 */
static void release_aside(ColoCompare *s, bool has_mark, uint64_t mark)
{
    unsigned aside = g_queue_get_length(&s->sec_aside);
    uint64_t kept = take_aside(s, has_mark ? mark : UINT64_MAX);

    s->counters.secondary_kept += kept;
    s->sec_covered = has_mark ? mark : 0;
    /* The primary stays stopped until every compare handled the release. */
    s->sec_released_stops = qatomic_read(&compare_primary_stops);
    trace_colo_compare_output_mark(compare_id(s), has_mark, mark,
                                   s->in[COLO_SECONDARY].frames_read, kept,
                                   aside - kept);
}

static void compare_frame(void *opaque, const uint8_t *buf, size_t len,
                          uint32_t vnet_hdr_len)
{
    ColoCompareInput *in = opaque;
    ColoCompare *s = in->owner;
    uint64_t index = in->frames_read++;

    if (s->failed_over) {
        if (in->side == COLO_PRIMARY) {
            s->counters.passed_through++;
            send_frame(s, buf, len, vnet_hdr_len);
        }
        stats_publish(s);
        return;
    }
    if (in->side == COLO_PRIMARY ||
        secondary_frame_now(s, index, buf, len, vnet_hdr_len)) {
        compare_input(s, in->side, buf, len, vnet_hdr_len);
    }
    stats_publish(s);
}

static void compare_frame_rejected(void *opaque, ColoFrameError err,
                                   uint32_t len, uint32_t vnet_hdr_len)
{
    ColoCompareInput *in = opaque;
    ColoCompare *s = in->owner;

    in->frames_read++;          /* the secondary counted it as sent */
    s->counters.frames_rejected++;
    trace_colo_compare_frame_rejected(compare_id(s), in->prop,
                                      colo_frame_error_name(err), len);
    stats_publish(s);
}

static void compare_read(void *opaque, const uint8_t *buf, int size)
{
    ColoCompareInput *in = opaque;

    colo_frame_reader_feed(&in->reader, buf, size);
}

/*
 * Test-only (x-test-hold-primary-input, x-test-hold-secondary-input): a
 * side's frames stay unread in its socket, as when this thread has not got
 * to them yet.
 */
static int compare_can_read(void *opaque)
{
    ColoCompareInput *in = opaque;
    ColoCompare *s = in->owner;

    if (in != &s->notify && qatomic_read(&s->test_hold_input[in->side])) {
        return 0;
    }
    return colo_proxy_can_read(opaque);
}

static void compare_chr_event(void *opaque, QEMUChrEvent event)
{
    ColoCompareInput *in = opaque;

    trace_colo_compare_chr_event(compare_id(in->owner), in->prop, event);
    if (event == CHR_EVENT_OPENED || event == CHR_EVENT_CLOSED) {
        /* A new peer starts with a new frame, and counts from zero. */
        colo_frame_reader_reset(&in->reader);
        in->frames_read = 0;
        if (in == &in->owner->in[COLO_SECONDARY]) {
            in->owner->sec_covered = 0;
            drop_aside(in->owner);
        }
    }
    if (event == CHR_EVENT_CLOSED && in == &in->owner->notify) {
        colo_chr_writer_reset(&in->owner->notify_out);
    }
}

static void notify_message(void *opaque, const uint8_t *buf, size_t len,
                           uint32_t vnet_hdr_len)
{
    ColoCompareInput *in = opaque;
    ColoCompare *s = in->owner;
    char msg[NOTIFY_MAX_LEN + 1];

    len = MIN(len, NOTIFY_MAX_LEN);
    memcpy(msg, buf, len);
    msg[len] = '\0';
    trace_colo_compare_notify_msg(compare_id(s), msg);
    if (!strcmp(msg, XEN_MSG_PROXY_INIT)) {
        send_notify(s, XEN_MSG_INIT_REPLY);
    } else if (!strcmp(msg, XEN_MSG_CHECKPOINT)) {
        compare_flush(s);
        stats_publish(s);
    }
}

static void scan_timer_cb(void *opaque)
{
    ColoCompare *s = opaque;
    int64_t now = now_ns();
    ColoCheckpointReason reason;

    if (!s->failed_over) {
        reason = colo_engine_expire(s->engine, now);
        if (reason != COLO_REASON_NONE && s->checkpoint_wanted &&
            now - s->last_request_ns >= s->compare_timeout_ms * SCALE_MS) {
            /* Nobody answered the last request: ask again. */
            s->checkpoint_wanted = false;
        }
        handle_reason(s, reason, "held");
        stats_publish(s);
    }
    timer_mod(s->scan_timer, qemu_clock_get_ms(QEMU_CLOCK_REALTIME) +
              s->expired_scan_cycle_ms);
}

/*
 * Read what waits in primary_in's socket now, before a checkpoint's flush.
 * The guest is stopped and the redirector wrote its frames synchronously,
 * so all the primary sent before the checkpoint is there, but this thread
 * may not have read it yet (a pause of a millisecond leaves little time).
 * A frame read only after the flush would wait for a copy that the
 * secondary, loaded with a state that already sent it, never sends: a
 * fresh connection's SYN-ACK so waited for the client's SYN retransmission
 * (1 s).  Only a socket chardev (what an iothread needs) without telnet is
 * read here; the chardev's own handler then finds nothing (EAGAIN), and an
 * end of file is left to it.
 */
static void compare_drain_primary(ColoCompare *s)
{
    ColoCompareInput *in = &s->in[COLO_PRIMARY];
    Chardev *chr = qemu_chr_fe_get_driver(&in->chr);
    SocketChardev *sock;
    uint8_t buf[16 * KiB];
    ssize_t n;

    if (!chr || !object_dynamic_cast(OBJECT(chr), TYPE_CHARDEV_SOCKET)) {
        return;
    }
    sock = SOCKET_CHARDEV(chr);
    if (sock->state != TCP_CHARDEV_STATE_CONNECTED || !sock->ioc ||
        sock->do_telnetopt) {
        return;
    }
    while ((n = qio_channel_read(sock->ioc, (char *)buf, sizeof(buf),
                                 NULL)) > 0) {
        trace_colo_compare_drained(compare_id(s), (size_t)n);
        compare_read(in, buf, n);
    }
}

static void event_bh_cb(void *opaque)
{
    ColoCompare *s = opaque;
    int64_t deadline_ms;
    bool pending, has_mark;
    uint64_t mark;
    int event;

    qemu_mutex_lock(&compare_list_lock);
    pending = s->event_done_gen != s->event_target_gen;
    event = s->event;
    has_mark = s->event_has_mark;
    mark = s->event_mark;
    deadline_ms = compare_event_deadline_ms;
    qemu_mutex_unlock(&compare_list_lock);

    /* Test-only (x-test-hold-events): handled when the hold ends. */
    if (!pending || qatomic_read(&s->test_hold_events)) {
        return;
    }
    trace_colo_compare_event(compare_id(s), event);
    switch (event) {
    case COLO_EVENT_CHECKPOINT:
        /*
         * Past the deadline the controller stopped waiting and the primary
         * may run again: what we hold may include output it sent after
         * that, which this checkpoint does not cover and nobody compared.
         * Release nothing; the next checkpoint covers all of it.
         */
        if (qemu_clock_get_ms(QEMU_CLOCK_REALTIME) >= deadline_ms) {
            trace_colo_compare_late_event(compare_id(s));
            request_checkpoint(s, COLO_REASON_TIMEOUT);
            break;
        }
        compare_drain_primary(s);
        compare_flush(s);
        release_aside(s, has_mark, mark);
        break;
    case COLO_EVENT_FAILOVER:
        compare_flush(s);
        drop_aside(s);
        s->failed_over = true;
        break;
    default:
        break;
    }
    stats_publish(s);

    qemu_mutex_lock(&compare_list_lock);
    s->event_done_gen = s->event_target_gen;
    qemu_cond_broadcast(&compare_list_cond);
    qemu_mutex_unlock(&compare_list_lock);
}

static void start_in_iothread(void *opaque)
{
    ColoCompare *s = opaque;

    s->scan_timer = aio_timer_new(s->ctx, QEMU_CLOCK_REALTIME, SCALE_MS,
                                  scan_timer_cb, s);
    timer_mod(s->scan_timer, qemu_clock_get_ms(QEMU_CLOCK_REALTIME) +
              s->expired_scan_cycle_ms);
}

static void stop_in_iothread(void *opaque)
{
    ColoCompare *s = opaque;

    if (s->scan_timer) {
        timer_free(s->scan_timer);
        s->scan_timer = NULL;
    }
    colo_chr_writer_reset(&s->out);
    colo_chr_writer_reset(&s->notify_out);
    drop_aside(s);
}

/* ---- main loop: requests to the controller ------------------------------ */

static void detach_in_iothread(void *opaque);

static void request_bh_cb(void *opaque)
{
    ColoCompare *s = opaque;
    ColoCompareRequest request = qatomic_read(&s->request);

    qemu_mutex_lock(&notifier_lock);
    notifier_list_notify(&checkpoint_notifiers, &request);
    qemu_mutex_unlock(&notifier_lock);
}

void colo_compare_register_notifier(Notifier *notify)
{
    qemu_mutex_lock(&notifier_lock);
    notifier_list_add(&checkpoint_notifiers, notify);
    qemu_mutex_unlock(&notifier_lock);
}

void colo_compare_unregister_notifier(Notifier *notify)
{
    qemu_mutex_lock(&notifier_lock);
    notifier_remove(notify);
    qemu_mutex_unlock(&notifier_lock);
}

typedef struct OutputMarks {
    unsigned count;
    uint64_t frames;            /* the last one's */
} OutputMarks;

static void output_mark_count(const char *netdev, uint64_t frames,
                              void *opaque)
{
    OutputMarks *m = opaque;

    m->count++;
    m->frames = frames;
}

/*
 * The one output mark of the secondary's "<netdev id> <frames>" lines
 * (net/colo-output.h); false when there is not exactly one.
 */
static bool output_mark(const char *marks, size_t len, uint64_t *mark)
{
    OutputMarks m = { 0 };
    Error *err = NULL;

    if (!colo_marks_foreach(marks, len, output_mark_count, &m, &err)) {
        trace_colo_compare_no_output_mark(error_get_pretty(err));
        error_free(err);
        return false;
    }
    if (m.count != 1) {
        trace_colo_compare_no_output_mark(m.count ? "several marks"
                                                  : "none");
        return false;
    }
    *mark = m.frames;
    return true;
}

static void notify_compares(int event, const char *marks, size_t marks_len,
                            Error **errp)
{
    int64_t deadline = qemu_clock_get_ms(QEMU_CLOCK_REALTIME) +
                       COMPARE_EVENT_TIMEOUT_MS;
    ColoCompare *s;
    uint64_t gen, mark = 0;
    bool has_mark;

    has_mark = marks && output_mark(marks, marks_len, &mark);
    qemu_mutex_lock(&compare_list_lock);
    gen = ++compare_event_gen;
    compare_event_deadline_ms = deadline;
    /* With several, which compare reads which redirector is not known. */
    if (has_mark && (QTAILQ_EMPTY(&compare_list) ||
                     QTAILQ_NEXT(QTAILQ_FIRST(&compare_list), next))) {
        trace_colo_compare_no_output_mark("not one colo-compare");
        has_mark = false;
    }
    QTAILQ_FOREACH(s, &compare_list, next) {
        s->event = event;
        s->event_has_mark = has_mark;
        s->event_mark = mark;
        s->event_target_gen = gen;
        qemu_bh_schedule(s->event_bh);
    }
    for (;;) {
        ColoCompare *late = NULL;
        int64_t left;

        QTAILQ_FOREACH(s, &compare_list, next) {
            if (s->event_done_gen < gen) {
                late = s;
                break;
            }
        }
        if (!late) {
            break;
        }
        left = deadline - qemu_clock_get_ms(QEMU_CLOCK_REALTIME);
        if (left <= 0) {
            error_setg(errp, "colo-compare '%s' did not handle COLO event "
                       "%d within %d ms", compare_id(late), event,
                       COMPARE_EVENT_TIMEOUT_MS);
            break;
        }
        qemu_cond_timedwait(&compare_list_cond, &compare_list_lock, left);
    }
    qemu_mutex_unlock(&compare_list_lock);
}

void colo_notify_compares_event(void *opaque, int event, Error **errp)
{
    notify_compares(event, NULL, 0, errp);
}

void colo_compare_release_checkpoint(const char *marks, size_t len,
                                     Error **errp)
{
    notify_compares(COLO_EVENT_CHECKPOINT, marks, len, errp);
}

void colo_compare_primary_stopped(void)
{
    qatomic_inc(&compare_primary_stops);
}

void colo_compare_cleanup(void)
{
    ColoCompare *s;

    /*
     * At exit: no more frames into the compares while QEMU tears down.
     * The list only changes in the main loop, which we are: no lock (the
     * iothread's event_bh takes it, and we wait for the iothread).
     */
    QTAILQ_FOREACH(s, &compare_list, next) {
        aio_wait_bh_oneshot(s->ctx, detach_in_iothread, s);
    }
}

/* ---- complete / finalize ------------------------------------------------ */

static bool attach_chardev(ColoCompare *s, CharBackend *be, const char *prop,
                           const char *id, Error **errp)
{
    return colo_proxy_attach_chardev(be, OBJECT(s), prop, id,
                                     be != &s->chr_out, errp);
}

static void input_start(ColoCompare *s, ColoCompareInput *in, bool vnet_hdr,
                        ColoFrameFn *on_frame, uint32_t max_len)
{
    in->owner = s;
    colo_frame_reader_init(&in->reader, vnet_hdr, max_len, on_frame,
                           compare_frame_rejected, in);
    in->reader_ready = true;
    qemu_chr_fe_set_handlers(&in->chr, compare_can_read, compare_read,
                             compare_chr_event, NULL, in,
                             iothread_get_g_main_context(s->iothread), true);
}

static void input_detach(ColoCompareInput *in)
{
    if (qemu_chr_fe_backend_connected(&in->chr)) {
        qemu_chr_fe_set_handlers(&in->chr, NULL, NULL, NULL, NULL, NULL,
                                 NULL, true);
    }
}

/*
 * A chardev that can run in the iothread (a socket) has its events and
 * its writable watch there, and is written without blocking; another is
 * written whole, as before.
 */
static void out_start(ColoCompare *s)
{
    Chardev *chr = qemu_chr_fe_get_driver(&s->chr_out);
    GMainContext *ctx = iothread_get_g_main_context(s->iothread);

    s->out_in_iothread = qemu_chr_has_feature(chr, QEMU_CHAR_FEATURE_GCONTEXT);
    if (s->out_in_iothread) {
        qemu_chr_fe_set_handlers(&s->chr_out, out_can_read, NULL,
                                 out_chr_event, NULL, s, ctx, true);
    }
    colo_chr_writer_init(&s->out, &s->chr_out, ctx, OUT_PENDING_MAX);
}

static void out_detach(ColoCompare *s)
{
    if (s->out_in_iothread && qemu_chr_fe_backend_connected(&s->chr_out)) {
        qemu_chr_fe_set_handlers(&s->chr_out, NULL, NULL, NULL, NULL, NULL,
                                 NULL, true);
    }
}

/*
 * Our chardevs back to the main loop, without our handlers.  Run in the
 * iothread, where those chardevs' sources are dispatched: from the main
 * loop it raced with a disconnect handled there (a socket's ioc freed
 * while its handlers were being moved: QEMU crashed in object-del).
 */
static void detach_in_iothread(void *opaque)
{
    ColoCompare *s = opaque;

    input_detach(&s->in[COLO_PRIMARY]);
    input_detach(&s->in[COLO_SECONDARY]);
    input_detach(&s->notify);
    out_detach(s);
}

static void input_stop(ColoCompareInput *in)
{
    qemu_chr_fe_deinit(&in->chr, false);
    if (in->reader_ready) {
        colo_frame_reader_destroy(&in->reader);
        in->reader_ready = false;
    }
}

static void colo_compare_complete(UserCreatable *uc, Error **errp)
{
    ColoCompare *s = COLO_COMPARE(uc);
    ColoEngineConfig cfg;
    const char *required[][2] = {
        { "primary_in", s->pri_in_id },
        { "secondary_in", s->sec_in_id },
        { "outdev", s->outdev_id },
        { "iothread", s->iothread_id },
    };
    const char *ids[] = {
        s->pri_in_id, s->sec_in_id, s->outdev_id, s->notify_dev_id
    };
    int i, j;

    for (i = 0; i < ARRAY_SIZE(required); i++) {
        if (!required[i][1] || !*required[i][1]) {
            error_setg(errp, "colo-compare '%s' needs the property '%s'",
                       compare_id(s), required[i][0]);
            return;
        }
    }
    for (i = 0; i < ARRAY_SIZE(ids); i++) {
        for (j = i + 1; j < ARRAY_SIZE(ids); j++) {
            if (ids[i] && ids[j] && !strcmp(ids[i], ids[j])) {
                error_setg(errp, "colo-compare '%s': primary_in, "
                           "secondary_in, outdev and notify_dev must be "
                           "different chardevs, '%s' is used twice",
                           compare_id(s), ids[i]);
                return;
            }
        }
    }
    s->iothread = iothread_by_id(s->iothread_id);
    if (!s->iothread) {
        error_setg(errp, "colo-compare '%s': iothread '%s' not found",
                   compare_id(s), s->iothread_id);
        return;
    }
    if (!attach_chardev(s, &s->in[COLO_PRIMARY].chr, "primary_in",
                        s->pri_in_id, errp) ||
        !attach_chardev(s, &s->in[COLO_SECONDARY].chr, "secondary_in",
                        s->sec_in_id, errp) ||
        !attach_chardev(s, &s->chr_out, "outdev", s->outdev_id, errp) ||
        (s->notify_dev_id &&
         !attach_chardev(s, &s->notify.chr, "notify_dev", s->notify_dev_id,
                         errp))) {
        qemu_chr_fe_deinit(&s->in[COLO_PRIMARY].chr, false);
        qemu_chr_fe_deinit(&s->in[COLO_SECONDARY].chr, false);
        qemu_chr_fe_deinit(&s->chr_out, false);
        qemu_chr_fe_deinit(&s->notify.chr, false);
        s->iothread = NULL;
        return;
    }
    object_ref(OBJECT(s->iothread));
    s->ctx = iothread_get_aio_context(s->iothread);
    s->has_notify = s->notify_dev_id != NULL;

    colo_engine_default_config(&cfg);
    cfg.max_queue_size = s->max_queue_size;
    /* Per instance: room for eight full connection queues. */
    cfg.max_total_packets = MIN(MAX((uint64_t)s->max_queue_size * 8,
                                    cfg.max_total_packets), UINT32_MAX);
    cfg.compare_timeout_ns = s->compare_timeout_ms * SCALE_MS;
    s->engine = colo_engine_new(&cfg, compare_release, s);
    s->out_buf = g_byte_array_new();
    stats_publish(s);

    s->event_bh = aio_bh_new(s->ctx, event_bh_cb, s);
    s->request_bh = qemu_bh_new(request_bh_cb, s);

    s->in[COLO_PRIMARY].side = COLO_PRIMARY;
    s->in[COLO_PRIMARY].prop = "primary_in";
    s->in[COLO_SECONDARY].side = COLO_SECONDARY;
    s->in[COLO_SECONDARY].prop = "secondary_in";
    s->notify.prop = "notify_dev";
    aio_wait_bh_oneshot(s->ctx, start_in_iothread, s);
    out_start(s);
    input_start(s, &s->in[COLO_PRIMARY], s->vnet_hdr, compare_frame, 0);
    input_start(s, &s->in[COLO_SECONDARY], s->vnet_hdr, compare_frame, 0);
    if (s->has_notify) {
        input_start(s, &s->notify, false, notify_message, NOTIFY_MAX_LEN);
        colo_chr_writer_init(&s->notify_out, &s->notify.chr,
                             iothread_get_g_main_context(s->iothread),
                             NOTIFY_PENDING_MAX);
    }

    s->sec_released_stops = qatomic_read(&compare_primary_stops);
    qemu_mutex_lock(&compare_list_lock);
    s->event_done_gen = s->event_target_gen = compare_event_gen;
    QTAILQ_INSERT_TAIL(&compare_list, s, next);
    qemu_mutex_unlock(&compare_list_lock);
    s->completed = true;
}

static void colo_compare_finalize(Object *obj)
{
    ColoCompare *s = COLO_COMPARE(obj);

    if (s->completed) {
        qemu_mutex_lock(&compare_list_lock);
        QTAILQ_REMOVE(&compare_list, s, next);
        /* a waiter in colo_notify_compares_event() may be waiting on us */
        qemu_cond_broadcast(&compare_list_cond);
        qemu_mutex_unlock(&compare_list_lock);

        aio_wait_bh_oneshot(s->ctx, detach_in_iothread, s);
        qemu_bh_delete(s->event_bh);
        /* After this, nothing of ours runs in the iothread any more. */
        aio_wait_bh_oneshot(s->ctx, stop_in_iothread, s);
        qemu_bh_delete(s->request_bh);
        input_stop(&s->in[COLO_PRIMARY]);
        input_stop(&s->in[COLO_SECONDARY]);
        input_stop(&s->notify);
        qemu_chr_fe_deinit(&s->chr_out, false);
        colo_engine_free(s->engine);
        colo_chr_writer_destroy(&s->out);
        colo_chr_writer_destroy(&s->notify_out);
        g_byte_array_unref(s->out_buf);
        object_unref(OBJECT(s->iothread));
    }
    qemu_mutex_destroy(&s->stats_lock);
    g_free(s->pri_in_id);
    g_free(s->sec_in_id);
    g_free(s->outdev_id);
    g_free(s->notify_dev_id);
    g_free(s->iothread_id);
}

/* ---- properties --------------------------------------------------------- */

#define STR_PROP(field)                                                     \
static char *get_##field(Object *obj, Error **errp)                         \
{                                                                           \
    return g_strdup(COLO_COMPARE(obj)->field);                              \
}                                                                           \
static void set_##field(Object *obj, const char *value, Error **errp)       \
{                                                                           \
    ColoCompare *s = COLO_COMPARE(obj);                                     \
                                                                            \
    if (s->completed) {                                                     \
        error_setg(errp, "colo-compare: cannot change chardevs or the "     \
                   "iothread of a running compare");                        \
        return;                                                             \
    }                                                                       \
    g_free(s->field);                                                       \
    s->field = g_strdup(value);                                             \
}

STR_PROP(pri_in_id)
STR_PROP(sec_in_id)
STR_PROP(outdev_id)
STR_PROP(notify_dev_id)
STR_PROP(iothread_id)

/* The numeric properties: where each lives and how large it may be. */
typedef struct NumProp {
    const char *name;
    const char *type;
    size_t offset;
    uint64_t max;
} NumProp;

static const NumProp num_props[] = {
    { "compare_timeout", "uint64", offsetof(ColoCompare, compare_timeout_ms),
      UINT32_MAX },
    { "expired_scan_cycle", "uint32",
      offsetof(ColoCompare, expired_scan_cycle_ms), UINT32_MAX },
    { "max_queue_size", "uint32", offsetof(ColoCompare, max_queue_size),
      UINT32_MAX },
};

static uint64_t *num_field(Object *obj, const NumProp *prop)
{
    return (uint64_t *)((char *)obj + prop->offset);
}

static void num_prop_get(Object *obj, Visitor *v, const char *name,
                         void *opaque, Error **errp)
{
    visit_type_uint64(v, name, num_field(obj, opaque), errp);
}

static void num_prop_set(Object *obj, Visitor *v, const char *name,
                         void *opaque, Error **errp)
{
    const NumProp *prop = opaque;
    uint64_t value = 0;

    if (COLO_COMPARE(obj)->completed) {
        error_setg(errp, "colo-compare: '%s' cannot change while running",
                   name);
    } else if (visit_type_uint64(v, name, &value, errp)) {
        if (value == 0) {
            error_setg(errp, "colo-compare: '%s' must be greater than 0",
                       name);
        } else if (value > prop->max) {
            error_setg(errp, "colo-compare: '%s' must be at most %" PRIu64,
                       name, prop->max);
        } else {
            *num_field(obj, prop) = value;
        }
    }
}

static bool get_vnet_hdr(Object *obj, Error **errp)
{
    return COLO_COMPARE(obj)->vnet_hdr;
}

static void set_vnet_hdr(Object *obj, bool value, Error **errp)
{
    ColoCompare *s = COLO_COMPARE(obj);

    if (s->completed) {
        error_setg(errp, "colo-compare: 'vnet_hdr_support' cannot change "
                   "while running");
        return;
    }
    s->vnet_hdr = value;
}

static bool get_test_hold_input(Object *obj, ColoSide side)
{
    return qatomic_read(&COLO_COMPARE(obj)->test_hold_input[side]);
}

static void set_test_hold_input(Object *obj, ColoSide side, bool value)
{
    ColoCompare *s = COLO_COMPARE(obj);

    qatomic_set(&s->test_hold_input[side], value);
    if (!value && s->completed) {
        /* the iothread asks can_read again when it wakes up */
        aio_notify(s->ctx);
    }
}

static bool get_test_hold_primary_input(Object *obj, Error **errp)
{
    return get_test_hold_input(obj, COLO_PRIMARY);
}

static void set_test_hold_primary_input(Object *obj, bool value, Error **errp)
{
    set_test_hold_input(obj, COLO_PRIMARY, value);
}

static bool get_test_hold_secondary_input(Object *obj, Error **errp)
{
    return get_test_hold_input(obj, COLO_SECONDARY);
}

static void set_test_hold_secondary_input(Object *obj, bool value,
                                          Error **errp)
{
    set_test_hold_input(obj, COLO_SECONDARY, value);
}

static bool get_test_hold_events(Object *obj, Error **errp)
{
    return qatomic_read(&COLO_COMPARE(obj)->test_hold_events);
}

static void set_test_hold_events(Object *obj, bool value, Error **errp)
{
    ColoCompare *s = COLO_COMPARE(obj);

    qatomic_set(&s->test_hold_events, value);
    if (!value && s->completed) {
        /* an event that came meanwhile is handled now, late */
        qemu_bh_schedule(s->event_bh);
    }
}

typedef enum {
    STAT_PACKETS_COMPARED,
    STAT_BYTES_COMPARED,
    STAT_PACKETS_RELEASED,
    STAT_BYTES_RELEASED,
    STAT_PRIMARY_PACKETS,
    STAT_SECONDARY_PACKETS,
    STAT_SECONDARY_DROPPED,
    STAT_MISMATCH_TCP,
    STAT_MISMATCH_UDP,
    STAT_MISMATCH_ICMP,
    STAT_MISMATCH_OTHER_IP,
    STAT_MISMATCH_NON_IP,
    STAT_TIMEOUTS,
    STAT_QUEUE_FULL,
    STAT_TABLE_FULL,
    STAT_DROPPED_OVER_LIMIT,
    STAT_MALFORMED,
    STAT_FRAMES_REJECTED,
    STAT_QUEUE_DEPTH_PRIMARY,
    STAT_QUEUE_DEPTH_SECONDARY,
    STAT_CONNECTIONS,
    STAT_MAX_HOLD_US,
    STAT_CHECKPOINT_REQUESTS,
    STAT_FLUSHES,
    STAT_PASSED_THROUGH,
    STAT_WRITE_ERRORS,
    STAT_LINK_CONTROL_PRIMARY,
    STAT_LINK_CONTROL_SECONDARY,
    STAT_SEGMENTS_SPLIT,
    STAT_ACKS_DROPPED,
    STAT_SECONDARY_KEPT,
    STAT_SECONDARY_LATE,
    STAT__MAX,
} CompareStat;

static const char *const stat_names[STAT__MAX] = {
    [STAT_PACKETS_COMPARED] = "stat-packets-compared",
    [STAT_BYTES_COMPARED] = "stat-bytes-compared",
    [STAT_PACKETS_RELEASED] = "stat-packets-released",
    [STAT_BYTES_RELEASED] = "stat-bytes-released",
    [STAT_PRIMARY_PACKETS] = "stat-primary-packets",
    [STAT_SECONDARY_PACKETS] = "stat-secondary-packets",
    [STAT_SECONDARY_DROPPED] = "stat-secondary-dropped",
    [STAT_MISMATCH_TCP] = "stat-mismatches-tcp",
    [STAT_MISMATCH_UDP] = "stat-mismatches-udp",
    [STAT_MISMATCH_ICMP] = "stat-mismatches-icmp",
    [STAT_MISMATCH_OTHER_IP] = "stat-mismatches-other-ip",
    [STAT_MISMATCH_NON_IP] = "stat-mismatches-non-ip",
    [STAT_TIMEOUTS] = "stat-timeouts",
    [STAT_QUEUE_FULL] = "stat-queue-full",
    [STAT_TABLE_FULL] = "stat-table-full",
    [STAT_DROPPED_OVER_LIMIT] = "stat-dropped-over-limit",
    [STAT_MALFORMED] = "stat-malformed-packets",
    [STAT_FRAMES_REJECTED] = "stat-frames-rejected",
    [STAT_QUEUE_DEPTH_PRIMARY] = "stat-queue-depth-primary",
    [STAT_QUEUE_DEPTH_SECONDARY] = "stat-queue-depth-secondary",
    [STAT_CONNECTIONS] = "stat-connections",
    [STAT_MAX_HOLD_US] = "stat-max-hold-us",
    [STAT_CHECKPOINT_REQUESTS] = "stat-checkpoint-requests",
    [STAT_FLUSHES] = "stat-flushes",
    [STAT_PASSED_THROUGH] = "stat-passed-through",
    [STAT_WRITE_ERRORS] = "stat-write-errors",
    [STAT_LINK_CONTROL_PRIMARY] = "stat-link-control-primary",
    [STAT_LINK_CONTROL_SECONDARY] = "stat-link-control-secondary",
    [STAT_SEGMENTS_SPLIT] = "stat-segments-split",
    [STAT_ACKS_DROPPED] = "stat-acks-dropped",
    [STAT_SECONDARY_KEPT] = "stat-secondary-kept",
    [STAT_SECONDARY_LATE] = "stat-secondary-late",
};

static uint64_t stat_value(const ColoEngineStats *st,
                           const ColoCompareCounters *c, CompareStat which)
{
    switch (which) {
    case STAT_PACKETS_COMPARED:
        return st->packets_compared;
    case STAT_BYTES_COMPARED:
        return st->bytes_compared;
    case STAT_PACKETS_RELEASED:
        return st->packets_released;
    case STAT_BYTES_RELEASED:
        return st->bytes_released;
    case STAT_PRIMARY_PACKETS:
        return st->packets_in[COLO_PRIMARY];
    case STAT_SECONDARY_PACKETS:
        return st->packets_in[COLO_SECONDARY];
    case STAT_SECONDARY_DROPPED:
        return st->secondary_dropped;
    case STAT_MISMATCH_TCP:
        return st->mismatches[COLO_PKT_TCP];
    case STAT_MISMATCH_UDP:
        return st->mismatches[COLO_PKT_UDP];
    case STAT_MISMATCH_ICMP:
        return st->mismatches[COLO_PKT_ICMP];
    case STAT_MISMATCH_OTHER_IP:
        return st->mismatches[COLO_PKT_IP_OTHER];
    case STAT_MISMATCH_NON_IP:
        return st->mismatches[COLO_PKT_NON_IP];
    case STAT_TIMEOUTS:
        return st->timeouts;
    case STAT_QUEUE_FULL:
        return st->queue_full;
    case STAT_TABLE_FULL:
        return st->table_full;
    case STAT_DROPPED_OVER_LIMIT:
        return st->dropped_over_limit;
    case STAT_MALFORMED:
        return st->malformed[COLO_PRIMARY] + st->malformed[COLO_SECONDARY];
    case STAT_FRAMES_REJECTED:
        return c->frames_rejected;
    case STAT_QUEUE_DEPTH_PRIMARY:
        return st->queued[COLO_PRIMARY];
    case STAT_QUEUE_DEPTH_SECONDARY:
        return st->queued[COLO_SECONDARY];
    case STAT_CONNECTIONS:
        return st->connections;
    case STAT_MAX_HOLD_US:
        return st->max_hold_ns / 1000;
    case STAT_CHECKPOINT_REQUESTS:
        return c->checkpoint_requests;
    case STAT_FLUSHES:
        return st->flushes;
    case STAT_PASSED_THROUGH:
        return c->passed_through;
    case STAT_WRITE_ERRORS:
        return c->write_errors;
    case STAT_LINK_CONTROL_PRIMARY:
        return st->link_control[COLO_PRIMARY];
    case STAT_LINK_CONTROL_SECONDARY:
        return st->link_control[COLO_SECONDARY];
    case STAT_SEGMENTS_SPLIT:
        return st->segments_split;
    case STAT_ACKS_DROPPED:
        return st->acks_dropped;
    case STAT_SECONDARY_KEPT:
        return c->secondary_kept;
    case STAT_SECONDARY_LATE:
        return c->secondary_late;
    default:
        return 0;
    }
}

static void get_stat(Object *obj, Visitor *v, const char *name,
                     void *opaque, Error **errp)
{
    ColoCompare *s = COLO_COMPARE(obj);
    uint64_t value;

    qemu_mutex_lock(&s->stats_lock);
    value = stat_value(&s->stats, &s->counters_copy,
                       (CompareStat)(uintptr_t)opaque);
    qemu_mutex_unlock(&s->stats_lock);
    visit_type_uint64(v, name, &value, errp);
}

static void colo_compare_init(Object *obj)
{
    ColoCompare *s = COLO_COMPARE(obj);

    s->compare_timeout_ms = 3000;
    s->expired_scan_cycle_ms = 1000;
    s->max_queue_size = 1024;
    qemu_mutex_init(&s->stats_lock);
}

static void colo_compare_class_init(ObjectClass *oc, void *data)
{
    UserCreatableClass *ucc = USER_CREATABLE_CLASS(oc);
    int i;

    object_class_property_add_str(oc, "primary_in", get_pri_in_id,
                                  set_pri_in_id);
    object_class_property_add_str(oc, "secondary_in", get_sec_in_id,
                                  set_sec_in_id);
    object_class_property_add_str(oc, "outdev", get_outdev_id,
                                  set_outdev_id);
    object_class_property_add_str(oc, "notify_dev", get_notify_dev_id,
                                  set_notify_dev_id);
    object_class_property_add_str(oc, "iothread", get_iothread_id,
                                  set_iothread_id);
    for (i = 0; i < ARRAY_SIZE(num_props); i++) {
        object_class_property_add(oc, num_props[i].name, num_props[i].type,
                                  num_prop_get, num_prop_set, NULL,
                                  (void *)&num_props[i]);
    }
    object_class_property_add_bool(oc, "vnet_hdr_support", get_vnet_hdr,
                                   set_vnet_hdr);
    object_class_property_add_bool(oc, "x-test-hold-primary-input",
                                   get_test_hold_primary_input,
                                   set_test_hold_primary_input);
    object_class_property_add_bool(oc, "x-test-hold-secondary-input",
                                   get_test_hold_secondary_input,
                                   set_test_hold_secondary_input);
    object_class_property_add_bool(oc, "x-test-hold-events",
                                   get_test_hold_events,
                                   set_test_hold_events);
    for (i = 0; i < STAT__MAX; i++) {
        object_class_property_add(oc, stat_names[i], "uint64", get_stat,
                                  NULL, NULL, (void *)(uintptr_t)i);
    }
    ucc->complete = colo_compare_complete;
}

static void colo_compare_globals_init(void)
{
    qemu_mutex_init(&compare_list_lock);
    qemu_mutex_init(&notifier_lock);
    qemu_cond_init(&compare_list_cond);
}

static const TypeInfo colo_compare_types[] = {
    {
        .name = TYPE_COLO_COMPARE,
        .parent = TYPE_OBJECT,
        .instance_size = sizeof(ColoCompare),
        .instance_init = colo_compare_init,
        .instance_finalize = colo_compare_finalize,
        .class_init = colo_compare_class_init,
        .interfaces = (InterfaceInfo[]) {
            { TYPE_USER_CREATABLE },
            { }
        },
    },
};

DEFINE_TYPES(colo_compare_types)
type_init(colo_compare_globals_init);
