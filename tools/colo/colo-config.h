/*
 * The COLO pair configuration file shared by qemu-colo-ctl and
 * qemu-colo-agent
 *
 * Copyright (c) 2026 The qemu-colo authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * A GKeyFile ("ini") with one [pair] group and two [node NAME] groups.
 * Roles change with every failover, so nodes are named, not called
 * primary and secondary; "initial-role" only says how `start` begins.
 * The object and chardev ids of the documented procedure (m0, redire0,
 * comp0, f1, rew0, ...) are fixed: the actions rely on them.
 * The full key list with defaults is in docs/system/qemu-colo.rst
 * ("The pair configuration file").
 */

#ifndef TOOLS_COLO_CONFIG_H
#define TOOLS_COLO_CONFIG_H

typedef enum ColoRole {
    COLO_ROLE_PRIMARY,
    COLO_ROLE_SECONDARY,
} ColoRole;

typedef struct ColoNodeConfig {
    char *name;             /* from the group name [node NAME] */
    ColoRole initial_role;
    char *qmp;              /* QMP unix socket qemu-colo-ctl uses */
    /* The agent's own QMP socket (default WORKDIR/agent-qmp.sock) */
    char *agent_qmp;
    /*
     * A third QMP socket for `status`, usable while the tool re-protects
     * on the first (default WORKDIR/status-qmp.sock)
     */
    char *status_qmp;
    /* The agent's status socket (default WORKDIR/agent.sock) */
    char *agent_socket;
    char *link_addr;        /* replication link: proxy, migration, NBD */
    char *heartbeat_addr;   /* the agent's own channel (default link_addr) */
    char *launcher;         /* optional command prefix to run QEMU */
    char *disk;             /* the guest disk image (raw) */
    char *active;           /* overlays used while secondary (qcow2) */
    char *hidden;
    char *workdir;          /* pid file, logs, serial output */
} ColoNodeConfig;

typedef struct ColoConfig {
    char *path;
    char *name;
    char *qemu_binary;
    char *qemu_img;         /* default: next to qemu_binary, or PATH */
    char **guest_args;      /* machine, memory, kernel..., shared by both */
    char *netdev;           /* -netdev options of hn0, without the id */
    char *mac;
    int64_t disk_size;
    /*
     * shared-disk: one raw image both nodes reach at this path (COLO on
     * shared storage, the shared-undo driver); NULL: per-node disks or
     * none.  shared_undo: its undo image (default: shared_disk + ".undo")
     */
    char *shared_disk;
    char *shared_undo;
    /*
     * shared-cache-direct (default true): open both without the host's
     * page cache, so each host reads what the other wrote
     */
    bool shared_cache_direct;
    int64_t checkpoint_delay_ms;
    int64_t resync_speed;   /* bytes/s of the disk resync, 0: unlimited */
    int port_mirror, port_compare, port_migrate, port_nbd;
    int heartbeat_port;     /* UDP, on each node's heartbeat_addr */
    int64_t heartbeat_interval_ms;
    int64_t heartbeat_timeout_ms;
    bool use_corosync;      /* act only on quorate decisions */
    /*
     * heartbeat-auth: true for hmac-sha256 (the default), false only when
     * the file says "none"; then heartbeat_key is NULL
     */
    bool heartbeat_auth;
    char *heartbeat_key_file;
    uint8_t *heartbeat_key; /* the key file's bytes, checked: see the docs */
    size_t heartbeat_key_len;
    /*
     * x509 credentials in QEMU's layout (ca-cert.pem, server-cert.pem,
     * server-key.pem, client-cert.pem, client-key.pem), all checked to
     * exist; NULL when the key is absent (no TLS)
     */
    char *tls_dir;
    ColoNodeConfig nodes[2];
} ColoConfig;

bool colo_config_load(const char *path, ColoConfig *cfg, Error **errp);
void colo_config_free(ColoConfig *cfg);
ColoNodeConfig *colo_config_node(ColoConfig *cfg, const char *name,
                                 Error **errp);
ColoNodeConfig *colo_config_peer(ColoConfig *cfg, const ColoNodeConfig *node);

#endif /* TOOLS_COLO_CONFIG_H */
