/*
 * COLO: test-only fault injection points of a checkpoint
 *
 * Copyright (c) 2026 The qemu-colo authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * Tests need to act (kill a QEMU, cut the link, look at what a compare
 * released) at an exact point of one checkpoint.  With the environment
 * variable QEMU_COLO_FAULT_SOCKET set to the path of a listening unix
 * socket, the COLO thread of either side connects to it and, at each point
 * named in QEMU_COLO_FAULT_POINTS (comma-separated point names, or "all",
 * the default), writes one line
 *
 *     <mode> <point> <checkpoint sequence number>\n
 *
 * and waits until the test writes one byte back (or closes the socket,
 * which turns the points off for the rest of the process).  While it waits
 * the COLO thread holds no BQL, so the monitor answers.
 *
 * Off unless a test sets the variable: a point then costs one test of a
 * global read once at start-up, nothing else.
 */

#ifndef MIGRATION_COLO_FAULT_H
#define MIGRATION_COLO_FAULT_H

typedef enum ColoFaultPoint {
    /*
     * both: the guest of this side was just stopped for the checkpoint (on
     * the secondary: when the primary's RAM ended, see colo-proto.h)
     */
    COLO_FAULT_AFTER_STOP,
    /*
     * primary: RECEIVED arrived and the compares and filters were told to
     * release what they held; the guest is still stopped
     */
    COLO_FAULT_AFTER_COMPARES_TOLD,
    /* primary: device state sent / secondary: device state received */
    COLO_FAULT_AFTER_DEVICE_STATE,
    /*
     * primary: waiting for RECEIVED / secondary: has the whole checkpoint,
     * disks checkpointed, about to send RECEIVED
     */
    COLO_FAULT_BEFORE_RECEIVED,
    /*
     * primary: got RECEIVED, resumed, waiting for LOADED / secondary:
     * checkpoint applied, about to send LOADED
     */
    COLO_FAULT_BEFORE_LOADED,
    /*
     * primary: its live RAM phase is over and its guest still runs, about
     * to stop (the secondary's guest runs too, loading RAM meanwhile)
     */
    COLO_FAULT_AFTER_LIVE_RAM,
    /*
     * primary: RECEIVED arrived, the compares were not told yet and the
     * guest is still stopped (the secondary may already run the checkpoint)
     */
    COLO_FAULT_AFTER_RECEIVED,
    COLO_FAULT__MAX,
} ColoFaultPoint;

extern bool colo_fault_enabled;

void colo_fault_reached(ColoFaultPoint point, uint32_t seq);

static inline void colo_fault_point(ColoFaultPoint point, uint32_t seq)
{
    if (unlikely(colo_fault_enabled)) {
        colo_fault_reached(point, seq);
    }
}

#endif /* MIGRATION_COLO_FAULT_H */
