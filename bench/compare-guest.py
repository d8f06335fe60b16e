#!/usr/bin/env python3
"""COLO proxy with real guests (Linux test guest, TCG): request/response
latency of a client's TCP connection through mirror, colo-compare and
filter-rewriter, and the checkpoints colo-compare asked for.

x-checkpoint-delay is 60 s, so checkpoints during the run are the ones the
proxy requested (mismatch, timeout, bound).  Prints figures, asserts nothing.
"""

import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                "tests", "colo"))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                "tests", "colo", "lib"))
from colo_pair import checkpoints, start_pair  # noqa: E402
from test_proxy_e2e import Client, proxy_pair_args  # noqa: E402

REQUESTS = int(os.environ.get("COLO_BENCH_REQUESTS", "200"))


def main():
    tmp = tempfile.mkdtemp(prefix="colo-bench-proxy-")
    guest, primary, secondary, pri_net, _, client_path = proxy_pair_args(tmp)
    client = Client(client_path)
    pri = sec = None
    try:
        pri, sec = start_pair(guest, delay_ms=60000, primary_extra=primary,
                              secondary_extra=secondary)
        pri.serial_wait("COLO-GUEST: ready", 240)
        client.peer = pri_net
        client.connect(120)
        client.request("warm-up", 120)
        stat = lambda n: pri.cmd("qom-get", path="/objects/comp0",
                                 property="stat-" + n)
        cp0, req0 = checkpoints(pri), stat("checkpoint-requests")
        lat = []
        for i in range(REQUESTS):
            t0 = time.monotonic()
            client.request("request %d" % i, 120)
            lat.append(time.monotonic() - t0)
        lat.sort()
        print("guest request/response through the COLO proxy (TCG, %d requests "
              "on one connection): median %.1f ms, p99 %.1f ms"
              % (REQUESTS, lat[len(lat) // 2] * 1e3, lat[len(lat) * 99 // 100] * 1e3))
        print("checkpoints during the run: %d (colo-compare asked for %d; "
              "TCP mismatches %d, timeouts %d), packets compared %d, "
              "largest hold %.1f ms"
              % (checkpoints(pri) - cp0, stat("checkpoint-requests") - req0,
                 stat("mismatches-tcp"), stat("timeouts"),
                 stat("packets-compared"), stat("max-hold-us") / 1e3))
        print("since boot: mismatches udp %d, icmp %d, other-ip %d, non-ip %d; "
              "queue-full %d, table-full %d"
              % tuple(stat(n) for n in ("mismatches-udp", "mismatches-icmp",
                                         "mismatches-other-ip", "mismatches-non-ip",
                                         "queue-full", "table-full")))
    finally:
        client.close()
        for vm in (pri, sec):
            if vm:
                vm.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
