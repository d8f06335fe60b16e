/*
 * COLO proxy: the filter-rewriter engine (TCP sequence number offsets)
 *
 * Copyright (c) 2026 The qemu-colo authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * Runs on the secondary.  The client only ever talks to the primary, so
 * it knows the primary guest's initial sequence number of each TCP
 * connection, not the secondary's.  For every connection the engine
 * learns offset = primary ISN - secondary ISN and
 *  - adds it to the sequence number of what the secondary guest sends
 *    (so the compare and, after failover, the client see the primary's
 *    numbering), and
 *  - subtracts it from the ACK number (and SACK blocks) of what the client
 *    sends to the secondary guest.
 * The offset is learned from the first client segment with ACK after the
 * secondary's SYN or SYN-ACK: it acknowledges primary ISN + 1.
 *
 * After a checkpoint the secondary guest is a copy of the primary, so every
 * known offset becomes 0.  After failover, connections opened from then on
 * are left alone; existing ones keep their offset until they close, also
 * across checkpoints this node takes as the primary once re-protected (its
 * guest is not replaced then, and the client still uses the old numbering).
 * Closed connections (FIN both ways, or RST) and idle ones are aged out.
 * Checksums are updated incrementally (RFC 1624), except for frames whose
 * vnet header asks for checksum offload (the checksum field then holds
 * only the pseudo-header sum, which does not cover sequence numbers).
 *
 * Pure C + GLib; an engine belongs to one thread (filter-rewriter: the
 * main loop).
 */

#ifndef NET_COLO_REWRITER_H
#define NET_COLO_REWRITER_H

#include "net/colo-packet.h"

typedef enum ColoRewriteDir {
    COLO_FROM_GUEST,            /* the secondary guest sends */
    COLO_TO_GUEST,              /* the client sends to the secondary guest */
} ColoRewriteDir;

typedef struct ColoRewriterStats {
    uint64_t packets;
    uint64_t rewritten;
    uint64_t malformed;
    uint64_t offsets_learned;
    uint64_t connections_opened;
    uint64_t connections_closed;
    uint64_t connections_aged;
    uint64_t untracked_after_failover;
    uint32_t connections;
} ColoRewriterStats;

typedef struct ColoRewriter ColoRewriter;

ColoRewriter *colo_rewriter_new(uint32_t max_connections,
                                int64_t idle_ns, int64_t closed_ns);
void colo_rewriter_free(ColoRewriter *r);

/*
 * Rewrite the Ethernet frame at @frame in place.  @csum_partial: the frame
 * carries a partial checksum (vnet header NEEDS_CSUM).  Returns true when
 * the frame was changed; @parse_err (may be NULL) reports malformed frames,
 * which are left alone.
 */
bool colo_rewriter_packet(ColoRewriter *r, ColoRewriteDir dir,
                          uint8_t *frame, size_t len, bool csum_partial,
                          int64_t now_ns, ColoParseError *parse_err);

/*
 * A checkpoint was taken.  @guest_replaced: this node's guest state was
 * replaced by it (the secondary); only then does the guest number like the
 * primary's and every offset becomes 0.  On the primary nothing changes.
 */
void colo_rewriter_checkpoint(ColoRewriter *r, bool guest_replaced);
void colo_rewriter_failover(ColoRewriter *r);
void colo_rewriter_expire(ColoRewriter *r, int64_t now_ns);
const ColoRewriterStats *colo_rewriter_stats(ColoRewriter *r);
/*
 * The offset of an IPv4 connection (addresses in host byte order), from
 * the guest's side; false if unknown.
 */
bool colo_rewriter_offset(ColoRewriter *r, uint32_t guest_ip,
                          uint16_t guest_port, uint32_t peer_ip,
                          uint16_t peer_port, uint32_t *offset);

#endif /* NET_COLO_REWRITER_H */
