/*
 * COLO: what leaving COLO tells the other layers (colo-failover.c)
 *
 * Copyright (c) 2026 The qemu-colo authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef MIGRATION_COLO_FAILOVER_H
#define MIGRATION_COLO_FAILOVER_H

#include "qapi/qapi-types-migration.h"

/*
 * Leaving COLO in @mode: stop disk replication (on the secondary this
 * commits the active disk) and tell the proxy objects.  Failures are
 * reported, not fatal: the guest must run on.  COLO thread, BQL held.
 */
void colo_failover_release(COLOMode mode);

#endif /* MIGRATION_COLO_FAILOVER_H */
