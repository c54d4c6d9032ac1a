"""The lifecycle floor: the smallest master that could do prefork's job, in a lean interpreter.

``python -I -S bench/floor.py N`` (started by ``bench/run.py``) forks N workers, then
blocks in ``os.wait()``: a worker that dies is replaced at once, TTIN forks one more,
TERM kills every worker, reaps them and exits. A worker's only work is to write its ready
line (``ready <pid> <time.monotonic()>`` on the file descriptor named by ``BENCH_FD``, as
the prefork job and gunicorn's hook do) and sleep in ``signal.pause()``.

Nothing else: no site packages (``-S``), no environment-driven imports (``-I``), no
state machine, no scoreboard, no logging, no pidfds. What prefork takes above this is
what its design costs; what this takes is what the kernel and the interpreter cost.
"""

import os
import signal
import sys
import time

FD = int(os.environ["BENCH_FD"])
children: set[int] = set()


def spawn() -> None:
    pid = os.fork()
    if pid == 0:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGTTIN, signal.SIG_DFL)
        os.write(FD, f"ready {os.getpid()} {time.monotonic()!r}\n".encode())
        while True:
            signal.pause()
    children.add(pid)


def stop(signo: int, frame: object) -> None:
    for pid in children:
        os.kill(pid, signal.SIGKILL)
    for pid in children:
        os.waitpid(pid, 0)
    os._exit(0)


def grow(signo: int, frame: object) -> None:
    spawn()


def main() -> None:
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGTTIN, grow)
    for _ in range(int(sys.argv[1])):
        spawn()
    while True:
        pid, _status = os.wait()  # retried after a signal's handler (PEP 475)
        children.discard(pid)
        spawn()


main()
