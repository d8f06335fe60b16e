/*
 * Cluster membership and quorum from corosync, for qemu-colo-agent
 *
 * Copyright (c) 2026 The qemu-colo authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qemu/cutils.h"
#include "colo-quorum.h"

#ifdef COLO_QUORUM_COROSYNC

#include <corosync/corotypes.h>
#include <corosync/quorum.h>
#include <corosync/votequorum.h>
#include <corosync/cmap.h>

struct ColoQuorum {
    quorum_handle_t handle;
    bool connected;
    bool known;
    bool quorate;
    GArray *members;            /* uint32_t node ids */
    ColoQuorumNotify *notify;
    void *opaque;
    guint watch;
};

bool colo_quorum_available(void)
{
    return true;
}

static void colo_quorum_changed(quorum_handle_t handle, uint32_t quorate,
                                struct quorum_ring_id ring_id,
                                uint32_t n, const uint32_t *members)
{
    const void *ctx = NULL;
    ColoQuorum *q;

    if (quorum_context_get(handle, &ctx) != CS_OK || !ctx) {
        return;
    }
    q = (ColoQuorum *)ctx;
    q->quorate = quorate;
    q->known = true;
    g_array_set_size(q->members, 0);
    g_array_append_vals(q->members, members, n);
    if (q->notify) {
        q->notify(q, q->opaque);
    }
}

ColoQuorum *colo_quorum_connect(ColoQuorumNotify *notify, void *opaque,
                                Error **errp)
{
    quorum_model_v1_data_t model = {
        .model = QUORUM_MODEL_V1,
        .quorum_notify_fn = colo_quorum_changed,
    };
    uint32_t type = QUORUM_FREE;
    ColoQuorum *q = g_new0(ColoQuorum, 1);
    cs_error_t rc;

    q->members = g_array_new(false, false, sizeof(uint32_t));
    q->notify = notify;
    q->opaque = opaque;
    rc = quorum_model_initialize(&q->handle, QUORUM_MODEL_V1,
                                 (quorum_model_data_t *)&model, &type, q);
    if (rc != CS_OK) {
        error_setg(errp, "cannot connect to corosync's quorum service "
                   "(is corosync running, in this network namespace?): %s",
                   cs_strerror(rc));
        g_array_free(q->members, true);
        g_free(q);
        return NULL;
    }
    q->connected = true;
    if (type != QUORUM_SET) {
        error_setg(errp, "corosync has no quorum provider: set "
                   "'quorum { provider: corosync_votequorum }' in "
                   "corosync.conf");
        colo_quorum_free(q);
        return NULL;
    }
    rc = quorum_trackstart(q->handle, CS_TRACK_CURRENT | CS_TRACK_CHANGES);
    if (rc != CS_OK) {
        error_setg(errp, "corosync: cannot track quorum changes: %s",
                   cs_strerror(rc));
        colo_quorum_free(q);
        return NULL;
    }
    return q;
}

void colo_quorum_free(ColoQuorum *q)
{
    if (!q) {
        return;
    }
    if (q->watch) {
        g_source_remove(q->watch);
    }
    if (q->connected) {
        quorum_finalize(q->handle);
    }
    g_array_free(q->members, true);
    g_free(q);
}

int colo_quorum_fd(ColoQuorum *q)
{
    int fd = -1;

    if (!q->connected || quorum_fd_get(q->handle, &fd) != CS_OK) {
        return -1;
    }
    return fd;
}

static void colo_quorum_lost(ColoQuorum *q)
{
    quorum_finalize(q->handle);
    q->connected = false;
    q->quorate = false;
    g_array_set_size(q->members, 0);
    if (q->notify) {
        q->notify(q, q->opaque);
    }
}

bool colo_quorum_dispatch(ColoQuorum *q, Error **errp)
{
    cs_error_t rc;

    if (!q->connected) {
        error_setg(errp, "not connected to corosync");
        return false;
    }
    rc = quorum_dispatch(q->handle, CS_DISPATCH_ALL);
    if (rc != CS_OK && rc != CS_ERR_TRY_AGAIN) {
        error_setg(errp, "lost the connection to corosync: %s",
                   cs_strerror(rc));
        colo_quorum_lost(q);
        return false;
    }
    return true;
}

static gboolean colo_quorum_ready(int fd, GIOCondition cond, void *opaque)
{
    ColoQuorum *q = opaque;
    Error *err = NULL;

    if (!colo_quorum_dispatch(q, &err)) {
        error_free(err);
        q->watch = 0;
        return G_SOURCE_REMOVE;
    }
    return G_SOURCE_CONTINUE;
}

unsigned int colo_quorum_add_watch(ColoQuorum *q)
{
    int fd = colo_quorum_fd(q);

    if (fd < 0) {
        return 0;
    }
    if (!q->watch) {
        q->watch = g_unix_fd_add(fd, G_IO_IN | G_IO_HUP | G_IO_ERR,
                                 colo_quorum_ready, q);
    }
    return q->watch;
}

bool colo_quorum_connected(ColoQuorum *q)
{
    return q->connected;
}

bool colo_quorum_known(ColoQuorum *q)
{
    return q->known;
}

bool colo_quorum_is_quorate(ColoQuorum *q)
{
    return q->connected && q->known && q->quorate;
}

const uint32_t *colo_quorum_members(ColoQuorum *q, size_t *n)
{
    *n = q->members->len;
    return (const uint32_t *)q->members->data;
}

bool colo_quorum_is_member(ColoQuorum *q, uint32_t node_id)
{
    guint i;

    for (i = 0; i < q->members->len; i++) {
        if (g_array_index(q->members, uint32_t, i) == node_id) {
            return true;
        }
    }
    return false;
}

bool colo_quorum_get_info(ColoQuorum *q, ColoQuorumInfo *info, Error **errp)
{
    votequorum_callbacks_t cb = { 0 };
    votequorum_handle_t vq;
    struct votequorum_info vi;
    cs_error_t rc;

    rc = votequorum_initialize(&vq, &cb);
    if (rc != CS_OK) {
        error_setg(errp, "cannot connect to corosync's votequorum service: "
                   "%s", cs_strerror(rc));
        return false;
    }
    /* node id 0: this node */
    rc = votequorum_getinfo(vq, 0, &vi);
    votequorum_finalize(vq);
    if (rc != CS_OK) {
        error_setg(errp, "votequorum: cannot read this node's state: %s",
                   cs_strerror(rc));
        return false;
    }
    *info = (ColoQuorumInfo) {
        .node_id = vi.node_id,
        .quorate = vi.flags & VOTEQUORUM_INFO_QUORATE,
        .votes = vi.total_votes,
        .expected_votes = vi.node_expected_votes,
        .quorum = vi.quorum,
        .qdevice_registered = vi.flags & VOTEQUORUM_INFO_QDEVICE_REGISTERED,
        .qdevice_alive = vi.flags & VOTEQUORUM_INFO_QDEVICE_ALIVE,
        .qdevice_vote = vi.flags & VOTEQUORUM_INFO_QDEVICE_CAST_VOTE,
    };
    return true;
}

uint32_t colo_quorum_local_id(ColoQuorum *q)
{
    ColoQuorumInfo info;

    if (!colo_quorum_get_info(q, &info, NULL)) {
        return 0;
    }
    return info.node_id;
}

/* cmap string value of key, or NULL */
static char *colo_cmap_str(cmap_handle_t h, const char *key)
{
    char *val = NULL;

    if (cmap_get_string(h, key, &val) != CS_OK) {
        return NULL;
    }
    return val;
}

bool colo_quorum_node_id(ColoQuorum *q, const char *node, uint32_t *id,
                         Error **errp)
{
    cmap_handle_t h;
    cs_error_t rc;
    uint64_t num;
    bool found = false;
    int i;

    if (!qemu_strtou64(node, NULL, 10, &num) && num > 0 && num <= UINT32_MAX) {
        *id = num;
        return true;
    }
    rc = cmap_initialize(&h);
    if (rc != CS_OK) {
        error_setg(errp, "cannot connect to corosync's cmap service: %s",
                   cs_strerror(rc));
        return false;
    }
    for (i = 0; !found; i++) {
        g_autofree char *k_name =
            g_strdup_printf("nodelist.node.%d.name", i);
        g_autofree char *k_addr =
            g_strdup_printf("nodelist.node.%d.ring0_addr", i);
        g_autofree char *k_id =
            g_strdup_printf("nodelist.node.%d.nodeid", i);
        char *name = colo_cmap_str(h, k_name);
        char *addr = colo_cmap_str(h, k_addr);
        uint32_t nodeid;

        if (!name && !addr) {
            break;
        }
        if (g_strcmp0(name, node) == 0 || g_strcmp0(addr, node) == 0) {
            if (cmap_get_uint32(h, k_id, &nodeid) == CS_OK) {
                *id = nodeid;
                found = true;
            } else {
                error_setg(errp, "corosync nodelist: node '%s' has no "
                           "nodeid", node);
                free(name);
                free(addr);
                cmap_finalize(h);
                return false;
            }
        }
        free(name);
        free(addr);
    }
    cmap_finalize(h);
    if (!found) {
        error_setg(errp, "node '%s' is not in corosync's nodelist (give "
                   "its name, ring0_addr or nodeid)", node);
    }
    return found;
}

#else /* !COLO_QUORUM_COROSYNC */

bool colo_quorum_available(void)
{
    return false;
}

ColoQuorum *colo_quorum_connect(ColoQuorumNotify *notify, void *opaque,
                                Error **errp)
{
    error_setg(errp, "built without corosync support (install "
               "libquorum-dev, libvotequorum-dev and libcmap-dev and "
               "rebuild)");
    return NULL;
}

void colo_quorum_free(ColoQuorum *q)
{
}

int colo_quorum_fd(ColoQuorum *q)
{
    return -1;
}

bool colo_quorum_dispatch(ColoQuorum *q, Error **errp)
{
    error_setg(errp, "built without corosync support");
    return false;
}

unsigned int colo_quorum_add_watch(ColoQuorum *q)
{
    return 0;
}

bool colo_quorum_connected(ColoQuorum *q)
{
    return false;
}

bool colo_quorum_known(ColoQuorum *q)
{
    return false;
}

bool colo_quorum_is_quorate(ColoQuorum *q)
{
    return false;
}

uint32_t colo_quorum_local_id(ColoQuorum *q)
{
    return 0;
}

bool colo_quorum_is_member(ColoQuorum *q, uint32_t node_id)
{
    return false;
}

const uint32_t *colo_quorum_members(ColoQuorum *q, size_t *n)
{
    *n = 0;
    return NULL;
}

bool colo_quorum_get_info(ColoQuorum *q, ColoQuorumInfo *info, Error **errp)
{
    error_setg(errp, "built without corosync support");
    return false;
}

bool colo_quorum_node_id(ColoQuorum *q, const char *node, uint32_t *id,
                         Error **errp)
{
    error_setg(errp, "built without corosync support");
    return false;
}

#endif
