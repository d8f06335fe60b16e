/*
 * COLO proxy: the filter-rewriter engine (TCP sequence number offsets)
 *
 * Copyright (c) 2026 The qemu-colo authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * Runs on the secondary, and stays on a former secondary that failed over
 * (and possibly became the primary of a re-protected pair).
 *
 * Numberings.  Three TCP numberings of one connection matter: the
 * client's (C), this node's guest's (G) and the "COLO side" numbering (S)
 * in which this node's peer filters hand packets over: while this node is
 * a secondary, the client packets it gets from the primary's filter-mirror
 * and the packets its guest sends to the primary's colo-compare are in the
 * primary guest's numbering (the primary's own rewriter, if it has one,
 * sits between its netdev and its mirror: see docs, "Re-protection in one
 * step").  Per connection the engine keeps two offsets:
 *
 *  - offset = S - G, applied to every packet: added to the sequence number
 *    of what the guest sends, subtracted from the ACK number (and SACK
 *    blocks) of what it is sent.  As a secondary it is learned from the
 *    first segment with ACK after the guest's SYN or SYN-ACK (it
 *    acknowledges the primary's ISN + 1), and a checkpoint, which makes
 *    this guest a copy of the primary's, sets it to 0.  From failover on,
 *    S is the client's numbering C itself (the netdev is the client's
 *    side); connections opened from then on are left alone (S = G).
 *
 *  - carried = C - S, the offset the primary's rewriter applies to the
 *    same connection (C - primary G), sent with every checkpoint (the
 *    filter's vmstate, see colo_rewriter_save()); 0 for connections the
 *    primary does not rewrite.  Not applied while a secondary (the
 *    primary rewrites at its netdev); at failover, when this node's netdev
 *    becomes the client's side, it is added to offset: C - G =
 *    (C - S) + (S - G).  A connection opened before one failover thus
 *    keeps its numbering through any chain of failovers and
 *    re-protections: each new secondary gets the current primary's
 *    offsets with its first migration and every checkpoint.
 *
 * TCP timestamps (RFC 7323) are numbered the same way: each guest stamps
 * with its own clock plus a random offset per connection, so the TSvals
 * of a connection the secondary guest opened itself differ from the
 * primary's.  Its timestamp offset (S - G) is learned from the same
 * segment as offset (whose TSecr echoes the primary's SYN), added to the
 * TSval of what the guest sends, subtracted from the TSecr of what it is
 * sent, set to 0 by a checkpoint and carried like offset.  After failover
 * it also grows so that the guest's TSvals never go below the latest one
 * the client echoed: the client drops older ones (PAWS), and a former
 * secondary's clock lags the primary's by the time it was stopped.
 *
 * A node that failed over and is re-protected as the primary keeps its
 * offsets across its checkpoints (its guest is not replaced, and the
 * client still uses the old numbering).
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
    uint32_t offsets_carried;   /* connections with a carried offset now */
    uint64_t carried_dropped;   /* carried offsets with no room to keep */
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
/*
 * Failover: this node's netdev now faces the client.  Every carried
 * offset joins its connection's offset; new connections are left alone.
 */
void colo_rewriter_failover(ColoRewriter *r);
bool colo_rewriter_failed_over(ColoRewriter *r);

/*
 * The connections a copy of this node's guest needs rewritten towards the
 * client, as a byte string for the copy's rewriter (colo_rewriter_load()):
 * each connection whose C - G (offset + carried) is not 0.  Format, all
 * big-endian: u32 version (2), u32 count, then count records of
 * COLO_REWRITER_RECORD_LEN bytes: guest address[16], peer address[16]
 * (IPv4 as ::ffff:a.b.c.d), u32 VLAN key, u16 guest port, u16 peer port,
 * u32 offset (C - G), u32 flags (COLO_RW_F_*), u32 timestamp offset
 * (C - G for TSvals).  Returns the length; *buf
 * (g_free) is NULL when there is nothing to carry.  With @buf NULL, only
 * the length.
 */
#define COLO_REWRITER_RECORD_LEN    52
#define COLO_RW_F_FIN_GUEST         1
#define COLO_RW_F_FIN_PEER          2
#define COLO_RW_F_CLOSED            4
#define COLO_REWRITER_SAVE_VERSION  2
size_t colo_rewriter_save(ColoRewriter *r, uint8_t **buf);
/*
 * Load what the primary's rewriter saved: every connection's carried
 * offset becomes the primary's offset for it (0 where it has none); the
 * offsets this engine learned are left to colo_rewriter_checkpoint().
 * Checked before anything changes; false (and no change) for a malformed
 * string.  An empty string (@len 0) clears every carried offset.
 */
bool colo_rewriter_load(ColoRewriter *r, const uint8_t *buf, size_t len,
                        int64_t now_ns);
/*
 * The carried offset (C - S) of an IPv4 connection; false if none.
 */
bool colo_rewriter_carried(ColoRewriter *r, uint32_t guest_ip,
                           uint16_t guest_port, uint32_t peer_ip,
                           uint16_t peer_port, uint32_t *carried);
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
