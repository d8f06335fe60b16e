/*
 * The steps of the documented COLO procedure, driven over QMP, for
 * qemu-colo-ctl (operator) and qemu-colo-agent (automatic failover)
 *
 * Copyright (c) 2026 The qemu-colo authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * The actions live in colo-takeover.c (take-over), colo-protect.c
 * (protect and re-protect) and colo-tls.c (the TLS objects).
 *
 * Every action is idempotent enough to be retried: it looks at what the
 * VM has (query-colo-status, qom-list /objects, query-named-block-nodes)
 * and removes or adds only what is needed.  On failure the VM is left
 * running unprotected and @errp says which step failed and why.
 */

#ifndef TOOLS_COLO_ACTIONS_H
#define TOOLS_COLO_ACTIONS_H

#include "qmp-client.h"
#include "colo-config.h"

/* How long an action waits for QEMU to leave a state; how often it looks */
#define COLO_ACTION_WAIT_MS 60000
#define COLO_ACTION_POLL_MS 50

/*
 * The -object arguments (JSON) that create the three TLS objects of @self
 * (whose peer is @peer) on a command line, NULL-terminated; NULL without
 * tls-dir.
 */
GStrv colo_tls_object_args(const ColoConfig *cfg,
                           const ColoNodeConfig *peer);

/* The TLS objects on a running QEMU (started by an older tool: added). */
bool colo_tls_ensure_objects(QmpClient *c, const ColoConfig *cfg,
                             const ColoNodeConfig *peer, Error **errp);

/*
 * Make the VM behind @qmp the only one serving: if it is a COLO secondary,
 * fail over (x-colo-lost-heartbeat, await COLO_EXIT), remove the
 * secondary's proxy, stop the NBD server and announce-self; if it is a
 * primary, leave COLO and remove the primary's proxy and the replication
 * child.  @what (may be NULL) gets a static description of what was done.
 */
bool colo_action_take_over(QmpClient *qmp, const ColoConfig *cfg,
                           const char **what, Error **errp);

/* Progress of re-protection, for a progress bar; may be NULL. */
typedef void ColoProgressFn(const char *step, int64_t done, int64_t total,
                            void *opaque);

/*
 * Re-protect: @survivor runs the guest unprotected (after a failover, with
 * either role history), @fresh is a QEMU started for the secondary role
 * (-incoming defer) on @fresh_node.  Resync its disk over NBD with an
 * active mirror, add the replication child and the proxy, migrate live
 * into COLO, then end the mirror: the guest stops only for the switch to
 * COLO.  On failure everything added to @survivor is removed again and its
 * guest runs.
 */
bool colo_action_reprotect(QmpClient *survivor, QmpClient *fresh,
                           const ColoConfig *cfg,
                           const ColoNodeConfig *survivor_node,
                           const ColoNodeConfig *fresh_node,
                           ColoProgressFn *progress, void *opaque,
                           Error **errp);

/*
 * colo_action_reprotect() with the disk resync optional: without it the
 * two disks must already be identical (both new, the guest not started).
 */
bool colo_action_protect(QmpClient *survivor, QmpClient *fresh,
                         const ColoConfig *cfg,
                         const ColoNodeConfig *survivor_node,
                         const ColoNodeConfig *fresh_node,
                         bool do_resync, ColoProgressFn *progress,
                         void *opaque, Error **errp);

#endif /* TOOLS_COLO_ACTIONS_H */
