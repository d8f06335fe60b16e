"""TAP output for our Python test scripts.

    from tap import Tap
    t = Tap()
    t.check("what is checked", function)   # ok/not ok line; exceptions = not ok
    t.check_unless(why, "what", function)  # not ok with the reason if why
    t.fail("what", "why")                  # a not ok line of the script's own
    sys.exit(t.finish())                   # the plan line "1..N"

The plan comes last (TAP allows it there): a script that dies half-way
has no plan, so a harness sees that it did not finish.

COLO_TEST_ONLY=TEXT in the environment runs only the checks whose
description contains TEXT (to run one case while working on it); the
plan then counts only those.
"""

import os
import sys
import traceback


class Tap:
    def __init__(self):
        self.failed = 0
        self.passed = 0
        self.only = os.environ.get("COLO_TEST_ONLY")

    def wanted(self, what):
        """Whether check(what, ...) would run (COLO_TEST_ONLY)."""
        return not self.only or self.only in what

    def check(self, what, fn, *args):
        if not self.wanted(what):
            return
        try:
            fn(*args)
        except Exception as e:  # a failing check must not stop the others
            self.failed += 1
            print("not ok - %s" % what)
            # first, so that a log cut short still says why
            why = " | ".join(line.strip() for line in
                             ("%s: %s" % (type(e).__name__, e)).splitlines()
                             if line.strip())
            print("#   why: " + why[:600])
            for line in traceback.format_exception(type(e), e, e.__traceback__):
                for sub in line.rstrip().splitlines():
                    print("#   " + sub)
        else:
            self.passed += 1
            print("ok - %s" % what)
        sys.stdout.flush()

    def check_unless(self, why, what, fn, *args):
        """check(), unless @why says what the machine lacks: then the check
        fails with that reason (a test that cannot run is not a pass)."""
        if why:
            self.fail(what, "cannot run: %s" % why)
        else:
            self.check(what, fn, *args)

    def fail(self, what, why):
        """A "not ok" line for a case the script could not check."""
        if not self.wanted(what):
            return
        self.failed += 1
        print("not ok - %s (%s)" % (what, why))
        sys.stdout.flush()

    def finish(self):
        """Print the plan; the exit status of the script."""
        print("1..%d" % (self.passed + self.failed))
        sys.stdout.flush()
        return 1 if self.failed else 0


def expect_error(fn, *fragments):
    """Call fn(); it must raise QmpError whose description holds every fragment."""
    from colo_vm import QmpError
    try:
        result = fn()
    except QmpError as e:
        for frag in fragments:
            if frag not in e.desc:
                raise AssertionError("error %r lacks %r" % (e.desc, frag))
        return e
    raise AssertionError("expected an error, got success: %r" % (result,))
