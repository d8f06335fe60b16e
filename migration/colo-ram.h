/*
 * COLO: the secondary's cache of the primary's RAM (colo-ram.c)
 *
 * Copyright (c) 2026 The qemu-colo authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef MIGRATION_COLO_RAM_H
#define MIGRATION_COLO_RAM_H

bool colo_ram_start_dirty_log(Error **errp);
/* Copy pages the primary sent or the secondary dirtied: cache -> RAM. */
uint64_t colo_ram_flush(void);
void colo_ram_release(void);
/* Pages received into the cache so far (grows while a checkpoint loads). */
uint64_t colo_ram_pages_received(void);

#endif /* MIGRATION_COLO_RAM_H */
