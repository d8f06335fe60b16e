/*
 * COLO proxy: declarations shared by colo-compare and the COLO filters
 *
 * Copyright (c) 2026 The qemu-colo authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef NET_COLO_H
#define NET_COLO_H

#define COLO_PROXY_NOT_AVAILABLE_FMT \
    "'%s' is not available in this build yet"

/*
 * Scaffold: fail the creation of a COLO proxy object of type @type_name with
 * a clear error.  Removed component by component as the proxy lands.
 */
void colo_proxy_refuse(const char *type_name, Error **errp);

/*
 * Scaffold: accept the chardev/iothread id properties a user passes, so that
 * creation reaches colo_proxy_refuse() and its clear error.  @names ends
 * with NULL.
 */
void colo_proxy_add_scaffold_properties(ObjectClass *oc,
                                        const char *const *names);

#endif /* NET_COLO_H */
