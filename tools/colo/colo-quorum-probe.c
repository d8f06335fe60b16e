/*
 * colo-quorum-probe: what colo-quorum (the agent's corosync layer) sees
 *
 * Copyright (c) 2026 The qemu-colo authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 *   colo-quorum-probe status [--peer NODE]   one line, then exit
 *   colo-quorum-probe watch [--peer NODE]    one line per change
 *
 * A line: "connected=1 quorate=1 node=1 members=1,2 peer=2 peer_member=1
 * votes=3 expected=3 quorum=2 qdevice=1 qdevice_alive=1 qdevice_vote=1".
 * watch prints "connected=0 ..." and exits 2 when corosync goes away; it
 * runs the same GLib fd watch the agent uses.  Exit 1: cannot connect.
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qemu/error-report.h"
#include "colo-quorum.h"

typedef struct Probe {
    const char *peer;
    uint32_t peer_id;
    GMainLoop *loop;
    int status;
} Probe;

static void probe_print(ColoQuorum *q, Probe *p)
{
    g_autoptr(GString) line = g_string_new(NULL);
    ColoQuorumInfo info = { 0 };
    const uint32_t *m;
    size_t n, i;

    g_string_append_printf(line, "connected=%d quorate=%d",
                           colo_quorum_connected(q),
                           colo_quorum_is_quorate(q));
    if (colo_quorum_connected(q) && colo_quorum_get_info(q, &info, NULL)) {
        g_string_append_printf(line, " node=%u", info.node_id);
    }
    g_string_append(line, " members=");
    m = colo_quorum_members(q, &n);
    for (i = 0; i < n; i++) {
        g_string_append_printf(line, "%s%u", i ? "," : "", m[i]);
    }
    if (p->peer) {
        g_string_append_printf(line, " peer=%u peer_member=%d", p->peer_id,
                               colo_quorum_is_member(q, p->peer_id));
    }
    if (info.node_id) {
        g_string_append_printf(line, " votes=%u expected=%u quorum=%u "
                               "qdevice=%d qdevice_alive=%d qdevice_vote=%d",
                               info.votes, info.expected_votes, info.quorum,
                               info.qdevice_registered, info.qdevice_alive,
                               info.qdevice_vote);
    }
    printf("%s\n", line->str);
    fflush(stdout);
}

static void probe_changed(ColoQuorum *q, void *opaque)
{
    Probe *p = opaque;

    if (p->loop) {
        probe_print(q, p);
        if (!colo_quorum_connected(q)) {
            p->status = 2;
            g_main_loop_quit(p->loop);
        }
    }
}

static int usage(void)
{
    fprintf(stderr, "usage: colo-quorum-probe status|watch [--peer NODE]\n");
    return 1;
}

int main(int argc, char **argv)
{
    Probe p = { 0 };
    Error *err = NULL;
    ColoQuorum *q;
    bool watch;

    if (argc != 2 && !(argc == 4 && g_str_equal(argv[2], "--peer"))) {
        return usage();
    }
    if (g_str_equal(argv[1], "watch")) {
        watch = true;
    } else if (g_str_equal(argv[1], "status")) {
        watch = false;
    } else {
        return usage();
    }
    p.peer = argc == 4 ? argv[3] : NULL;

    q = colo_quorum_connect(probe_changed, &p, &err);
    if (!q) {
        error_report_err(err);
        return 1;
    }
    if (p.peer && !colo_quorum_node_id(q, p.peer, &p.peer_id, &err)) {
        error_report_err(err);
        colo_quorum_free(q);
        return 1;
    }
    /* the first membership report comes through the fd, like any other */
    while (!colo_quorum_known(q)) {
        GPollFD pfd = { .fd = colo_quorum_fd(q), .events = G_IO_IN };

        if (g_poll(&pfd, 1, 10000) <= 0) {
            error_report("corosync did not report the membership");
            colo_quorum_free(q);
            return 1;
        }
        if (!colo_quorum_dispatch(q, &err)) {
            error_report_err(err);
            colo_quorum_free(q);
            return 1;
        }
    }
    probe_print(q, &p);
    if (watch) {
        p.loop = g_main_loop_new(NULL, false);
        colo_quorum_add_watch(q);
        g_main_loop_run(p.loop);
        g_main_loop_unref(p.loop);
    }
    colo_quorum_free(q);
    return p.status;
}
