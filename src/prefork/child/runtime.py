"""What runs inside a worker process: setup, the perform loop, teardown.

Theory of operation
-------------------

The master forks; the child arrives here with the master's signals blocked. It installs
its own handlers first and only then unblocks them, so a QUIT sent the instant the
worker was forked waits for the right handler. Then it makes sure it will notice its
master's death, runs ``setup()``, says so in its scoreboard slot and with one byte on
the notify pipe (the only time a worker wakes the master), and performs until told to
stop.

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
loop attends to them between performs.

Strategies
----------

``simple`` calls ``perform()`` in the worker. Per perform the loop does a few stores
into its scoreboard slot and no system call and no allocation beyond the perform's own
(the start time is stamped only when ``timeout`` is set, since nothing else reads it);
an exception is logged with its traceback and the worker exits 1, to be replaced.

``forking`` runs each perform in a child of the worker: a crash or an exception there
kills only that child and is logged with its exit status. The worker just blocks in
``waitpid``; its signal handlers pass TERM, QUIT and ABRT on to the child (so a TERM
stops the perform, a QUIT turns the child's ``stopping`` True, and a timeout's ABRT
dumps the stack of the code that actually hung). As with ``simple``, the start is
stamped only when ``timeout`` is set. What a perform costs here is mostly pages copied,
not instructions: see ``_forking_loop``.
"""

from __future__ import annotations

import contextlib
import faulthandler
import gc
import itertools
import os
import select
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Any

from prefork.job import BoundJob, Flags, JobSpec, WorkerContext
from prefork.posix import process
from prefork.posix.children import exit_status
from prefork.posix.loop import Handoff
from prefork.posix.scoreboard import IDLE, PERFORMING
from prefork.posix.signal_pipe import drain, nonblocking_pipe

EXIT_OK = 0
EXIT_FAILED = 1


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


def arm_stack_dumps() -> None:
    """Make ABRT (and SIGSEGV, SIGBUS...) dump every thread's Python stack to fd 2.

    ``faulthandler.register`` refuses SIGABRT, so this uses ``faulthandler.enable``,
    whose handler dumps the stacks from C (so even a worker stuck in C code shows where)
    and then re-raises the signal with the handler that was there before. When that is
    a Python handler (``signal.signal(SIGABRT, ...)`` must come first), the re-raise
    only flags it, and the process goes on: a timed-out worker dumps its stack and keeps
    running until the KILL that follows. The dump opens with faulthandler's own words,
    "Fatal Python error: Aborted", though nothing fatal happened. A genuine ``abort()``
    still kills the process (libc re-raises with the default action).
    """
    faulthandler.enable(file=2, all_threads=True)


def rearm_stack_dumps() -> None:
    """faulthandler disarms a signal after one dump: arm it again for the next ABRT."""
    faulthandler.disable()
    faulthandler.enable(file=2, all_threads=True)


def _rearm_after_abort(signo: int, frame: FrameType | None) -> None:
    """The Python-level ABRT handler: the stack is dumped already; be ready for more."""
    rearm_stack_dumps()


def log_exception(logger: Any, message: str) -> None:
    """Log ``message`` with the current traceback, on any logger-like object."""
    if hasattr(logger, "exception"):
        logger.exception(message)
    else:
        logger.error(f"{message}\n{traceback.format_exc()}")


class Runtime:
    """One worker process from fork to exit."""

    def __init__(self, spec: Handoff, options: RuntimeOptions) -> None:
        self.spec = spec
        self.options = options
        self.logger = options.logger
        self.flags = Flags()
        self.slot = spec.board_slot
        self.pid = os.getpid()
        self.label = f"worker group={spec.group} slot={spec.slot} pid={self.pid}"
        self.child: int | None = None  # the perform's process (forking strategy)
        self.context = WorkerContext(
            spec.slot, spec.group, self.pid, self.flags, self.slot.heartbeat
        )
        self.wake_r = self.wake_w = -1
        # what a perform's child calls to arm the ABRT dump (_install_handlers finds better)
        self._arm_child_dump: Callable[[], object] = rearm_stack_dumps
        self._lifeline: int | None = spec.lifeline_fd
        self._orphan_logged = False

    # the life of a worker ----------------------------------------------------------------

    def run(self) -> int:
        self._install_handlers()
        self._watch_master()
        process.set_title(f"{self.options.name} worker {self.spec.group}.{self.spec.slot}")
        job = self.options.job.bind(self.context)
        code = EXIT_FAILED
        try:
            code = self._live(job)
        finally:
            hook = self.options.before_exit
            if hook is not None:
                try:
                    hook(self.context)
                except Exception:
                    log_exception(self.logger, f"{self.label}: hook before_exit raised")
        return code

    def _live(self, job: BoundJob) -> int:
        hook = self.options.after_fork
        if hook is not None:
            try:
                hook(self.context)
            except Exception:
                log_exception(self.logger, f"{self.label}: hook after_fork raised")
                return EXIT_FAILED
        try:
            job.setup()
        except Exception:
            log_exception(self.logger, f"{self.label} setup failed")
            return EXIT_FAILED
        self.slot.state[0] = IDLE
        self._notify_master()
        try:
            if self.options.strategy == "forking":
                self._forking_loop(job.perform)
            else:
                self._simple_loop(job.perform)
        except Exception:
            log_exception(self.logger, f"{self.label} perform failed")
            return EXIT_FAILED
        self.slot.state[0] = IDLE
        try:
            job.teardown()
        except Exception:
            log_exception(self.logger, f"{self.label} teardown failed")
            return EXIT_FAILED
        return EXIT_OK

    # signals -----------------------------------------------------------------------------

    def _install_handlers(self) -> None:
        """Own handlers first, then unblock what the master blocked around the fork."""
        flags = self.flags

        def on_quit(signo: int, frame: FrameType | None) -> None:
            flags.stop = True
            flags.pending = True
            self._pass_on(signal.SIGQUIT)  # so the perform's own ``stopping`` turns True

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
                self._pass_on(signal.SIGQUIT)

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
                self._arm_child_dump = restore
            signal.signal(signal.SIGABRT, self._on_abort)
        else:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            signal.signal(signal.SIGABRT, _rearm_after_abort)
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
        self._pass_on(signal.SIGABRT)

    def _pass_on(self, signo: int) -> None:
        """Send ``signo`` on to the perform's child, if one runs (forking strategy)."""
        child = self.child
        if child is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signo)

    def _watch_master(self) -> None:
        """Notice the master's death: parent-death signal, getppid, the lifeline's EOF."""
        watched = process.set_parent_death_signal(signal.SIGHUP)
        if os.getppid() != self.spec.master_pid:
            self._master_gone()
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

    def _master_gone(self) -> None:
        if not self._orphan_logged:
            self._orphan_logged = True
            self.logger.warning(f"{self.label}: master pid={self.spec.master_pid} is gone; "
                                "stopping")
        self.flags.stop = True
        self.flags.pending = True

    def _notify_master(self) -> None:
        with contextlib.suppress(BlockingIOError, BrokenPipeError):
            os.write(self.spec.notify_fd, b"!")

    # waiting and attending ---------------------------------------------------------------

    def _wait(self) -> set[int]:
        """Sleep until a signal arrives or the master dies (held by USR2)."""
        poller = select.poll()
        poller.register(self.wake_r, select.POLLIN)
        if self._lifeline is not None:
            poller.register(self._lifeline, select.POLLIN)
        ready = {fd for fd, _ in poller.poll()}
        if self.wake_r in ready:
            drain(self.wake_r)
        if self._lifeline is not None and self._lifeline in ready:
            try:
                if os.read(self._lifeline, 1) == b"":
                    self._lifeline = None  # at EOF for good: stop polling it
                    self._master_gone()
            except BlockingIOError:
                pass
        return ready

    def _attend(self) -> bool:
        """Between performs, act on what the signals said; True means "stop now"."""
        flags = self.flags
        flags.pending = False
        if self.wake_r >= 0:
            drain(self.wake_r)  # the bytes of the signals that set the flags
        if flags.orphaned:
            flags.orphaned = False
            self._master_gone()
        if flags.reopen:
            flags.reopen = False
            self._reopen_logs()
        if flags.hold and not flags.stop:
            self.slot.state[0] = IDLE
            self.logger.info(f"{self.label} holding (USR2); CONT resumes")
            while flags.hold and not flags.stop:
                self._wait()
                flags.pending = False
                if flags.reopen:
                    flags.reopen = False
                    self._reopen_logs()
            if not flags.stop:
                self.logger.info(f"{self.label} resuming (CONT)")
        return flags.stop

    def _reopen_logs(self) -> None:
        if self.options.log_file:
            process.redirect_output(self.options.log_file)
        process.reopen_log_handlers(self.logger)

    # the simple strategy -----------------------------------------------------------------

    def _simple_loop(self, perform: Callable[[], object]) -> None:
        """Perform until told to stop or ``max_performs`` are done.

        The inner loops are the hot path: a ``for`` over a C iterator, a few stores into
        the slot, one attribute read. Everything else is bound to locals beforehand.
        """
        flags = self.flags
        state = self.slot.state
        count = self.slot.performs
        heartbeat = self.slot.heartbeat
        clock = time.monotonic
        limit = self.options.max_performs
        stamp = self.options.stamp_performs
        done = 0
        while True:
            if flags.pending and self._attend():
                return
            if limit is not None and done >= limit:
                return
            budget = itertools.repeat(None) if limit is None else itertools.repeat(
                None, limit - done)
            state[0] = PERFORMING
            if stamp:
                for _ in budget:
                    heartbeat[0] = clock()
                    perform()
                    done += 1
                    count[0] = done
                    if flags.pending:
                        break
            else:
                for _ in budget:
                    perform()
                    done += 1
                    count[0] = done
                    if flags.pending:
                        break
            state[0] = IDLE

    # the forking strategy ----------------------------------------------------------------

    def _forking_loop(self, perform: Callable[[], object]) -> None:
        """Fork per perform, let the child perform, wait for it; until stopped or done.

        The worker blocks in ``waitpid`` and nothing else: signals interrupt it, their
        handlers pass QUIT, ABRT and TERM on to the child (``self.child``), and the wait
        goes on (PEP 475). The master's death arrives as the parent-death signal, or
        from the lifeline thread where there is none.

        What a perform costs beyond a bare fork/_exit/waitpid is mostly pages: each fork
        write-protects every private page of the worker again, and the first write to
        one, by the worker or by the child, copies it (a Python object is written as
        soon as it is used: its reference count); and the child maps afresh the code of
        every library it enters. So everything either side needs is bound to locals
        beforehand; the worker touches the same few objects each time (a ``range``
        counts, as in the bare loop), decodes the exit status only when it is not 0,
        and stamps the start only when ``timeout`` is set (nothing else reads it), as in
        the simple loop. The collector is frozen once for the whole loop, not around
        each fork: the children's collections never walk (and so never write to) what
        the worker held when the loop began, and the worker pays nothing per perform.

        The child's code is written out in the loop, not in a function: a call there
        costs more pages than the rest (the function, its cells, its code object, its
        call site), and so would calls to Python helpers around C functions; the child
        makes no object on the way that succeeds (plain ``try``). The worker's handlers
        are inherited and do the right thing in the child: TERM re-raises with the
        default action (there is no grandchild to pass it to), QUIT sets ``stopping``; a
        signal's byte in the worker's self-pipe only wakes the worker for nothing. Per
        perform the child:

        - asks for KILL at the worker's death (a KILLed worker must not leave its
          perform running), then checks that the worker did not die before it asked;
        - arms the stack dump for ABRT: the worker's ABRT disposition is a Python
          handler that passes it on, and the child inherits that, not faulthandler's.
          It puts back faulthandler's, as ``_install_handlers`` saw it (faulthandler's
          own state, armed, comes with the fork); where that could not be saved, or the
          job turned faulthandler off, it calls ``rearm_stack_dumps`` (``disable`` puts
          back the dispositions from before ``arm_stack_dumps``, ``enable`` installs
          faulthandler's over them). Either way, an ABRT then dumps the child's stack
          and ends it with SIGABRT (faulthandler re-raises it with the disposition from
          before it was armed), which the worker logs; the next child arms its own;
        - performs;
        - flushes Python's buffers of stdout and stderr, which ``os._exit`` would drop,
          as ``process.flush_std_streams`` does (written out, for the reasons above).
        """
        flags = self.flags
        state = self.slot.state
        count = self.slot.performs
        heartbeat = self.slot.heartbeat
        clock = time.monotonic
        fork = os.fork
        wait = os.waitpid
        limit = self.options.max_performs
        stamp = self.options.stamp_performs
        numbers = itertools.count(1) if limit is None else range(1, limit + 1)
        # for the child
        ask_for_kill = process.parent_death_signal_call(signal.SIGKILL)
        getppid = os.getppid
        worker_pid = self.pid
        arm_dump = self._arm_child_dump if faulthandler.is_enabled() else rearm_stack_dumps
        exit_now = os._exit
        ok, failed = EXIT_OK, EXIT_FAILED
        gc.freeze()
        try:
            for done in numbers:
                if flags.pending and self._attend():
                    return
                state[0] = PERFORMING
                if stamp:
                    heartbeat[0] = clock()
                pid = fork()
                if pid == 0:  # the perform's own process, to os._exit -------------------
                    code = failed
                    try:
                        ask_for_kill()
                        if getppid() != worker_pid:  # it died before we asked
                            exit_now(failed)
                        arm_dump()
                        perform()
                        code = ok
                    except BaseException:
                        self._perform_raised()
                    finally:
                        try:  # noqa: SIM105
                            sys.stdout.flush()
                        except Exception:  # closed, None or broken: nothing to save
                            pass
                        try:  # noqa: SIM105
                            sys.stderr.flush()
                        except Exception:
                            pass
                        exit_now(code)
                self.child = pid
                try:
                    if flags.stop:  # QUIT came between fork() and the line above
                        self._pass_on(signal.SIGQUIT)
                    _, status = wait(pid, 0)
                finally:
                    self.child = None
                count[0] = done
                state[0] = IDLE
                if status:
                    self._perform_failed(pid, exit_status(status))
        finally:
            gc.unfreeze()

    def _perform_raised(self) -> None:
        """In the perform's process: log the exception (the exit status says failed)."""
        with contextlib.suppress(Exception):
            log_exception(self.logger, f"{self.label}: perform in pid={os.getpid()} raised")

    def _perform_failed(self, pid: int, status: int) -> None:
        """In the worker: a perform's process ended badly (exit status, or -signal)."""
        how = f"killed by signal {-status}" if status < 0 else f"exit status {status}"
        self.logger.error(f"{self.label}: perform in pid={pid} failed ({how})")
