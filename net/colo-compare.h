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
 * @notify is called in the main loop (a compare's request bottom half),
 * with @data pointing to a ColoCompareRequest, when a compare wants a
 * checkpoint.  Register and unregister from any thread.
 */
void colo_compare_register_notifier(Notifier *notify);
void colo_compare_unregister_notifier(Notifier *notify);
/* Called from net_cleanup() at exit. */
void colo_compare_cleanup(void);

#endif /* NET_COLO_COMPARE_H */
