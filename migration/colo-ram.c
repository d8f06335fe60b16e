/*
 * COLO: the secondary's cache of the primary's RAM, and the hooks of
 * upstream's RAM migration (colo-ram.h)
 *
 * Copyright (c) 2026 The qemu-colo authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * The secondary keeps a full copy of the primary's RAM as of the last
 * checkpoint (the cache).  During the initial migration every page is loaded
 * into both guest RAM and the cache.  In COLO, pages the primary sends go
 * into the cache only, so the secondary guest keeps running on its own RAM
 * and a torn checkpoint never reaches it.  At a checkpoint, the pages that
 * either side changed since the last one are copied from the cache into
 * guest RAM: those the primary sent (recorded when they arrive) and those the
 * secondary guest dirtied (from the dirty log).  Both go into each block's
 * migration bitmap (block->bmap), which is free on the incoming side.
 *
 * Threads and locks:
 *  - colo_init_ram_cache(): the incoming migration coroutine, BQL held;
 *  - colo_ram_load_target(): wherever ram_load() runs: the incoming
 *    coroutine (BQL held) during the initial migration, then the
 *    colo-incoming thread without the BQL (see colo_secondary_checkpoint());
 *  - colo_ram_multifd_target() and colo_ram_multifd_received(): the multifd
 *    receive threads, without the BQL;
 *  - colo_ram_start_dirty_log(), colo_ram_flush(), colo_ram_release(): the
 *    colo-incoming thread, BQL held;
 *  - colo_ram_multifd_sync_needed(): the primary's migration thread;
 *  - colo_ram_pages_received(): any thread (the watchdog's).
 * The loaders only set bits atomically in block->bmap and write cache pages
 * of their own packet; the flush reads both after the checkpoint's
 * QEMU_VM_EOF, when every loader is done with it (the primary syncs the
 * multifd channels before it: colo_ram_multifd_sync_needed()).
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qemu/error-report.h"
#include "qemu/bitmap.h"
#include "qemu/cutils.h"
#include "qemu/madvise.h"
#include "qemu/rcu.h"
#include "qemu/rcu_queue.h"
#include "exec/ram_addr.h"
#include "exec/ramblock.h"
#include "exec/target_page.h"
#include "exec/memory.h"
#include "system/kvm.h"
#include "system/tcg.h"
#ifdef CONFIG_TCG
#include "exec/exec-all.h"
#endif
#include "migration/colo.h"
#include "migration/misc.h"
#include "options.h"
#include "ram.h"
#include "colo-ram.h"
#include "trace.h"

/*
 * Pages that reached the cache in COLO: the watchdog's progress measure on
 * the secondary.  Written by the thread that loads RAM (colo-incoming, or
 * the multifd receive threads), read by the watchdog thread.
 */
static uint64_t colo_ram_received;

uint64_t colo_ram_pages_received(void)
{
    return qatomic_read(&colo_ram_received);
}

/*
 * The cache and the bitmap cover a block's max_length, not its used_length:
 * a resizable block (ACPI tables, ROMs) grows on the secondary when the
 * primary's is larger (the migration's MEM_SIZE record resizes it after the
 * cache was made), and its pages must still land inside the cache.
 */
static unsigned long colo_ram_pages(RAMBlock *block)
{
    return block->max_length >> qemu_target_page_bits();
}

static void colo_ram_free_cache(void)
{
    RAMBlock *block;

    WITH_RCU_READ_LOCK_GUARD() {
        RAMBLOCK_FOREACH_NOT_IGNORED(block) {
            if (block->colo_cache) {
                qemu_anon_ram_free(block->colo_cache, block->max_length);
                block->colo_cache = NULL;
            }
            g_free(block->bmap);
            block->bmap = NULL;
        }
    }
}

int colo_init_ram_cache(void)
{
    RAMBlock *block;

    /*
     * The secondary rolls back what its guest wrote from its dirty log; with
     * KVM's dirty ring that path is untested, so refuse it rather than risk
     * a replica that silently differs.
     */
    if (kvm_dirty_ring_enabled()) {
        error_report("COLO: the KVM dirty ring (-accel kvm,dirty-ring-size=N) "
                     "is not supported; start QEMU without dirty-ring-size");
        return -ENOTSUP;
    }

    if (migrate_multifd() &&
        migrate_multifd_compression() != MULTIFD_COMPRESSION_NONE) {
        error_report("COLO: multifd is supported without compression only");
        return -ENOTSUP;
    }

    WITH_RCU_READ_LOCK_GUARD() {
        RAMBLOCK_FOREACH_NOT_IGNORED(block) {
            block->colo_cache = qemu_anon_ram_alloc(block->max_length, NULL,
                                                    false, false);
            if (!block->colo_cache) {
                error_report("COLO: cannot allocate %" PRIu64 " bytes of "
                             "RAM cache for block %s",
                             (uint64_t)block->max_length, block->idstr);
                colo_ram_free_cache();
                return -ENOMEM;
            }
            /* The cache mirrors guest RAM: keep it out of core dumps too. */
            qemu_madvise(block->colo_cache, block->max_length,
                         QEMU_MADV_DONTDUMP);
            block->bmap = bitmap_new(colo_ram_pages(block));
        }
    }
    trace_colo_ram_cache_init();
    return 0;
}

void *colo_ram_load_target(RAMBlock *block, ram_addr_t offset, void *host,
                           void **host_copy)
{
    *host_copy = NULL;
    if (!block->colo_cache || !offset_in_ramblock(block, offset)) {
        return NULL;
    }
    if (migration_incoming_in_colo_state()) {
        set_bit_atomic(offset >> qemu_target_page_bits(), block->bmap);
        qatomic_inc(&colo_ram_received);
        return block->colo_cache + offset;
    }
    /* Initial migration: the page goes to guest RAM and to the cache. */
    *host_copy = block->colo_cache + offset;
    return host;
}

bool colo_ram_multifd_sync_needed(void)
{
    return migrate_multifd() && migration_in_colo_state();
}

/*
 * Multifd: where the pages of one packet go.  In COLO they go into the cache
 * and are recorded.  Before, into guest RAM, and the cache gets a copy:
 * here for the zero pages, in colo_ram_multifd_received() for the others.
 */
void *colo_ram_multifd_target(RAMBlock *block,
                              const ram_addr_t *normal, uint32_t normal_num,
                              const ram_addr_t *zero, uint32_t zero_num)
{
    size_t page_size = qemu_target_page_size();
    int bits = qemu_target_page_bits();

    if (!block->colo_cache) {
        return block->host;
    }
    if (!migration_incoming_in_colo_state()) {
        for (uint32_t i = 0; i < zero_num; i++) {
            void *page = block->colo_cache + zero[i];

            if (!buffer_is_zero(page, page_size)) {
                memset(page, 0, page_size);
            }
        }
        return block->host;
    }
    for (uint32_t i = 0; i < normal_num; i++) {
        set_bit_atomic(normal[i] >> bits, block->bmap);
    }
    for (uint32_t i = 0; i < zero_num; i++) {
        set_bit_atomic(zero[i] >> bits, block->bmap);
    }
    qatomic_add(&colo_ram_received, normal_num + zero_num);
    return block->colo_cache;
}

void colo_ram_multifd_received(RAMBlock *block, const ram_addr_t *normal,
                               uint32_t normal_num)
{
    size_t page_size = qemu_target_page_size();

    if (!block->colo_cache || migration_incoming_in_colo_state()) {
        return;
    }
    for (uint32_t i = 0; i < normal_num; i++) {
        memcpy(block->colo_cache + normal[i], block->host + normal[i],
               page_size);
    }
}

/* Fold the guest's dirty log into block->bmap.  BQL held. */
static void colo_ram_sync_dirty_log(void)
{
    RAMBlock *block;

    memory_global_dirty_log_sync(false);
    WITH_RCU_READ_LOCK_GUARD() {
        RAMBLOCK_FOREACH_NOT_IGNORED(block) {
            cpu_physical_memory_sync_dirty_bitmap(block, 0,
                                                  block->used_length);
        }
    }
}

bool colo_ram_start_dirty_log(Error **errp)
{
    RAMBlock *block;

    if (!memory_global_dirty_log_start(GLOBAL_DIRTY_MIGRATION, errp)) {
        return false;
    }
    /* RAM equals the cache now: start from a clean bitmap. */
    colo_ram_sync_dirty_log();
    WITH_RCU_READ_LOCK_GUARD() {
        RAMBLOCK_FOREACH_NOT_IGNORED(block) {
            bitmap_zero(block->bmap, colo_ram_pages(block));
        }
    }
    return true;
}

/*
 * TCG: drop the code translated from [offset, offset + len) of @block,
 * which the flush overwrites behind TCG's back (TCG sees stores of the
 * vCPUs and through the memory API only).  tb_invalidate_phys_range()
 * takes the locks it needs itself (the pages' locks, through
 * page_collection_lock(); mmap_lock is for user mode only): any thread may
 * call it, with or without the BQL, as physmem.c does for DMA.  The vCPUs
 * are stopped here, so none runs a block while it goes.
 */
static void colo_ram_invalidate_code(RAMBlock *block, ram_addr_t offset,
                                     size_t len)
{
#ifdef CONFIG_TCG
    if (tcg_enabled()) {
        tb_invalidate_phys_range(block->offset + offset,
                                 block->offset + offset + len - 1);
    }
#endif
}

uint64_t colo_ram_flush(void)
{
    size_t page_size = qemu_target_page_size();
    uint64_t pages = 0;
    RAMBlock *block;

    colo_ram_sync_dirty_log();
    WITH_RCU_READ_LOCK_GUARD() {
        RAMBLOCK_FOREACH_NOT_IGNORED(block) {
            unsigned long npages = colo_ram_pages(block);
            unsigned long first = find_first_bit(block->bmap, npages);

            while (first < npages) {
                unsigned long end = find_next_zero_bit(block->bmap, npages,
                                                       first);
                ram_addr_t offset = (ram_addr_t)first * page_size;
                size_t len = (end - first) * page_size;

                memcpy(block->host + offset, block->colo_cache + offset, len);
                colo_ram_invalidate_code(block, offset, len);
                bitmap_clear(block->bmap, first, end - first);
                pages += end - first;
                first = find_next_bit(block->bmap, npages, end);
            }
        }
    }
    trace_colo_ram_flush(pages);
    return pages;
}

void colo_ram_release(void)
{
    memory_global_dirty_log_stop(GLOBAL_DIRTY_MIGRATION);
    colo_ram_free_cache();
    trace_colo_ram_cache_release();
}
