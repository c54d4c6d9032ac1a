"""Signals: a storm of TTIN/TTOU, a stranger on a dead worker's pid, an idle master."""

from __future__ import annotations

import contextlib
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from e2e_support import STARTED, alive, process_table, wait_for
from fault_support import (
    LOADED_MARGIN,
    context_switches,
    kill_pids,
    log_entries,
    proc_state,
    signal_pending,
    stamps,
)


def live_children(pid: int) -> set[int]:
    return {child for child, (ppid, state) in process_table().items()
            if ppid == pid and state != "Z"}


def deliver(pid: int, signo: int) -> None:
    """Send ``signo`` and wait until the kernel has handed it to ``pid``.

    Two signals of one kind sent before the first is delivered make one delivery (POSIX
    signals do not queue): that is the kernel's doing, not the master's. Waiting for each
    delivery makes every signal of the storm count, so the expected count is exact; the
    master's loop still meets them in a burst (its handler only records them).
    """
    os.kill(pid, signo)
    deadline = time.monotonic() + 5
    while signal_pending(pid, signo):
        if time.monotonic() > deadline:
            pytest.fail(f"signal {signo} not delivered to pid {pid} in 5 s")
        time.sleep(0.0005)


def storm_of(n: int, start: int, low: int, high: int, seed: int) -> list[str]:
    """``n`` random TTIN/TTOU whose running count stays within ``low..high``."""
    rng, count, storm = random.Random(seed), start, []
    for _ in range(n):
        name = rng.choice(["TTIN", "TTOU"])
        if count + (1 if name == "TTIN" else -1) not in range(low, high + 1):
            name = "TTOU" if name == "TTIN" else "TTIN"
        count += 1 if name == "TTIN" else -1
        storm.append(name)
    return storm


@pytest.mark.timeout(60)
def test_a_storm_of_ttin_and_ttou_converges_to_the_exact_count(pool) -> None:
    initial, most = 3, 10
    run = pool("fault_jobs:Steady", "--workers", str(initial), "--max-workers", str(most))
    run.workers_up(initial)
    # The storm keeps its running count within 1..most-1, so that no bound is met and
    # the count it ends at does not depend on the order the master meets the signals in
    # (two signals sent close together may be recorded in either order: the second can
    # interrupt the first one's handler). Then the bounds: far too many TTOU, then TTIN.
    storm = storm_of(400, initial, 1, most - 1, seed=10)
    phases = [(storm, initial + storm.count("TTIN") - storm.count("TTOU")),
              (["TTOU"] * (most + 5), 0), (["TTIN"] * (most + 5), most)]
    # each signal is one line of the master: "group default: 3 -> 4 workers", or
    # "group default stays at 10 workers (asked for 11; ...)" at a bound
    steps = r"group default: \d+ -> (\d+) workers|group default stays at (\d+) workers"
    sent = 0
    for signals, expected in phases:
        for name in signals:
            deliver(run.pid, getattr(signal, f"SIG{name}"))
        sent += len(signals)
        wait_for(lambda n=sent: len(log_entries(run.output(), steps)) >= n, 20,
                 f"the master to act on {sent} signals")
        targets = [int(m.group(1) or m.group(2)) for *_, m in log_entries(run.output(), steps)]
        assert len(targets) == sent, "each signal acted on once"
        assert targets[-1] == expected
        assert all(0 <= target <= most for target in targets), "within the bounds"
        wait_for(lambda n=expected: len(live_children(run.pid)) == n, 20,
                 f"{expected} workers after {sent} signals")
        # converged: the count holds (a look every 20 ms for 1 s)
        held_until = time.monotonic() + 1
        while time.monotonic() < held_until:
            assert len(live_children(run.pid)) == expected
            time.sleep(0.02)
        print(f"{len(signals)} signals: {expected} workers")
    run.kill("QUIT")
    assert run.wait() == 0


# --- a stranger on a dead worker's pid -----------------------------------------------------

STRAY = r"""
import os, signal, sys
signals = set(range(1, signal.NSIG)) - {signal.SIGKILL, signal.SIGSTOP}
signal.pthread_sigmask(signal.SIG_BLOCK, signals)
log = sys.argv[1]
open(log, "a").write("ready\n")
while True:
    info = signal.sigwaitinfo(signals)
    with open(log, "a") as file:
        file.write(f"signal {info.si_signo} from pid {info.si_pid}\n")
"""

NS_LAST_PID = Path("/proc/sys/kernel/ns_last_pid")


def start_stray_at(pid: int, log: Path) -> int | None:
    """Start a process that records every signal it gets, with pid ``pid`` if it can.

    Writing ``ns_last_pid`` makes the kernel hand out ``pid`` next (real pid reuse);
    another process of the machine may fork in between: then None.
    """
    NS_LAST_PID.write_text(str(pid - 1))
    child = os.fork()
    if child == 0:  # the stray: exec at once
        try:
            os.execv(sys.executable, [sys.executable, "-c", STRAY, str(log)])
        finally:
            os._exit(127)
    STARTED.add(child)
    if child != pid:
        stop_stray(child)
        return None
    wait_for(lambda: log.exists() and "ready" in log.read_text(), 10, "the stray to start")
    return child


def stop_stray(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


SIGNALLING = re.compile(
    r"^(?:kill|tkill)\((-?\d+), |^tgkill\(\d+, (\d+), |^pidfd_send_signal\(\d+<pid:(\d+)>, "
    r"|^rt_(?:tg)?sigqueueinfo\((?:\d+, )?(\d+), ")
FORKED = re.compile(r"^(?:clone3?|fork|vfork)\(.*\) = (\d+)$")
REAPED = re.compile(r"^wait(?:4|id)\(.*\) = (\d+)$")


def signals_to_strangers(trace: str, live: set[int]) -> list[str]:
    """The traced signal calls that name a pid the master had not forked or had reaped.

    ``live`` holds the pids alive when the trace began; ``kill(-PGID)`` names the group
    led by worker PGID, which counts as that worker.
    """
    live = set(live)
    bad = []
    for line in trace.splitlines():
        if match := FORKED.match(line):
            live.add(int(match.group(1)))
        elif match := REAPED.match(line):
            live.discard(int(match.group(1)))
        elif match := SIGNALLING.match(line):
            target = abs(int(next(group for group in match.groups() if group)))
            if target not in live:
                bad.append(line)
    return bad


@pytest.mark.timeout(60)
@pytest.mark.skipif(not os.access(NS_LAST_PID, os.W_OK),
                    reason="cannot choose the next pid (ns_last_pid not writable): "
                           "no honest way to put a stranger on a dead worker's pid")
def test_a_stranger_on_a_dead_workers_pid_is_never_signalled(pool, tmp_path) -> None:
    graceful, kill = 2.0, 1.0
    run = pool("fault_jobs:Stubborn", "--workers", "3", "--graceful-timeout", str(graceful),
               "--kill-timeout", str(kill), "--log-level", "debug")
    workers = set(run.workers_up(3))
    tracer, trace = None, tmp_path / "master.trace"
    if shutil.which("strace"):  # the master's every signal, and its forks and reaps
        tracer = subprocess.Popen(
            ["strace", "-p", str(run.pid), "-yy", "-o", str(trace), "-e",
             "trace=kill,tkill,tgkill,pidfd_send_signal,rt_sigqueueinfo,rt_tgsigqueueinfo,"
             "wait4,waitid,clone,clone3,fork,vfork"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        STARTED.add(tracer.pid)
        assert tracer.stderr is not None
        assert b"attached" in tracer.stderr.readline(), "strace attached to the master"
    stray, victim, told_at = None, None, 0.0
    stray_log = tmp_path / "stray.log"
    try:
        ttous = 0
        for _ in range(3):  # another process may take the pid first: try another worker
            run.kill("TTOU")  # the master QUITs a worker (ignored), KILL due in 2 s
            ttous += 1
            told_at = time.monotonic()
            victim = int(run.expect(r"pid=(\d+) \w+ -> stopping").group(1))
            os.kill(victim, signal.SIGKILL)  # it dies before its deadline...
            run.expect(rf"pid={victim} stopping -> dead")  # ...and is reaped
            stray = start_stray_at(victim, stray_log)  # a stranger takes its pid
            if stray is not None:
                break
        if stray is None:
            pytest.skip("other processes took each dead worker's pid before the stray")
        # the victim's KILL deadline passes; then every signal the master forwards
        wait_for(lambda: time.monotonic() > told_at + graceful + LOADED_MARGIN, 10,
                 "the dead worker's KILL deadline to pass")
        for name in ("USR2", "CONT", "USR1", "TTIN", "HUP"):
            # one at a time: two signals pending at once reach the master in the kernel's
            # order, not the sender's, and a CONT handled before its USR2 holds the pool
            run.kill(name)
            run.expect(rf"master got {name}\b")
        run.workers_up(3 - ttous + 1)  # HUP's new generation: 3, less the TTOUs, plus a TTIN
        run.kill("TERM")
        assert run.wait() == 0
        log = stray_log.read_text().splitlines()
        assert alive(stray), "the stray was not killed"
        assert log == ["ready"], f"the stray was signalled: {log[1:]}"
        assert not log_entries(run.output(), rf"not sending \S+ to pid={victim}\b"), \
            "the core asked for a signal to a reaped pid"
        if tracer is not None:
            tracer.wait(10)
            bad = signals_to_strangers(trace.read_text(), workers)
            assert not bad, "signals to pids the master did not own:\n" + "\n".join(bad)
            assert any(line.startswith("pidfd_send_signal") for line in
                       trace.read_text().splitlines()), "the trace saw the master's signals"
    finally:
        if stray is not None:
            stop_stray(stray)
        if tracer is not None:
            kill_pids([tracer.pid])
            tracer.wait(5)


# --- an idle master ------------------------------------------------------------------------

@pytest.mark.timeout(90)
def test_an_idle_master_of_64_workers_never_wakes(pool) -> None:
    n, window = 64, 10.0
    run = pool("fault_jobs:Steady", "--workers", str(n), PERFORM_SECONDS="600", timeout=60)
    workers = run.workers_up(n, timeout=60)
    for worker in workers:
        wait_for(lambda w=worker: stamps(run, f"starts.{w}"), 30, "every perform to start")
    # the master has seen every worker up (it logged them), and is back asleep in poll
    wait_for(lambda: proc_state(run.pid) == "S", 10, "the master to sleep")
    before = context_switches(run.pid)
    time.sleep(window)  # not a wait: the window of the measurement
    after = context_switches(run.pid)
    assert proc_state(run.pid) == "S"
    print(f"master context switches over {window:g}s with {n} idle workers: {after - before}")
    assert after == before, f"the master woke {after - before} times in {window:g}s"
    run.kill("TERM")
    assert run.wait() == 0
