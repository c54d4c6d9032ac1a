"""The RQ jobs the tests enqueue (``rq_tasks.NAME``): each counts its own runs in Redis.

``runs`` (a hash: job id -> times run) is how the tests tell "exactly once" from "lost"
and "twice"; ``order`` lists the tags in the order the jobs ran.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

from rq import get_current_job


def _count(tag: object = None) -> None:
    job = get_current_job()
    connection = job.connection
    with connection.pipeline() as pipeline:
        pipeline.hincrby("runs", job.id, 1)
        if tag is not None:
            pipeline.rpush("order", str(tag))
        pipeline.execute()


def record(tag: object = None) -> str:
    _count(tag)
    return "ok"


def nap(seconds: float, tag: object = None) -> str:
    """Sleep, then count (a job that is killed or interrupted meanwhile is not counted)."""
    job = get_current_job()
    job.connection.hset("running", job.id, os.getpid())
    time.sleep(seconds)
    _count(tag)
    return "ok"


def hang_hard() -> None:
    """Hang where no Python timeout reaches: SIGALRM blocked, waiting on a grandchild."""
    job = get_current_job()
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM, signal.SIGTERM})
    sleeper = subprocess.Popen(["sleep", "60"])
    job.connection.hset("running", job.id, os.getpid())
    job.connection.hset("grandchild", job.id, sleeper.pid)
    sleeper.wait()
