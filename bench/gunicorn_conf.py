"""gunicorn's side of the benchmark: sync workers, a free loopback port, readiness.

``post_worker_init`` writes the same ready line as prefork's ``Ready.setup`` (see
bench/jobs.py) on the file descriptor named by ``BENCH_FD``.
"""

import os
import time

bind = "127.0.0.1:0"
worker_class = "sync"
loglevel = "warning"
preload_app = False


def post_worker_init(worker):
    line = f"ready {os.getpid()} {time.monotonic()!r}\n"
    os.write(int(os.environ["BENCH_FD"]), line.encode())
