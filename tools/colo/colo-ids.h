/*
 * The ids of the objects, chardevs and block nodes of a COLO pair, shared
 * by qemu-colo-ctl's command lines and the QMP actions
 *
 * Copyright (c) 2026 The qemu-colo authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * The ids of the documented procedure (docs/system/qemu-colo.rst) are
 * fixed: a QEMU started by one version of the tools is cleaned up and
 * re-protected by another, and the actions find what is there by id.
 */

#ifndef TOOLS_COLO_IDS_H
#define TOOLS_COLO_IDS_H

/* Both roles */
#define COLO_ID_NETDEV          "hn0"
/* the primary's quorum; the secondary's raw disk and its NBD export */
#define COLO_ID_DISK            "colo-disk0"

/* The secondary's command line */
#define COLO_ID_TOP_DISK        "top-disk0"     /* its quorum */
#define COLO_ID_SEC_CHILD       "childs0"       /* its replication child */
#define COLO_ID_SEC_NODE        "sec0"          /* node of COLO_ID_DISK */
#define COLO_ID_RED_IN          "red0"          /* from mirror0 */
#define COLO_ID_RED_OUT         "red1"          /* to compare1 */
#define COLO_ID_FILTER_IN       "f1"            /* injects red0 */
#define COLO_ID_FILTER_OUT      "f2"            /* sends output to red1 */
#define COLO_ID_REWRITER        "rew0"          /* stays after failover */

/* The primary's proxy, added by protect */
#define COLO_ID_MIRROR_CHR      "mirror0"       /* to the secondary's red0 */
#define COLO_ID_COMPARE_SEC     "compare1"      /* from its red1 */
#define COLO_ID_COMPARE_PRI     "compare0"      /* local loop: own output */
#define COLO_ID_COMPARE_PRI_IN  "compare0-0"
#define COLO_ID_COMPARE_OUT     "compare_out"   /* local loop: released */
#define COLO_ID_COMPARE_OUT_IN  "compare_out0"
/* the local loops' listeners are unix sockets WORKDIR/<id>.sock */
#define COLO_LOCAL_SOCKET_SUFFIX ".sock"
#define COLO_ID_MIRROR          "m0"
#define COLO_ID_REDIRECT_IN     "redire0"
#define COLO_ID_REDIRECT_OUT    "redire1"
#define COLO_ID_COMPARE         "comp0"
#define COLO_ID_IOTHREAD        "iothread1"

/* Block node and job names the actions add */
#define COLO_REPLICATION_NODE   "rep0"     /* the primary's replication child */
#define COLO_RESYNC_NODE        "resync0"  /* NBD target of the disk resync */
#define COLO_RESYNC_JOB         "resync"   /* the blockdev-mirror job */

/*
 * TLS on the COLO link (the configuration's tls-dir): every QEMU of the
 * pair has both credentials (roles change with failover) and an authz
 * object that accepts only the peer node's certificate (subject CN = the
 * peer's node name); see "Securing a pair" in docs/system/qemu-colo.rst.
 */
#define COLO_TLS_SERVER "colo-tls-server"  /* listeners: verify-peer=on */
#define COLO_TLS_CLIENT "colo-tls-client"
#define COLO_TLS_AUTHZ  "colo-tls-authz"   /* the peer's DN only */

#endif /* TOOLS_COLO_IDS_H */
