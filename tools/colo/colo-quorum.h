/*
 * Cluster membership and quorum from corosync, for qemu-colo-agent
 *
 * Copyright (c) 2026 The qemu-colo authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * A thin layer over corosync's libquorum (quorate flag and membership of
 * our partition, with change notifications), libvotequorum (our node id,
 * votes, qdevice state) and libcmap (node names of the nodelist).
 *
 * The agent must act only on quorate decisions: a node whose partition
 * is not quorate must not take over (and a primary that loses quorum must
 * not go on serving when the peer's partition may be quorate).  If the
 * connection to corosync is lost, the module reports "not quorate" and
 * "not connected": a dead corosync on this node means the rest of the
 * cluster may already have formed a quorum without us.
 *
 * Without corosync support at build time (no libquorum, libvotequorum,
 * libcmap), colo_quorum_available() is false and colo_quorum_connect()
 * fails with an error saying so.
 *
 * Event loop use:
 *
 *     q = colo_quorum_connect(on_change, agent, &err);
 *     colo_quorum_add_watch(q);       (or poll colo_quorum_fd() yourself
 *                                      and call colo_quorum_dispatch())
 *     ... on_change(q, agent): read colo_quorum_is_quorate(),
 *         colo_quorum_is_member(q, peer_id), colo_quorum_connected()
 *
 * on_change is called once the first membership is known, after every
 * change reported by corosync, and once when the connection is lost.
 */

#ifndef TOOLS_COLO_QUORUM_H
#define TOOLS_COLO_QUORUM_H

typedef struct ColoQuorum ColoQuorum;
typedef void ColoQuorumNotify(ColoQuorum *q, void *opaque);

typedef struct ColoQuorumInfo {
    uint32_t node_id;           /* this node */
    bool quorate;
    unsigned int votes;         /* total votes in our partition */
    unsigned int expected_votes;
    unsigned int quorum;        /* votes needed for quorum */
    bool qdevice_registered;    /* a quorum device (qdevice) is configured */
    bool qdevice_alive;
    bool qdevice_vote;          /* and casts its vote for our partition */
} ColoQuorumInfo;

/* True if built with corosync support. */
bool colo_quorum_available(void);

/*
 * Connect to the local corosync and start tracking changes.  Fails with a
 * clear message if corosync is not running (or not reachable from this
 * network namespace: corosync's IPC sockets are per network namespace).
 */
ColoQuorum *colo_quorum_connect(ColoQuorumNotify *notify, void *opaque,
                                Error **errp);
void colo_quorum_free(ColoQuorum *q);

/* Readable when corosync has news: then call colo_quorum_dispatch(). */
int colo_quorum_fd(ColoQuorum *q);

/*
 * Process pending notifications (calls notify).  Returns false, with
 * errp set, once the connection to corosync is lost; the module then
 * reports not quorate and no members.
 */
bool colo_quorum_dispatch(ColoQuorum *q, Error **errp);

/*
 * Watch colo_quorum_fd() in the default GLib main context and dispatch.
 * The watch removes itself when the connection is lost (after notify).
 * Returns the source id.
 */
unsigned int colo_quorum_add_watch(ColoQuorum *q);

bool colo_quorum_connected(ColoQuorum *q);
/* The membership has been reported at least once since connecting. */
bool colo_quorum_known(ColoQuorum *q);
bool colo_quorum_is_quorate(ColoQuorum *q);
uint32_t colo_quorum_local_id(ColoQuorum *q);
/* node_id is in the membership of our partition (quorate or not). */
bool colo_quorum_is_member(ColoQuorum *q, uint32_t node_id);
/* The current members (owned by q, valid until the next dispatch). */
const uint32_t *colo_quorum_members(ColoQuorum *q, size_t *n);

/* Votes and qdevice state, asked from votequorum now. */
bool colo_quorum_get_info(ColoQuorum *q, ColoQuorumInfo *info, Error **errp);

/*
 * The node id of a node of corosync's nodelist, given as a decimal id,
 * its "name" or its ring0_addr.
 */
bool colo_quorum_node_id(ColoQuorum *q, const char *node, uint32_t *id,
                         Error **errp);

#endif
