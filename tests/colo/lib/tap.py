"""Minimal TAP-style reporting for our Python test scripts.

    from tap import Tap
    t = Tap()
    t.check("what is checked", function)   # ok/not ok line; exceptions = not ok
    t.check_unless(why, "what", function)  # not ok with the reason if why
    sys.exit(t.finish())

COLO_TEST_ONLY=TEXT in the environment runs only the checks whose
description contains TEXT (to run one case while working on it).
"""

import os
import sys
import traceback


class Tap:
    def __init__(self):
        self.failed = 0
        self.passed = 0
        self.only = os.environ.get("COLO_TEST_ONLY")

    def check(self, what, fn, *args):
        if self.only and self.only not in what:
            return
        try:
            fn(*args)
        except Exception as e:  # a failing check must not stop the others
            self.failed += 1
            print("not ok - %s" % what)
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
            self.failed += 1
            print("not ok - %s (cannot run: %s)" % (what, why))
            sys.stdout.flush()
        else:
            self.check(what, fn, *args)

    def finish(self):
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
