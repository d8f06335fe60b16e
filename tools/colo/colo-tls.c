/*
 * TLS on the COLO link: the credentials and authz objects of a node
 * (see colo-actions.h and "Securing a pair" in docs/system/qemu-colo.rst)
 *
 * Copyright (c) 2026 The qemu-colo authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qobject/qdict.h"
#include "qobject/qlist.h"
#include "qobject/qjson.h"
#include "colo-actions.h"
#include "colo-ids.h"
#include "colo-vm.h"

/* object-add arguments of a tls-creds-x509 object from tls-dir. */
static QDict *tls_creds_args(const ColoConfig *cfg, bool server)
{
    QDict *d = qdict_new();

    qdict_put_str(d, "qom-type", "tls-creds-x509");
    qdict_put_str(d, "id", server ? COLO_TLS_SERVER : COLO_TLS_CLIENT);
    qdict_put_str(d, "endpoint", server ? "server" : "client");
    qdict_put_str(d, "dir", cfg->tls_dir);
    /* A listener asks for the client's certificate and checks its CA. */
    qdict_put_bool(d, "verify-peer", true);
    return d;
}

static QDict *authz_rule(const char *match, const char *format)
{
    QDict *r = qdict_new();

    qdict_put_str(r, "match", match);
    qdict_put_str(r, "policy", "allow");
    qdict_put_str(r, "format", format);
    return r;
}

/*
 * The listeners' authz: only the peer's certificate, whose distinguished
 * name (as GnuTLS prints it, RFC 4514 order) starts with CN=<peer name>.
 * Everything else is denied, also other certificates of the pair's CA.
 */
static QDict *tls_authz_args(const ColoNodeConfig *peer)
{
    QDict *d = qdict_new();
    QList *rules = qlist_new();
    g_autofree char *dn = g_strdup_printf("CN=%s", peer->name);

    qdict_put_str(d, "qom-type", "authz-list");
    qdict_put_str(d, "id", COLO_TLS_AUTHZ);
    qdict_put_str(d, "policy", "deny");
    qlist_append(rules, authz_rule(dn, "exact"));
    if (!strpbrk(peer->name, "*?,\\")) {
        /* further components after the CN (O=..., C=...) */
        g_autofree char *glob = g_strdup_printf("CN=%s,*", peer->name);

        qlist_append(rules, authz_rule(glob, "glob"));
    }
    qdict_put(d, "rules", rules);
    return d;
}

GStrv colo_tls_object_args(const ColoConfig *cfg, const ColoNodeConfig *peer)
{
    QDict *objs[3];
    GStrv out;

    if (!cfg->tls_dir) {
        return NULL;
    }
    objs[0] = tls_creds_args(cfg, true);
    objs[1] = tls_creds_args(cfg, false);
    objs[2] = tls_authz_args(peer);
    out = g_new0(char *, 4);
    for (int i = 0; i < 3; i++) {
        GString *json = qobject_to_json(QOBJECT(objs[i]));

        out[i] = g_string_free(json, false);
        qobject_unref(objs[i]);
    }
    return out;
}

bool colo_tls_ensure_objects(QmpClient *c, const ColoConfig *cfg,
                             const ColoNodeConfig *peer, Error **errp)
{
    g_auto(ColoVmInventory) inv = { 0 };
    bool ok = true;

    if (!cfg->tls_dir) {
        return true;
    }
    if (!colo_vm_inventory(c, &inv, errp)) {
        return false;
    }
    for (int i = 0; ok && i < 3; i++) {
        static const char *const ids[] = {
            COLO_TLS_SERVER, COLO_TLS_CLIENT, COLO_TLS_AUTHZ
        };
        g_autoptr(QDict) args = NULL;

        if (colo_has(inv.objects, ids[i])) {
            continue;
        }
        args = i < 2 ? tls_creds_args(cfg, i == 0) : tls_authz_args(peer);
        ok = qmp_client_run(c, "object-add", args, errp);
        if (!ok) {
            error_prepend(errp, "adding %s (tls-dir %s): ", ids[i],
                          cfg->tls_dir);
        }
    }
    return ok;
}
