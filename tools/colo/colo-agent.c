/*
 * qemu-colo-agent: the HeartBeat agent of one node of a COLO pair
 *
 * Copyright (c) 2026 The qemu-colo authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 *   qemu-colo-agent [--verbose] CONFIG --node NAME
 *
 * Runs next to the node's QEMU (docs/system/qemu-colo-heartbeat.rst):
 * - sends a UDP heartbeat to the peer's agent every heartbeat-interval-ms
 *   on its own socket (heartbeat-addr:heartbeat-port), carrying the health
 *   and COLO mode of the local QEMU, and at once when they change;
 * - watches the local QEMU over its own QMP socket (agent-qmp): the QEMU
 *   process found through SO_PEERCRED, its state in /proc (stopped,
 *   exited), its COLO mode, its events (COLO_LINK_LOST, COLO_EXIT ...);
 * - asks the engine (colo-heartbeat.c) what to do and does it: take over
 *   with colo_action_take_over() (failover and clean-up of the documented
 *   procedure), or fence the local QEMU (SIGKILL);
 * - answers on its status socket (agent-socket) with one JSON line.
 *
 * Threads: the main thread runs the GLib loop (heartbeats, timers, status,
 * corosync) and owns the engine; the monitor thread (colo-agent-monitor.c)
 * owns the QMP client and reports to on_monitor_msg() in the main loop.
 */

#include "qemu/osdep.h"
#include <netinet/ip.h>
#include <glib-unix.h>
#include "qapi/error.h"
#include "qemu/error-report.h"
#include "qemu/sockets.h"
#include "qobject/qdict.h"
#include "qobject/qlist.h"
#include "qobject/qjson.h"
#include "qobject/qstring.h"
#include "qemu/timer.h"
#include "colo-config.h"
#include "colo-agent-monitor.h"
#include "colo-agent-status.h"
#include "colo-heartbeat.h"
#include "colo-quorum.h"
#define AUTH_NONE_WARNING   "heartbeat-auth = none: anyone on the link can " \
                            "forge or replay heartbeats (a forged 'gone' " \
                            "makes the secondary take over)"

typedef struct Agent {
    ColoConfig cfg;
    ColoNodeConfig *node, *peer;
    ColoHeartbeat hb;
    bool verbose;

    int hb_fd;
    struct sockaddr_storage peer_addr;
    socklen_t peer_addrlen;
    uint64_t seq;
    uint64_t boot_id;
    uint64_t refused;           /* datagrams ignored, all reasons */
    uint64_t tx_bytes, rx_bytes;
    ColoHealth sent_health;
    ColoHbMode sent_mode;
    ColoPeerState shown_peer;
    bool shown_stale;

    int status_fd;

    pid_t qemu_pid;             /* 0: not known */
    int gone_checks;            /* quick re-checks left after a QMP EOF */
    pid_t fenced_pid;           /* our QEMU we sent SIGKILL, until gone */
    char *last_action;
    int64_t last_action_ms;

    ColoQuorum *quorum;
    uint32_t peer_node_id;

    ColoMonitor *monitor;
} Agent;

static int64_t now_ms(void)
{
    return qemu_clock_get_ms(QEMU_CLOCK_REALTIME);
}

/* The wall clock heartbeats carry (the hosts' clocks agree: NTP). */
static int64_t wall_ms(void)
{
    return g_get_real_time() / 1000;
}

static void G_GNUC_PRINTF(2, 3) agent_log(Agent *a, const char *fmt, ...)
{
    g_autofree char *msg = NULL;
    g_autoptr(GDateTime) t = g_date_time_new_now_utc();
    g_autofree char *ts = g_date_time_format(t, "%H:%M:%S");
    va_list ap;

    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s.%03d qemu-colo-agent[%s]: %s\n", ts,
            g_date_time_get_microsecond(t) / 1000, a->node->name, msg);
}

/* ---- the local QEMU process ------------------------------------------ */

/* What /proc says of @pid: running, stopped or gone (also a zombie). */
static ColoHealth process_health(pid_t pid)
{
    g_autofree char *path = g_strdup_printf("/proc/%d/stat", (int)pid);
    g_autofree char *text = NULL;
    const char *p;

    if (!g_file_get_contents(path, &text, NULL, NULL)) {
        return COLO_HEALTH_GONE;
    }
    p = strrchr(text, ')');
    if (!p || p[1] != ' ') {
        return COLO_HEALTH_UNKNOWN;
    }
    switch (p[2]) {
    case 'Z':
    case 'X':
        return COLO_HEALTH_GONE;
    case 'T':
    case 't':
        return COLO_HEALTH_STOPPED;
    default:
        return COLO_HEALTH_RUNNING;
    }
}

/* ---- heartbeats ------------------------------------------------------ */

static void send_heartbeat(Agent *a)
{
    ColoHbMsg msg = {
        .seq = ++a->seq,
        .boot_id = a->boot_id,
        .wall_ms = wall_ms(),
        .health = a->hb.local_health,
        .mode = a->hb.local_mode,
    };
    uint8_t buf[COLO_HB_WIRE_LEN];

    g_strlcpy(msg.pair, a->cfg.name, sizeof(msg.pair));
    g_strlcpy(msg.node, a->node->name, sizeof(msg.node));
    colo_hb_encode(&msg, &a->hb.cfg.key, buf);
    if (sendto(a->hb_fd, buf, sizeof(buf), 0,
               (struct sockaddr *)&a->peer_addr, a->peer_addrlen) ==
        sizeof(buf)) {
        a->tx_bytes += sizeof(buf);
    }
    a->sent_health = msg.health;
    a->sent_mode = msg.mode;
}

static void set_last_action(Agent *a, const char *fmt, ...)
    G_GNUC_PRINTF(2, 3);

static void set_last_action(Agent *a, const char *fmt, ...)
{
    va_list ap;

    g_free(a->last_action);
    va_start(ap, fmt);
    a->last_action = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    a->last_action_ms = now_ms();
}

static const char *action_name(ColoHbAction act)
{
    return act == COLO_HB_TAKE_OVER ? "take-over" :
           act == COLO_HB_FENCE ? "fence" : "nothing";
}

/* Ask the engine, do what it says, tell the peer of any change. */
static void evaluate(Agent *a)
{
    int64_t now = now_ms();
    const char *old_reason = a->hb.reason;
    ColoHbAction act = colo_hb_decide(&a->hb, now);
    ColoPeerState peer = colo_hb_peer_state(&a->hb, now);

    if (peer != a->shown_peer) {
        agent_log(a, "peer %s: %s -> %s (its QEMU %s, mode %s, last "
                  "heartbeat %" PRId64 " ms ago)", a->peer->name,
                  colo_peer_state_name(a->shown_peer),
                  colo_peer_state_name(peer),
                  colo_health_name(a->hb.peer_health),
                  colo_hb_mode_name(a->hb.peer_mode),
                  colo_hb_silence_ms(&a->hb, now));
        a->shown_peer = peer;
    }
    if (a->hb.stale != a->shown_stale) {
        if (a->hb.stale) {
            agent_log(a, "this secondary is stale: %s (peer %s: its QEMU "
                      "%s, mode %s); it will not take over until "
                      "re-protected", a->hb.stale_why, a->peer->name,
                      colo_health_name(a->hb.peer_health),
                      colo_hb_mode_name(a->hb.peer_mode));
        } else {
            agent_log(a, "no longer stale (a new COLO session or QEMU)");
        }
        a->shown_stale = a->hb.stale;
    }
    if (act == COLO_HB_NOTHING && a->hb.reason != old_reason &&
        g_strcmp0(a->hb.reason, old_reason)) {
        agent_log(a, "%s", a->hb.reason);
    }
    if (act == COLO_HB_TAKE_OVER) {
        agent_log(a, "decision: take over: %s", a->hb.reason);
        set_last_action(a, "take-over started: %s", a->hb.reason);
        colo_monitor_request(a->monitor, act);
    } else if (act == COLO_HB_FENCE) {
        bool ok = a->qemu_pid > 0 && kill(a->qemu_pid, SIGKILL) == 0;

        agent_log(a, "decision: fence: %s; SIGKILL to QEMU pid %d: %s",
                  a->hb.reason, (int)a->qemu_pid, ok ? "sent" :
                  "failed");
        set_last_action(a, "fence (SIGKILL to pid %d)%s: %s",
                        (int)a->qemu_pid, ok ? "" : " failed",
                        a->hb.reason);
        colo_hb_action_done(&a->hb, act, ok, now);
        a->fenced_pid = ok ? a->qemu_pid : 0;
        a->gone_checks = 100;
    }
    if (a->hb.local_health != a->sent_health ||
        a->hb.local_mode != a->sent_mode) {
        send_heartbeat(a);
    }
}

static void refresh_health(Agent *a)
{
    ColoHealth h = a->qemu_pid ? process_health(a->qemu_pid)
                               : (a->hb.local_health == COLO_HEALTH_GONE ?
                                  COLO_HEALTH_GONE : COLO_HEALTH_UNKNOWN);

    /*
     * A QEMU we fenced never runs its guest again, but SIGKILL wakes a
     * stopped process to die, so /proc shows it running for a moment.
     * Reported, that moment would tell the peer that the primary served
     * alone after the COLO link broke, and the peer would refuse to take
     * over as stale.
     */
    if (a->fenced_pid && a->fenced_pid == a->qemu_pid &&
        h == COLO_HEALTH_RUNNING) {
        h = COLO_HEALTH_STOPPED;
    }

    if (h != a->hb.local_health) {
        agent_log(a, "local QEMU (pid %d): %s -> %s", (int)a->qemu_pid,
                  colo_health_name(a->hb.local_health), colo_health_name(h));
    }
    colo_hb_set_local_health(&a->hb, now_ms(), h);
    if (h == COLO_HEALTH_GONE) {
        a->qemu_pid = 0;
        a->gone_checks = 0;
    }
}

static gboolean on_tick(gpointer opaque)
{
    Agent *a = opaque;

    refresh_health(a);
    send_heartbeat(a);
    evaluate(a);
    return G_SOURCE_CONTINUE;
}

/* After a QMP EOF, look at the process often until it is gone. */
static gboolean on_gone_check(gpointer opaque)
{
    Agent *a = opaque;

    if (a->gone_checks <= 0 || !a->qemu_pid) {
        return G_SOURCE_REMOVE;
    }
    a->gone_checks--;
    refresh_health(a);
    evaluate(a);
    return a->gone_checks > 0 ? G_SOURCE_CONTINUE : G_SOURCE_REMOVE;
}

static bool same_host(const struct sockaddr_storage *x,
                      const struct sockaddr_storage *y)
{
    if (x->ss_family != y->ss_family) {
        return false;
    }
    if (x->ss_family == AF_INET) {
        return ((struct sockaddr_in *)x)->sin_addr.s_addr ==
               ((struct sockaddr_in *)y)->sin_addr.s_addr;
    }
    if (x->ss_family == AF_INET6) {
        return !memcmp(&((struct sockaddr_in6 *)x)->sin6_addr,
                       &((struct sockaddr_in6 *)y)->sin6_addr,
                       sizeof(struct in6_addr));
    }
    return false;
}

static gboolean on_heartbeat(gint fd, GIOCondition cond, gpointer opaque)
{
    Agent *a = opaque;

    for (;;) {
        uint8_t buf[512];
        struct sockaddr_storage from;
        socklen_t fromlen = sizeof(from);
        ssize_t n = recvfrom(fd, buf, sizeof(buf), MSG_DONTWAIT,
                             (struct sockaddr *)&from, &fromlen);
        ColoHealth before = a->hb.peer_health;
        bool ok;

        if (n < 0) {
            break;
        }
        a->rx_bytes += n;
        if (!same_host(&from, &a->peer_addr)) {
            a->hb.rx_bad++;
            a->hb.last_bad = "not from the peer's heartbeat address";
            ok = false;
        } else {
            ok = colo_hb_receive(&a->hb, now_ms(), wall_ms(), buf, n);
        }
        if (!ok) {
            a->refused++;
        }
        /* the first, then one in a thousand: a flood must not fill logs */
        if (!ok && a->hb.last_bad &&
            (a->refused == 1 || a->refused % 1000 == 0)) {
            agent_log(a, "ignored a datagram (%" PRIu64 " so far: %" PRIu64
                      " forged, %" PRIu64 " corrupt, %" PRIu64 " replayed, %"
                      PRIu64 " stale, %" PRIu64 " bad): %s", a->refused,
                      a->hb.rx_forged, a->hb.rx_corrupt, a->hb.rx_replayed,
                      a->hb.rx_stale, a->hb.rx_bad, a->hb.last_bad);
        }
        if (ok && a->hb.peer_health != before) {
            agent_log(a, "peer %s reports its QEMU %s", a->peer->name,
                      colo_health_name(a->hb.peer_health));
        }
    }
    evaluate(a);
    return G_SOURCE_CONTINUE;
}

static void on_monitor_msg(const ColoMonMsg *m, void *opaque)
{
    Agent *a = opaque;

    switch (m->kind) {
    case COLO_MON_CONNECTED:
        agent_log(a, "QMP %s connected (QEMU pid %d)", a->node->agent_qmp,
                  (int)m->pid);
        a->qemu_pid = m->pid;
        refresh_health(a);
        break;
    case COLO_MON_DISCONNECTED:
        agent_log(a, "QMP %s: %s", a->node->agent_qmp, m->text);
        if (a->qemu_pid) {
            a->gone_checks = 100;   /* one second in 10 ms steps */
            g_timeout_add(10, on_gone_check, a);
            refresh_health(a);
        }
        break;
    case COLO_MON_MODE:
        if (m->mode != a->hb.local_mode) {
            agent_log(a, "local QEMU COLO mode: %s -> %s",
                      colo_hb_mode_name(a->hb.local_mode),
                      colo_hb_mode_name(m->mode));
        }
        colo_hb_set_local_mode(&a->hb, m->mode);
        if (m->link_lost && !a->hb.link_lost) {
            agent_log(a, "query-colo-status: the local QEMU's COLO link is "
                      "lost");
            colo_hb_session_broken(&a->hb);
        }
        break;
    case COLO_MON_EVENT:
        /* checkpoints make STOP, RESUME, MIGRATION_PASS: only if asked */
        if (a->verbose || g_str_has_prefix(m->name ?: "", "COLO") ||
            !g_strcmp0(m->name, "SHUTDOWN") ||
            !g_strcmp0(m->name, "MIGRATION")) {
            agent_log(a, "QMP event %s %s", m->name ?: "?", m->text);
        }
        if (!g_strcmp0(m->name, "COLO_LINK_LOST")) {
            colo_hb_link_lost(&a->hb);
        }
        break;
    case COLO_MON_NOTE:
        agent_log(a, "%s", m->text);
        break;
    case COLO_MON_ACTION_DONE:
        agent_log(a, "%s %s: %s", action_name(m->action),
                  m->ok ? "done" : "failed", m->text);
        set_last_action(a, "%s %s: %s", action_name(m->action),
                        m->ok ? "done" : "failed", m->text);
        colo_hb_action_done(&a->hb, m->action, m->ok, now_ms());
        break;
    }
    evaluate(a);
}

/* ---- corosync -------------------------------------------------------- */

static void on_quorum(ColoQuorum *q, void *opaque)
{
    Agent *a = opaque;
    ColoHbQuorum state = COLO_HB_QUORUM_INQUORATE;
    bool member = false;

    if (colo_quorum_connected(q) && colo_quorum_known(q)) {
        state = colo_quorum_is_quorate(q) ? COLO_HB_QUORUM_QUORATE
                                          : COLO_HB_QUORUM_INQUORATE;
        member = a->peer_node_id && colo_quorum_is_member(q,
                                                          a->peer_node_id);
    }
    if (state != a->hb.quorum || member != a->hb.peer_member) {
        agent_log(a, "corosync: %s, peer %s %s", colo_hb_quorum_name(state),
                  a->peer->name, member ? "is a member" : "is not a member");
    }
    colo_hb_set_quorum(&a->hb, state, member, now_ms());
    evaluate(a);
}

static gboolean connect_quorum(gpointer opaque)
{
    Agent *a = opaque;
    Error *err = NULL;

    if (a->quorum && colo_quorum_connected(a->quorum)) {
        return G_SOURCE_CONTINUE;
    }
    if (a->quorum) {
        colo_quorum_free(a->quorum);
        a->quorum = NULL;
        colo_hb_set_quorum(&a->hb, COLO_HB_QUORUM_INQUORATE, false,
                           now_ms());
    }
    a->quorum = colo_quorum_connect(on_quorum, a, &err);
    if (a->quorum &&
        !colo_quorum_node_id(a->quorum, a->peer->name, &a->peer_node_id,
                             &err)) {
        colo_quorum_free(a->quorum);
        a->quorum = NULL;
    }
    if (!a->quorum) {
        static bool told;

        if (!told) {
            agent_log(a, "corosync: %s (retrying every second)",
                      error_get_pretty(err));
            told = true;
        }
        error_free(err);
        return G_SOURCE_CONTINUE;
    }
    agent_log(a, "corosync: connected; peer %s is node id %u",
              a->peer->name, a->peer_node_id);
    colo_quorum_add_watch(a->quorum);
    return G_SOURCE_CONTINUE;
}

/* ---- status socket --------------------------------------------------- */

static const char *role_name(ColoHbMode m, const ColoHeartbeat *hb)
{
    /* The last mode read is stale once the local QEMU is gone. */
    if (hb->local_health == COLO_HEALTH_GONE) {
        return "qemu-gone";
    }
    /* A secondary that must never take over (see colo-heartbeat.h) */
    if (m == COLO_HB_MODE_SECONDARY && hb->stale) {
        return "stale";
    }
    if (m == COLO_HB_MODE_PRIMARY || m == COLO_HB_MODE_SECONDARY) {
        return colo_hb_mode_name(m);
    }
    if (m == COLO_HB_MODE_NONE && hb->took_over) {
        return "alone";
    }
    return colo_hb_mode_name(m);
}

static char *status_json(Agent *a)
{
    int64_t now = now_ms();
    ColoAgentStatus st = {
        .node = a->node->name,
        .role = role_name(a->hb.local_mode, &a->hb),
        .peer = a->peer->name,
        .peer_state = colo_peer_state_name(colo_hb_peer_state(&a->hb, now)),
        .last_heartbeat_ms = colo_hb_silence_ms(&a->hb, now),
        .quorum = a->cfg.use_corosync ? colo_hb_quorum_name(a->hb.quorum)
                                      : "none",
        .last_action = a->last_action ?: "none",
        .last_action_ms_ago = a->last_action ? now - a->last_action_ms : -1,
        .reason = a->hb.reason ?: "",
        .stale = a->hb.stale,
        .local_qemu = colo_health_name(a->hb.local_health),
        .qemu_pid = a->qemu_pid,
        .peer_qemu = colo_health_name(a->hb.peer_health),
        .peer_mode = colo_hb_mode_name(a->hb.peer_mode),
        .heartbeats_sent = a->seq,
        .heartbeats_received = a->hb.rx_ok,
        .bad_datagrams = a->hb.rx_bad,
        .forged_datagrams = a->hb.rx_forged,
        .corrupt_datagrams = a->hb.rx_corrupt,
        .replayed_datagrams = a->hb.rx_replayed,
        .stale_datagrams = a->hb.rx_stale,
        .heartbeat_auth = a->cfg.heartbeat_auth ? "hmac-sha256" : "none",
        .warning = a->cfg.heartbeat_auth ? NULL : AUTH_NONE_WARNING,
        .bytes_sent = a->tx_bytes,
        .bytes_received = a->rx_bytes,
        .interval_ms = a->cfg.heartbeat_interval_ms,
        .timeout_ms = a->cfg.heartbeat_timeout_ms,
    };
    g_autoptr(QDict) d = colo_agent_status_to_qdict(&st);
    g_autoptr(GString) s = qobject_to_json(QOBJECT(d));

    g_string_append_c(s, '\n');
    return g_strdup(s->str);
}

static gboolean on_status(gint fd, GIOCondition cond, gpointer opaque)
{
    Agent *a = opaque;
    int c = accept4(fd, NULL, NULL, SOCK_CLOEXEC);

    if (c >= 0) {
        g_autofree char *line = status_json(a);
        struct timeval tv = { .tv_sec = 1 };

        /* A reader that does not read must not block the agent. */
        setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        if (write(c, line, strlen(line)) < 0) {
            /* the reader went away: nothing to do */
        }
        close(c);
    }
    return G_SOURCE_CONTINUE;
}

static int listen_status(const char *path, Error **errp)
{
    int fd = unix_listen(path, errp);

    if (fd >= 0) {
        qemu_socket_set_nonblock(fd);
    }
    return fd;
}

/* ---- start-up -------------------------------------------------------- */

static bool resolve(const char *host, int port, struct sockaddr_storage *ss,
                    socklen_t *len, Error **errp)
{
    struct addrinfo hints = { .ai_socktype = SOCK_DGRAM };
    struct addrinfo *res = NULL;
    g_autofree char *service = g_strdup_printf("%d", port);
    int rc = getaddrinfo(host, service, &hints, &res);

    if (rc != 0) {
        error_setg(errp, "cannot resolve %s: %s", host, gai_strerror(rc));
        return false;
    }
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *len = res->ai_addrlen;
    freeaddrinfo(res);
    return true;
}

static int open_heartbeat(Agent *a, Error **errp)
{
    struct sockaddr_storage local;
    socklen_t len;
    int fd;

    if (!resolve(a->node->heartbeat_addr, a->cfg.heartbeat_port, &local,
                 &len, errp) ||
        !resolve(a->peer->heartbeat_addr, a->cfg.heartbeat_port,
                 &a->peer_addr, &a->peer_addrlen, errp)) {
        return -1;
    }
    fd = socket(local.ss_family, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK,
                0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&local, len) < 0) {
        error_setg_errno(errp, errno, "cannot bind the heartbeat socket to "
                         "%s port %d", a->node->heartbeat_addr,
                         a->cfg.heartbeat_port);
        if (fd >= 0) {
            close(fd);
        }
        return -1;
    }
    /* Heartbeats go first on a busy link (the COLO link, by default). */
    {
        int prio = 6, tos = IPTOS_LOWDELAY;

        setsockopt(fd, SOL_SOCKET, SO_PRIORITY, &prio, sizeof(prio));
        if (local.ss_family == AF_INET) {
            setsockopt(fd, IPPROTO_IP, IP_TOS, &tos, sizeof(tos));
        }
    }
    return fd;
}

static gboolean on_quit(gpointer opaque)
{
    g_main_loop_quit(opaque);
    return G_SOURCE_REMOVE;
}

static void usage(FILE *f)
{
    fprintf(f, "Usage: qemu-colo-agent [--verbose] CONFIG --node NAME\n"
            "The HeartBeat agent of node NAME of the COLO pair described "
            "by CONFIG\n(see docs/system/qemu-colo-heartbeat.rst).\n");
}

int main(int argc, char **argv)
{
    Agent agent = { .hb_fd = -1, .status_fd = -1 };
    Agent *a = &agent;
    const char *config = NULL, *node = NULL;
    Error *err = NULL;
    g_autoptr(GMainLoop) loop = NULL;
    ColoHbConfig hbcfg;

    error_init(argv[0]);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--node") && i + 1 < argc) {
            node = argv[++i];
        } else if (!strcmp(argv[i], "--verbose")) {
            a->verbose = true;
        } else if (!strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else if (argv[i][0] != '-' && !config) {
            config = argv[i];
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (!config || !node) {
        usage(stderr);
        return 2;
    }
    if (!colo_config_load(config, &a->cfg, &err)) {
        error_report_err(err);
        return 2;
    }
    a->node = colo_config_node(&a->cfg, node, &err);
    if (!a->node) {
        error_report_err(err);
        return 2;
    }
    a->peer = colo_config_peer(&a->cfg, a->node);

    hbcfg = (ColoHbConfig) {
        .pair = a->cfg.name,
        .peer = a->peer->name,
        .interval_ms = a->cfg.heartbeat_interval_ms,
        .timeout_ms = a->cfg.heartbeat_timeout_ms,
        .use_quorum = a->cfg.use_corosync,
        .key = { a->cfg.heartbeat_key, a->cfg.heartbeat_key_len },
    };
    colo_hb_init(&a->hb, &hbcfg, now_ms());
    a->shown_peer = COLO_PEER_SILENT;
    a->boot_id = g_random_int() | (uint64_t)g_random_int() << 32;

    a->hb_fd = open_heartbeat(a, &err);
    if (a->hb_fd < 0) {
        error_report_err(err);
        return 1;
    }
    a->status_fd = listen_status(a->node->agent_socket, &err);
    if (a->status_fd < 0) {
        error_report_err(err);
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);

    loop = g_main_loop_new(NULL, false);
    g_unix_fd_add(a->hb_fd, G_IO_IN, on_heartbeat, a);
    g_unix_fd_add(a->status_fd, G_IO_IN, on_status, a);
    g_timeout_add(a->cfg.heartbeat_interval_ms, on_tick, a);
    g_unix_signal_add(SIGTERM, on_quit, loop);
    g_unix_signal_add(SIGINT, on_quit, loop);
    if (a->cfg.use_corosync) {
        connect_quorum(a);
        g_timeout_add(1000, connect_quorum, a);
    }

    a->monitor = colo_monitor_start(&a->cfg, a->node, on_monitor_msg, a);

    agent_log(a, "started: pair %s, peer %s, heartbeats %s:%d <-> %s:%d "
              "every %" PRId64 " ms, timeout %" PRId64 " ms, corosync %s",
              a->cfg.name, a->peer->name, a->node->heartbeat_addr,
              a->cfg.heartbeat_port, a->peer->heartbeat_addr,
              a->cfg.heartbeat_port, a->cfg.heartbeat_interval_ms,
              a->cfg.heartbeat_timeout_ms,
              a->cfg.use_corosync ? "on" : "off");
    if (a->cfg.heartbeat_auth) {
        agent_log(a, "heartbeats authenticated with HMAC-SHA256 (key %s)",
                  a->cfg.heartbeat_key_file);
    } else {
        agent_log(a, "WARNING: %s", AUTH_NONE_WARNING);
    }
    send_heartbeat(a);
    g_main_loop_run(loop);

    agent_log(a, "stopping (signal)");
    unlink(a->node->agent_socket);
    /* The monitor thread may sit in a QMP call: do not wait for it. */
    fflush(stderr);
    _exit(0);
}
