/*
 * COLO proxy: the secondary's client input at a checkpoint
 *
 * Copyright (c) 2026 The qemu-colo authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * Client frames reach the secondary through the primary's filter-mirror
 * and the secondary's filter-redirector.  Both guests run and take client
 * input during the primary's live RAM phase; the primary stops at its end,
 * the secondary when the primary's RAM ended (later).  Frames the
 * primary's guest received before its stop are part of the checkpoint:
 * delivered once more to the secondary after the load, they would be
 * answered twice (duplicate UDP/ICMP answers, mismatches).
 *
 * Both ends count the frames on that chardev since it connected (a byte
 * stream: the n-th frame written is the n-th frame read).  At the stop the
 * primary records, for each mirror of client input (queue=tx), how many it
 * had mirrored: its "input mark".  While the secondary is stopped in COLO,
 * its redirector holds the frames it reads; with the checkpoint it learns
 * the mark, drops the held and later frames below it (they are in the
 * checkpoint), and delivers the rest when its guest runs again.
 *
 * The secondary's guest takes client frames while the primary's RAM
 * arrives: those below the mark are in the checkpoint, and the load
 * replaces the state that took them, as between checkpoints.  A stopped
 * VM's netdevs pass no frames on (qemu_can_send_packet()), but a netdev
 * may read one frame more before it sees that: that frame waits in the
 * net layer's queue and reaches the primary's guest after the checkpoint.
 * The primary's mirror holds it until the guest runs (filter-mirror.c),
 * so that it counts above the mark and reaches the secondary after the
 * checkpoint too.  Mirrored at once, it reached the secondary's guest
 * while that still ran, and was lost with the state the load replaced (a
 * SYN then waited for the client's retransmission).
 *
 * A frame the primary mirrored but its NIC had not taken yet when it
 * stopped (its receive ring was full) counts as received by the primary,
 * and rightly: at a stop QEMU delivers what waits for a NIC, or drops what
 * the NIC still cannot take (net_vm_change_state_handler()), so it is in
 * the checkpoint or lost on both sides, as on a congested network.
 *
 * Threads: all functions run under the BQL.
 */

#ifndef NET_COLO_INPUT_H
#define NET_COLO_INPUT_H

/* Primary, guest stopped: append "<netdev id> <frames mirrored>\n" lines. */
void colo_input_marks_save(GString *marks);
/*
 * Secondary, checkpoint loaded: apply the primary's marks to the
 * redirectors that feed the same netdevs.  False with @errp set on a
 * malformed line; marks of netdevs without a redirector are ignored.
 */
bool colo_input_marks_apply(const char *marks, size_t len, Error **errp);

#endif /* NET_COLO_INPUT_H */
