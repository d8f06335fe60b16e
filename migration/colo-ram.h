/*
 * COLO: RAM (colo-ram.c): the secondary's cache of the primary's RAM, and
 * the hooks that upstream's RAM migration calls
 *
 * Copyright (c) 2026 The qemu-colo authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * The hooks are called whether or not COLO is on and do nothing outside
 * it; colo-stubs.c has them for a build without COLO (replication
 * disabled).
 */

#ifndef MIGRATION_COLO_RAM_H
#define MIGRATION_COLO_RAM_H

#include "exec/cpu-common.h"

/* ---- hooks of ram.c and multifd-nocomp.c ---- */

/*
 * ram_save_complete() (primary): whether the RAM section's end must sync
 * the multifd channels.  In COLO it must: the secondary applies a
 * checkpoint at its QEMU_VM_EOF, so every page of it must have landed by
 * then.
 */
bool colo_ram_multifd_sync_needed(void);
/*
 * ram_load_precopy() (secondary): where the page at @offset of @block goes
 * instead of @host, NULL for an invalid offset; *host_copy, if set, is
 * where a copy of it goes as well.
 */
void *colo_ram_load_target(RAMBlock *block, ram_addr_t offset, void *host,
                           void **host_copy);
/*
 * A multifd packet for @block was parsed (secondary, multifd receive
 * thread): the base address its normal and zero pages go to.
 */
void *colo_ram_multifd_target(RAMBlock *block,
                              const ram_addr_t *normal, uint32_t normal_num,
                              const ram_addr_t *zero, uint32_t zero_num);
/* The packet's normal pages were read (multifd receive thread). */
void colo_ram_multifd_received(RAMBlock *block, const ram_addr_t *normal,
                               uint32_t normal_num);

/* ---- the secondary's COLO thread (colo-incoming.c) ---- */

bool colo_ram_start_dirty_log(Error **errp);
/*
 * Copy pages the primary sent or the secondary dirtied: cache -> RAM.
 * Under TCG, also drops the code translated from each page it copies.
 */
uint64_t colo_ram_flush(void);
void colo_ram_release(void);
/*
 * Pages received into the cache so far (grows while a checkpoint loads).
 * Any thread.
 */
uint64_t colo_ram_pages_received(void);

#endif /* MIGRATION_COLO_RAM_H */
