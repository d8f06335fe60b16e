/*
 * COLO proxy: helpers shared by colo-compare and the COLO filters
 *
 * Copyright (c) 2026 The qemu-colo authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef NET_COLO_H
#define NET_COLO_H

#include "chardev/char-fe.h"

/*
 * Attach @be to the chardev @id that @owner was given as property @prop.
 * @from_iothread: the chardev will be read from an iothread, which needs a
 * chardev that supports other main contexts (sockets do).  On failure sets
 * @errp with a message naming the owner, the property and the chardev.
 */
bool colo_proxy_attach_chardev(CharBackend *be, Object *owner,
                               const char *prop, const char *id,
                               bool from_iothread, Error **errp);

/*
 * IOCanReadHandler for proxy chardevs: the frame readers take any amount,
 * offer room for one whole frame at a time.
 */
int colo_proxy_can_read(void *opaque);

#endif /* NET_COLO_H */
