"""The user's options, validated once into frozen data.

Two layers, two owners. ``prefork.core.settings.PoolConfig`` holds what the pure core
decides with (sizes, timeouts, bounds, restart policy) and validates it. This module
holds the rest (the job, the strategy, the logger, files, hooks), validates that, and
builds the ``PoolConfig``: so every bad value, wherever it comes from (keyword
arguments, ``--kebab-case`` flags, a TOML file), raises the same ``ConfigError`` naming
the option and the value, before any process is forked.

A config file is TOML with the same option names (``snake_case`` or ``kebab-case``) at
the top level, plus ``job = "module:attr"``::

    job = "myapp.jobs:Mailer"
    workers = 4
    timeout = 30
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from prefork.core.core_options import CORE_OPTIONS
from prefork.core.errors import ConfigError
from prefork.core.settings import PoolConfig
from prefork.job import JobSpec, job_spec

STRATEGIES = ("simple", "forking")
HOOKS = ("before_fork", "after_fork", "before_exit", "on_worker_exit", "when_ready")

# the core's options a user sets directly (``groups`` is built from ``workers``)
POOL_OPTIONS = tuple(o.name for o in CORE_OPTIONS if o.name != "workers")
ADAPTER_OPTIONS = ("strategy", "logger", "pidfile", "log_file", *HOOKS)
OPTIONS = ("workers", *POOL_OPTIONS, *ADAPTER_OPTIONS)
# options a config file cannot set (they are Python objects)
FILE_FORBIDDEN = ("logger", *HOOKS)

DEFAULTS = {option.name: option.default for option in CORE_OPTIONS}
LOGGER_NAME = "prefork"


class Hooks(NamedTuple):
    """User callbacks. In the master: ``before_fork(group, slot)``,
    ``on_worker_exit(pid, status)``, ``when_ready(master)``. In the worker:
    ``after_fork(worker)`` before ``setup()``, ``before_exit(worker)`` as it exits.
    An exception in a hook is logged (and, in ``after_fork``, fails the worker).

    Immutable: a ``NamedTuple``, whose class costs ~0.15 ms to make at import where a
    frozen dataclass's costs ~1 ms (Python 3.11), on every start of a master.
    """

    before_fork: Callable[[str, int], Any] | None = None
    after_fork: Callable[[Any], Any] | None = None
    before_exit: Callable[[Any], Any] | None = None
    on_worker_exit: Callable[[int, int], Any] | None = None
    when_ready: Callable[[Any], Any] | None = None


class _SettingsFields(NamedTuple):
    job: JobSpec
    pool: PoolConfig
    strategy: str
    logger: Any
    pidfile: str | None
    log_file: str | None
    hooks: Hooks
    config_file: str | None
    job_ref: str | None


_NO_HOOKS = Hooks()
_PREFORK_LOGGER: Any = object()  # stands for logging.getLogger(LOGGER_NAME), looked up late


class Settings(_SettingsFields):
    """Everything a ``Master`` runs with (immutable).

    A ``NamedTuple`` rather than a frozen dataclass (~0.15 ms to make at import, not
    ~1 ms), subclassed for one default: ``logger`` is the ``prefork`` logger looked up
    when the settings are made, never at import (a logger that exists before the
    program's ``logging.config`` call is disabled by it).
    """

    __slots__ = ()

    def __new__(
        cls, job: JobSpec, pool: PoolConfig, strategy: str = "simple",
        logger: Any = _PREFORK_LOGGER, pidfile: str | None = None,
        log_file: str | None = None, hooks: Hooks = _NO_HOOKS,
        config_file: str | None = None, job_ref: str | None = None,
    ) -> Settings:
        if logger is _PREFORK_LOGGER:
            logger = logging.getLogger(LOGGER_NAME)
        return super().__new__(cls, job, pool, strategy, logger, pidfile, log_file, hooks,
                               config_file, job_ref)


def build_settings(
    job: object, *, config_file: str | None = None, job_ref: str | None = None,
    **options: Any,
) -> Settings:
    """Validate ``job`` and ``options`` (names as in ``OPTIONS``) into ``Settings``."""
    for name in options:
        if name not in OPTIONS:
            raise ConfigError(name, options[name], "is not a prefork option")
    pool_options = {name: options[name] for name in POOL_OPTIONS if name in options}
    pool = PoolConfig.of(workers=options.get("workers", 1), **pool_options)
    strategy = options.get("strategy", "simple")
    if strategy not in STRATEGIES:
        raise ConfigError("strategy", strategy, f"must be one of {', '.join(STRATEGIES)}")
    hooks = {}
    for name in HOOKS:
        hook = options.get(name)
        if hook is not None and not callable(hook):
            raise ConfigError(name, hook, "must be callable")
        hooks[name] = hook
    return Settings(
        job=job_spec(job),
        pool=pool,
        strategy=strategy,
        logger=_check_logger(options.get("logger")),
        pidfile=_check_path("pidfile", options.get("pidfile")),
        log_file=_check_path("log_file", options.get("log_file")),
        hooks=Hooks(**hooks),
        config_file=config_file,
        job_ref=job_ref,
    )


def _check_logger(logger: object) -> Any:
    if logger is None:
        return logging.getLogger(LOGGER_NAME)
    if isinstance(logger, logging.Logger):
        return logger
    if all(callable(getattr(logger, level, None)) for level in ("info", "warning", "error")):
        return logger
    raise ConfigError("logger", logger, "must be a logging.Logger, or have info(), "
                                        "warning() and error() methods")


def _check_path(option: str, value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str | os.PathLike):
        raise ConfigError(option, value, "must be a file path")
    path = os.fspath(value)
    if not isinstance(path, str) or not path:
        raise ConfigError(option, value, "must be a file path")
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise ConfigError(option, value, f"its directory {directory} does not exist")
    return path


# --- jobs by name ---------------------------------------------------------------------------

def import_job(ref: str) -> object:
    """``"package.module:attr"`` (or ``path/to/file.py:attr``) -> the object it names.

    The current directory is importable, as with ``python -m``. Any failure raises
    ``ConfigError`` naming the job.
    """
    module_name, sep, attr = ref.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError("job", ref, "must be MODULE:ATTR, e.g. myapp.jobs:Mailer")
    if module_name.endswith(".py") or os.sep in module_name:
        path = os.path.abspath(module_name)
        sys.path.insert(0, os.path.dirname(path))
        module_name = os.path.splitext(os.path.basename(path))[0]
    elif "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ConfigError("job", ref, f"cannot import {module_name} ({error})") from None
    except Exception as error:
        raise ConfigError(
            "job", ref, f"importing {module_name} raised {type(error).__name__}: {error}"
        ) from None
    target: object = module
    for part in attr.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ConfigError("job", ref, f"{module_name} has no attribute {attr}") from None
    return target


# --- config files ---------------------------------------------------------------------------

def load_file(path: str) -> dict[str, Any]:
    """The options of a TOML config file, with ``snake_case`` names (and ``job``)."""
    # imported here, not at the top: tomllib (and datetime, which it imports) add 3 ms
    # to every start of a master, and only a config file needs them
    import tomllib

    try:
        with open(path, "rb") as file:
            data = tomllib.load(file)
    except OSError as error:
        raise ConfigError("config", path, f"cannot be read ({error.strerror})") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError("config", path, f"is not valid TOML ({error})") from None
    options: dict[str, Any] = {}
    for key, value in data.items():
        name = key.replace("-", "_")
        if name != "job" and name not in OPTIONS:
            raise ConfigError(name, value, f"is not a prefork option (in {path})")
        if name in FILE_FORBIDDEN:
            raise ConfigError(name, value, f"cannot be set in a config file (in {path})")
        options[name] = value
    return options


def reload_pool(settings: Settings) -> tuple[Settings, PoolConfig]:
    """Read ``settings.config_file`` again: the new settings and pool config.

    Raises ``ConfigError`` when the file no longer reads or validates; the caller keeps
    the old config then. The job is not re-imported: changing it needs a restart.
    """
    if settings.config_file is None:
        raise ConfigError("config", None, "there is no config file to reload")
    options = load_file(settings.config_file)
    options.pop("job", None)
    keep: Mapping[str, Any] = {
        "logger": settings.logger,
        **{name: getattr(settings.hooks, name) for name in HOOKS},
    }
    fresh = build_settings(
        settings.job.target, config_file=settings.config_file, job_ref=settings.job_ref,
        **keep, **options,
    )
    return fresh, fresh.pool
