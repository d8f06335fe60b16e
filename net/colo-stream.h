/*
 * COLO proxy: the compare engine (connection tracking, TCP byte streams)
 *
 * Copyright (c) 2026 The qemu-colo authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * Pure C + GLib, no QEMU objects: colo-compare drives it from its iothread,
 * the unit tests, the fuzz target and the benchmark drive it directly.
 * An engine is used by one thread at a time; it has no globals, so any
 * number of engines work side by side.
 *
 * What is compared (the engine only sees what the two guests send out):
 *
 *  - TCP, per connection, as a byte stream in sequence order.  Positions
 *    are taken relative to the primary's SYN (or, for a connection first
 *    seen mid-stream, to the first sequence number seen, or the primary's
 *    first when the secondary's came first and below it).  The secondary's
 *    output is expected in the primary's numbering (filter-rewriter on the
 *    secondary does that), except for its SYN, which carries the
 *    secondary's own ISN and is taken as position 0.  SYN and FIN each
 *    occupy one position of the stream and must sit at the same position on
 *    both sides; data bytes must be equal.  Segmentation, retransmissions,
 *    reordering, window and options (timestamps, SACK...) are not
 *    compared.  A primary segment is released once the secondary produced
 *    the same bytes for its whole range; when it produced only a first part
 *    of the segment at the head of the connection's queue, that part is
 *    released as a segment of its own and the rest held (split); a primary
 *    segment wholly below the matched point (retransmission) is released
 *    at once; one resending positions that another held primary segment
 *    carries must carry the same there (only one copy is compared), or it
 *    is a mismatch.  A pure ACK is released once the secondary
 *    acknowledged at least as far.  A
 *    segment with RST waits for an RST from the secondary on the same
 *    connection (an empty copy of one both sent leaves at once, and the
 *    secondary's copies are done), an empty one without ACK for the same
 *    from the secondary.
 *    A SYN that opens a new connection on the same addresses and ports
 *    restarts the comparison at that SYN if the old connection holds
 *    nothing; if it still holds packets, that is a mismatch (two numberings
 *    in one stream cannot be compared).  Within a connection primary
 *    segments leave in their arrival order.  The audit of these rules is at
 *    the top of colo-stream.c.
 *  - UDP per flow (addresses and ports), ICMP per address pair: the n-th
 *    primary datagram is compared with the n-th secondary datagram, by
 *    payload (UDP data; the whole ICMP message).
 *  - Not compared: unicast ARP, and IPv6 neighbour discovery and MLD from
 *    the guest (router solicitations, DAD and unicast neighbour
 *    solicitations, neighbour advertisements, listener messages): the
 *    primary's are released at once, the secondary's dropped, both counted
 *    in link_control.  Address resolution (broadcast ARP, multicast
 *    solicitations from an assigned address) is compared (why:
 *    is_link_control()).
 *  - Other IP protocols, IPv4 fragments, IPv6 packets with extension
 *    headers: by IP payload, in order, per address pair and protocol.
 *  - IPv4 and IPv6 alike (addresses are keyed as 128 bits).
 *  - Other non-IP frames (RARP...): whole frames, in order, per EtherType.
 *  - VLAN-tagged frames are compared like untagged ones by their inner
 *    protocol; the VLAN ids are part of the connection key.
 *
 * A mismatch, a packet older than compare_timeout (on either side: output
 * one guest produced and the other did not), a full queue or a full
 * connection table is reported to the caller, which asks for a checkpoint.
 * A diverged connection holds everything until the checkpoint.  The
 * checkpoint's flush releases every held primary packet in arrival order,
 * drops every secondary packet and starts every connection afresh (after a
 * checkpoint the guests are identical again); of a TCP connection it keeps
 * only where the primary's bytes released so far end, so that the
 * primary's resending them after the checkpoint leaves at once (the
 * secondary need not resend them).  Other connections are forgotten.
 *
 * Bounds: per connection and side at most max_queue_size packets; per
 * engine at most max_connections connections (idle ones without held
 * packets are aged out after conn_idle_ns, or evicted least recently used
 * first) and max_total_packets held packets.  A packet arriving at a bound
 * is not queued: it is counted in dropped_over_limit and a checkpoint is
 * requested; nothing is dropped silently.
 */

#ifndef NET_COLO_STREAM_H
#define NET_COLO_STREAM_H

#include "net/colo-packet.h"

typedef enum ColoSide {
    COLO_PRIMARY,
    COLO_SECONDARY,
} ColoSide;

typedef enum ColoCheckpointReason {
    COLO_REASON_NONE,
    COLO_REASON_MISMATCH,
    COLO_REASON_TIMEOUT,
    COLO_REASON_QUEUE_FULL,
    COLO_REASON_TABLE_FULL,
} ColoCheckpointReason;

typedef struct ColoEngineConfig {
    uint32_t max_queue_size;        /* per connection and side */
    uint32_t max_connections;
    uint32_t max_total_packets;     /* both sides together */
    int64_t compare_timeout_ns;
    int64_t conn_idle_ns;
} ColoEngineConfig;

typedef struct ColoEngineStats {
    uint64_t packets_in[2];         /* by side, well-formed frames */
    uint64_t bytes_in[2];
    uint64_t malformed[2];
    uint64_t packets_compared;      /* primary packets released after a match */
    uint64_t bytes_compared;        /* bytes found equal on both sides */
    uint64_t packets_released;      /* primary packets sent, any reason */
    uint64_t segments_split;        /* TCP segments released in part */
    uint64_t bytes_released;
    uint64_t secondary_dropped;     /* secondary packets freed */
    uint64_t acks_dropped;          /* primary ACKs before a common RST */
    uint64_t link_control[2];       /* by side, ND/MLD passed uncompared */
    uint64_t mismatches[COLO_PKT__MAX];
    uint64_t timeouts;
    uint64_t queue_full;
    uint64_t table_full;
    uint64_t dropped_over_limit;
    uint64_t flushes;
    uint64_t connections_aged;
    int64_t max_hold_ns;
    uint32_t queued[2];             /* current depth, by side */
    uint32_t connections;           /* current table size */
} ColoEngineStats;

/*
 * Called for each primary packet released: @frame (vnet header first, of
 * @vnet_hdr_len bytes) is only valid during the call.
 */
typedef void ColoReleaseFn(void *opaque, const uint8_t *frame, size_t len,
                           uint32_t vnet_hdr_len, int64_t hold_ns);

typedef struct ColoEngine ColoEngine;

void colo_engine_default_config(ColoEngineConfig *cfg);
ColoEngine *colo_engine_new(const ColoEngineConfig *cfg,
                            ColoReleaseFn *release, void *opaque);
/* Frees everything, releasing nothing. */
void colo_engine_free(ColoEngine *e);

/*
 * Feed one frame a guest sent (@vnet_hdr_len bytes of vnet header first).
 * Returns what this frame caused that needs a checkpoint, or
 * COLO_REASON_NONE.  A malformed frame is counted, reported in @parse_err
 * (may be NULL) and dropped.
 */
ColoCheckpointReason colo_engine_input(ColoEngine *e, ColoSide side,
                                       const uint8_t *frame, size_t len,
                                       uint32_t vnet_hdr_len, int64_t now_ns,
                                       ColoParseError *parse_err);

/*
 * Periodic scan: returns COLO_REASON_TIMEOUT when a held packet is older
 * than compare_timeout; ages idle connections out.
 */
ColoCheckpointReason colo_engine_expire(ColoEngine *e, int64_t now_ns);

/* Checkpoint: release all primary packets, drop all secondary ones. */
void colo_engine_flush(ColoEngine *e, int64_t now_ns);

const ColoEngineStats *colo_engine_stats(ColoEngine *e);
/* Arrival time of the oldest held packet, or INT64_MAX if none. */
int64_t colo_engine_oldest_ns(ColoEngine *e);

const char *colo_reason_name(ColoCheckpointReason reason);

#endif /* NET_COLO_STREAM_H */
