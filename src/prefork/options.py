"""The one option registry: each option declared once, and everything made from it.

An option is one ``Option`` (name, kind, default, one-line doc, scope, whether HUP can
change it, an optional short flag). The core's options are declared in
``prefork.core.core_options``; the options only the adapter reads (the job, the strategy,
files, the logger, the hooks) are declared here, with the same class, and the two make
``OPTIONS``, the registry. From it come:

- the keyword arguments of ``prefork.Master`` (unknown names are refused by name);
- the keys of a config file (``snake_case`` or ``kebab-case``), except the options only
  Python can give (a function, a logger), which a file is refused for;
- the ``--kebab-case`` flags of ``prefork run`` (types and metavars from the kinds);
- every validation error: ``ConfigError`` naming the option, the value, and the file;
- the options table of the docs (``scripts/gen_options.py``).

Where a value comes from, lowest first: the default, the config file, then the keyword
arguments or flags (``given``). A HUP reads the file again and applies the same order, so
what was given at start still wins; an option HUP cannot change keeps its running value,
and the change is reported as needing a restart.

A config file is TOML with option names at the top level::

    job = "myapp.jobs:Mailer"
    workers = 4
    timeout = 30
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from collections import namedtuple
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from prefork.core.core_options import (
    CORE_OPTION_NAMES,
    CORE_OPTIONS,
    GROUP,
    MASTER,
    MASTER_OPTIONS,
    Kind,
    Option,
    Seconds,
)
from prefork.core.errors import ConfigError
from prefork.core.settings import DEFAULT_GROUP, PoolConfig
from prefork.job import JobSpec, job_spec

STRATEGIES = ("simple", "forking")
LOGGER_NAME = "prefork"


# --- the kinds the adapter's options add to the core's ----------------------------------------

@dataclass(frozen=True)
class Choice(Kind):
    """One of a few words."""

    choices: tuple[str, ...] = ()

    @property
    def metavar(self) -> str:  # type: ignore[override]
        return "|".join(self.choices)

    def why_not(self, value: object) -> str | None:
        return None if value in self.choices else f"must be one of {', '.join(self.choices)}"

    def describe(self) -> str:
        return " or ".join(f"`{choice}`" for choice in self.choices)


@dataclass(frozen=True)
class LocalPath(Kind):
    """A file's path (``str`` or ``os.PathLike``, kept as ``str``), or ``None``.

    ``written``: prefork writes the file (a pid file, a log file), so its directory must
    exist already; a file prefork only reads says what is wrong when it is read.
    """

    written: bool = True
    optional = True
    metavar = "PATH"

    def why_not(self, value: object) -> str | None:
        if value is None:
            return None
        path = os.fspath(value) if isinstance(value, str | os.PathLike) else None
        if not isinstance(path, str) or not path:
            return "must be a file path"
        directory = os.path.dirname(os.path.abspath(path))
        if self.written and not os.path.isdir(directory):
            return f"its directory {directory} does not exist"
        return None

    def describe(self) -> str:
        return "file path, or none"


class PythonOnly(Kind):
    """A value only Python can give (a function, a logger): no flag, no file key."""

    optional = True
    metavar = "-"

    def parse(self, text: str) -> Any:
        raise ValueError("can only be given in Python")


@dataclass(frozen=True)
class Callback(PythonOnly):
    """A function (a hook), or ``None``."""

    def why_not(self, value: object) -> str | None:
        return None if value is None or callable(value) else "must be callable"

    def describe(self) -> str:
        return "function (Python only)"


@dataclass(frozen=True)
class LoggerLike(PythonOnly):
    """A ``logging.Logger``, or anything with ``info``, ``warning`` and ``error``."""

    def why_not(self, value: object) -> str | None:
        if value is None or isinstance(value, logging.Logger):
            return None
        if all(callable(getattr(value, level, None)) for level in ("info", "warning", "error")):
            return None
        return "must be a logging.Logger, or have info(), warning() and error() methods"

    def describe(self) -> str:
        return "logger (Python only)"


@dataclass(frozen=True)
class JobRef(Kind):
    """``MODULE:ATTR`` naming a job, or (in Python) the job itself; checked when built."""

    metavar = "MODULE:ATTR"

    def describe(self) -> str:
        return "MODULE:ATTR (in Python also a Job class, instance or function)"


# --- the adapter's options ----------------------------------------------------------------------

def _hook(name: str, doc: str) -> Option:
    return Option(name, Callback(), None, doc, scope=MASTER, reloadable=False)


ADAPTER_OPTIONS: tuple[Option, ...] = (
    Option("job", JobRef(), None,
           "what the workers run; in the command, the MODULE:ATTR argument",
           reloadable=False),
    Option("strategy", Choice(STRATEGIES), "simple",
           "simple: perform() runs in the worker; forking: each perform runs in a fresh "
           "child of the worker"),
    Option("soft_timeout", Seconds(positive=True, optional=True), None,
           "raise prefork.PerformTimeout inside a perform that runs this long; the hard "
           "timeout still kills"),
    Option("pidfile", LocalPath(), None,
           "write the master's pid here (refused if it names a running process)",
           scope=MASTER, reloadable=False, short="-p"),
    Option("log_file", LocalPath(), None,
           "log here instead of stderr; USR1 reopens it (for logrotate)",
           scope=MASTER, reloadable=False),
    Option("logger", LoggerLike(), None,
           "where the log lines go (none: the `prefork` logger)",
           scope=MASTER, reloadable=False),
    _hook("before_fork", "`before_fork(group, slot)`, in the master before each fork"),
    _hook("on_worker_exit", "`on_worker_exit(pid, status)`, in the master after a worker "
                            "is reaped"),
    _hook("when_ready", "`when_ready(snapshot)`, in the master once the first workers are "
                        "forked; `snapshot.pids()` are their pids"),
    _hook("after_fork", "`after_fork(worker)`, in each worker before `setup()`; raising "
                        "fails the worker"),
    _hook("before_exit", "`before_exit(worker)`, in each worker as it exits"),
)

# An option the core comes to decide with moves to core_options (as ``config_file`` did:
# the core asks for the file on HUP); a declaration there wins over one here.
OPTIONS: tuple[Option, ...] = CORE_OPTIONS + tuple(
    option for option in ADAPTER_OPTIONS if option.name not in CORE_OPTION_NAMES
)
BY_NAME: Mapping[str, Option] = {option.name: option for option in OPTIONS}
HOOKS: tuple[str, ...] = tuple(o.name for o in OPTIONS if isinstance(o.kind, Callback))
MASTER_HOOKS = ("before_fork", "on_worker_exit", "when_ready")
# options that mean nothing in a config file, besides the Python-only ones
_NOT_IN_FILES = frozenset({"config_file"})

_OWN = tuple(option for option in OPTIONS if option.name not in CORE_OPTION_NAMES)
_OWN_MASTER = tuple(option for option in _OWN if option.scope == MASTER)
_OWN_GROUP = tuple(option for option in _OWN if option.scope == GROUP)
_CORE_MASTER_NAMES = frozenset(option.name for option in MASTER_OPTIONS)


def in_files(option: Option) -> bool:
    """Whether a config file may set ``option``."""
    return not isinstance(option.kind, PythonOnly) and option.name not in _NOT_IN_FILES


def from_text(option: Option) -> bool:
    """Whether ``option`` has a text form (a flag, a file key)."""
    return not isinstance(option.kind, PythonOnly)


# --- settings: what a master runs with ---------------------------------------------------------

GroupSettings = namedtuple(  # type: ignore[misc]
    "GroupSettings", ["name", *(option.name for option in _OWN_GROUP)],
)
GroupSettings.__doc__ = (
    "What the adapter runs a group with beside the core's GroupConfig: its job (a "
    "validated JobSpec) and strategy. Immutable."
)

_SettingsFields = namedtuple(  # type: ignore[misc]
    "_SettingsFields",
    ["pool", "groups", *(option.name for option in _OWN_MASTER), "given", "raw"],
)


class Settings(_SettingsFields):
    """Everything a ``Master`` runs with (immutable).

    ``pool`` is the core's ``PoolConfig`` (its master options, one ``GroupConfig`` per
    group); ``groups`` holds each group's ``GroupSettings``; the adapter's master options
    are attributes (the core's are too, read from ``pool``). ``given`` is what the keyword
    arguments or flags gave and ``raw`` every option's value before it was built (for
    options HUP cannot change, the value in force): a HUP rebuilds from them.

    Named tuples, not frozen dataclasses: their classes cost ~0.1 ms to make at import
    where a frozen dataclass's costs ~1 ms, on every start of a master.
    """

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        if name in _CORE_MASTER_NAMES:
            return getattr(self.pool, name)
        raise AttributeError(name)

    def group(self, name: str) -> GroupSettings:
        """The settings of group ``name`` (``KeyError`` for a group there is not)."""
        for group in self.groups:
            if group.name == name:
                return group
        raise KeyError(name)

    @property
    def hooks(self) -> dict[str, Callable[..., Any]]:
        """The hooks that are set, by name."""
        return {name: getattr(self, name) for name in HOOKS if getattr(self, name) is not None}


def build_settings(job: object = None, **given: Any) -> Settings:
    """Validate ``job`` and the options ``given`` (keyword arguments or flags) into
    ``Settings``; with ``config_file`` given, its options come in under them.

    ``groups`` maps group names to worker counts or to mappings of group options
    (``{"mail": {"workers": 2, "strategy": "forking"}}``), as ``PoolConfig.of`` takes
    them. Every bad name or value raises ``ConfigError`` naming it.
    """
    for name, value in given.items():
        if name not in BY_NAME and name != "groups":
            raise ConfigError(name, value, "is not a prefork option")
        if isinstance(value, os.PathLike):
            given[name] = os.fspath(value)
    if job is not None:
        given["job"] = job
    path = given.get("config_file")
    raw = {**(load_file(path) if isinstance(path, str) else {}), **given}
    return _settings_of(raw, given)


def reread(running: Settings, path: str) -> tuple[Settings, list[str]]:
    """Read the config file at ``path`` again (HUP): the new settings, and one line for
    each option the file changed that needs a restart (it keeps its running value).

    Raises ``ConfigError`` when the file no longer reads or validates: the running
    settings stay as they are.
    """
    raw = {**load_file(path), **running.given}
    notes = []
    for option in OPTIONS:
        name = option.name
        if option.reloadable or raw.get(name) == running.raw.get(name):
            continue
        notes.append(f"{name} changed in {path}: it needs a restart, so "
                     f"{running.raw.get(name)!r} stays in force")
        if name in running.raw:
            raw[name] = running.raw[name]
        else:
            del raw[name]
    return _settings_of(raw, running.given, running), notes


def _settings_of(raw: dict[str, Any], given: Mapping[str, Any],
                 running: Settings | None = None) -> Settings:
    groups = raw.get("groups")
    core = {name: value for name, value in raw.items() if name in CORE_OPTION_NAMES}
    if groups is not None:
        core["groups"] = _core_groups(groups)
    pool = PoolConfig.of(**core)
    shared = {option.name: raw.get(option.name, option.default) for option in _OWN_GROUP}
    built = tuple(
        _group_settings(name, {**shared, **_own_of(groups, name)}, running)
        for name in pool.group_names
    )
    master = {option.name: _master_value(option, raw, running) for option in _OWN_MASTER}
    if "logger" in master and master["logger"] is None:
        master["logger"] = logging.getLogger(LOGGER_NAME)
    return Settings(pool=pool, groups=built, given=dict(given), raw=raw, **master)


def _core_groups(groups: object) -> object:
    """``groups`` without the adapter's group options, for ``PoolConfig.of``."""
    if not isinstance(groups, Mapping):
        return groups  # PoolConfig.of says what is wrong with it
    own = {option.name for option in _OWN_GROUP}
    return {
        name: {key: value for key, value in spec.items() if key not in own}
        if isinstance(spec, Mapping) else spec
        for name, spec in groups.items()
    }


def _own_of(groups: object, name: str) -> dict[str, Any]:
    spec = groups.get(name) if isinstance(groups, Mapping) else None
    own = {option.name for option in _OWN_GROUP}
    return {key: value for key, value in spec.items() if key in own} \
        if isinstance(spec, Mapping) else {}


def _label(group: str, option: str) -> str:
    return option if group == DEFAULT_GROUP else f"groups.{group}.{option}"


def _group_settings(name: str, values: Mapping[str, Any],
                    running: Settings | None) -> GroupSettings:
    kept = None
    if running is not None and name in {group.name for group in running.groups}:
        kept = running.group(name)
    built = {}
    for option in _OWN_GROUP:
        if kept is not None and not option.reloadable:
            built[option.name] = getattr(kept, option.name)
        elif option.name == "job":
            built["job"] = _job_of(values["job"], _label(name, "job"))
        else:
            built[option.name] = _checked(option, values[option.name], _label(name, option.name))
    return GroupSettings(name=name, **built)


def _master_value(option: Option, raw: Mapping[str, Any], running: Settings | None) -> Any:
    if running is not None and not option.reloadable:
        return getattr(running, option.name)
    return _checked(option, raw.get(option.name, option.default), option.name)


def _checked(option: Option, value: object, label: str) -> Any:
    option.check(value, label)
    return value


def _job_of(job: object, label: str) -> JobSpec:
    if job is None:
        raise ConfigError(label, None, "is missing: give the job as MODULE:ATTR "
                                       "(or job = ... in the config file)")
    try:
        return job_spec(import_job(job) if isinstance(job, str) else job)
    except ConfigError as error:
        if label == error.option:
            raise
        why = str(error)[len(f"{error.option}={error.value!r}: "):]
        raise ConfigError(label, error.value, why) from None


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
    """The options of a TOML config file, by ``snake_case`` name, each value checked.

    An unknown key, an option a file cannot set, or a bad value raises ``ConfigError``
    naming the option, the value and the file.
    """
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
        option = BY_NAME.get(name)
        if option is None:
            raise ConfigError(name, value, f"is not a prefork option (in {path})")
        if not in_files(option):
            raise ConfigError(name, value, f"cannot be set in a config file (in {path})")
        why = option.kind.why_not(value)
        if why is not None:
            raise ConfigError(name, value, f"{why} (in {path})")
        options[name] = value
    return options


# --- the registry in words ------------------------------------------------------------------

def describe_default(option: Option) -> str:
    """An option's default as the docs write it."""
    value = option.default
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    return f"{value:g}" if isinstance(value, float) else str(value)
