/*
 * COLO proxy: colo-compare, as seen by the COLO controller and net.c
 *
 * Copyright (c) 2026 The qemu-colo authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef NET_COLO_COMPARE_H
#define NET_COLO_COMPARE_H

#include "qemu/notify.h"

/*
 * Why colo-compare asks for a checkpoint: the registered notifiers are
 * called with @data pointing to one of these.
 */
typedef enum ColoCompareRequest {
    COLO_COMPARE_REQUEST_MISMATCH,  /* different output, or a bound hit */
    COLO_COMPARE_REQUEST_TIMEOUT,   /* output left unmatched too long */
} ColoCompareRequest;

/*
 * Tell every colo-compare of a COLO_EVENT_CHECKPOINT or COLO_EVENT_FAILOVER.
 * Any thread but a compare's iothread.
 */
void colo_notify_compares_event(void *opaque, int event, Error **errp);
/*
 * COLO_EVENT_CHECKPOINT on the primary, with the secondary's output marks
 * of that checkpoint (@len bytes of "<netdev id> <frames>\n" lines, see
 * net/colo-output.h).  Any thread but a compare's iothread.
 */
void colo_compare_release_checkpoint(const char *marks, size_t len,
                                     Error **errp);
/*
 * The primary's guest stopped for a checkpoint: until its release, the
 * compares set the secondary's frames aside (net/colo-output.h).
 * The COLO thread.
 */
void colo_compare_primary_stopped(void);
/*
 * @notify is called in the main loop (a compare's request bottom half),
 * with @data pointing to a ColoCompareRequest, when a compare wants a
 * checkpoint.  Register and unregister from any thread.
 */
void colo_compare_register_notifier(Notifier *notify);
void colo_compare_unregister_notifier(Notifier *notify);
/* Called from net_cleanup() at exit. */
void colo_compare_cleanup(void);

#endif /* NET_COLO_COMPARE_H */
