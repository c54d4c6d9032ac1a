"""What the benchmark's child processes run: prefork jobs, gunicorn's app, the baselines.

``python bench/jobs.py KIND ...`` is started by ``bench/run.py``; nothing here is run by
hand. Every process reports on the file descriptor named by ``BENCH_FD`` with one line per
event, ``<what> <pid> <time.monotonic()> [values...]``, short enough (< PIPE_BUF) to be
written atomically by many processes at once. CLOCK_MONOTONIC is system-wide, so the times
of different processes compare directly.
"""

from __future__ import annotations

import gc
import itertools
import json
import logging
import os
import signal
import sys
import time
from array import array

HEAP_MIB = int(os.environ.get("BENCH_HEAP_MIB", "50"))
TRACE = os.environ.get("BENCH_TRACE") == "1"


def report(what: str, *values: object) -> None:
    fd = int(os.environ["BENCH_FD"])
    line = " ".join(str(v) for v in (what, os.getpid(), repr(time.monotonic()), *values))
    os.write(fd, (line + "\n").encode())


def build_heap(mib: int) -> list[object]:
    """About ``mib`` MiB of small GC-tracked Python objects (lists of an int and a str)."""
    # one item is ~ 56 (list) + 8 (slot) + 8 (2nd slot) + 28 (int) + 50 (str) + 16 (gc)
    count = mib * 1024 * 1024 // 176
    return [[i, f"{i:08d}"] for i in range(count)]


def idle_perform() -> None:
    """Idle: sleep until a signal arrives (a QUIT ends it: the worker then stops)."""
    signal.pause()


# prefork jobs -------------------------------------------------------------------------------


class Ready:
    """Reports when its setup is done, then idles."""

    def setup(self) -> None:
        if TRACE:
            import tracing

            tracing.note("setup")
        report("ready")

    def perform(self) -> None:
        idle_perform()


class Noop:
    """A no-op perform; reports its first and last perform times (with max_performs)."""

    def setup(self) -> None:
        report("start")

    def perform(self) -> None:
        pass

    def teardown(self) -> None:
        report("end")


PRELOADED = build_heap(HEAP_MIB) if os.environ.get("BENCH_PRELOAD") == "1" else None


class Heap:
    """Holds a heap (preloaded in the master at import, or built in setup), collects."""

    def setup(self) -> None:
        self.heap = PRELOADED if PRELOADED is not None else build_heap(HEAP_MIB)
        gc.collect()
        report("ready")

    def perform(self) -> None:
        idle_perform()


def work(x: int) -> int:
    """One small item of work."""
    return (x * 2654435761) % 1000003


class Drain:
    """Reads 8-byte items from the queue pipe (BENCH_QUEUE_FD) until its EOF."""

    def setup(self) -> None:
        self.fd = int(os.environ["BENCH_QUEUE_FD"])
        self.count = 0
        self.total = 0
        self.done = False
        report("ready")

    def perform(self) -> None:
        if self.done:
            idle_perform()
            return
        data = os.read(self.fd, 4096)  # whole items: every write is a multiple of 8
        if not data:
            self.done = True
            report("done", self.count, self.total)
            return
        items = array("Q", data)
        self.count += len(items)
        self.total += sum(map(work, items))


class Steady:
    """A steady perform rate: each perform takes BENCH_PERFORM_S seconds."""

    def setup(self) -> None:
        self.pause = float(os.environ.get("BENCH_PERFORM_S", "0.05"))
        report("ready")

    def perform(self) -> None:
        time.sleep(self.pause)


class Cycle:
    """A worker that lives an exponentially distributed time (mean BENCH_LIFE_S seconds)
    in one perform, then leaves on its own with status 0 (a retirement, replaced at once):
    N/mean exits per second, spread out as a Poisson process from the start.

    Not ``max_performs=1``: a worker at its ``max_performs`` is recycled without a dip,
    so it performs on until its replacement is ready and then finishes that perform too,
    and each cycle would cost two events and keep two workers alive for a while."""

    def setup(self) -> None:
        import random

        self.life = min(random.expovariate(1 / float(os.environ["BENCH_LIFE_S"])), 300.0)
        report("ready")

    def perform(self) -> None:
        time.sleep(self.life)
        sys.exit(0)


JOBS = {"ready": Ready, "noop": Noop, "heap": Heap, "drain": Drain, "steady": Steady,
        "cycle": Cycle}


def run_prefork(kind: str, workers: int, strategy: str, max_performs: int | None,
                timeout: float | None) -> int:
    import prefork

    if TRACE:  # where a respawn's time goes (bench/tracing.py)
        import tracing

        tracing.install()
    logger = logging.getLogger("bench.prefork")
    logger.addHandler(logging.StreamHandler(sys.stderr))
    logger.setLevel(logging.WARNING)
    # more options as JSON (the endpoints bench: control_socket, health_bind)
    more = json.loads(os.environ.get("BENCH_MASTER_OPTIONS", "{}"))
    master = prefork.Master(JOBS[kind], workers=workers, strategy=strategy,
                            max_performs=max_performs, timeout=timeout, logger=logger,
                            name=f"bench-{kind}", **more)
    code = master.run()
    import gc

    gc.freeze()  # as `prefork run` does before it exits (src/prefork/cli.py)
    return code


# gunicorn -----------------------------------------------------------------------------------


def app(environ: dict[str, object], start_response: object) -> list[bytes]:
    """The trivial WSGI app gunicorn serves."""
    start_response("200 OK", [("Content-Type", "text/plain")])  # type: ignore[operator]
    return [b"ok\n"]


# baselines ----------------------------------------------------------------------------------


def bare_loop(count: int) -> None:
    """The simple strategy's baseline: a bare loop calling the same function."""
    perform = Noop().perform
    start = time.monotonic()
    for _ in itertools.repeat(None, count):
        perform()
    end = time.monotonic()
    report("bare", repr(start), repr(end))


def bare_fork(count: int) -> None:
    """The forking strategy's baseline: fork/_exit/waitpid in a forked child."""
    import prefork  # noqa: F401  (the same interpreter state as a worker's)

    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            start = time.monotonic()
            for _ in range(count):
                child = os.fork()
                if child == 0:
                    os._exit(0)
                os.waitpid(child, 0)
            end = time.monotonic()
            report("bare", repr(start), repr(end))
            code = 0
        finally:
            os._exit(code)
    os.waitpid(pid, 0)


def floor_boot(count: int) -> None:
    """Boot's floor: the interpreter, ``import transitions`` (prefork's one dependency, which
    its core is built on) and ``count`` bare forks, each child reporting ready at once.

    No pool manager in Python that uses ``transitions`` can boot faster than this; it is
    measured in the same run as prefork's boot, to show how much of the boot is prefork's.
    On TERM it KILLs its children and reaps them.
    """
    import transitions  # noqa: F401  (the import every prefork master pays)

    children: list[int] = []

    def stop(signo: int, frame: object) -> None:
        for pid in children:
            os.kill(pid, signal.SIGKILL)
        for pid in children:
            os.waitpid(pid, 0)
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    for _ in range(count):
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            report("ready")
            while True:
                signal.pause()
        children.append(pid)
    while True:
        signal.pause()


def pool_drain(workers: int, items: int) -> None:
    """The queue baseline: multiprocessing.Pool(N).map with map's own chunksize."""
    import multiprocessing

    with multiprocessing.get_context("fork").Pool(workers) as pool:
        pool.map(work, range(workers))  # every worker up
        data = list(range(items))
        chunksize = -(-items // (workers * 4))
        start = time.monotonic()
        total = sum(pool.map(work, data, chunksize=chunksize))
        end = time.monotonic()
    report("pool", repr(start), repr(end), items, total)


def main(argv: list[str]) -> int:
    what = argv[0]
    if what == "prefork":
        kind, workers, strategy = argv[1], int(argv[2]), argv[3]
        max_performs = int(argv[4]) if argv[4] != "-" else None
        timeout = float(argv[5]) if argv[5] != "-" else None
        return run_prefork(kind, workers, strategy, max_performs, timeout)
    if what == "bare-loop":
        bare_loop(int(argv[1]))
    elif what == "bare-fork":
        bare_fork(int(argv[1]))
    elif what == "floor-boot":
        floor_boot(int(argv[1]))
    elif what == "pool":
        pool_drain(int(argv[1]), int(argv[2]))
    else:
        raise SystemExit(f"unknown kind {what!r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
