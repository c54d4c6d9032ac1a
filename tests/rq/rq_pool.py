"""A prefork master of RQ workers, for the tests: ``python rq_pool.py --url URL ...``.

``prefork.Master`` with an ``RQJob`` and the job's master hooks (``on_worker_exit``);
logs to stderr, RQ's own loggers at WARNING (thousands of jobs would fill the log).
"""

from __future__ import annotations

import argparse
import logging
import sys

import prefork
from prefork.rq import RQJob


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--queues", default="default")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--strategy", default="simple")
    parser.add_argument("--burst", action="store_true")
    parser.add_argument("--timeout", type=float, default=None)
    parser.add_argument("--soft-timeout", type=float, default=None)
    parser.add_argument("--poll-timeout", type=float, default=0.5)
    parser.add_argument("--no-hook", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO,
        format="%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s")
    logging.getLogger("rq").setLevel(logging.WARNING)
    job = RQJob(args.queues, args.url, burst=args.burst, poll_timeout=args.poll_timeout)
    hooks = {} if args.no_hook else job.master_hooks()
    master = prefork.Master(job, workers=args.workers, strategy=args.strategy,
                            timeout=args.timeout, soft_timeout=args.soft_timeout,
                            graceful_timeout=10, kill_timeout=3, name="rqpool", **hooks)
    return master.run()


if __name__ == "__main__":
    sys.exit(main())
