"""prefork's RQ pools against ``rq worker-pool``, side by side in one run (not a test).

    python bench/rq_bench.py [--jobs 10000] [--workers 4] [--rounds 1]

Starts its own ``redis-server`` on a free loopback port (no persistence), then for each
mode and round: enqueues ``--jobs`` trivial jobs (``bench/rq_tasks.py:noop``) on one
queue and times, from the command's start to its exit, a burst pool of ``--workers``
draining them:

- in-process: ``prefork.rq.RQJob(burst=True)`` with the ``simple`` strategy, against
  ``rq worker-pool -n N -b --worker-class rq.SimpleWorker``;
- one child per job: the ``forking`` strategy, against ``rq worker-pool -n N -b`` (RQ's
  default worker, a work horse per job).

Both log at WARNING (RQ's ``--quiet``). The pairs alternate which goes first. Prints
jobs/s for each and the ratio prefork / rq (higher is better for prefork), and checks
that every job finished.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

from rq import Queue

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"

PREFORK_POOL = """
import logging, sys
import prefork
from prefork.rq import RQJob
logging.basicConfig(level=logging.WARNING)
job = RQJob(["bench"], sys.argv[1], burst=True, commands=True)
sys.exit(prefork.Master(job, workers=int(sys.argv[2]), strategy=sys.argv[3],
                        **job.master_hooks()).run())
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def enqueue(connection: redis.Redis, count: int) -> None:
    connection.flushall()
    queue = Queue("bench", connection=connection)
    for start in range(0, count, 1000):
        queue.enqueue_many([Queue.prepare_data("rq_tasks.noop", result_ttl=600)
                            for _ in range(start, min(count, start + 1000))])


def run(command: list[str], env: dict[str, str]) -> float:
    began = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=HERE, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, timeout=900)
    took = time.perf_counter() - began
    if done.returncode != 0:
        sys.exit(f"{command[:3]} failed ({done.returncode}): {done.stderr.decode()[-2000:]}")
    return took


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    rq_command = shutil.which("rq") or sys.exit("the rq command is not installed")
    server_binary = shutil.which("redis-server") or sys.exit("redis-server is not installed")
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), str(HERE),
                                                      env.get("PYTHONPATH")]))
    with tempfile.TemporaryDirectory() as directory:
        server = subprocess.Popen(
            [server_binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", directory], stdout=subprocess.DEVNULL)
        try:
            connection = redis.Redis.from_url(url)
            for _ in range(200):
                try:
                    connection.ping()
                    break
                except redis.ConnectionError:
                    time.sleep(0.02)
            modes = {
                "in-process": (["simple"], ["--worker-class", "rq.SimpleWorker"]),
                "child per job": (["forking"], []),
            }
            print(f"{args.jobs} trivial jobs, {args.workers} workers, {os.cpu_count()} CPUs, "
                  f"redis-server on loopback")
            for mode, (prefork_args, rq_args) in modes.items():
                commands = {
                    "prefork": [sys.executable, "-c", PREFORK_POOL, url, str(args.workers),
                                *prefork_args],
                    "rq worker-pool": [rq_command, "worker-pool", "-u", url, "-n",
                                       str(args.workers), "-b", "-q", *rq_args, "bench"],
                }
                times: dict[str, list[float]] = {name: [] for name in commands}
                for round_ in range(args.rounds):
                    order = list(commands) if round_ % 2 == 0 else list(commands)[::-1]
                    for name in order:
                        enqueue(connection, args.jobs)
                        times[name].append(run(commands[name], env))
                        finished = Queue("bench", connection=connection) \
                            .finished_job_registry.count
                        if finished != args.jobs:
                            sys.exit(f"{name}: {finished} of {args.jobs} jobs finished")
                rates = {name: args.jobs / min(took) for name, took in times.items()}
                print(f"{mode:14} prefork {rates['prefork']:7.0f} jobs/s   "
                      f"rq worker-pool {rates['rq worker-pool']:7.0f} jobs/s   "
                      f"ratio {rates['prefork'] / rates['rq worker-pool']:.2f}x")
        finally:
            server.terminate()
            server.wait(10)


if __name__ == "__main__":
    main()
