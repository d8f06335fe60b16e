/*
 * COLO proxy: the secondary's output at a checkpoint
 *
 * Copyright (c) 2026 The qemu-colo authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * The secondary's guest output reaches the primary's colo-compare through
 * the secondary's filter-redirector (queue=rx, outdev) and colo-compare's
 * secondary_in.  At a checkpoint colo-compare drops what the secondary
 * sent before it (the checkpoint replaces the state that sent it) and
 * compares what it sends after it.  Where one ends and the other begins
 * is not a moment on the primary: the secondary applies a checkpoint and
 * runs on as soon as it has sent RECEIVED, while the primary's release
 * (colo-compare's flush) runs only once RECEIVED reached it, so output
 * of the new interval may reach colo-compare before the flush; and what
 * the secondary sent before its stop may still be on its way after it.
 * Dropped, the new output left the primary's copy of it waiting for
 * nothing (until compare_timeout and another checkpoint); compared, the
 * old output would be set against the primary's new.
 *
 * So it is a count: both ends count the frames on that chardev since it
 * connected (a byte stream: the n-th frame written is the n-th frame
 * read).  With the guest stopped, the secondary records for each
 * redirector of guest output how many frames it had sent: its "output
 * mark", sent with RECEIVED.  From the primary's stop until its release,
 * colo-compare sets aside the secondary's frames it reads; at the release
 * it drops those below the mark, flushes, compares those above it, and
 * drops frames below the mark that it reads later.
 *
 * The primary cannot tell which of its colo-compares reads which of the
 * secondary's redirectors: a mark is applied when there is one mark and
 * one colo-compare (the documented wiring); otherwise each colo-compare
 * drops at the release all it set aside, as if there were no marks.
 *
 * Threads: colo_output_marks_save() runs under the BQL.
 */

#ifndef NET_COLO_OUTPUT_H
#define NET_COLO_OUTPUT_H

/* Secondary, guest stopped: append "<netdev id> <frames sent>\n" lines. */
void colo_output_marks_save(GString *marks);

#endif /* NET_COLO_OUTPUT_H */
