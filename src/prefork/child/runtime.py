"""What runs inside a worker process: a machine's lifecycle, carried out.

Theory of operation
-------------------

The master forks; the child arrives here with the master's signals blocked. It installs
its own handlers first and only then unblocks them, so a QUIT sent the instant the
worker was forked waits for the right handler. Then it makes sure it will notice its
master's death, runs ``setup()``, says so in its scoreboard slot and with one byte on
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
stops gracefully, as on QUIT.

Signals, in the worker:

======  ==============================================================================
QUIT    graceful: finish the current perform, run ``teardown()``, exit 0. ``stopping``
        turns True, for performs that loop.
TERM    stop now, no teardown (as Unicorn): the kernel's default action, so even a
INT     perform stuck in C code stops. With the forking strategy the worker first
        passes TERM to the perform's child.
USR1    reopen log files (between performs).
USR2    hold: finish the current perform, start no new one until CONT.
CONT    go on.
ABRT    dump every thread's Python stack (faulthandler) to stderr, and go on: the
        master sends it when a timeout expires, and KILL follows.
======  ==============================================================================

The handlers only set flags (and ``pending``, the single flag the hot loop reads); the
runtime attends to them between performs, turning each into a trigger.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Any

from prefork.child.process_machine import (
    EXIT_FAILED,
    ExitWith,
    LogFailure,
    LogLine,
    MarkIdle,
    NotifyMaster,
    ProcessEffect,
    ProcessState,
    ReopenLogFiles,
    SetStopping,
    WorkerProcess,
    new_process_machine,
)
from prefork.child.stack_dumps import arm_stack_dumps, rearm_after_abort, rearm_stack_dumps
from prefork.child.strategies import forking_loop, simple_loop
from prefork.job import BoundJob, Flags, JobSpec, WorkerContext
from prefork.posix import process
from prefork.posix.loop import Handoff
from prefork.posix.scoreboard import IDLE
from prefork.posix.signal_pipe import drain, nonblocking_pipe

PERFORM_LOOPS = {"simple": simple_loop, "forking": forking_loop}


@dataclass(frozen=True)
class RuntimeOptions:
    """Everything about the job and the pool a worker needs, fixed before forking."""

    job: JobSpec
    logger: Any
    strategy: str = "simple"
    max_performs: int | None = None
    stamp_performs: bool = False
    name: str = "prefork"
    log_file: str | None = None
    after_fork: Callable[[WorkerContext], Any] | None = None
    before_exit: Callable[[WorkerContext], Any] | None = None


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


def this_process(label: str, master_pid: int, forking: bool) -> WorkerProcess:
    """The model of the worker process running here, fresh, in ``setting_up``.

    A process runs one worker at a time, so one model per interpreter is enough (tests
    that run several ``Runtime`` one after another in one process get it afresh each).
    """
    model = _THIS_PROCESS
    model.begin(label, master_pid, forking)
    if model.state is not ProcessState.SETTING_UP:
        _MACHINE.set_state(ProcessState.SETTING_UP, model)
    return model


def log_exception(logger: Any, message: str) -> None:
    """Log ``message`` with the current traceback, on any logger-like object."""
    if hasattr(logger, "exception"):
        logger.exception(message)
    else:
        logger.error(f"{message}\n{traceback.format_exc()}")


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
        self.process = this_process(self.label, spec.master_pid, options.strategy == "forking")
        self.exit_code = EXIT_FAILED  # until the machine says otherwise
        self.child: int | None = None  # the perform's process (forking strategy)
        self.context = WorkerContext(
            spec.slot, spec.group, self.pid, self.flags, self.slot.heartbeat
        )
        self.wake_r = self.wake_w = -1
        # what a perform's child calls to arm the ABRT dump (_install_handlers finds better)
        self.arm_child_dump: Callable[[], object] = rearm_stack_dumps
        self._lifeline: int | None = spec.lifeline_fd

    # the life of a worker ----------------------------------------------------------------

    def run(self) -> int:
        self._install_handlers()
        self._watch_master()
        process.set_title(f"{self.options.name} worker {self.spec.group}.{self.spec.slot}")
        job = self.options.job.bind(self.context)
        try:
            return self.live(job)
        finally:
            hook = self.options.before_exit
            if hook is not None:
                try:
                    hook(self.context)
                except Exception:
                    log_exception(self.logger, f"{self.label}: hook before_exit raised")

    def live(self, job: BoundJob) -> int:
        """Set up, perform, tear down, as the machine says; the exit code it chose."""
        if self._set_up(job):
            self._perform_then_tear_down(job)
        return self.exit_code

    def _set_up(self, job: BoundJob) -> bool:
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
        self._carry_out(self.process.fire(trigger, *args))

    def _carry_out(self, effects: list[ProcessEffect]) -> None:
        for effect in effects:
            match effect:
                case MarkIdle():
                    self.slot.state[0] = IDLE
                case NotifyMaster():
                    self._notify_master()
                case ReopenLogFiles():
                    self._reopen_logs()
                case SetStopping():
                    self.flags.stop = True
                    self.flags.pending = True
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
        self.fire("batch_started")
        return True

    def end_batch(self) -> None:
        """A batch ended: a signal is pending, or the budget of performs is spent."""
        self.fire("batch_ended")

    def perform_child_failed(self, pid: int, status: int) -> None:
        """In the worker: a perform's process ended badly (exit status, or -signal)."""
        self.fire("perform_child_failed", pid, status)

    def perform_raised(self) -> None:
        """In the perform's process: log the exception (the exit status says failed)."""
        with contextlib.suppress(Exception):
            log_exception(self.logger, f"{self.label}: perform in pid={os.getpid()} raised")

    # signals -----------------------------------------------------------------------------

    def _install_handlers(self) -> None:
        """Own handlers first, then unblock what the master blocked around the fork."""
        flags = self.flags

        def on_quit(signo: int, frame: FrameType | None) -> None:
            flags.stop = True
            flags.pending = True
            self.pass_on(signal.SIGQUIT)  # so the perform's own ``stopping`` turns True

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
            # the parent-death signal; any other HUP (a hangup) means nothing here
            if os.getppid() != master_pid:
                flags.orphaned = True
                flags.stop = True
                flags.pending = True
                self.pass_on(signal.SIGQUIT)

        self.wake_r, self.wake_w = nonblocking_pipe()
        signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
        signal.signal(signal.SIGQUIT, on_quit)
        signal.signal(signal.SIGUSR1, on_usr1)
        signal.signal(signal.SIGUSR2, on_usr2)
        signal.signal(signal.SIGCONT, on_cont)
        signal.signal(signal.SIGHUP, on_hup)
        for name in ("SIGWINCH", "SIGTTIN", "SIGTTOU"):
            signal.signal(getattr(signal, name), signal.SIG_IGN)
        if self.options.strategy == "forking":
            signal.signal(signal.SIGTERM, self._on_term)
            signal.signal(signal.SIGINT, self._on_term)
            arm_stack_dumps()  # for a crash of the worker itself (SIGSEGV...)
            # ABRT is for the perform's child, which arms the dump for itself; the worker
            # only passes it on. The child arms it by putting back faulthandler's ABRT
            # disposition, as it is here: one system call instead of rearm_stack_dumps's
            # ten (ABRT is still blocked, and no thread runs yet, so none can come between)
            restore = process.signal_disposition_call(signal.SIGABRT)
            if restore is not None:
                self.arm_child_dump = restore
            signal.signal(signal.SIGABRT, self._on_abort)
        else:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            signal.signal(signal.SIGABRT, rearm_after_abort)
            arm_stack_dumps()
        signal.pthread_sigmask(signal.SIG_SETMASK, self.spec.signal_mask)

    def _on_term(self, signo: int, frame: FrameType | None) -> None:
        """Forking strategy: TERM (or INT) reaches the perform's child, then us."""
        if self.child is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.child, signo)
        signal.signal(signo, signal.SIG_DFL)
        os.kill(os.getpid(), signo)

    def _on_abort(self, signo: int, frame: FrameType | None) -> None:
        """Forking strategy: the perform's child is what hung; it dumps its stack."""
        self.pass_on(signal.SIGABRT)

    def pass_on(self, signo: int) -> None:
        """Send ``signo`` on to the perform's child, if one runs (forking strategy)."""
        child = self.child
        if child is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signo)

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
            os.write(self.spec.notify_fd, b"!")

    # attending, between performs ---------------------------------------------------------

    def _attend(self) -> None:
        """Idle between performs: turn what the signals said into triggers."""
        self._take_notes()
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
