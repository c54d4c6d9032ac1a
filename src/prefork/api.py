"""The public ``Master``: it builds the parts, starts them, and reads snapshots.

``Master(job, workers=4, ...).run()`` blocks in the adapter's loop (signals, reaping,
timeouts) until the core says the pool has stopped, and returns the exit code. Without
the loop, Sisyphus-style, ``start_worker()``, ``stop_worker()`` and ``stop_all()`` drive
the same core one command at a time: no signal handler is installed and only the
master's own children are reaped, so the program that embeds the master keeps both.

The parts: the core (``Supervisor``), the POSIX loop, and ``_LiveSettings``, which holds
the settings the pool runs with now and what each group's workers are given. The loop is
handed plain callables (run a worker, read the config file, the hooks table, reopen the
logs), never the ``Master``; the ``Master`` reads the pool through the core's
``Snapshot``, never through the loop's records.

A master is used once: after ``run()`` returns or ``stop_all()`` has stopped the pool,
make a new one.
"""

from __future__ import annotations

import gc
import inspect
import logging
import os
import sys
import threading
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import prefork.hooks as hook_context
import prefork.logs as logs
from prefork.child.runtime import RuntimeOptions, run_worker
from prefork.core.errors import ConfigError
from prefork.core.events import StartWorker, StopAll, StopWorker
from prefork.core.settings import PoolConfig
from prefork.core.snapshot import Snapshot
from prefork.core.supervisor import Supervisor
from prefork.options import (
    BY_NAME,
    OPTIONS,
    Pool,
    Settings,
    build_settings,
    describe_default,
    reread,
    umask_of,
)
from prefork.posix import process
from prefork.posix.control import EndpointInUse, open_control, socket_path
from prefork.posix.health import open_health
from prefork.posix.loop import Handoff, PosixLoop
from prefork.posix.pidfile import PidFileInUse
from prefork.posix.service import Service
from prefork.posix.serving import Endpoints, Server

__all__ = ["Master", "Pool", "runtime_options"]


class Master:
    """A pool of pre-forked workers running ``job``.

    ``job`` is a ``prefork.Job`` subclass (instantiated here) or instance, any object
    with ``perform()``, a function (one that takes an argument gets the worker context),
    or ``"MODULE:ATTR"`` naming one; it may also come from ``config_file``. The options
    are keyword arguments with the names of the config file's keys and the command's
    flags; keyword arguments win over the file, at start and after every HUP. An unknown
    or bad one raises ``prefork.ConfigError`` naming it. docs/guide.md has the table.

    Several pools: ``pools={"mail": prefork.Pool(Mailer, workers=4), ...}`` (then no
    ``job``); the keyword arguments are the master's options and every pool's defaults,
    and a ``Pool``'s own options win over them. TTIN and TTOU act on the first pool.

    Options (default; ``group``: each pool has its own; ``restart``: HUP cannot change it):
    """

    def __init__(self, job: object = None, **options: Any) -> None:
        self._take(build_settings(job, **options))

    @classmethod
    def _from_settings(cls, settings: Settings) -> Master:
        """A master from settings built already (the command builds them from its flags,
        the environment and the config file)."""
        master = cls.__new__(cls)
        master._take(settings)
        return master

    def _take(self, settings: Settings) -> None:
        self.settings: Settings = settings
        self.logger = self.settings.logger
        # the hooks given in Python, then those of the ``hooks`` module under them
        self.hooks = hook_context.collect(settings.hook_functions, settings.hooks)
        _quiet_transitions()
        self._supervisor: Supervisor | None = None
        self._live: _LiveSettings | None = None
        self._loop: PosixLoop | None = None
        self._service: Service | None = None
        self._endpoints: Endpoints | None = None  # the control socket and health port
        self._mode: str | None = None  # "run" or "api", fixed by the first call
        self.exit_code: int | None = None

    @property
    def pids(self) -> list[int]:
        """The pids of the live workers (forked, not reaped yet)."""
        return [] if self._supervisor is None else self._snapshot().pids()

    # the run loop --------------------------------------------------------------------------

    def run(self) -> int:
        """Supervise the pool until it stops (QUIT, TERM, INT...); return the exit code.

        Must be called from the main thread, where Python delivers signals.
        """
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("Master.run() must be called from the main thread")
        settings = self.settings
        self._service = service = _service_of(settings, self.logger)
        log_file = _log_file(settings.log_file)  # before chdir
        control_path = socket_path(settings.control_socket, _absolute(settings.pidfile),
                                   settings.pool.name)  # before chdir too
        loop = None
        _install_logging(settings, self.logger)  # the service's own lines go there too
        try:
            service.start()  # chdir, umask, daemonize, the pid file: posix/service.py
            if log_file:
                try:
                    process.redirect_output(log_file)
                except OSError as error:
                    raise ConfigError("log_file", settings.log_file,
                                      f"cannot be opened ({error.strerror})") from None
            self._endpoints = _endpoints_of(settings, control_path, self.logger)  # in the daemon
            loop = self._loop_for("run")  # in the daemon: the workers watch its pid
            code = loop.run()
        except BaseException as error:
            service.failed(*_start_failure(error))  # a daemon's launcher prints this
            raise
        finally:
            if self._endpoints is not None:
                self._endpoints.close()  # the socket file goes
            service.stop()
            if loop is not None:
                loop.close()
        self.exit_code = code
        return code

    # the API without the loop --------------------------------------------------------------

    def start_worker(self) -> int:
        """Fork one more worker; return its pid once forked (setup may still be running)."""
        loop = self._loop_for("api")
        loop.turn(block=False)
        before = set(self.pids)
        loop.feed(StartWorker())
        started = [pid for pid in self.pids if pid not in before]
        if not started:
            raise RuntimeError("no worker was started (see the log: max_workers reached, "
                               "fork failed, or the pool is stopping)")
        return started[-1]

    def stop_worker(self) -> int | None:
        """Stop one worker gracefully and wait until it has exited; return its pid.

        ``None`` when there was no worker to stop.
        """
        loop = self._loop_for("api")
        loop.turn(block=False)
        already = set(self._snapshot().pids(stopping=True))
        loop.feed(StopWorker())
        stopping = [pid for pid in self._snapshot().pids(stopping=True) if pid not in already]
        if not stopping:
            return None
        loop.wait_until(lambda: not set(stopping).intersection(self.pids))
        return stopping[-1]

    def stop_all(self) -> int:
        """Stop every worker gracefully, wait until all have exited; return the exit code."""
        loop = self._loop_for("api")
        loop.feed(StopAll())
        loop.wait_until(lambda: False)
        loop.close()
        self.exit_code = self._snapshot().exit_code
        return self.exit_code

    # wiring --------------------------------------------------------------------------------

    def _snapshot(self) -> Snapshot:
        assert self._supervisor is not None
        return self._supervisor.snapshot()

    def _loop_for(self, mode: str) -> PosixLoop:
        if self.exit_code is not None:
            raise RuntimeError("this master has stopped; make a new one")
        if self._loop is None:
            self._mode = mode
            self._loop = self._build(mode)
            if mode == "api":
                self._loop.boot()
        elif mode == "run" and self._mode == "api":
            raise RuntimeError("run() cannot follow start_worker(): use one or the other")
        return self._loop

    def _build(self, mode: str) -> PosixLoop:
        """The parts, wired: the core, the live settings, and the loop that drives them."""
        settings = self.settings
        pool = settings.pool
        if mode == "api":  # the API starts with no worker: start_worker() adds them
            pool = replace(pool, groups=tuple(replace(group, workers=0) for group in pool.groups))
        if mode == "api":
            _install_logging(settings, self.logger)
        _announce(settings, self.logger)
        supervisor = Supervisor(pool)
        live = _LiveSettings(settings, self.logger, self.hooks)
        self._supervisor, self._live = supervisor, live
        service = self._service if mode == "run" else None
        return PosixLoop(
            supervisor,
            live.run_worker if service is None else service.worker_main(live.run_worker),
            self.logger,
            handle_signals=mode == "run",
            set_titles=mode == "run",
            reopen_logs=_log_reopener(_log_file(settings.log_file), self.logger),
            hooks=_with_job_hooks(
                hook_context.master_hooks(self.hooks, pool.name, supervisor.snapshot), live),
            read_config=live.read_config,
            service=service,
            endpoints=self._endpoints if mode == "run" else None,
        )


class _LiveSettings:
    """The settings the pool runs with now, and each group's ``RuntimeOptions``.

    The options are made in the master, before it forks (and again when a HUP loaded new
    settings), so a new worker finds them made: made in the worker, they would cost it the
    pages that making them writes, each one copied from the master.
    """

    def __init__(self, settings: Settings, logger: Any,
                 hooks: dict[str, Any] | None = None) -> None:
        self.logger = logger
        self.hooks = hooks or {}
        self.runtime: dict[str, RuntimeOptions] = {}
        self.job_exit_hooks: dict[str, tuple[Callable[..., Any], ...]] = {}
        self._take(settings)

    def _take(self, settings: Settings) -> None:
        self.settings = settings
        # (runtime_options as it stands in this module: tests wrap it)
        self.runtime = {group.name: replace(runtime_options(settings, group.name),
                                            after_fork=self.hooks.get("after_fork"),
                                            before_exit=self.hooks.get("before_exit"))
                        for group in settings.groups}
        self.job_exit_hooks = _job_exit_hooks(settings, self.job_exit_hooks)

    def run_worker(self, spec: Handoff) -> int:
        """The body of a freshly forked worker of ``spec.group``."""
        logs.set_worker(spec.group, spec.slot)  # its log lines say where they come from
        return run_worker(spec, self.runtime[spec.group])

    def run_job_exit_hooks(self, pid: int, status: int, group: str | None) -> None:
        """The ``on_worker_exit`` of the jobs of ``group`` (of every pool when the core
        does not say which), but not one the user gave as their own hook too."""
        own = getattr(self.settings, "on_worker_exit", None)
        pools = [group] if group in self.job_exit_hooks else list(self.job_exit_hooks)
        for name in pools:
            for hook in self.job_exit_hooks[name]:
                if hook == own:
                    continue
                try:
                    hook(pid, status)
                except Exception:
                    self.logger.exception("the on_worker_exit of pool %s's job raised", name)

    def read_config(self, path: str) -> PoolConfig:
        """Read the config file again (HUP); raises ``ConfigError`` when it is bad, and
        then nothing changes. Workers forked from now on run with what it says."""
        settings, notes = reread(self.settings, path)
        for note in notes:
            self.logger.warning(note)
        self._take(settings)
        return settings.pool


def _job_exit_hooks(settings: Settings, before: dict[str, tuple[Callable[..., Any], ...]]
                    ) -> dict[str, tuple[Callable[..., Any], ...]]:
    """Each pool's job's own ``on_worker_exit``, from its ``master_hooks()`` (RQ jobs
    have one), by pool. Asked for here, in the master, before the pool's workers are
    forked (an RQ job then leaves the recovery of dead workers to the master). After a
    HUP that changed a pool's job, the previous job's hook is kept too, for the workers
    still running it."""
    hooks: dict[str, tuple[Callable[..., Any], ...]] = {}
    for group in settings.groups:
        master_hooks = None if group.job.is_function else getattr(
            group.job.target, "master_hooks", None)
        hook = master_hooks().get("on_worker_exit") if callable(master_hooks) else None
        if hook is None:
            continue
        previous = [old for old in before.get(group.name, ()) if old != hook][:1]
        hooks[group.name] = (hook, *previous)
    return hooks


def _with_job_hooks(hooks: dict[str, Callable[..., Any]],
                    live: _LiveSettings) -> dict[str, Callable[..., Any]]:
    """The loop's hooks, with the pools' jobs' own ``on_worker_exit`` run after the
    user's (even when the user's raises: the loop logs that). The core's ``RunHook``
    args are ``(pid, status)``, then the worker's pool when the core gives it."""
    user = hooks.get("on_worker_exit")

    def on_worker_exit(pid: int, status: int, *rest: Any) -> None:
        group = rest[0] if rest and isinstance(rest[0], str) else None
        try:
            if user is not None:
                user(pid, status, *rest)
        finally:
            live.run_job_exit_hooks(pid, status, group)

    return {**hooks, "on_worker_exit": on_worker_exit}


def runtime_options(settings: Settings, group: str) -> RuntimeOptions:
    """What the workers of ``group`` run with: its job, strategy and group options, and
    the worker hooks given in Python (the master adds its ``hooks`` module's)."""
    own, core = settings.group(group), settings.pool.group(group)
    hooks = settings.hook_functions
    return RuntimeOptions(
        job=own.job,
        logger=settings.logger,
        strategy=own.strategy,
        recycle_after=core.max_performs,
        recycle_jitter=core.max_performs_jitter,
        max_memory=core.max_memory,
        stamp_performs=core.timeout is not None,
        name=settings.pool.name,
        log_file=_log_file(settings.log_file),
        after_fork=hooks.get("after_fork"),
        before_exit=hooks.get("before_exit"),
        graceful_timeout=core.graceful_timeout,
        soft_timeout=own.soft_timeout,
        graceful_term=settings.pool.graceful_term,
        restart_backoff=core.restart_backoff,
        restart_backoff_max=core.restart_backoff_max,
        measure_performs=settings.health_bind is not None,  # /metrics shows the durations
    )


def _install_logging(settings: Settings, logger: Any) -> None:
    """Make the log lines go somewhere (``prefork.logs.install``)."""
    explicit = settings.origins.get((None, "log_level"), "default") != "default"
    logs.install(logger, settings.pool.name, settings.log_level, settings.log_format,
                 explicit)


def _announce(settings: Settings, logger: Any) -> None:
    """Say who starts (the banner: in a daemon, once detached, with its own pid), and,
    with ``preload``, freeze what the master holds (see below)."""
    # (the package's __init__ imports this module: its version is read, not imported)
    version = getattr(sys.modules.get("prefork"), "__version__", "unknown")
    pools = [(group.name, _job_name(settings, group.name), group.strategy,
              settings.pool.group(group.name).workers) for group in settings.groups]
    for line, fields in logs.banner(version, settings.pool.name, pools,
                                    settings.config_file, settings.preload):
        logs.log(logger, "info", line, fields)
    if settings.preload:
        _freeze_preloaded(logger)


def _freeze_preloaded(logger: Any) -> None:
    """``preload``: the jobs' code was imported here, in the master, before any fork.
    Collect the garbage of the imports once, then move every object alive to the
    permanent generation (``gc.freeze``), for the master's whole life: no collection,
    the master's or a worker's, walks them again, so their pages (and their reference
    counts' neighbours) stay shared between the master and every worker. Without
    preload the loop freezes only around each fork, and the master's own collections
    still walk (and so copy, page by page) what the workers share."""
    collected = gc.collect()
    gc.freeze()
    logs.log(logger, "debug", f"preload: {collected} objects collected, "
                              f"{gc.get_freeze_count()} frozen for the master's life")


def _job_name(settings: Settings, group: str) -> str:
    given = settings.values.get((group, "job"))
    if isinstance(given, str):
        return given
    return settings.group(group).job.name


def _log_file(path: str | None) -> str | None:
    """The ``log_file`` option as a path from where the master was started (``chdir``
    changes nothing), or ``None`` for stderr (none given, or ``-``)."""
    return None if path in (None, "-") else _absolute(path)


def _log_reopener(log_file: str | None, logger: Any) -> Callable[[], None]:
    def reopen_logs() -> None:
        if log_file:
            process.redirect_output(log_file)
        process.reopen_log_handlers(logger)
        logger.info("reopened the log files (USR1)")

    return reopen_logs


def _service_of(settings: Settings, logger: Any) -> Service:
    """The master as a service (pid file, daemon, working directory, umask, the workers'
    user and group, systemd), from the settings; nothing is done until ``start``."""
    config_file = settings.config_file
    if settings.chdir and config_file and not os.path.isabs(config_file):
        raise ConfigError("config_file", config_file, "must be an absolute path when chdir "
                                                      "is set (HUP reads it again from there)")
    # (``settings.group(name)`` is a pool's settings: the option is read by its key)
    return Service(logger, pidfile=settings.pidfile, daemonize=settings.daemonize,
                   chdir=settings.chdir, umask=umask_of(settings.umask),
                   user=settings.user, group=settings.values[None, "group"])


def _endpoints_of(settings: Settings, path: str | None, logger: Any) -> Endpoints | None:
    """The control socket at ``path`` (``control_socket``: by default beside the pid
    file or in the runtime directory; ``None``: off) and the health port
    (``health_bind``), listening; ``None`` when both are off. Raises ``ConfigError`` or
    ``EndpointInUse``."""
    servers: list[Server] = []
    if path is not None:
        control = open_control(path, settings.control_socket is not None, logger)
        if control is not None:
            servers.append(control)
    if settings.health_bind is not None:
        try:
            servers.append(open_health(settings.health_bind, logger))
        except BaseException:
            for server in servers:
                server.release()
            raise
    return Endpoints(servers) if servers else None


def _start_failure(error: BaseException) -> tuple[int, str]:
    """The exit status and the line a daemon's launcher gives for ``error``: as the
    command would in the foreground (2 for a bad option, 1 otherwise)."""
    if isinstance(error, ConfigError):
        return 2, f"prefork: {error}"
    if isinstance(error, PidFileInUse | EndpointInUse):
        return 1, f"prefork: {error}"
    return 1, f"prefork: the master failed: {type(error).__name__}: {error}"


def _absolute(path: str | None) -> str | None:
    """``path`` from where the master was started, whatever ``chdir`` does later."""
    return None if path is None else os.path.abspath(path)


def _quiet_transitions() -> None:
    """The ``transitions`` library logs every callback at INFO; a pool's log wants one line
    per transition, which the core writes itself. Left alone if the user set a level.
    """
    chatty = logging.getLogger("transitions")
    if chatty.level == logging.NOTSET:
        chatty.setLevel(logging.WARNING)


# --- Master's signature and docstring, from the registry -------------------------------------

def _documented_options() -> str:
    lines = []
    for option in OPTIONS:
        if option.name == "job":
            continue
        marks = ", ".join(filter(None, (
            describe_default(option),
            "group" if option.scope == "group" else "",
            "" if option.reloadable else "restart",
        )))
        lines.append(f"    ``{option.name}`` ({marks}): {option.doc}")
    return "\n".join(lines) + "\n"


def _signature() -> inspect.Signature:
    keyword = inspect.Parameter.KEYWORD_ONLY
    return inspect.Signature([
        inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD),
        inspect.Parameter("job", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None),
        inspect.Parameter("pools", keyword, default=None),
        *(inspect.Parameter(name, keyword, default=option.default)
          for name, option in BY_NAME.items() if name != "job"),
    ])


Master.__doc__ = (Master.__doc__ or "") + "\n" + _documented_options()
Master.__init__.__signature__ = _signature()  # type: ignore[attr-defined]
