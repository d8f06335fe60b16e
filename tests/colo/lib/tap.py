"""Minimal TAP-style reporting for our Python test scripts.

    from tap import Tap
    t = Tap()
    t.check("what is checked", function)   # ok/not ok line; exceptions = not ok
    sys.exit(t.finish())
"""

import sys
import traceback


class Tap:
    def __init__(self):
        self.failed = 0
        self.passed = 0

    def check(self, what, fn, *args):
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
