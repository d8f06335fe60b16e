/*
 * The COLO pair configuration file (see colo-config.h)
 *
 * Copyright (c) 2026 The qemu-colo authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * Every error names the file, the group and the key.  Unknown groups and
 * keys are errors too: a misspelt key silently replaced by its default is
 * worse than a refusal to start.
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qemu/cutils.h"
#include <sys/un.h>
#include "colo-config.h"
#include "colo-ids.h"
#include "colo-heartbeat.h"

#define NODE_PREFIX "node "

static const char *const pair_keys[] = {
    "name", "qemu", "qemu-img", "guest-args", "netdev", "mac", "disk-size",
    "checkpoint-delay-ms", "resync-speed", "port-mirror", "port-compare",
    "port-migrate", "port-nbd", "heartbeat-port",
    /*
     * Read by older versions, for the proxy's own hops, which are unix
     * sockets in the primary's work directory now; still accepted.
     */
    "port-local-compare", "port-local-out",
    "heartbeat-interval-ms", "heartbeat-timeout-ms", "use-corosync",
    "tls-dir", "heartbeat-key-file", "heartbeat-auth", "shared-disk",
    "shared-undo", "shared-cache-direct", NULL
};

#define KEY_FILE_MAX    4096    /* bytes read from a heartbeat key file */

/* The files of QEMU's x509 credentials directory (tls-creds-x509 dir=) */
static const char *const tls_files[] = {
    "ca-cert.pem", "server-cert.pem", "server-key.pem", "client-cert.pem",
    "client-key.pem", NULL
};

static const char *const node_keys[] = {
    "initial-role", "qmp", "agent-qmp", "status-qmp", "agent-socket",
    "link-addr", "heartbeat-addr", "launcher", "disk", "active", "hidden",
    "workdir", NULL
};

typedef struct Loader {
    GKeyFile *kf;
    const char *path;
    char *dir;              /* relative paths are relative to the file */
} Loader;

static char *get_str(Loader *l, const char *group, const char *key,
                     const char *def, Error **errp)
{
    g_autofree char *v = g_key_file_get_string(l->kf, group, key, NULL);

    if (v) {
        g_strstrip(v);
    }
    if (v && *v) {
        return g_steal_pointer(&v);
    }
    if (!def) {
        error_setg(errp, "%s: [%s]: missing key '%s'", l->path, group, key);
        return NULL;
    }
    return g_strdup(def);
}

/* A path: absolute, or relative to the configuration file's directory. */
static char *get_path(Loader *l, const char *group, const char *key,
                      const char *def, Error **errp)
{
    g_autofree char *v = get_str(l, group, key, def, errp);

    if (!v) {
        return NULL;
    }
    if (*v == '\0' || g_path_is_absolute(v)) {
        return g_steal_pointer(&v);
    }
    return g_build_filename(l->dir, v, NULL);
}

/*
 * protect puts the listeners of the primary proxy's own hops in the work
 * directory (colo-protect.c): refuse a directory whose socket paths do
 * not fit a unix socket address, before anything is started.
 */
static bool check_local_sockets(Loader *l, const char *group,
                                const char *workdir, Error **errp)
{
    const char *const listeners[] = {
        COLO_ID_COMPARE_PRI, COLO_ID_COMPARE_OUT
    };
    const size_t max = sizeof(((struct sockaddr_un *)NULL)->sun_path) - 1;

    for (int i = 0; i < ARRAY_SIZE(listeners); i++) {
        g_autofree char *name = g_strconcat(listeners[i],
                                            COLO_LOCAL_SOCKET_SUFFIX, NULL);
        g_autofree char *path = g_build_filename(workdir, name, NULL);

        if (strlen(path) > max) {
            error_setg(errp, "%s: [%s]: workdir is too long: the proxy's "
                       "unix socket %s would have %zu bytes, at most %zu fit",
                       l->path, group, path, strlen(path), max);
            return false;
        }
    }
    return true;
}

static bool get_int(Loader *l, const char *group, const char *key,
                    int64_t def, int64_t min, int64_t max, int64_t *out,
                    Error **errp)
{
    g_autofree char *v = g_key_file_get_string(l->kf, group, key, NULL);
    int64_t n;

    if (!v || !*g_strstrip(v)) {
        *out = def;
        return true;
    }
    if (qemu_strtoi64(v, NULL, 10, &n) < 0 || n < min || n > max) {
        error_setg(errp, "%s: [%s]: %s must be a number from %" PRId64
                   " to %" PRId64 ", not '%s'", l->path, group, key, min,
                   max, v);
        return false;
    }
    *out = n;
    return true;
}

static bool get_port(Loader *l, const char *key, int def, int *out,
                     Error **errp)
{
    int64_t n;

    if (!get_int(l, "pair", key, def, 1, 65535, &n, errp)) {
        return false;
    }
    *out = n;
    return true;
}

static bool check_keys(Loader *l, const char *group,
                       const char *const *known, Error **errp)
{
    g_auto(GStrv) keys = g_key_file_get_keys(l->kf, group, NULL, NULL);

    for (int i = 0; keys && keys[i]; i++) {
        if (!g_strv_contains(known, keys[i])) {
            error_setg(errp, "%s: [%s]: unknown key '%s'", l->path, group,
                       keys[i]);
            return false;
        }
    }
    return true;
}

static bool valid_mac(const char *mac)
{
    for (int i = 0; i < 17; i++) {
        if (i % 3 == 2 ? mac[i] != ':' : !g_ascii_isxdigit(mac[i])) {
            return false;
        }
    }
    return mac[17] == '\0';
}

/*
 * Pair and node names travel in every heartbeat datagram, in a field of
 * COLO_HB_NAME_MAX printable ASCII characters; a name that does not fit
 * would make the agents drop each other's heartbeats without a word.
 */
static bool fits_heartbeat(const char *name)
{
    size_t len = strlen(name);

    if (len == 0 || len > COLO_HB_NAME_MAX) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        if (!g_ascii_isgraph(name[i])) {
            return false;
        }
    }
    return true;
}

static bool valid_name(const char *name)
{
    if (!*name) {
        return false;
    }
    for (const char *p = name; *p; p++) {
        if (!g_ascii_isalnum(*p) && !strchr("-_.", *p)) {
            return false;
        }
    }
    return true;
}

static bool load_node(Loader *l, const char *group, ColoNodeConfig *n,
                      Error **errp)
{
    g_autofree char *role = NULL;

    n->name = g_strdup(group + strlen(NODE_PREFIX));
    g_strstrip(n->name);
    if (!valid_name(n->name)) {
        error_setg(errp, "%s: [%s]: a node name is made of letters, digits, "
                   "'-', '_' and '.'", l->path, group);
        return false;
    }
    if (!fits_heartbeat(n->name)) {
        error_setg(errp, "%s: [%s]: a node name is at most %d characters "
                   "(the heartbeat datagrams carry it)", l->path, group,
                   COLO_HB_NAME_MAX);
        return false;
    }
    if (!check_keys(l, group, node_keys, errp)) {
        return false;
    }
    role = get_str(l, group, "initial-role", NULL, errp);
    if (!role) {
        return false;
    }
    if (g_str_equal(role, "primary")) {
        n->initial_role = COLO_ROLE_PRIMARY;
    } else if (g_str_equal(role, "secondary")) {
        n->initial_role = COLO_ROLE_SECONDARY;
    } else {
        error_setg(errp, "%s: [%s]: initial-role must be 'primary' or "
                   "'secondary', not '%s'", l->path, group, role);
        return false;
    }
    n->workdir = get_path(l, group, "workdir", n->name, errp);
    if (!n->workdir) {
        return false;
    }
    if (!check_local_sockets(l, group, n->workdir, errp)) {
        return false;
    }
    {
        g_autofree char *def_qmp = g_build_filename(n->workdir, "qmp.sock",
                                                    NULL);
        g_autofree char *def_aqmp = g_build_filename(n->workdir,
                                                     "agent-qmp.sock", NULL);
        g_autofree char *def_sqmp = g_build_filename(n->workdir,
                                                     "status-qmp.sock", NULL);
        g_autofree char *def_asock = g_build_filename(n->workdir,
                                                      "agent.sock", NULL);
        g_autofree char *def_active = g_build_filename(n->workdir,
                                                       "active.qcow2", NULL);
        g_autofree char *def_hidden = g_build_filename(n->workdir,
                                                       "hidden.qcow2", NULL);

        n->qmp = get_path(l, group, "qmp", def_qmp, errp);
        n->agent_qmp = get_path(l, group, "agent-qmp", def_aqmp, errp);
        n->status_qmp = get_path(l, group, "status-qmp", def_sqmp, errp);
        n->agent_socket = get_path(l, group, "agent-socket", def_asock,
                                   errp);
        n->launcher = get_str(l, group, "launcher", "", errp);
        n->disk = get_path(l, group, "disk", "", errp);
        n->active = get_path(l, group, "active", def_active, errp);
        n->hidden = get_path(l, group, "hidden", def_hidden, errp);
        /* Only link-addr has no default. */
        n->link_addr = get_str(l, group, "link-addr", NULL, errp);
        if (!n->link_addr) {
            return false;
        }
    }
    n->heartbeat_addr = get_str(l, group, "heartbeat-addr", n->link_addr,
                                errp);
    if (n->launcher[0]) {
        g_auto(GStrv) argv = NULL;
        GError *gerr = NULL;

        if (!g_shell_parse_argv(n->launcher, NULL, &argv, &gerr)) {
            error_setg(errp, "%s: [%s]: launcher: %s", l->path, group,
                       gerr->message);
            g_error_free(gerr);
            return false;
        }
    }
    if (!n->disk[0]) {
        g_clear_pointer(&n->disk, g_free);
    }
    return true;
}

static bool load_tls_dir(Loader *l, ColoConfig *cfg, Error **errp)
{
    g_autofree char *dir = get_path(l, "pair", "tls-dir", "", errp);

    if (!*dir) {
        return true;
    }
    if (!g_file_test(dir, G_FILE_TEST_IS_DIR)) {
        error_setg(errp, "%s: [pair]: tls-dir: %s is not a directory",
                   l->path, dir);
        return false;
    }
    for (int i = 0; tls_files[i]; i++) {
        g_autofree char *f = g_build_filename(dir, tls_files[i], NULL);

        if (!g_file_test(f, G_FILE_TEST_IS_REGULAR)) {
            error_setg(errp, "%s: [pair]: tls-dir: %s is missing (the "
                       "directory needs ca-cert.pem, server-cert.pem, "
                       "server-key.pem, client-cert.pem and client-key.pem)",
                       l->path, f);
            return false;
        }
    }
    cfg->tls_dir = g_steal_pointer(&dir);
    return true;
}

/*
 * The heartbeat key: a regular file of ours that nobody else can read or
 * write (mode 0600 or stricter), at least COLO_HB_KEY_MIN bytes; its bytes
 * are the HMAC key.  Checked on the open file, not its name.
 */
static bool read_key_file(Loader *l, ColoConfig *cfg, Error **errp)
{
    const char *path = cfg->heartbeat_key_file;
    struct stat st;
    ssize_t n;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);

    if (fd < 0) {
        error_setg_errno(errp, errno, "%s: [pair]: heartbeat-key-file: "
                         "cannot open %s", l->path, path);
        return false;
    }
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        error_setg(errp, "%s: [pair]: heartbeat-key-file: %s is not a "
                   "regular file", l->path, path);
        goto fail;
    }
    if (st.st_uid != geteuid()) {
        error_setg(errp, "%s: [pair]: heartbeat-key-file: %s is owned by "
                   "uid %u, not by the user running this tool (uid %u)",
                   l->path, path, (unsigned)st.st_uid, (unsigned)geteuid());
        goto fail;
    }
    if (st.st_mode & 077) {
        error_setg(errp, "%s: [pair]: heartbeat-key-file: %s has mode %04o: "
                   "a key others can read or write is no secret; make it "
                   "0600 (chmod 600 %s)", l->path, path,
                   (unsigned)(st.st_mode & 07777), path);
        goto fail;
    }
    cfg->heartbeat_key = g_malloc(KEY_FILE_MAX);
    n = read(fd, cfg->heartbeat_key, KEY_FILE_MAX);
    if (n < 0) {
        error_setg_errno(errp, errno, "%s: [pair]: heartbeat-key-file: "
                         "cannot read %s", l->path, path);
        goto fail;
    }
    if (n < COLO_HB_KEY_MIN) {
        error_setg(errp, "%s: [pair]: heartbeat-key-file: %s has %zd bytes; "
                   "a key needs at least %d bytes of random material (e.g. "
                   "head -c 64 /dev/urandom > %s)", l->path, path, n,
                   COLO_HB_KEY_MIN, path);
        goto fail;
    }
    cfg->heartbeat_key_len = n;
    close(fd);
    return true;

fail:
    close(fd);
    return false;
}

static bool load_heartbeat_auth(Loader *l, ColoConfig *cfg, Error **errp)
{
    g_autofree char *auth = get_str(l, "pair", "heartbeat-auth",
                                    "hmac-sha256", errp);

    cfg->heartbeat_key_file = get_path(l, "pair", "heartbeat-key-file", "",
                                       errp);
    if (g_str_equal(auth, "none")) {
        if (*cfg->heartbeat_key_file) {
            error_setg(errp, "%s: [pair]: heartbeat-auth = none, but "
                       "heartbeat-key-file is set: remove one of them",
                       l->path);
            return false;
        }
        cfg->heartbeat_auth = false;
        g_clear_pointer(&cfg->heartbeat_key_file, g_free);
        return true;
    }
    if (!g_str_equal(auth, "hmac-sha256")) {
        error_setg(errp, "%s: [pair]: heartbeat-auth must be 'hmac-sha256' "
                   "or 'none', not '%s'", l->path, auth);
        return false;
    }
    cfg->heartbeat_auth = true;
    if (!*cfg->heartbeat_key_file) {
        error_setg(errp, "%s: [pair]: missing key 'heartbeat-key-file': the "
                   "heartbeats are authenticated (heartbeat-auth = "
                   "hmac-sha256, the default) with a key file shared by both "
                   "hosts; set it, or say heartbeat-auth = none to run "
                   "without (anyone on the link could then forge them)",
                   l->path);
        return false;
    }
    return read_key_file(l, cfg, errp);
}

static bool load(Loader *l, ColoConfig *cfg, Error **errp)
{
    g_auto(GStrv) groups = g_key_file_get_groups(l->kf, NULL);
    g_autofree char *guest = NULL;
    g_autofree char *corosync = NULL;
    g_autofree char *size = NULL;
    int nnodes = 0;
    uint64_t sz;
    int64_t port;

    if (!g_key_file_has_group(l->kf, "pair")) {
        error_setg(errp, "%s: missing group [pair]", l->path);
        return false;
    }
    for (int i = 0; groups[i]; i++) {
        if (g_str_equal(groups[i], "pair")) {
            continue;
        }
        if (!g_str_has_prefix(groups[i], NODE_PREFIX)) {
            error_setg(errp, "%s: unknown group [%s] (expected [pair] and "
                       "two [node NAME])", l->path, groups[i]);
            return false;
        }
        if (nnodes == 2) {
            error_setg(errp, "%s: more than two [node NAME] groups",
                       l->path);
            return false;
        }
        if (!load_node(l, groups[i], &cfg->nodes[nnodes++], errp)) {
            return false;
        }
    }
    if (nnodes != 2) {
        error_setg(errp, "%s: a pair needs two [node NAME] groups, found %d",
                   l->path, nnodes);
        return false;
    }
    if (g_str_equal(cfg->nodes[0].name, cfg->nodes[1].name)) {
        error_setg(errp, "%s: both nodes are named '%s'", l->path,
                   cfg->nodes[0].name);
        return false;
    }
    if (cfg->nodes[0].initial_role == cfg->nodes[1].initial_role) {
        error_setg(errp, "%s: nodes '%s' and '%s' both have initial-role "
                   "'%s': one must be primary, the other secondary", l->path,
                   cfg->nodes[0].name, cfg->nodes[1].name,
                   cfg->nodes[0].initial_role == COLO_ROLE_PRIMARY ?
                   "primary" : "secondary");
        return false;
    }
    if (!cfg->nodes[0].disk != !cfg->nodes[1].disk) {
        error_setg(errp, "%s: 'disk' is set on one node only: set it on both "
                   "(disk replication) or on neither", l->path);
        return false;
    }
    if (g_str_equal(cfg->nodes[0].qmp, cfg->nodes[1].qmp)) {
        error_setg(errp, "%s: both nodes use the QMP socket %s", l->path,
                   cfg->nodes[0].qmp);
        return false;
    }

    if (!check_keys(l, "pair", pair_keys, errp)) {
        return false;
    }
    cfg->name = get_str(l, "pair", "name", "colo", errp);
    if (!fits_heartbeat(cfg->name)) {
        error_setg(errp, "%s: [pair]: name must be 1 to %d printable ASCII "
                   "characters without spaces (the heartbeat datagrams carry "
                   "it), not '%s'", l->path, COLO_HB_NAME_MAX, cfg->name);
        return false;
    }
    cfg->qemu_binary = get_str(l, "pair", "qemu", "qemu-system-x86_64",
                               errp);
    if (strchr(cfg->qemu_binary, '/') &&
        !g_path_is_absolute(cfg->qemu_binary)) {
        char *abs = g_build_filename(l->dir, cfg->qemu_binary, NULL);

        g_free(cfg->qemu_binary);
        cfg->qemu_binary = abs;
    }
    if (strchr(cfg->qemu_binary, '/')) {
        g_autofree char *dir = g_path_get_dirname(cfg->qemu_binary);
        g_autofree char *img = g_build_filename(dir, "qemu-img", NULL);

        cfg->qemu_img = get_str(l, "pair", "qemu-img",
                                g_file_test(img, G_FILE_TEST_IS_EXECUTABLE) ?
                                img : "qemu-img", errp);
    } else {
        cfg->qemu_img = get_str(l, "pair", "qemu-img", "qemu-img", errp);
    }
    cfg->netdev = get_str(l, "pair", "netdev",
                          "tap,ifname=tap0,script=no,downscript=no,vhost=off",
                          errp);
    cfg->mac = get_str(l, "pair", "mac", "52:54:00:12:34:56", errp);
    guest = get_str(l, "pair", "guest-args", NULL, errp);
    if (!guest) {
        return false;
    }
    {
        GError *gerr = NULL;

        if (!g_shell_parse_argv(guest, NULL, &cfg->guest_args, &gerr)) {
            error_setg(errp, "%s: [pair]: guest-args: %s", l->path,
                       gerr->message);
            g_error_free(gerr);
            return false;
        }
    }
    if (!valid_mac(cfg->mac)) {
        error_setg(errp, "%s: [pair]: mac must look like 52:54:00:12:34:56, "
                   "not '%s'", l->path, cfg->mac);
        return false;
    }
    if (strstr(cfg->netdev, "id=")) {
        error_setg(errp, "%s: [pair]: netdev must not set an id (it is "
                   "always hn0)", l->path);
        return false;
    }
    size = get_str(l, "pair", "disk-size", "", errp);
    if (!*size) {
        cfg->disk_size = 0;
    } else if (qemu_strtosz(size, NULL, &sz) < 0 || sz == 0 ||
               sz % 512 || sz > INT64_MAX) {
        error_setg(errp, "%s: [pair]: disk-size must be a size in bytes "
                   "(suffixes K, M, G allowed), a multiple of 512, not '%s'",
                   l->path, size);
        return false;
    } else {
        cfg->disk_size = sz;
    }
    g_free(size);
    size = get_str(l, "pair", "resync-speed", "0", errp);
    if (qemu_strtosz(size, NULL, &sz) < 0 || sz > INT64_MAX) {
        error_setg(errp, "%s: [pair]: resync-speed must be bytes per second "
                   "(suffixes K, M, G allowed; 0: unlimited), not '%s'",
                   l->path, size);
        return false;
    }
    cfg->resync_speed = sz;
    if (!get_int(l, "pair", "checkpoint-delay-ms", 2000, 1, 3600 * 1000,
                 &cfg->checkpoint_delay_ms, errp) ||
        !get_port(l, "port-mirror", 9003, &cfg->port_mirror, errp) ||
        !get_port(l, "port-compare", 9004, &cfg->port_compare, errp) ||
        !get_port(l, "port-migrate", 9998, &cfg->port_migrate, errp) ||
        !get_port(l, "port-nbd", 9999, &cfg->port_nbd, errp) ||
        !get_int(l, "pair", "heartbeat-port", 9010, 1, 65535, &port, errp) ||
        !get_int(l, "pair", "heartbeat-interval-ms", 100, 1, 60000,
                 &cfg->heartbeat_interval_ms, errp) ||
        !get_int(l, "pair", "heartbeat-timeout-ms", 1000, 1, 3600 * 1000,
                 &cfg->heartbeat_timeout_ms, errp)) {
        return false;
    }
    cfg->heartbeat_port = port;
    if (cfg->heartbeat_timeout_ms <= cfg->heartbeat_interval_ms) {
        error_setg(errp, "%s: [pair]: heartbeat-timeout-ms (%" PRId64 ") "
                   "must be longer than heartbeat-interval-ms (%" PRId64 ")",
                   l->path, cfg->heartbeat_timeout_ms,
                   cfg->heartbeat_interval_ms);
        return false;
    }
    {
        const int ports[] = {
            cfg->port_mirror, cfg->port_compare, cfg->port_migrate,
            cfg->port_nbd,
        };

        for (int i = 0; i < ARRAY_SIZE(ports); i++) {
            for (int j = i + 1; j < ARRAY_SIZE(ports); j++) {
                if (ports[i] == ports[j]) {
                    error_setg(errp, "%s: [pair]: port %d is used twice",
                               l->path, ports[i]);
                    return false;
                }
            }
        }
    }
    corosync = get_str(l, "pair", "use-corosync", "false", errp);
    if (g_str_equal(corosync, "true") || g_str_equal(corosync, "yes")) {
        cfg->use_corosync = true;
    } else if (g_str_equal(corosync, "false") ||
               g_str_equal(corosync, "no")) {
        cfg->use_corosync = false;
    } else {
        error_setg(errp, "%s: [pair]: use-corosync must be true or false, "
                   "not '%s'", l->path, corosync);
        return false;
    }
    cfg->shared_disk = get_path(l, "pair", "shared-disk", "", errp);
    if (!*cfg->shared_disk) {
        g_clear_pointer(&cfg->shared_disk, g_free);
        cfg->shared_undo = get_path(l, "pair", "shared-undo", "", errp);
        if (*cfg->shared_undo) {
            error_setg(errp, "%s: [pair]: shared-undo needs shared-disk",
                       l->path);
            return false;
        }
        g_clear_pointer(&cfg->shared_undo, g_free);
    } else {
        g_autofree char *def_undo = g_strdup_printf("%s.undo",
                                                    cfg->shared_disk);

        cfg->shared_undo = get_path(l, "pair", "shared-undo", def_undo,
                                    errp);
        if (cfg->nodes[0].disk) {
            error_setg(errp, "%s: [pair]: shared-disk and the nodes' 'disk' "
                       "exclude each other (one shared image, or a copy on "
                       "each node)", l->path);
            return false;
        }
        if (g_str_equal(cfg->shared_disk, cfg->shared_undo)) {
            error_setg(errp, "%s: [pair]: shared-undo must be another file "
                       "than shared-disk", l->path);
            return false;
        }
    }
    if (cfg->shared_disk) {
        g_autofree char *direct = get_str(l, "pair", "shared-cache-direct",
                                          "true", errp);

        if (g_str_equal(direct, "true") || g_str_equal(direct, "yes")) {
            cfg->shared_cache_direct = true;
        } else if (g_str_equal(direct, "false") ||
                   g_str_equal(direct, "no")) {
            cfg->shared_cache_direct = false;
        } else {
            error_setg(errp, "%s: [pair]: shared-cache-direct must be true "
                       "or false, not '%s'", l->path, direct);
            return false;
        }
    }
    if ((cfg->nodes[0].disk || cfg->shared_disk) && !cfg->disk_size) {
        error_setg(errp, "%s: [pair]: disk-size is needed with disks "
                   "(the size of the overlay images)", l->path);
        return false;
    }
    if (!load_tls_dir(l, cfg, errp) ||
        !load_heartbeat_auth(l, cfg, errp)) {
        return false;
    }
    return true;
}

bool colo_config_load(const char *path, ColoConfig *cfg, Error **errp)
{
    g_autoptr(GKeyFile) kf = g_key_file_new();
    g_autofree char *abs = NULL;
    GError *gerr = NULL;
    Loader l;
    bool ok;

    memset(cfg, 0, sizeof(*cfg));
    if (!g_key_file_load_from_file(kf, path, G_KEY_FILE_NONE, &gerr)) {
        error_setg(errp, "%s: %s", path, gerr->message);
        g_error_free(gerr);
        return false;
    }
    if (g_path_is_absolute(path)) {
        abs = g_strdup(path);
    } else {
        g_autofree char *cwd = g_get_current_dir();

        abs = g_build_filename(cwd, path, NULL);
    }
    l.kf = kf;
    l.path = path;
    l.dir = g_path_get_dirname(abs);
    cfg->path = g_strdup(path);
    ok = load(&l, cfg, errp);
    g_free(l.dir);
    if (!ok) {
        colo_config_free(cfg);
    }
    return ok;
}

void colo_config_free(ColoConfig *cfg)
{
    for (int i = 0; i < 2; i++) {
        ColoNodeConfig *n = &cfg->nodes[i];

        g_free(n->name);
        g_free(n->qmp);
        g_free(n->agent_qmp);
        g_free(n->status_qmp);
        g_free(n->agent_socket);
        g_free(n->link_addr);
        g_free(n->heartbeat_addr);
        g_free(n->launcher);
        g_free(n->disk);
        g_free(n->active);
        g_free(n->hidden);
        g_free(n->workdir);
    }
    g_free(cfg->path);
    g_free(cfg->name);
    g_free(cfg->qemu_binary);
    g_free(cfg->qemu_img);
    g_free(cfg->shared_disk);
    g_free(cfg->shared_undo);
    g_strfreev(cfg->guest_args);
    g_free(cfg->netdev);
    g_free(cfg->mac);
    g_free(cfg->tls_dir);
    g_free(cfg->heartbeat_key_file);
    if (cfg->heartbeat_key) {
        memset(cfg->heartbeat_key, 0, KEY_FILE_MAX);
        g_free(cfg->heartbeat_key);
    }
    memset(cfg, 0, sizeof(*cfg));
}

ColoNodeConfig *colo_config_node(ColoConfig *cfg, const char *name,
                                 Error **errp)
{
    for (int i = 0; i < 2; i++) {
        if (g_str_equal(cfg->nodes[i].name, name)) {
            return &cfg->nodes[i];
        }
    }
    error_setg(errp, "%s: no node '%s' (the nodes are '%s' and '%s')",
               cfg->path, name, cfg->nodes[0].name, cfg->nodes[1].name);
    return NULL;
}

ColoNodeConfig *colo_config_peer(ColoConfig *cfg, const ColoNodeConfig *node)
{
    return node == &cfg->nodes[0] ? &cfg->nodes[1] : &cfg->nodes[0];
}
