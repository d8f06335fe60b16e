/*
 * COLO proxy: the secondary's client input at a checkpoint
 *
 * Copyright (c) 2026 The qemu-colo authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * Client frames reach the secondary through the primary's filter-mirror
 * and the secondary's filter-redirector.  The secondary stops its guest at
 * the checkpoint request, the primary only later (after its live RAM
 * phase): frames the primary's guest received in between are part of the
 * checkpoint, and delivered once more to the secondary after the load they
 * would be answered twice (duplicate UDP/ICMP answers, mismatches).
 *
 * Both ends count the frames on that chardev since it connected (a byte
 * stream: the n-th frame written is the n-th frame read).  At the stop the
 * primary records, for each mirror of client input (queue=tx), how many it
 * had mirrored: its "input mark".  While the secondary is stopped in COLO,
 * its redirector holds the frames it reads; with the checkpoint it learns
 * the mark, drops the held and later frames below it (they are in the
 * checkpoint), and delivers the rest when its guest runs again.
 *
 * A frame the primary mirrored but its NIC had not taken yet when it
 * stopped (its receive queue was full) counts as received by the primary:
 * the secondary then misses it, diverges, and the compare asks for a
 * checkpoint, as for any difference: never unsafe, only a checkpoint.
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
