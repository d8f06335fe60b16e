/*
 * Unit tests of the replication framework (replication.c)
 *
 * Copyright (c) 2026 The qemu-colo authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * Fake participants record every call made to them, so each test can check
 * who was called, in which order, and what error the caller got back.
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "block/replication.h"

typedef struct FakeParticipant {
    const char *name;
    bool fail_start, fail_checkpoint, latched_error, fail_stop;
    bool remove_on_stop;
    ReplicationState *rs;
} FakeParticipant;

static GString *call_log;

static void log_call(ReplicationState *rs, const char *what)
{
    FakeParticipant *p = rs->opaque;

    g_string_append_printf(call_log, "%s%s:%s",
                           call_log->len ? " " : "", p->name, what);
}

static void fake_start(ReplicationState *rs, ReplicationMode mode,
                       Error **errp)
{
    FakeParticipant *p = rs->opaque;

    log_call(rs, mode == REPLICATION_MODE_PRIMARY ? "start-primary"
                                                   : "start-secondary");
    if (p->fail_start) {
        error_setg(errp, "%s cannot start", p->name);
    }
}

static void fake_checkpoint(ReplicationState *rs, Error **errp)
{
    FakeParticipant *p = rs->opaque;

    log_call(rs, "checkpoint");
    if (p->fail_checkpoint) {
        error_setg(errp, "%s cannot checkpoint", p->name);
    }
}

static void fake_get_error(ReplicationState *rs, Error **errp)
{
    FakeParticipant *p = rs->opaque;

    log_call(rs, "get-error");
    if (p->latched_error) {
        error_setg(errp, "%s has a latched error", p->name);
    }
}

static void fake_stop(ReplicationState *rs, bool failover, Error **errp)
{
    FakeParticipant *p = rs->opaque;

    log_call(rs, failover ? "stop-failover" : "stop");
    if (p->fail_stop) {
        error_setg(errp, "%s cannot stop", p->name);
    }
    if (p->remove_on_stop) {
        replication_remove(p->rs);
        p->rs = NULL;
    }
}

static const ReplicationOps fake_ops = {
    .start = fake_start,
    .do_checkpoint = fake_checkpoint,
    .get_error = fake_get_error,
    .stop = fake_stop,
};

static FakeParticipant fakes[3];

/* Registers a, b, c, in that order. */
static void setup(void)
{
    static const char *names[] = { "a", "b", "c" };

    g_string_truncate(call_log, 0);
    for (int i = 0; i < 3; i++) {
        fakes[i] = (FakeParticipant) { .name = names[i] };
        fakes[i].rs = replication_new(&fakes[i], &fake_ops);
    }
}

static void teardown(void)
{
    for (int i = 0; i < 3; i++) {
        replication_remove(fakes[i].rs);
        fakes[i].rs = NULL;
    }
}

static int count_calls(const char *what)
{
    g_auto(GStrv) words = g_strsplit(call_log->str, " ", -1);
    int n = 0;

    for (int i = 0; words[i]; i++) {
        n += g_str_has_suffix(words[i], what) &&
             words[i][strlen(words[i]) - strlen(what) - 1] == ':';
    }
    return n;
}

static bool called(const char *name, const char *what)
{
    g_autofree char *word = g_strdup_printf("%s:%s", name, what);
    g_auto(GStrv) words = g_strsplit(call_log->str, " ", -1);

    return g_strv_contains((const char * const *)words, word);
}

static void test_start_all(void)
{
    Error *err = NULL;

    setup();
    replication_start_all(REPLICATION_MODE_SECONDARY, &err);
    g_assert_null(err);
    g_assert_cmpint(count_calls("start-secondary"), ==, 3);
    g_assert_cmpint(count_calls("stop"), ==, 0);
    teardown();
}

static void test_start_failure_rolls_back(void)
{
    Error *err = NULL;
    g_auto(GStrv) words = NULL;
    int failed_at = -1;

    setup();
    fakes[1].fail_start = true;
    replication_start_all(REPLICATION_MODE_PRIMARY, &err);
    g_assert_nonnull(err);
    g_assert_cmpstr(error_get_pretty(err), ==, "b cannot start");
    error_free(err);

    /* Everything started before b was stopped again; nothing after b ran. */
    words = g_strsplit(call_log->str, " ", -1);
    for (int i = 0; words[i]; i++) {
        if (g_str_equal(words[i], "b:start-primary")) {
            failed_at = i;
        }
    }
    g_assert_cmpint(failed_at, >=, 0);
    for (int i = 0; i < failed_at; i++) {
        g_autofree char *name = g_strndup(words[i], 1);
        g_assert_true(g_str_has_suffix(words[i], ":start-primary"));
        g_assert_true(called(name, "stop"));
    }
    g_assert_cmpint(count_calls("start-primary"), ==, failed_at + 1);
    g_assert_cmpint(count_calls("stop"), ==, failed_at);
    g_assert_false(called("b", "stop"));
    teardown();
}

static void test_order(void)
{
    setup();
    replication_start_all(REPLICATION_MODE_PRIMARY, &error_abort);
    replication_do_checkpoint_all(&error_abort);
    replication_stop_all(false, &error_abort);
    /* Registration order, and stop in reverse, like a stack. */
    g_assert_cmpstr(call_log->str, ==,
                    "a:start-primary b:start-primary c:start-primary "
                    "a:checkpoint b:checkpoint c:checkpoint "
                    "c:stop b:stop a:stop");
    g_string_truncate(call_log, 0);
    fakes[2].fail_start = true;
    replication_start_all(REPLICATION_MODE_SECONDARY, NULL);
    g_assert_cmpstr(call_log->str, ==,
                    "a:start-secondary b:start-secondary c:start-secondary "
                    "b:stop a:stop");
    teardown();
}

static void test_start_without_errp_is_safe(void)
{
    setup();
    fakes[0].fail_start = true;
    replication_start_all(REPLICATION_MODE_PRIMARY, NULL);
    g_assert_true(called("a", "start-primary"));
    teardown();
}

static void test_checkpoint_stops_at_first_error(void)
{
    Error *err = NULL;

    setup();
    fakes[0].fail_checkpoint = true;
    fakes[1].fail_checkpoint = true;
    fakes[2].fail_checkpoint = true;
    replication_do_checkpoint_all(&err);
    g_assert_nonnull(err);
    g_assert_true(g_str_has_suffix(error_get_pretty(err),
                                   "cannot checkpoint"));
    error_free(err);
    g_assert_cmpint(count_calls("checkpoint"), ==, 1);
    teardown();
}

static void test_checkpoint_all(void)
{
    Error *err = NULL;

    setup();
    replication_do_checkpoint_all(&err);
    g_assert_null(err);
    g_assert_cmpint(count_calls("checkpoint"), ==, 3);
    teardown();
}

static void test_get_error_all(void)
{
    Error *err = NULL;

    setup();
    replication_get_error_all(&err);
    g_assert_null(err);
    g_assert_cmpint(count_calls("get-error"), ==, 3);

    fakes[2].latched_error = true;
    replication_get_error_all(&err);
    g_assert_nonnull(err);
    g_assert_cmpstr(error_get_pretty(err), ==, "c has a latched error");
    error_free(err);
    teardown();
}

static void test_stop_all_reaches_everyone(void)
{
    Error *err = NULL;

    setup();
    fakes[0].fail_stop = true;
    fakes[1].fail_stop = true;
    replication_stop_all(true, &err);
    g_assert_nonnull(err);
    g_assert_true(g_str_has_suffix(error_get_pretty(err), "cannot stop"));
    error_free(err);
    g_assert_cmpint(count_calls("stop-failover"), ==, 3);

    /* Without errp the errors are dropped, but every stop still runs. */
    g_string_truncate(call_log, 0);
    replication_stop_all(false, NULL);
    g_assert_cmpint(count_calls("stop"), ==, 3);
    teardown();
}

static void test_participant_may_remove_itself_on_stop(void)
{
    Error *err = NULL;

    setup();
    for (int i = 0; i < 3; i++) {
        fakes[i].remove_on_stop = true;
    }
    replication_stop_all(false, &err);
    g_assert_null(err);
    g_assert_cmpint(count_calls("stop"), ==, 3);

    /* All gone: nothing is called any more. */
    g_string_truncate(call_log, 0);
    replication_do_checkpoint_all(&err);
    g_assert_null(err);
    g_assert_cmpstr(call_log->str, ==, "");
    teardown();
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    call_log = g_string_new(NULL);

    g_test_add_func("/replication-framework/start-all", test_start_all);
    g_test_add_func("/replication-framework/start-failure-rolls-back",
                    test_start_failure_rolls_back);
    g_test_add_func("/replication-framework/order", test_order);
    g_test_add_func("/replication-framework/start-without-errp",
                    test_start_without_errp_is_safe);
    g_test_add_func("/replication-framework/checkpoint-all",
                    test_checkpoint_all);
    g_test_add_func("/replication-framework/checkpoint-first-error",
                    test_checkpoint_stops_at_first_error);
    g_test_add_func("/replication-framework/get-error-all",
                    test_get_error_all);
    g_test_add_func("/replication-framework/stop-all-reaches-everyone",
                    test_stop_all_reaches_everyone);
    g_test_add_func("/replication-framework/remove-on-stop",
                    test_participant_may_remove_itself_on_stop);
    return g_test_run();
}
