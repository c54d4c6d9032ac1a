"""The public ``Master``: the core and the POSIX adapter, wired together.

``Master(job, workers=4, ...).run()`` blocks in the adapter's loop (signals, reaping,
timeouts) until the core says the pool has stopped, and returns the exit code. Without
the loop, Sisyphus-style, ``start_worker()``, ``stop_worker()`` and ``stop_all()`` drive
the same core one command at a time: no signal handler is installed and only the
master's own children are reaped, so the program that embeds the master keeps both.

A master is used once: after ``run()`` returns or ``stop_all()`` has stopped the pool,
make a new one.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import replace
from typing import Any

from prefork.child.runtime import RuntimeOptions, run_worker
from prefork.core.errors import ConfigError
from prefork.core.events import (
    Event,
    Reload,
    Signal,
    StartWorker,
    StopAll,
    StopWorker,
)
from prefork.core.settings import PoolConfig
from prefork.core.signals import Sig
from prefork.core.supervisor import Supervisor
from prefork.options import DEFAULTS, Settings, build_settings, reload_pool
from prefork.posix import process
from prefork.posix.loop import Handoff, PosixLoop


class Master:
    """A pool of pre-forked workers running ``job``.

    ``job`` is a ``prefork.Job`` subclass (instantiated here) or instance, any object
    with ``perform()``, or a function (one that takes an argument gets the worker
    context). Options are described in docs/guide.md; a bad one raises
    ``prefork.ConfigError`` naming it.
    """

    def __init__(
        self,
        job: object,
        *,
        workers: int = 1,
        strategy: str = "simple",
        timeout: float | None = DEFAULTS["timeout"],
        setup_timeout: float | None = DEFAULTS["setup_timeout"],
        graceful_timeout: float = DEFAULTS["graceful_timeout"],
        kill_timeout: float = DEFAULTS["kill_timeout"],
        graceful_term: bool = DEFAULTS["graceful_term"],
        max_workers: int | None = DEFAULTS["max_workers"],
        max_performs: int | None = DEFAULTS["max_performs"],
        restart_backoff: float = DEFAULTS["restart_backoff"],
        restart_backoff_max: float = DEFAULTS["restart_backoff_max"],
        max_restarts: int | None = DEFAULTS["max_restarts"],
        restart_period: float = DEFAULTS["restart_period"],
        logger: Any = None,
        name: str = DEFAULTS["name"],
        pidfile: str | os.PathLike[str] | None = None,
        log_file: str | os.PathLike[str] | None = None,
        before_fork: Any = None,
        after_fork: Any = None,
        before_exit: Any = None,
        on_worker_exit: Any = None,
        when_ready: Any = None,
        config_file: str | None = None,
        job_ref: str | None = None,
    ) -> None:
        self.settings: Settings = build_settings(
            job,
            config_file=config_file,
            job_ref=job_ref,
            workers=workers,
            strategy=strategy,
            timeout=timeout,
            setup_timeout=setup_timeout,
            graceful_timeout=graceful_timeout,
            kill_timeout=kill_timeout,
            graceful_term=graceful_term,
            max_workers=max_workers,
            max_performs=max_performs,
            restart_backoff=restart_backoff,
            restart_backoff_max=restart_backoff_max,
            max_restarts=max_restarts,
            restart_period=restart_period,
            logger=logger,
            name=name,
            pidfile=pidfile,
            log_file=log_file,
            before_fork=before_fork,
            after_fork=after_fork,
            before_exit=before_exit,
            on_worker_exit=on_worker_exit,
            when_ready=when_ready,
        )
        self.logger = self.settings.logger
        _quiet_transitions()
        self._options: RuntimeOptions | None = None
        self._options_of: Settings | None = None  # the settings _options were made from
        self._loop: PosixLoop | None = None
        self._mode: str | None = None  # "run" or "api", fixed by the first call
        self.exit_code: int | None = None

    @property
    def pids(self) -> list[int]:
        """The pids of the live workers (forked, not reaped yet)."""
        return [] if self._loop is None else list(self._loop.workers)

    # the run loop --------------------------------------------------------------------------

    def run(self) -> int:
        """Supervise the pool until it stops (QUIT, TERM, INT...); return the exit code.

        Must be called from the main thread, where Python delivers signals.
        """
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("Master.run() must be called from the main thread")
        loop = self._loop_for("run")
        settings = self.settings
        if settings.log_file:
            try:
                process.redirect_output(settings.log_file)
            except OSError as error:
                raise ConfigError("log_file", settings.log_file,
                                  f"cannot be opened ({error.strerror})") from None
        if settings.pidfile:
            self._claim_pidfile(settings.pidfile)
        try:
            code = loop.run()
        finally:
            if settings.pidfile:
                process.remove_pidfile(settings.pidfile, os.getpid())
            loop.close()
        self.exit_code = code
        return code

    def _claim_pidfile(self, path: str) -> None:
        other = process.read_pidfile(path)
        if other is not None and other != os.getpid():
            raise ConfigError("pidfile", path, f"names pid {other}, which is still running")
        process.write_pidfile(path, os.getpid())

    def _when_ready(self) -> None:
        hook = self.settings.hooks.when_ready
        if hook is not None:
            hook(self)

    # the API without the loop --------------------------------------------------------------

    def start_worker(self) -> int:
        """Fork one more worker; return its pid once forked (setup may still be running)."""
        loop = self._loop_for("api")
        loop.turn(block=False)
        before = len(loop.forked)
        loop.feed(StartWorker())
        if len(loop.forked) == before:
            raise RuntimeError("no worker was started (see the log: max_workers reached, "
                               "fork failed, or the pool is stopping)")
        return loop.forked[-1]

    def stop_worker(self) -> int | None:
        """Stop one worker gracefully and wait until it has exited; return its pid.

        ``None`` when there was no worker to stop.
        """
        loop = self._loop_for("api")
        loop.turn(block=False)
        already = {w.pid for w in loop.supervisor.workers if w.stop_signal is not None}
        loop.feed(StopWorker())
        stopping = [
            w.pid for w in loop.supervisor.workers
            if w.stop_signal is not None and w.pid not in already
        ]
        if not stopping:
            return None
        loop.wait_until(lambda: not any(pid in loop.workers for pid in stopping))
        return stopping[-1]

    def stop_all(self) -> int:
        """Stop every worker gracefully, wait until all have exited; return the exit code."""
        loop = self._loop_for("api")
        loop.feed(StopAll())
        loop.wait_until(lambda: False)
        loop.close()
        self.exit_code = loop.exit_code if loop.exit_code is not None else 0
        return self.exit_code

    # wiring --------------------------------------------------------------------------------

    def _loop_for(self, mode: str) -> PosixLoop:
        if self.exit_code is not None:
            raise RuntimeError("this master has stopped; make a new one")
        if self._loop is None:
            self._mode = mode
            self._loop = self._make_loop(mode)
            if mode == "api":
                self._loop.boot()
        elif mode == "run" and self._mode == "api":
            raise RuntimeError("run() cannot follow start_worker(): use one or the other")
        return self._loop

    def _make_loop(self, mode: str) -> PosixLoop:
        settings = self.settings
        pool = settings.pool
        if mode == "api":  # the API starts with no worker: start_worker() adds them
            pool = replace(pool, groups=tuple(replace(group, workers=0) for group in pool.groups))
        self._worker_options()  # made here, before any fork, rather than in each worker
        return PosixLoop(
            Supervisor(pool),
            self._worker_main,
            self.logger,
            handle_signals=mode == "run",
            set_titles=mode == "run",
            scan_every=scan_interval(pool),
            on_reopen_logs=self._reopen_logs,
            before_fork=settings.hooks.before_fork,
            on_worker_exit=settings.hooks.on_worker_exit,
            on_ready=self._when_ready,
            translate_signal=self._translate_signal,
        )

    def _worker_main(self, spec: Handoff) -> int:
        return run_worker(spec, self._worker_options())

    def _worker_options(self) -> RuntimeOptions:
        """What the workers run with, made once per ``settings``.

        The master makes them before it forks (and again when a reload changed the
        settings), so a new worker finds them made: made in the worker, they would cost
        it the pages that making them writes, each one copied from the master.
        """
        settings = self.settings
        if self._options is None or self._options_of is not settings:
            self._options = RuntimeOptions(
                job=settings.job,
                logger=settings.logger,
                strategy=settings.strategy,
                max_performs=settings.pool.groups[0].max_performs,
                stamp_performs=settings.pool.groups[0].timeout is not None,
                name=settings.pool.name,
                log_file=settings.log_file,
                after_fork=settings.hooks.after_fork,
                before_exit=settings.hooks.before_exit,
            )
            self._options_of = settings
        return self._options

    def _reopen_logs(self) -> None:
        if self.settings.log_file:
            process.redirect_output(self.settings.log_file)
        process.reopen_log_handlers(self.logger)
        self.logger.info("reopened the log files (USR1)")

    def _translate_signal(self, event: Signal) -> Event:
        """HUP with a config file: read it again (a bad file keeps the old config)."""
        if event.signo is not Sig.HUP or self.settings.config_file is None:
            return event
        at = event.at
        try:
            settings, pool = reload_pool(self.settings)
        except ConfigError as error:
            self.logger.error(f"config file not reloaded, keeping the old config: {error}")
            return Signal(Sig.HUP, at=at)
        self.settings = settings
        self._worker_options()
        if self._loop is not None:
            self._loop.scan_every = scan_interval(pool)
        self.logger.info(f"config file {settings.config_file} reloaded")
        return Reload(pool, at=at)


def scan_interval(pool: PoolConfig) -> float | None:
    """How often the loop must read the scoreboard: the shortest perform ``timeout`` of
    any group (None: no group has one, so no scan is needed)."""
    timeouts = [group.timeout for group in pool.groups if group.timeout is not None]
    return min(timeouts, default=None)


def _quiet_transitions() -> None:
    """The ``transitions`` library logs every callback at INFO; a pool's log wants one line
    per transition, which the core writes itself. Left alone if the user set a level.
    """
    chatty = logging.getLogger("transitions")
    if chatty.level == logging.NOTSET:
        chatty.setLevel(logging.WARNING)
