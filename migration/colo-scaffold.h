/*
 * COLO scaffold: the message every not-yet-built COLO entry point answers with
 *
 * Copyright (c) 2026 The qemu-colo authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef MIGRATION_COLO_SCAFFOLD_H
#define MIGRATION_COLO_SCAFFOLD_H

#define COLO_NOT_AVAILABLE_MSG \
    "COLO checkpointing is not available in this build yet"

#endif
