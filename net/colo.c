/*
 * COLO proxy: helpers shared by colo-compare and the COLO filters
 *
 * Copyright (c) 2026 The qemu-colo authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "net/colo.h"

void colo_proxy_refuse(const char *type_name, Error **errp)
{
    error_setg(errp, COLO_PROXY_NOT_AVAILABLE_FMT, type_name);
}
