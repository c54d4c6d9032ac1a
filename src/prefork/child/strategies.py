"""The two perform loops: in the worker itself (simple), or in a child per perform (forking).

Both run in *batches*, which is what the worker process's machine sees of them:
``runtime.start_batch(done)`` attends to whatever the signals asked, and says whether a
batch may start (it fires ``batch_started``, or ``stop_requested``/``limit_reached``);
the batch runs until a signal is pending or its budget is spent (``runtime.batch_budget``:
where a recycling check is due, or a hard ``max_performs``); then
``runtime.end_batch()`` fires ``batch_ended``. With no signal, a worker's whole life is
one batch. Inside a batch nothing but the scoreboard hears of a perform: no trigger is
fired per perform (one costs ~5 µs; the simple loop's whole overhead is 0.036 µs).

``simple`` calls ``perform()`` in the worker. Per perform the loop does a few stores
into its scoreboard slot and no system call and no allocation beyond the perform's own
(the start time is stamped only when ``timeout`` is set, since nothing else reads it;
the ``soft_timeout`` timer is armed and cleared, two system calls, only when that is
set); an exception ends the batch, the loop and the worker (``perform_failed``), and a
``Shutdown`` the worker, with status 0 (``shut_down``).

A perform that returns ``prefork.IDLE`` found no work: it is not counted (neither in
the slot's count nor toward ``max_performs``) and the slot says ``idle`` until a perform
does some work. The simple loop pays one identity comparison per perform for it; the
forking loop learns it from the child's exit status (``EXIT_IDLE``, decoded only when the
status is not 0, as failures are), or from the job's ``take()``, which runs in the worker
before each fork, so that no child is forked when there is nothing to take.

``forking`` runs each perform in a child of the worker: a crash or an exception there
ends only that child, and is a failed perform: logged once, counted in the slot's
``failures`` and backed off (``perform_child_failed``, fired only on that path, and
``perform_child_recovered`` once after it). The worker waits for the child on its pidfd
and its signals' wake-up fd at once; its signal handlers pass TERM, INT, QUIT and ABRT
on to the child (so a TERM unwinds the perform, a QUIT turns the child's ``stopping``
True, and a timeout's ABRT dumps the stack of the code that actually hung). What a
perform costs here is mostly pages copied, not instructions: see ``forking_loop``.
"""

from __future__ import annotations

import functools
import gc
import itertools
import os
import select
import signal
import sys
import time
from array import array
from bisect import bisect_left
from collections.abc import Callable
from typing import Protocol

from prefork.child.process_machine import EXIT_FAILED, EXIT_OK, EXIT_PERFORM_RAISED
from prefork.interrupts import Shutdown
from prefork.job import IDLE as NO_WORK
from prefork.job import Flags, WorkerContext
from prefork.posix import process, titles
from prefork.posix.children import HAVE_PIDFD, exit_status
from prefork.posix.scoreboard import DURATION_BOUNDS, IDLE, PERFORMING, Slot
from prefork.posix.signal_pipe import drain, raw_pthread_sigmask


class LoopOptions(Protocol):
    """The worker's options a perform loop reads (once, before its first batch)."""

    max_performs: int | None
    stamp_performs: bool
    soft_timeout: float | None


class Runtime(Protocol):
    """What a perform loop is handed: the worker process's runtime, as the loops see it.

    The loops read these attributes into locals once, then call ``start_batch`` and
    ``end_batch`` at lifecycle moments and the ``perform_*`` reports on a failure only, so
    that a perform costs no more than it did when the loops knew the runtime's class
    (``prefork.child.runtime.Runtime``, which imports this module and satisfies this
    protocol)."""

    flags: Flags
    slot: Slot
    options: LoopOptions
    context: WorkerContext
    pid: int
    wake_r: int
    child: int | None  # the perform's process (forking strategy), and its pidfd
    child_pidfd: int | None

    def start_batch(self, done: int) -> bool: ...
    def batch_budget(self, done: int) -> int | None: ...
    def end_batch(self) -> None: ...
    def perform_raised(self) -> None: ...
    def perform_child_failed(self, pid: int, status: int) -> None: ...
    def perform_child_recovered(self) -> None: ...

Perform = Callable[[], object]
# a perform child whose perform returned prefork.IDLE exits with this status (reserved:
# a perform child that calls sys.exit(79) is taken for one that found no work)
EXIT_IDLE = 79
_IDLE_STATUS = EXIT_IDLE << 8  # as waitpid reports it
# the signals whose handlers pass them on to the perform child: blocked around fork()
# until the worker has recorded the child, or one arriving in between would be lost
PASSED_ON = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP,
                       signal.SIGABRT})


def simple_loop(runtime: Runtime, perform: Perform) -> None:
    """Perform in batches until told to stop or ``max_performs`` are done.

    The inner loops are the hot path: a ``for`` over a C iterator, a few stores into
    the slot, one attribute read. Everything else is bound to locals beforehand.
    """
    flags = runtime.flags
    state = runtime.slot.state
    count = runtime.slot.performs
    heartbeat = runtime.slot.heartbeat
    clock = time.monotonic
    stamp = runtime.options.stamp_performs
    soft = runtime.options.soft_timeout
    measure = runtime.options.measure_performs
    no_work = NO_WORK
    done = 0
    while runtime.start_batch(done):
        allowed = runtime.batch_budget(done)
        budget = itertools.repeat(None) if allowed is None else itertools.repeat(
            None, allowed)
        state[0] = PERFORMING
        if soft is not None:
            done = _soft_timed_batch(runtime, perform, budget, done, soft)
        elif measure:
            done = _measured_batch(runtime, perform, budget, done)
        elif stamp:
            for _ in budget:
                heartbeat[0] = clock()
                if perform() is no_work and not idle_until_busy(runtime, perform):
                    break
                done += 1
                count[0] = done
                if flags.pending:
                    break
        else:
            for _ in budget:
                if perform() is no_work and not idle_until_busy(runtime, perform):
                    break
                done += 1
                count[0] = done
                if flags.pending:
                    break
        state[0] = IDLE
        runtime.end_batch()


def idle_until_busy(runtime: Runtime, perform: Perform) -> bool:
    """A perform returned ``IDLE``: perform until one does some work (True) or a signal is
    pending (False), with the slot saying ``idle`` meanwhile.

    Off the hot path: the simple loop pays one identity comparison per perform, and
    comes here only when a perform found no work. The budget of ``max_performs`` is not
    spent by these performs: the loop counts only the one that does some work. That one
    runs while the slot says idle, unless it calls ``worker.heartbeat()`` as it starts
    its work (which marks the slot busy, ``context.idling``); the slot says
    ``performing`` again once it returns.
    """
    flags = runtime.flags
    state = runtime.slot.state
    context = runtime.context
    no_work = NO_WORK
    state[0] = IDLE
    context.idling = True
    try:
        while not flags.pending:
            if perform() is not no_work:
                state[0] = PERFORMING
                return True
            if not context.idling:  # it said busy (heartbeat), then found nothing after all
                state[0] = IDLE
                context.idling = True
        return False
    finally:
        context.idling = False


def _measured_batch(runtime: Runtime, perform: Perform, budget: itertools.repeat[None],
                    done: int) -> int:
    """A batch of the simple loop that times each perform into the slot's histogram
    (``measure_performs``: the master serves ``/metrics``). A perform that found no work
    is not timed (nor the one that ends the idling: its time includes the wait).

    The counts are kept in the worker's own memory (an array and a float: the cheapest
    stores Python has) and copied into the slot at most every ``FLUSH_EVERY`` seconds, at
    the end of the batch, and so before the worker exits: a reader of the metrics sees
    them at most that late, and a perform pays two clock reads, a bisect and two adds.
    """
    flags = runtime.flags
    count = runtime.slot.performs
    heartbeat = runtime.slot.heartbeat
    stamp = runtime.options.stamp_performs
    slot_buckets, slot_seconds = runtime.slot.buckets, runtime.slot.seconds
    buckets = array("Q", slot_buckets)  # from the slot: batches go on where others ended
    seconds = slot_seconds[0]
    bounds, search = DURATION_BOUNDS, bisect_left
    clock = time.monotonic
    no_work = NO_WORK
    flush_at = clock() + FLUSH_EVERY
    try:
        for _ in budget:
            began = clock()
            if stamp:
                heartbeat[0] = began
            if perform() is no_work:
                if not idle_until_busy(runtime, perform):
                    break
            else:
                ended = clock()
                took = ended - began
                seconds += took
                buckets[search(bounds, took)] += 1
                if ended >= flush_at:
                    slot_buckets[:] = buckets
                    slot_seconds[0] = seconds
                    flush_at = ended + FLUSH_EVERY
            done += 1
            count[0] = done
            if flags.pending:
                break
    finally:
        slot_buckets[:] = buckets
        slot_seconds[0] = seconds
    return done


# how often at most a worker copies its perform durations into its slot (simple strategy)
FLUSH_EVERY = 0.5


def _soft_timed_batch(runtime: Runtime, perform: Perform, budget: itertools.repeat[None],
                      done: int, soft: float) -> int:
    """A batch of the simple loop with ``soft_timeout``: each perform under a timer whose
    SIGALRM raises ``PerformTimeout`` inside it (the runtime's handler); the count done."""
    flags = runtime.flags
    count = runtime.slot.performs
    heartbeat = runtime.slot.heartbeat
    clock = time.monotonic
    stamp = runtime.options.stamp_performs
    measure = runtime.options.measure_performs
    buckets, seconds = runtime.slot.buckets, runtime.slot.seconds
    set_timer = signal.setitimer
    real = signal.ITIMER_REAL

    def timed() -> object:
        set_timer(real, soft)
        try:
            return perform()
        finally:
            set_timer(real, 0)

    for _ in budget:
        began = clock() if stamp or measure else 0.0
        if stamp:
            heartbeat[0] = began
        if timed() is NO_WORK:
            if not idle_until_busy(runtime, timed):
                break
        elif measure:
            took = clock() - began
            seconds[0] += took
            buckets[bisect_left(DURATION_BOUNDS, took)] += 1
        done += 1
        count[0] = done
        if flags.pending:
            break
    return done


def forking_loop(runtime: Runtime, perform: Perform) -> None:
    """Fork per perform, let the child perform, wait for it; in batches, as above.

    Signals and the child, without a race: the signals the worker passes on to its
    child (``PASSED_ON``) are blocked around ``fork()`` and unblocked only once the
    worker has recorded the child (``runtime.child``, and its pidfd, through which they
    are passed, so that none reaches a stranger that got a reaped child's pid); and the
    worker waits in ``poll`` on the child's pidfd and on its signals' wake-up fd at
    once (``_wait_for_child``), never in a bare ``waitpid``, where a signal arriving
    just before the call would wait for the child to end by itself. A child that
    failed is logged once, counted and backed off (``runtime.perform_child_failed``);
    the first that succeeds after it ends the run (``perform_child_recovered``). A job
    with ``take()`` and ``settle(pid, status)`` (``BoundJob``) takes its unit of work in
    the worker before each fork, and accounts for it after the child is reaped, as RQ's
    worker does around its work horse.

    What a perform costs beyond a bare fork/_exit/waitpid is mostly pages: each fork
    write-protects every private page of the worker again, and the first write to
    one, by the worker or by the child, copies it (a Python object is written as
    soon as it is used: its reference count); and the child maps afresh the code of
    every library it enters. So everything either side needs is bound to locals
    beforehand; the worker touches the same few objects each time, decodes the
    exit status only when it is not 0,
    and stamps the start only when ``timeout`` is set (nothing else reads it), as in
    the simple loop. The collector is frozen once for the whole loop, not around
    each fork: the children's collections never walk (and so never write to) what
    the worker held when the loop began, and the worker pays nothing per perform. The
    process machine is fired per batch, not per perform, for the same reason: a
    trigger writes to dozens of objects of ``transitions``.

    The child's code is written out in the loop, not in a function: a call there
    costs more pages than the rest (the function, its cells, its code object, its
    call site), and so would calls to Python helpers around C functions; the child
    makes no object on the way that succeeds (plain ``try``). The worker's handlers
    are inherited and do the right thing in the child, which has no child of its own:
    TERM and INT raise ``Shutdown`` in the perform (once), QUIT sets ``stopping``,
    ABRT dumps the child's stack and KILLs the worker's process group, ALRM (with
    ``soft_timeout``) raises ``PerformTimeout``. Per perform the child:

    - asks for KILL at the worker's death (a KILLed worker must not leave its
      perform running), then checks that the worker did not die before it asked;
    - unblocks the signals the worker blocked around the fork, and arms the
      ``soft_timeout`` timer if there is one;
    - performs; a perform that returned ``prefork.IDLE`` ends it with ``EXIT_IDLE``
      (not counted, not a failure), a ``Shutdown`` (a quick stop) or ``sys.exit(0)``
      with status 0, any other exception is logged with its traceback and ends it with
      ``EXIT_PERFORM_RAISED``, which tells the worker it said so already;
    - flushes Python's buffers of stdout and stderr, which ``os._exit`` would drop,
      as ``process.flush_std_streams`` does (written out, for the reasons above).
    """
    flags = runtime.flags
    state = runtime.slot.state
    count = runtime.slot.performs
    heartbeat = runtime.slot.heartbeat
    clock = time.monotonic
    fork = os.fork
    stamp = runtime.options.stamp_performs
    measure = runtime.options.measure_performs
    buckets, seconds = runtime.slot.buckets, runtime.slot.seconds
    bounds, search = DURATION_BOUNDS, bisect_left
    began = 0.0
    bound = getattr(runtime, "bound", None)
    take = bound.take if bound is not None else None
    settle = bound.settle if bound is not None else None
    context = runtime.context
    no_work = NO_WORK
    idle_status = _IDLE_STATUS
    done = 0
    failing = False  # the last perform failed: the next success ends the run
    sigmask = raw_pthread_sigmask
    block, setmask = signal.SIG_BLOCK, signal.SIG_SETMASK
    passed_on = PASSED_ON
    wait_for_child = _child_waiter(runtime)
    # for the child
    ask_for_kill = process.parent_death_signal_call(signal.SIGKILL)
    getppid = os.getppid
    worker_pid = runtime.pid
    soft = runtime.options.soft_timeout
    set_timer = signal.setitimer
    real_timer = signal.ITIMER_REAL
    exit_now = os._exit
    ok, failed, raised, idle = EXIT_OK, EXIT_FAILED, EXIT_PERFORM_RAISED, EXIT_IDLE
    title_child = functools.partial(process.set_title, titles.worker_title(
        runtime.options.name, runtime.spec.group, runtime.spec.slot, "performing",
        role="perform"))
    gc.freeze()
    try:
        while runtime.start_batch(done):
            allowed = runtime.batch_budget(done)
            end = None if allowed is None else done + allowed
            while end is None or done < end:
                if take is not None and take() is no_work:
                    # nothing to take: no child, not counted, and the slot says idle
                    state[0] = IDLE
                    if flags.pending:
                        break
                    continue
                if not context.idling:  # after a child that found no work, it says so
                    state[0] = PERFORMING
                if stamp or measure:
                    heartbeat[0] = began = clock()
                mask = sigmask(block, passed_on)
                try:
                    pid = fork()
                except BaseException:
                    sigmask(setmask, mask)
                    raise
                if pid == 0:  # the perform's own process, to os._exit ---------------------
                    code = failed
                    try:
                        ask_for_kill()
                        if getppid() != worker_pid:  # it died before we asked
                            exit_now(failed)
                        sigmask(setmask, mask)
                        title_child()
                        if soft is not None:
                            set_timer(real_timer, soft)
                        code = idle if perform() is no_work else ok
                    except Shutdown:  # a quick stop: unwound, as asked
                        code = ok
                    except SystemExit as exit_:
                        code = ok if exit_.code is None else (
                            exit_.code if isinstance(exit_.code, int) else failed)
                    except BaseException:
                        runtime.perform_raised()
                        code = raised
                    finally:
                        try:  # noqa: SIM105
                            sys.stdout.flush()
                        except BaseException:  # closed, None or broken; or a late signal
                            pass
                        try:  # noqa: SIM105
                            sys.stderr.flush()
                        except BaseException:
                            pass
                        exit_now(code)
                status = wait_for_child(pid, mask)
                if measure and status != idle_status:  # the perform's time, fork to reap
                    took = clock() - began
                    seconds[0] += took
                    buckets[search(bounds, took)] += 1
                state[0] = IDLE
                if settle is not None:
                    settle(pid, status)
                if status:
                    if status == idle_status:  # it found no work: not counted
                        context.idling = True
                        if flags.pending:
                            break
                        continue
                    runtime.perform_child_failed(pid, exit_status(status))
                    failing = True
                elif failing:
                    runtime.perform_child_recovered()
                    failing = False
                context.idling = False
                done += 1
                count[0] = done
                if flags.pending:
                    break
            runtime.end_batch()
    finally:
        gc.unfreeze()


def _child_waiter(runtime: Runtime) -> Callable[[int, object], int]:
    """The worker's wait for a perform child: ``wait(pid, mask)`` returns its status.

    It records the child (pid and pidfd) for the signal handlers, unblocks the signals
    (``mask``: the mask from before the fork), and waits. With a pidfd and a wake-up fd
    it polls both: a signal's byte wakes it, its handler runs (it may pass the signal
    on), and the wait goes on until the pidfd says the child is gone. Without them it
    blocks in ``waitpid``, where a signal that arrives just before the call is handled
    only once the child has ended.
    """
    wake = runtime.wake_r
    use_pidfd = HAVE_PIDFD and wake >= 0
    pidfd_open = getattr(os, "pidfd_open", None)
    sigmask = raw_pthread_sigmask
    setmask = signal.SIG_SETMASK
    waitpid = os.waitpid
    nohang = os.WNOHANG
    close = os.close
    poller = select.poll()
    if use_pidfd:
        poller.register(wake, select.POLLIN)
    poll = poller.poll
    register, unregister = poller.register, poller.unregister

    def wait(pid: int, mask: object) -> int:
        pidfd = None
        if use_pidfd:
            try:
                pidfd = pidfd_open(pid)  # type: ignore[misc]
            except OSError:
                pidfd = None
        runtime.child, runtime.child_pidfd = pid, pidfd
        try:
            sigmask(setmask, mask)  # type: ignore[arg-type]  # pending handlers run here
            if pidfd is None:
                return waitpid(pid, 0)[1]
            register(pidfd, select.POLLIN)
            try:
                while True:
                    for fd, _ in poll():
                        if fd == wake:
                            drain(wake)  # the flags say what the signals asked
                    reaped, status = waitpid(pid, nohang)
                    if reaped:
                        return status
            finally:
                unregister(pidfd)
        finally:
            runtime.child = runtime.child_pidfd = None
            if pidfd is not None:
                close(pidfd)

    return wait
