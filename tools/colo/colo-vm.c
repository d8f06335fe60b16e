/*
 * What a node's QEMU is and has, read over QMP (see colo-vm.h)
 *
 * Copyright (c) 2026 The qemu-colo authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qobject/qdict.h"
#include "qobject/qlist.h"
#include "qemu/timer.h"
#include "colo-vm.h"

bool colo_vm_query_status(QmpClient *c, ColoVmStatus *st, int timeout_ms,
                          Error **errp)
{
    memset(st, 0, sizeof(*st));
    st->colo = qmp_client_cmd_dict(c, "query-colo-status", NULL, timeout_ms,
                                   errp);
    st->run = st->colo ? qmp_client_cmd_dict(c, "query-status", NULL,
                                             timeout_ms, errp) : NULL;
    st->migrate = st->run ? qmp_client_cmd_dict(c, "query-migrate", NULL,
                                                timeout_ms, errp) : NULL;
    if (!st->migrate) {
        colo_vm_status_clear(st);
        return false;
    }
    st->mode = qdict_get_try_str(st->colo, "mode") ?: "none";
    st->last_mode = qdict_get_try_str(st->colo, "last-mode") ?: "none";
    st->reason = qdict_get_try_str(st->colo, "reason") ?: "none";
    st->run_state = qdict_get_try_str(st->run, "status") ?: "unknown";
    st->migration = qdict_get_try_str(st->migrate, "status") ?: "none";
    return true;
}

void colo_vm_status_clear(ColoVmStatus *st)
{
    qobject_unref(st->colo);
    qobject_unref(st->run);
    qobject_unref(st->migrate);
    memset(st, 0, sizeof(*st));
}

uint64_t colo_vm_stat(const ColoVmStatus *st, const char *key)
{
    return qdict_haskey(st->colo, key) ? qdict_get_int(st->colo, key) : 0;
}

bool colo_migration_active(const char *status)
{
    static const char *const idle[] = {
        "none", "completed", "failed", "cancelled", "colo", NULL
    };

    return !g_strv_contains(idle, status);
}

static bool names_of(QmpClient *c, const char *cmd, QDict *args,
                     const char *key, GStrv *out, Error **errp)
{
    QList *l = qmp_client_cmd_list(c, cmd, args, QMP_CLIENT_TIMEOUT_MS, errp);

    if (!l) {
        return false;
    }
    *out = qmp_list_values(l, key);
    qobject_unref(l);
    return true;
}

bool colo_vm_inventory(QmpClient *c, ColoVmInventory *inv, Error **errp)
{
    g_autoptr(QDict) path = qdict_new();
    g_autoptr(QDict) flat = qdict_new();

    memset(inv, 0, sizeof(*inv));
    qdict_put_str(path, "path", "/objects");
    qdict_put_bool(flat, "flat", true);
    if (names_of(c, "qom-list", path, "name", &inv->objects, errp) &&
        names_of(c, "query-chardev", NULL, "label", &inv->chardevs, errp) &&
        names_of(c, "query-named-block-nodes", flat, "node-name",
                 &inv->nodes, errp) &&
        names_of(c, "query-block", NULL, "device", &inv->devices, errp) &&
        names_of(c, "query-block-jobs", NULL, "device", &inv->jobs, errp)) {
        return true;
    }
    colo_vm_inventory_clear(inv);
    return false;
}

void colo_vm_inventory_clear(ColoVmInventory *inv)
{
    g_strfreev(inv->objects);
    g_strfreev(inv->chardevs);
    g_strfreev(inv->nodes);
    g_strfreev(inv->devices);
    g_strfreev(inv->jobs);
    memset(inv, 0, sizeof(*inv));
}

bool colo_has(GStrv names, const char *name)
{
    return names && g_strv_contains((const char *const *)names, name);
}

bool colo_vm_block_job(QmpClient *c, const char *id, QDict **job,
                       Error **errp)
{
    QList *list = qmp_client_cmd_list(c, "query-block-jobs", NULL,
                                      QMP_CLIENT_TIMEOUT_MS, errp);
    QListEntry *e;

    *job = NULL;
    if (!list) {
        return false;
    }
    QLIST_FOREACH_ENTRY(list, e) {
        QDict *j = qobject_to(QDict, qlist_entry_obj(e));

        if (j && g_strcmp0(qdict_get_try_str(j, "device"), id) == 0) {
            *job = qobject_ref(j);
        }
    }
    qobject_unref(list);
    return true;
}

bool colo_poll_until(ColoPollFn *fn, void *opaque, int interval_ms,
                     int timeout_ms, Error **errp)
{
    int64_t deadline = qemu_clock_get_ms(QEMU_CLOCK_REALTIME) + timeout_ms;

    for (;;) {
        int64_t now = qemu_clock_get_ms(QEMU_CLOCK_REALTIME);
        bool expired = now > deadline;
        Error *err = NULL;

        switch (fn(opaque, expired, &err)) {
        case COLO_POLL_DONE:
            return true;
        case COLO_POLL_FAILED:
            assert(err);
            error_propagate(errp, err);
            return false;
        case COLO_POLL_PROGRESS:
            deadline = now + timeout_ms;
            break;
        case COLO_POLL_AGAIN:
            if (expired) {
                error_setg(errp, "timed out after %d s", timeout_ms / 1000);
                return false;
            }
            break;
        }
        g_usleep(interval_ms * 1000);
    }
}
