"""What runs inside a worker process: a machine's lifecycle, carried out.

Theory of operation
-------------------

The master forks; the child arrives here with the master's signals blocked. It installs
its own handlers first and only then unblocks them, so a QUIT sent the instant the
worker was forked waits for the right handler. Then it makes sure it will notice its
master's death, runs ``setup()``, says so in its scoreboard slot and with its slot's index on
the notify pipe (the only time a worker wakes the master), and performs until told to
stop.

What the worker does next is decided by its own machine (``process_machine``: setting
up, idle, performing or waiting, holding, stopping, exited); this module only tells the
machine what happened, at lifecycle moments, and carries out the effects it answers
with (``_carry_out``). The perform loops themselves are in ``strategies``, and fire the
machine per batch, never per perform.

A dead master is noticed three ways, none of them in the perform loop: the kernel's
parent-death signal (Linux; HUP, whose handler checks ``getppid()`` so that a stray
hangup means nothing), a ``getppid()`` check right after asking for it (the master may
have died before), and, where there is no parent-death signal, a thread that blocks on
the lifeline pipe and raises the same HUP at its EOF. A worker whose master is gone
stops gracefully, as on QUIT, within ``graceful_timeout`` (``deadlines``): nobody else
is left to stop it.

Signals, in the worker (and in its perform child, which inherits the handlers):

======  ==============================================================================
QUIT    graceful: finish the current perform, run ``teardown()``, exit 0. ``stopping``
        turns True, for performs that loop.
TERM    stop now, no teardown (as Unicorn), but unwinding: ``prefork.Shutdown`` is
INT     raised where the worker stands, once per process, so the perform's ``finally``
        blocks run; the worker exits 0. A worker waiting on a perform child passes the
        signal on and stops once the child is gone. With ``graceful_term``, TERM is
        QUIT (INT stays quick).
USR1    reopen log files (between performs).
USR2    hold: finish the current perform, start no new one until CONT.
CONT    go on.
ABRT    the hard ``timeout``: a clean dump of the process's Python stacks to fd 2,
        then KILL to the whole process group (``stack_dumps``). A worker waiting on a
        perform child passes it on: the child, which hung, dumps.
ALRM    ``soft_timeout``: raise ``prefork.PerformTimeout`` inside the perform.
======  ==============================================================================

The handlers set flags (and ``pending``, the single flag the hot loop reads); the
runtime attends to them between performs, turning each into a trigger. Four act at once
as well, since a perform may never return: TERM/INT and ALRM raise, ABRT ends the
process group, and the parent-death signal starts the orphan's deadline.
"""

from __future__ import annotations

import contextlib
import math
import os
import select
import signal
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Any

from prefork.child import deadlines, stack_dumps
from prefork.child.process_machine import (
    DEFAULT_BACKOFF,
    EXIT_FAILED,
    AskForReplacement,
    BackOff,
    BackoffSettings,
    CountFailure,
    ExitWith,
    LogFailure,
    LogLine,
    MarkIdle,
    NotifyMaster,
    ProcessEffect,
    ProcessState,
    ReopenLogFiles,
    SetStopping,
    StartDeadline,
    WorkerProcess,
    new_process_machine,
)
from prefork.child.recycling import SelfCheck
from prefork.child.strategies import forking_loop, simple_loop
from prefork.interrupts import PerformTimeout, Shutdown
from prefork.job import BoundJob, Flags, JobSpec, WorkerContext
from prefork.posix import process, titles
from prefork.posix.loop import Handoff
from prefork.posix.scoreboard import IDLE, PERFORMING, RECYCLE_CODES, notice
from prefork.posix.signal_pipe import drain, nonblocking_pipe

PERFORM_LOOPS = {"simple": simple_loop, "forking": forking_loop}


@dataclass(frozen=True)
class RuntimeOptions:
    """Everything about the job and the pool a worker needs, fixed before forking.

    ``graceful_timeout`` bounds an orphaned worker's stop (its master's own bound is the
    master's business); ``soft_timeout`` raises ``PerformTimeout`` inside a perform that
    runs that long (None: never); ``graceful_term`` makes TERM a QUIT; the back-off
    settings space the forks after failed perform children. ``max_performs`` is a hard
    budget (the worker stops by itself when it is spent: bounded runs and tests); a pool's
    recycling is ``recycle_after``, ``recycle_jitter`` and ``max_memory``, where the worker
    asks for a replacement and performs on (``prefork.child.recycling``). The defaults
    are the registry's.
    """

    job: JobSpec
    logger: Any
    strategy: str = "simple"
    max_performs: int | None = None  # a hard budget: the worker stops by itself after it
    recycle_after: int | None = None  # the pool's max_performs: ask for a replacement
    recycle_jitter: int = 0  # max_performs_jitter: each worker adds its own 0..N
    max_memory: int | None = None  # MiB of USS: ask for a replacement when over
    stamp_performs: bool = False
    name: str = "prefork"
    log_file: str | None = None
    after_fork: Callable[[WorkerContext], Any] | None = None
    before_exit: Callable[[WorkerContext], Any] | None = None
    graceful_timeout: float = 30.0
    soft_timeout: float | None = None
    graceful_term: bool = False
    restart_backoff: float = 0.1
    restart_backoff_max: float = 30.0
    # time each perform into the slot's duration histogram (the master serves /metrics)
    measure_performs: bool = False


def run_worker(spec: Handoff, options: RuntimeOptions) -> int:
    """The body of a worker process; returns its exit code."""
    return Runtime(spec, options).run()


_MACHINE = new_process_machine()
# the ordinary life of a worker, which ``_model_made_before_fork`` lives once
_ORDINARY_LIFE = ("setup_finished", "batch_started", "batch_ended", "stop_requested",
                  "teardown_finished")


def _model_made_before_fork() -> WorkerProcess:
    """The model of this process's machine, made at import, in the master.

    Each fork gives its worker a copy, and a worker only resets it (``this_process``):
    made, or added to the machine, in the worker, it would cost each new worker about
    0.4 ms of pages copied from the master. It also lives a worker's ordinary life once,
    here: the first trigger fired in a process costs ~0.5 ms and the next ones ~0.02 ms
    (Python specialises the bytecode of ``transitions`` as it warms up, writing into the
    code objects, and logging fills its level caches). Done in the master, every fork
    inherits that, and a new worker's first trigger (``setup_finished``, on its way to
    telling the master it is ready) costs less than half as much.
    """
    model = WorkerProcess()
    _MACHINE.add_model(model)
    for trigger in _ORDINARY_LIFE:
        model.fire(trigger)
    _MACHINE.set_state(ProcessState.SETTING_UP, model)
    return model


_THIS_PROCESS = _model_made_before_fork()


def this_process(label: str, master_pid: int, forking: bool,
                 backoff: BackoffSettings = DEFAULT_BACKOFF) -> WorkerProcess:
    """The model of the worker process running here, fresh, in ``setting_up``.

    A process runs one worker at a time, so one model per interpreter is enough (tests
    that run several ``Runtime`` one after another in one process get it afresh each).
    """
    model = _THIS_PROCESS
    model.begin(label, master_pid, forking, backoff)
    if model.state is not ProcessState.SETTING_UP:
        _MACHINE.set_state(ProcessState.SETTING_UP, model)
    return model


def log_exception(logger: Any, message: str) -> None:
    """Log ``message`` with the current traceback, on any logger-like object."""
    if hasattr(logger, "exception"):
        logger.exception(message)
    else:
        logger.error(f"{message}\n{traceback.format_exc()}")


_TITLE_WORDS = {ProcessState.SETTING_UP: "setting up"}


class Runtime:
    """One worker process from fork to exit: tells its machine, carries out its effects."""

    def __init__(self, spec: Handoff, options: RuntimeOptions) -> None:
        self.spec = spec
        self.options = options
        self.logger = options.logger
        self.flags = Flags()
        self.slot = spec.board_slot
        self.pid = os.getpid()
        self.label = f"worker group={spec.group} slot={spec.slot} pid={self.pid}"
        self.process = this_process(
            self.label, spec.master_pid, options.strategy == "forking",
            BackoffSettings(options.restart_backoff, options.restart_backoff_max))
        self.exit_code = EXIT_FAILED  # until the machine says otherwise
        self.bound: BoundJob | None = None  # the job's calls, once bound to the context
        self.child: int | None = None  # the perform's process (forking strategy)
        self.child_pidfd: int | None = None  # and its pidfd, while the worker waits on it
        self.context = WorkerContext(
            spec.slot, spec.group, self.pid, self.flags, self.slot.heartbeat,
            self.slot.state, PERFORMING,
        )
        self.wake_r = self.wake_w = -1
        self._lifeline: int | None = spec.lifeline_fd
        self._may_unwind = False  # Shutdown may be raised: the worker is living its life
        self._unwound = False  # Shutdown was raised in this process (once is all)
        self.orphaned = False  # the master is gone: the deadline runs
        self._setup_began = time.monotonic()
        self.recycling = SelfCheck(options.recycle_after, options.recycle_jitter,
                                   options.max_memory)

    # the life of a worker ----------------------------------------------------------------

    def run(self) -> int:
        self._install_handlers()
        self._watch_master()
        self._retitle()
        job = self.bound = self.options.job.bind(self.context)
        try:
            return self.live(job)
        finally:
            hook = self.options.before_exit
            if hook is not None:
                try:
                    hook(self.context)
                except Exception:
                    log_exception(self.logger, f"{self.label}: hook before_exit raised")
            if self.orphaned:  # nobody will reap what the perform left: take it along
                process.flush_std_streams()
                deadlines.kill_group(self.pid)

    def live(self, job: BoundJob) -> int:
        """Set up, perform, tear down, as the machine says; the exit code it chose.

        A quick stop (``Shutdown``, raised by TERM or INT wherever the worker stood) ends
        it at once, with status 0 and no teardown.
        """
        self._may_unwind = True
        try:
            if self._set_up(job):
                self._perform_then_tear_down(job)
        except Shutdown:
            if self.process.state is not ProcessState.EXITED:
                self.fire("shut_down")
        finally:
            self._may_unwind = False
        return self.exit_code

    def _set_up(self, job: BoundJob) -> bool:
        self._setup_began = time.monotonic()
        hook = self.options.after_fork
        step = "after_fork"
        try:
            if hook is not None:
                hook(self.context)
            step = "setup"
            job.setup()
        except Exception:
            self.fire("setup_failed", step)
            return False
        self.fire("setup_finished")
        return True

    def _perform_then_tear_down(self, job: BoundJob) -> None:
        try:
            PERFORM_LOOPS[self.options.strategy](self, job.perform)
        except Exception:
            self.fire("perform_failed")
            return
        try:
            job.teardown()
        except Exception:
            self.fire("teardown_failed")
            return
        self.fire("teardown_finished")

    # the machine --------------------------------------------------------------------------

    def fire(self, trigger: str, *args: Any) -> None:
        """Tell the machine what happened, and do what it answers, in order."""
        before = self.process.state
        effects = self.process.fire(trigger, *args)
        if self.process.state is not before:
            self._retitle()
        self._carry_out(effects)

    def _retitle(self) -> None:
        """The process title says the worker's state: at lifecycle moments only (a batch
        of performs begins or ends), never per perform (posix/titles.py)."""
        state = self.process.state
        busy = state in (ProcessState.PERFORMING, ProcessState.WAITING)
        words = "performing" if busy else _TITLE_WORDS.get(state, str(state))
        titles.set_worker_title(self.options.name, self.spec.group, self.spec.slot, words,
                                time.time() if busy else None)

    def _carry_out(self, effects: list[ProcessEffect]) -> None:
        for effect in effects:
            match effect:
                case MarkIdle():
                    self.slot.state[0] = IDLE
                case AskForReplacement(reason, memory_mib):
                    self.slot.memory[0] = memory_mib or 0.0
                    self.slot.recycle[0] = RECYCLE_CODES[reason]
                case NotifyMaster():
                    self._notify_master()
                case ReopenLogFiles():
                    self._reopen_logs()
                case SetStopping():
                    self.flags.stop = True
                    self.flags.pending = True
                case StartDeadline():
                    self.start_deadline()
                case CountFailure():
                    failures = self.slot.failures
                    failures[0] = (failures[0] + 1) & 0xFFFFFFFF
                case BackOff(seconds):
                    self._pause(seconds)
                case LogLine(level, message):
                    getattr(self.logger, level)(message)
                case LogFailure(message):
                    log_exception(self.logger, message)
                case ExitWith(code):
                    self.exit_code = code
                case _:
                    raise TypeError(f"{self.label}: not an effect of the process machine: "
                                    f"{effect!r}")

    def start_batch(self, done: int) -> bool:
        """Between performs: attend to the signals, then start a batch if the machine may.

        False when the worker is to stop (asked to, or ``max_performs`` are ``done``).
        """
        if self.flags.pending:
            self._attend()
        if self.process.state is not ProcessState.IDLE:
            return False
        limit = self.options.max_performs
        if limit is not None and done >= limit:
            self.fire("limit_reached")
            return False
        due = self.recycling.due(done)
        if due is not None:
            self.fire("recycle_due", *due)
        self.fire("batch_started")
        return True

    def batch_budget(self, done: int) -> int | None:
        """How many performs the next batch may run (``None``: no bound): up to the hard
        ``max_performs``, or to the next recycling check."""
        budgets = [self.recycling.budget(done)]
        if self.options.max_performs is not None:
            budgets.append(self.options.max_performs - done)
        return min((b for b in budgets if b is not None), default=None)

    def end_batch(self) -> None:
        """A batch ended: a signal is pending, or the budget of performs is spent."""
        self.fire("batch_ended")

    def perform_child_failed(self, pid: int, status: int) -> None:
        """In the worker: a perform's process ended badly (exit status, or -signal)."""
        self.fire("perform_child_failed", pid, status)

    def perform_child_recovered(self) -> None:
        """In the worker: a perform's process succeeded after one or more failed."""
        self.fire("perform_child_recovered")

    def perform_raised(self) -> None:
        """In the perform's process: log the exception (the exit status says failed)."""
        try:  # noqa: SIM105  (BaseException: a TERM now must not skip the exit)
            log_exception(self.logger, f"{self.label}: perform in pid={os.getpid()} raised")
        except BaseException:
            pass

    def start_deadline(self) -> None:
        """The master is gone: bound the rest of this worker's life (once)."""
        if not self.orphaned:
            self.orphaned = True
            label, logger = self.label, self.logger
            deadlines.start_deadline(self.options.graceful_timeout, self.pid,
                                     lambda text: logger.warning(f"{label}: {text}"))

    def _pause(self, seconds: float) -> None:
        """Wait ``seconds`` (a back-off), or less if a signal asks for something."""
        deadline = time.monotonic() + seconds
        while not self.flags.pending:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            if self.wake_r < 0:
                time.sleep(left)
                return
            poller = select.poll()
            poller.register(self.wake_r, select.POLLIN)
            if poller.poll(math.ceil(left * 1000)):
                drain(self.wake_r)

    # signals -----------------------------------------------------------------------------

    def _install_handlers(self) -> None:
        """Own handlers first, then unblock what the master blocked around the fork."""
        flags = self.flags

        def on_quit(signo: int, frame: FrameType | None) -> None:
            flags.stop = True
            flags.pending = True
            self.pass_on(signal.SIGQUIT)  # so the perform's own ``stopping`` turns True

        def on_quick_stop(signo: int, frame: FrameType | None) -> None:
            flags.stop = flags.quick = True
            flags.pending = True
            if self.child is not None:  # the perform child unwinds; the worker waits for it
                self.pass_on(signo)
            elif self._may_unwind and not self._unwound:
                self._unwound = True  # once per process: a second TERM spares the finally
                raise Shutdown(signal.Signals(signo).name)

        soft_timeout = self.options.soft_timeout

        def on_soft_timeout(signo: int, frame: FrameType | None) -> None:
            raise PerformTimeout(f"the perform ran past soft_timeout ({soft_timeout:g}s)")

        def on_usr1(signo: int, frame: FrameType | None) -> None:
            flags.reopen = True
            flags.pending = True

        def on_usr2(signo: int, frame: FrameType | None) -> None:
            flags.hold = True
            flags.pending = True

        def on_cont(signo: int, frame: FrameType | None) -> None:
            flags.hold = False
            flags.pending = True

        master_pid = self.spec.master_pid

        def on_hup(signo: int, frame: FrameType | None) -> None:
            # the parent-death signal; any other HUP (a hangup, or one to a perform child,
            # whose parent is the worker) means nothing here
            if os.getppid() != master_pid and os.getpid() == self.pid:
                flags.orphaned = True
                flags.stop = True
                flags.pending = True
                self.pass_on(signal.SIGQUIT)
                self.start_deadline()  # now: the perform may never return

        self.wake_r, self.wake_w = nonblocking_pipe()
        signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
        signal.signal(signal.SIGQUIT, on_quit)
        signal.signal(signal.SIGUSR1, on_usr1)
        signal.signal(signal.SIGUSR2, on_usr2)
        signal.signal(signal.SIGCONT, on_cont)
        signal.signal(signal.SIGHUP, on_hup)
        for name in ("SIGWINCH", "SIGTTIN", "SIGTTOU"):
            signal.signal(getattr(signal, name), signal.SIG_IGN)
        signal.signal(signal.SIGTERM, on_quit if self.options.graceful_term else on_quick_stop)
        signal.signal(signal.SIGINT, on_quick_stop)
        if soft_timeout is not None:
            signal.signal(signal.SIGALRM, on_soft_timeout)
        stack_dumps.ENTRY_POINT[:] = [run_worker.__code__]
        stack_dumps.arm_crash_dumps()  # SIGSEGV, SIGBUS...: a crash in C code
        signal.signal(signal.SIGABRT, self._on_abort)  # after: ABRT is ours
        signal.pthread_sigmask(signal.SIG_SETMASK, self.spec.signal_mask)

    def _on_abort(self, signo: int, frame: FrameType | None) -> None:
        """The hard timeout: a clean dump, then KILL to the process group, at once.

        A worker waiting on its perform child passes it on: the child is what hung, and
        it dumps its own stack (and KILLs the group, the worker with it).
        """
        if self.child is not None:
            self.pass_on(signal.SIGABRT)
            return
        stack_dumps.dump_and_kill_group(self.timeout_header(), frame, self.pid)

    def timeout_header(self) -> str:
        """The dump's first line: the worker, the job, and how long it has been at it."""
        now = time.monotonic()
        began = self.slot.heartbeat[0]
        if self.slot.state[0] == PERFORMING and began > 0:
            doing = f"in a perform for {now - began:.2f} s (since it began or last beat)"
        elif self.process.state is ProcessState.SETTING_UP:
            doing = f"in setup for {now - self._setup_began:.2f} s"
        else:
            doing = "in a perform (not timed: its start was not stamped)"
        where = "" if os.getpid() == self.pid else f", in its perform child pid={os.getpid()}"
        return (f"prefork: {self.label} timed out{where}: job {self.options.job.name}, "
                f"{doing}; its Python stack, then KILL to its process group")

    def pass_on(self, signo: int) -> None:
        """Send ``signo`` on to the perform's child, if one runs (forking strategy).

        Through its pidfd while the worker holds one: a child reaped a moment ago has
        no pid left to hit a stranger with.
        """
        child, pidfd = self.child, self.child_pidfd
        if child is None:
            return
        try:
            if pidfd is not None:
                signal.pidfd_send_signal(pidfd, signo)
            else:
                os.kill(child, signo)
        except OSError:  # gone already
            pass

    def _watch_master(self) -> None:
        """Notice the master's death: parent-death signal, getppid, the lifeline's EOF."""
        watched = process.set_parent_death_signal(signal.SIGHUP)
        if os.getppid() != self.spec.master_pid:
            self.fire("master_lost")
            return
        if not watched:
            # no parent-death signal (not Linux), and the perform loops never poll: a
            # thread blocks on the lifeline instead (it costs the perform loop nothing)
            threading.Thread(target=self._lifeline_watcher, daemon=True).start()

    def _lifeline_watcher(self) -> None:
        fd = self._lifeline
        if fd is None:
            return
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        while True:
            poller.poll()
            try:
                if os.read(fd, 1) == b"":
                    break
            except BlockingIOError:
                continue
        os.kill(os.getpid(), signal.SIGHUP)  # as the parent-death signal would

    def _notify_master(self) -> None:
        with contextlib.suppress(BlockingIOError, BrokenPipeError):
            os.write(self.spec.notify_fd, notice(self.slot.index))

    # attending, between performs ---------------------------------------------------------

    def _attend(self) -> None:
        """Idle between performs: turn what the signals said into triggers.

        A quick stop whose ``Shutdown`` was not raised here (the worker was waiting on a
        perform child, which unwound instead, or the job swallowed it) is raised now.
        """
        self._take_notes()
        if self.flags.quick:
            raise Shutdown("a quick stop")
        if self.flags.stop:
            self.fire("stop_requested")
        elif self.flags.hold:
            self.fire("hold_requested")
            self._hold()

    def _hold(self) -> None:
        """Holding (USR2): sleep on the signals until CONT, a stop, or the master's death."""
        flags = self.flags
        while self.process.state is ProcessState.HOLDING:
            self._wait()
            self._take_notes()
            if flags.quick:
                raise Shutdown("a quick stop")
            if flags.stop:
                self.fire("stop_requested")
            elif not flags.hold:
                self.fire("resume_requested")

    def _take_notes(self) -> None:
        """The requests that change nothing by themselves: the master's death, USR1."""
        flags = self.flags
        flags.pending = False
        if self.wake_r >= 0:
            drain(self.wake_r)  # the bytes of the signals that set the flags
        if flags.orphaned:
            flags.orphaned = False
            self.fire("master_lost")
        if flags.reopen:
            flags.reopen = False
            self.fire("reopen_requested")

    def _wait(self) -> None:
        """Sleep until a signal arrives or the lifeline says the master died."""
        poller = select.poll()
        poller.register(self.wake_r, select.POLLIN)
        if self._lifeline is not None:
            poller.register(self._lifeline, select.POLLIN)
        ready = {fd for fd, _ in poller.poll()}
        if self._lifeline is not None and self._lifeline in ready:
            try:
                if os.read(self._lifeline, 1) == b"":
                    self._lifeline = None  # at EOF for good: stop polling it
                    self.flags.orphaned = True
            except BlockingIOError:
                pass

    def _reopen_logs(self) -> None:
        if self.options.log_file:
            process.redirect_output(self.options.log_file)
        process.reopen_log_handlers(self.logger)
