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

Where a value comes from, highest first: the flags (or keyword arguments), the
environment (``PREFORK_CMD_ARGS``, then one ``PREFORK_NAME`` variable per option: the
command reads them), the config file, the defaults. Each source is a ``Layer``; within a
layer, a pool's own value wins over the value given for every pool. A HUP reads the file
again and applies the same order, so what was given at start still wins; an option HUP
cannot change keeps its running value, and the change is reported as needing a restart.

A config file is TOML: master options, and group options for every pool, at the top
level; one ``[pool.NAME]`` table per pool (names are free text: ``[pool."high,default"]``)
with its job, its count and its own group options::

    graceful_timeout = 30

    [pool.mail]
    job = "myapp.jobs:Mailer"
    workers = 4

    [pool."high,default"]
    job = "myapp.jobs:Queue('high', 'default')"
    workers = 2
    timeout = 30

Without ``[pool.NAME]`` tables the file describes one pool (``default``) at the top level.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import sys
from collections import namedtuple
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, NamedTuple

from prefork.core.core_options import (
    CORE_OPTION_NAMES,
    CORE_OPTIONS,
    GROUP,
    MASTER,
    MASTER_OPTIONS,
    Flag,
    Kind,
    Option,
    Seconds,
)
from prefork.core.errors import ConfigError
from prefork.core.settings import DEFAULT_GROUP, PoolConfig
from prefork.job import JobSpec, job_spec
from prefork.logs import LOG_FORMATS, LOG_LEVELS

STRATEGIES = ("simple", "forking")
LOGGER_NAME = "prefork"
# max_memory measures workers with psutil (the memory extra); without it the option is refused
_HAVE_PSUTIL = importlib.util.find_spec("psutil") is not None


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


@dataclass(frozen=True)
class Directory(Kind):
    """A directory's path, or ``None``; whether it can be entered is found at start."""

    optional = True
    metavar = "DIR"

    def why_not(self, value: object) -> str | None:
        if value is None or (isinstance(value, str) and value):
            return None
        return "must be a directory's path"

    def describe(self) -> str:
        return "directory, or none"


@dataclass(frozen=True)
class Umask(Kind):
    """A file mode creation mask, in octal: ``"027"`` (text) or ``0o027`` (a number)."""

    optional = True
    metavar = "OCTAL"

    def why_not(self, value: object) -> str | None:
        if value is None:
            return None
        if isinstance(value, str):
            value = _octal(value)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0o777:
            return "must be an octal mask from 000 to 777, e.g. \"027\""
        return None

    def parse_value(self, text: str) -> int:
        value = _octal(text)
        if value is None:
            raise ValueError(f"{text!r} is not an octal mask, e.g. 027")
        return value

    def describe(self) -> str:
        return "octal mask (\"027\"), or none"


def _octal(text: str) -> int | None:
    digits = text.strip().lower().removeprefix("0o")
    return int(digits, 8) if digits and set(digits) <= set("01234567") else None


def umask_of(value: int | str | None) -> int | None:
    """The ``umask`` option as a number (a file may give it as octal text)."""
    return _octal(value) if isinstance(value, str) else value


@dataclass(frozen=True)
class Account(Kind):
    """A user's or a group's name (or numeric id), or ``None``; looked up at start."""

    optional = True
    metavar = "NAME"

    def why_not(self, value: object) -> str | None:
        if value is None or (isinstance(value, str) and value and value.strip() == value):
            return None
        return "must be a name or a numeric id"

    def describe(self) -> str:
        return "name or id, or none"


@dataclass(frozen=True)
class Address(Kind):
    """``HOST:PORT`` to listen on (``[::1]:PORT`` for IPv6), or ``None``."""

    optional = True
    metavar = "HOST:PORT"

    def why_not(self, value: object) -> str | None:
        if value is None:
            return None
        _, sep, port = value.rpartition(":") if isinstance(value, str) else ("", "", "")
        if not sep or not port.isdigit() or int(port) > 65535:
            return "must be HOST:PORT (as 127.0.0.1:9101)"
        return None

    def describe(self) -> str:
        return "`HOST:PORT`, or none"


@dataclass(frozen=True)
class ModuleName(Kind):
    """A module's dotted name (``myapp.hooks``), or ``None``; imported at start."""

    optional = True
    metavar = "MODULE"

    def why_not(self, value: object) -> str | None:
        if value is None or (isinstance(value, str) and value and all(
                part.isidentifier() for part in value.split("."))):
            return None
        return "must be a module's dotted name, e.g. myapp.hooks"

    def describe(self) -> str:
        return "module name, or none"


@dataclass(frozen=True)
class QueueList(Kind):
    """RQ queue names in priority order: a list, or a comma string (``high,default``);
    ``None``: none given."""

    optional = True
    metavar = "QUEUES"

    def why_not(self, value: object) -> str | None:
        if value is None:
            return None
        names = value.split(",") if isinstance(value, str) else value
        if isinstance(names, list) and names and all(
                isinstance(name, str) and name.strip() for name in names):
            return None
        return "must be queue names: a list, or a comma string such as high,default"

    def describe(self) -> str:
        return "queue names (a list, or comma-separated), or none"


@dataclass(frozen=True)
class RedisURL(Kind):
    """A Redis URL (``redis://``, ``rediss://``, ``unix://``), or ``None``."""

    optional = True
    metavar = "URL"

    def why_not(self, value: object) -> str | None:
        if value is None or (isinstance(value, str)
                             and value.startswith(("redis://", "rediss://", "unix://"))):
            return None
        return "must be a Redis URL: redis://HOST:PORT/DB, rediss://... or unix://PATH"

    def describe(self) -> str:
        return "Redis URL, or none"


# --- the adapter's options ----------------------------------------------------------------------

def _hook(name: str, doc: str) -> Option:
    return Option(name, Callback(), None, doc, scope=MASTER, reloadable=False)


ADAPTER_OPTIONS: tuple[Option, ...] = (
    Option("job", JobRef(), None,
           "what the workers run: MODULE:ATTR, or MODULE:ATTR(ARGS) to call it with "
           "literal arguments; in the command, the argument; HUP imports it afresh "
           "(without preload)"),
    Option("strategy", Choice(STRATEGIES), "simple",
           "simple: perform() runs in the worker; forking: each perform runs in a fresh "
           "child of the worker"),
    Option("soft_timeout", Seconds(positive=True, optional=True), None,
           "raise prefork.PerformTimeout inside a perform that runs this long; the hard "
           "timeout still kills"),
    Option("queues", QueueList(), None,
           "an RQ pool (needs `prefork[rq]`): its queues in priority order; a pool table "
           "with no `job` but `queues` runs `prefork.rq.pool_job` (queues default to the "
           "pool's name split on commas); a change is a job change on HUP"),
    Option("redis_url", RedisURL(), None,
           "an RQ pool's Redis: a pool's own wins over `$REDIS_URL`, which wins over the "
           "top-level one (none: redis://localhost:6379/0); a pool table with no `job` "
           "and no `queues` is an RQ pool when a `redis_url` is set"),
    Option("burst", Flag(), False,
           "an RQ pool: the first worker to find its queues empty stops the master "
           "gracefully (drain and exit 0)"),
    Option("preload", Flag(), False,
           "import the jobs' code once, in the master, for its whole life: HUP does not "
           "reload it (without preload, HUP imports it afresh and new workers run it)",
           scope=MASTER, reloadable=False),
    Option("pidfile", LocalPath(), None,
           "the master's pid, written once it is ready and locked for its life (a second "
           "master on it refuses to start; a stale one is taken over)",
           scope=MASTER, reloadable=False, short="-p"),
    Option("daemonize", Flag(), False,
           "detach from the terminal (double fork); the command exits 0 once the master is "
           "ready, or non-zero with its error line", scope=MASTER, reloadable=False),
    Option("chdir", Directory(), None,
           "the directory the master enters at start (a relative pidfile or log_file "
           "is taken from where it was started; config_file must be absolute)",
           scope=MASTER, reloadable=False),
    Option("umask", Umask(), None,
           "the master's file mode creation mask, in octal (none: inherited)",
           scope=MASTER, reloadable=False),
    Option("user", Account(), None,
           "the user the workers run as (the master must be root to switch)",
           scope=MASTER, reloadable=False),
    Option("group", Account(), None,
           "the group the workers run as (default: the user's own group)",
           scope=MASTER, reloadable=False),
    Option("log_file", LocalPath(), None,
           "log here instead of stderr (`-`: stderr); USR1 reopens it in the master and "
           "every worker (for logrotate)",
           scope=MASTER, reloadable=False),
    Option("log_level", Choice(LOG_LEVELS), "info",
           "the least severe level logged; `debug` adds the lifecycle detail (forks, "
           "signals sent, reaps, deadlines, idle/performing samples)",
           scope=MASTER, reloadable=False),
    Option("log_format", Choice(LOG_FORMATS), "text",
           "`text`, or `json`: one JSON object per line, with the lifecycle event's fields",
           scope=MASTER, reloadable=False),
    Option("hooks", ModuleName(), None,
           "a module whose functions named after the hooks (`when_ready`, `before_fork`, "
           "`after_fork`, `before_exit`, `on_worker_exit`) are used; a hook given in "
           "Python wins", scope=MASTER, reloadable=False),
    Option("logger", LoggerLike(), None,
           "where the log lines go (none: the `prefork` logger)",
           scope=MASTER, reloadable=False),
    Option("control_socket", LocalPath(), None,
           "the UNIX socket `prefork status`, `scale`, `stop`... talk to, mode 0600 (none: "
           "beside the pid file, else `prefork-NAME.sock` in `$XDG_RUNTIME_DIR` or the "
           "temporary directory; `off`: no control socket)",
           scope=MASTER, reloadable=False, short="-s"),
    Option("health_bind", Address(), None,
           "serve `GET /livez`, `/readyz` and `/metrics` over HTTP on this `HOST:PORT` "
           "(none: no health port)",
           scope=MASTER, reloadable=False),
    _hook("before_fork", "`before_fork(master, worker)`, in the master before each fork"),
    _hook("on_worker_exit", "`on_worker_exit(master, worker, outcome)`, in the master after "
                            "a worker is reaped"),
    _hook("when_ready", "`when_ready(master)`, in the master once the first workers are "
                        "forked; `master.pids()` are their pids"),
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
GROUP_CORE_OPTIONS = tuple(o for o in OPTIONS if o.scope == GROUP and o.name in CORE_OPTION_NAMES)
POOL_TABLE = "pool"


def in_files(option: Option) -> bool:
    """Whether a config file may set ``option``."""
    return not isinstance(option.kind, PythonOnly) and option.name not in _NOT_IN_FILES


def from_text(option: Option) -> bool:
    """Whether ``option`` has a text form (a flag, a file key)."""
    return not isinstance(option.kind, PythonOnly)


# --- where values come from --------------------------------------------------------------------

_BARE_KEY = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")


def pool_key(name: str) -> str:
    """A pool's name as a TOML key: bare when it can be, quoted otherwise."""
    if name and set(name) <= _BARE_KEY:
        return name
    escaped = name.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


class Layer(NamedTuple):
    """One source of option values (immutable).

    ``shared`` holds the options given for every pool and for the master; ``pools`` the
    pools this source names, each with its own options (``None`` when it names none);
    ``where`` how each shared option was given (``--workers``, ``PREFORK_WORKERS``), for
    ``--check-config``; ``path`` the file a file's layer was read from.
    """

    source: str
    shared: Mapping[str, Any]
    pools: Mapping[str, Mapping[str, Any]] | None = None
    where: Mapping[str, str] = MappingProxyType({})
    path: str | None = None

    def origin(self, name: str, pool: str | None = None) -> str:
        """Where this layer's value of ``name`` (in ``pool``, if its own) came from."""
        if pool is not None:
            table = f"[pool.{pool_key(pool)}]"
            return f"{self.path} {table}" if self.path else f"{self.source} {table}"
        return self.where.get(name) or self.path or self.source


class Pool:
    """One pool of a master, in Python: its job, its worker count, its own group options.

    ``prefork.Master(pools={"mail": prefork.Pool(Mailer, workers=4), "sms": ...})``.
    An option a pool leaves out comes from the ``Master``'s keyword arguments, then the
    defaults. Only group options belong to a pool (``timeout``, ``strategy``...); a
    master option or an unknown name raises ``ConfigError`` naming it.
    """

    __slots__ = ("options",)

    def __init__(self, job: object = None, **options: Any) -> None:
        for name, value in options.items():
            option = BY_NAME.get(name)
            if option is None:
                raise ConfigError(name, value, "is not a prefork option")
            if option.scope != GROUP:
                raise ConfigError(name, value, "is a master option: give it to Master")
        if job is not None:
            options["job"] = job
        self.options: Mapping[str, Any] = MappingProxyType(options)

    def __repr__(self) -> str:
        return f"Pool({', '.join(f'{k}={v!r}' for k, v in self.options.items())})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Pool) and dict(self.options) == dict(other.options)

    __hash__ = None  # type: ignore[assignment]


def _pools_of(pools: object) -> dict[str, Mapping[str, Any]]:
    """``Master(pools=...)``: pool name -> its options (a ``Pool``, or a mapping)."""
    if not isinstance(pools, Mapping) or not pools:
        raise ConfigError("pools", pools, "must map pool names to prefork.Pool(...)")
    built = {}
    for name, pool in pools.items():
        if isinstance(pool, Mapping):
            pool = Pool(**pool)
        if not isinstance(pool, Pool):
            raise ConfigError(f"pools[{name!r}]", pool, "must be a prefork.Pool(...)")
        built[name] = pool.options
    return built


def given_layer(options: Mapping[str, Any], source: str = "keyword",
                where: Mapping[str, str] | None = None) -> Layer:
    """The layer of keyword arguments (or flags): ``pools`` among them names the pools.
    Unknown names raise ``ConfigError``."""
    shared = {}
    pools = None
    for name, value in options.items():
        if name == "pools":
            pools = _pools_of(value)
            continue
        if name not in BY_NAME:
            raise ConfigError(name, value, "is not a prefork option")
        shared[name] = os.fspath(value) if isinstance(value, os.PathLike) else value
    return Layer(source, MappingProxyType(shared), pools, MappingProxyType(dict(where or {})))


def environment_layer(environ: Mapping[str, str]) -> Layer:
    """The ``PREFORK_NAME`` variables of ``environ`` (``PREFORK_WORKERS=4``), one per
    option with a text form; a value that does not read raises ``ConfigError`` naming the
    variable."""
    shared, where = {}, {}
    for option in OPTIONS:
        variable = env_variable(option)
        if not from_text(option) or variable not in environ:
            continue
        text = environ[variable]
        try:
            value = option.kind.parse(text)
        except ValueError as error:
            raise ConfigError(variable, text, str(error)) from None
        option.check(value, variable)
        shared[option.name], where[option.name] = value, variable
    return Layer("environment", MappingProxyType(shared), None, MappingProxyType(where))


def env_variable(option: Option) -> str:
    """The environment variable of ``option``: ``PREFORK_GRACEFUL_TIMEOUT``."""
    return f"PREFORK_{option.name.upper()}"


# --- settings: what a master runs with ---------------------------------------------------------

GroupSettings = namedtuple(  # type: ignore[misc]
    "GroupSettings", ["name", *(option.name for option in _OWN_GROUP)],
)
GroupSettings.__doc__ = (
    "What the adapter runs a group with beside the core's GroupConfig: its job (a "
    "validated JobSpec), strategy and soft timeout. Immutable."
)

_SettingsFields = namedtuple(  # type: ignore[misc]
    "_SettingsFields",
    ["pool", "groups", *(option.name for option in _OWN_MASTER), "layers", "origins",
     "values"],
)


class Settings(_SettingsFields):
    """Everything a ``Master`` runs with (immutable).

    ``pool`` is the core's ``PoolConfig`` (its master options, one ``GroupConfig`` per
    group); ``groups`` holds each group's ``GroupSettings``; the adapter's master options
    are attributes (the core's are too, read from ``pool``). ``layers`` are the sources
    above the config file (keyword arguments or flags, the environment), which a HUP
    applies again over the file it rereads; ``values`` and ``origins`` map
    ``(pool, option)`` (pool ``None`` for a master option) to the value in force and to
    where it came from.

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
    def hook_functions(self) -> dict[str, Callable[..., Any]]:
        """The hooks given in Python, by name (``hooks`` names a module of more)."""
        return {name: getattr(self, name) for name in HOOKS if getattr(self, name) is not None}

    def effective(self) -> list[tuple[str | None, str, Any, str]]:
        """``(pool, option, value, origin)`` for every option in force, the master's
        first (pool ``None``), then each pool's, in the registry's order."""
        return [(pool, name, self.values[pool, name], self.origins[pool, name])
                for pool, name in self.values]


def build_settings(job: object = None, **given: Any) -> Settings:
    """Validate ``job`` and the options ``given`` (keyword arguments) into ``Settings``;
    with ``config_file`` given, its options come in under them.

    ``pools`` maps pool names to ``Pool(...)`` (or to mappings of group options). Every
    bad name or value raises ``ConfigError`` naming it.
    """
    if job is not None:
        given["job"] = job
    return settings_from([given_layer(given)])


def settings_from(layers: list[Layer]) -> Settings:
    """The settings the ``layers`` (highest first: flags, the environment) make over the
    config file they name, if any, and the defaults."""
    above = tuple(layers)
    path = _pick_shared(above, "config_file")
    file = file_layer(os.fspath(path)) if path is not None else None
    return _settings_of(above, file)


def reread(running: Settings, path: str) -> tuple[Settings, list[str]]:
    """Read the config file at ``path`` again (HUP): the new settings, and one line for
    each option the file changed that needs a restart (it keeps its running value).

    Raises ``ConfigError`` when the file no longer reads or validates, or a job no longer
    imports: the running settings stay as they are.
    """
    notes: list[str] = []
    fresh = _settings_of(running.layers, file_layer(path), running, notes)
    return fresh, notes


def _pick_shared(layers: tuple[Layer, ...], name: str) -> Any:
    for layer in layers:
        if name in layer.shared:
            return layer.shared[name]
    return None


def _settings_of(above: tuple[Layer, ...], file: Layer | None,
                 running: Settings | None = None, notes: list[str] | None = None) -> Settings:
    layers = (*above, *((file,) if file is not None else ()))
    values: dict[tuple[str | None, str], Any] = {}
    whence: dict[tuple[str | None, str], tuple[Layer | None, bool]] = {}
    names = _pool_names(layers)
    for pool in (None, *names):
        for option in OPTIONS:
            if (option.scope == MASTER) != (pool is None):
                continue
            key = (pool, option.name)
            value, whence[key] = _resolve(layers, option, pool)
            value = _kept(running, key, value, whence, notes)
            if option.name != "job":
                _check(option, value, pool, whence[key])
            if option.name == "max_memory" and value is not None and not _HAVE_PSUTIL:
                where = _key_and_where(pool, option.name, *whence[key])
                raise ConfigError(where[0], value, "needs psutil to measure each worker's "
                                  "memory: pip install 'prefork[memory]'" + where[1])
            values[key] = value
    for pool in names:
        _rq_pool_job(pool, values, whence)
    origins = {key: _origin(key, *whence[key]) for key in values}
    if running is not None:  # what a HUP kept says where it came from at start
        origins.update({key: running.origins[key] for key, (layer, _) in whence.items()
                        if layer is _RUNNING})
    master = {name: value for (pool, name), value in values.items() if pool is None}
    core_groups = {
        pool: {o.name: values[pool, o.name] for o in GROUP_CORE_OPTIONS} for pool in names
    }
    try:
        config = PoolConfig.of(groups=core_groups, **{
            name: value for name, value in master.items() if name in CORE_OPTION_NAMES})
    except ConfigError as error:
        raise _relabelled(error, names, whence) from None
    imported: dict[str, object] = {}
    naming = next((layer for layer in layers if layer.pools is not None), None)
    groups = tuple(_group_settings(pool, values, whence, running, master, imported, naming)
                   for pool in names)
    own = {option.name: master[option.name] for option in _OWN_MASTER}
    if own.get("logger") is None and "logger" in own:
        own["logger"] = logging.getLogger(LOGGER_NAME)
    if running is not None and notes is not None and master.get("preload"):
        notes.append("preload is on: the jobs' code is not reloaded (restart the master "
                     "to run new code)")
    return Settings(pool=config, groups=groups, layers=above, origins=origins, values=values,
                    **own)


# a HUP kept the running value of an option that needs a restart
_RUNNING = Layer("running", MappingProxyType({}))


def _pool_names(layers: tuple[Layer, ...]) -> tuple[str, ...]:
    naming = [layer for layer in layers if layer.pools is not None]
    if len(naming) > 1:
        first, second = naming[0], naming[1]
        raise ConfigError("pools", list(first.pools or ()),
                          f"are named by {first.path or first.source} and by "
                          f"{second.path or second.source}: name them in one place")
    return tuple(naming[0].pools or ()) if naming else (DEFAULT_GROUP,)


def _resolve(layers: tuple[Layer, ...], option: Option,
             pool: str | None) -> tuple[Any, tuple[Layer | None, bool]]:
    """The value of ``option`` (in ``pool``), and which layer gave it and whether as the
    pool's own: the highest layer that gives it wins; within a layer, a pool's own value
    wins over the shared one."""
    for layer in layers:
        own = (layer.pools or {}).get(pool) if pool is not None else None
        if own is not None and option.name in own:
            return own[option.name], (layer, True)
        if option.name in layer.shared:
            return layer.shared[option.name], (layer, False)
    return option.default, (None, False)


def _origin(key: tuple[str | None, str], layer: Layer | None, own: bool) -> str:
    if layer is None:
        return "default"
    return layer.origin(key[1], key[0] if own else None)


def _kept(running: Settings | None, key: tuple[str | None, str], value: Any,
          whence: dict[tuple[str | None, str], tuple[Layer | None, bool]],
          notes: list[str] | None) -> Any:
    """On a HUP, an option that needs a restart keeps its running value (said in
    ``notes`` when the new one differs)."""
    pool, name = key
    if running is None or BY_NAME[name].reloadable or key not in running.values:
        return value
    before = running.values[key]
    if value != before and notes is not None:
        where = "" if pool is None else f"pool {pool_key(pool)}: "
        notes.append(f"{where}{name} changed ({_origin(key, *whence[key])}): it needs a "
                     f"restart, so {before!r} stays in force")
    whence[key] = (_RUNNING, False)
    return before


def _key_and_where(pool: str | None, name: str,
                   layer: Layer | None, own: bool) -> tuple[str, str]:
    """How an error names an option (``timeout``, or ``pool.mail.timeout`` for a pool's
    own), and where it was given (`` (in FILE)``, `` (from PREFORK_TIMEOUT)``)."""
    key = f"{POOL_TABLE}.{pool_key(pool)}.{name}" if own and pool is not None else name
    if layer is None:
        return key, ""
    if layer.path:
        return key, f" (in {layer.path})"
    given = layer.where.get(name, "")
    return key, f" (from {given})" if given.startswith("PREFORK_") else ""


def _check(option: Option, value: object, pool: str | None,
           whence: tuple[Layer | None, bool]) -> None:
    why = option.kind.why_not(value)
    if why is not None:
        key, where = _key_and_where(pool, option.name, *whence)
        raise ConfigError(key, value, why + where)


def _relabelled(error: ConfigError, names: tuple[str, ...],
                whence: Mapping[tuple[str | None, str], tuple[Layer | None, bool]]
                ) -> ConfigError:
    """The core's error for a check across options (``groups.mail=5: exceeds
    max_workers (4)``), naming the pool and the key as a file does."""
    why = str(error).split(": ", 1)[1]
    for pool in names:
        prefix = "" if pool == DEFAULT_GROUP else f"groups.{pool}"
        if error.option == (prefix or "workers"):
            name = "workers"
        elif error.option.startswith(f"{prefix}." if prefix else ""):
            name = error.option[len(prefix) + 1 if prefix else 0:]
        else:
            continue
        if (pool, name) in whence:
            key, where = _key_and_where(pool, name, *whence[pool, name])
            return ConfigError(key, error.value, why + where)
    return error


RQ_OPTIONS = ("queues", "redis_url", "burst")


def _rq_pool_job(pool: str, values: dict[tuple[str | None, str], Any],
                 whence: dict[tuple[str | None, str], tuple[Layer | None, bool]]) -> None:
    """resque-pool's config: a pool with no ``job`` but ``queues`` (or a ``redis_url``)
    runs ``prefork.rq.pool_job``, named as a job reference with literal arguments, so
    that ``--check-config`` shows it and a HUP that changes them changes the job. The
    pool's own ``redis_url`` (or one given above the file) is ``redis_url``; the file's
    top-level one is ``top_redis_url``, under ``$REDIS_URL`` (``pool_job``'s order)."""
    queues, url = values[pool, "queues"], values[pool, "redis_url"]
    if values[pool, "job"] is not None:
        for name in RQ_OPTIONS:
            layer, own = whence[pool, name]
            if own and values[pool, name] not in (None, False):
                key, where = _key_and_where(pool, name, layer, own)
                raise ConfigError(key, values[pool, name], "is for an RQ pool, which has "
                                                           "no job" + where)
        return
    if queues is None and url is None:
        return
    given = "queues" if queues is not None else "redis_url"
    layer, own = whence[pool, given]
    try:
        importlib.import_module("prefork.rq")
    except ImportError as error:
        key, where = _key_and_where(pool, given, layer, own)
        raise ConfigError(key, values[pool, given],
                          f"an RQ pool needs the rq extra: pip install 'prefork[rq]' "
                          f"({error}){where}") from None
    # the queues as a list (resque-pool's default: the pool's name split on commas)
    queues = pool if queues is None else queues
    if isinstance(queues, str):
        queues = [name.strip() for name in queues.split(",") if name.strip()]
    url_layer, url_own = whence[pool, "redis_url"]
    top = url is not None and not url_own and url_layer is not None \
        and url_layer.path is not None
    arguments = [repr(pool), f"queues={queues!r}",
                 f"redis_url={None if top else url!r}",
                 f"burst={bool(values[pool, 'burst'])!r}",
                 f"top_redis_url={url if top else None!r}"]
    values[pool, "job"] = f"prefork.rq:pool_job({', '.join(arguments)})"
    whence[pool, "job"] = (layer, own)


def _group_settings(name: str, values: Mapping[tuple[str | None, str], Any],
                    whence: Mapping[tuple[str | None, str], tuple[Layer | None, bool]],
                    running: Settings | None, master: Mapping[str, Any],
                    imported: dict[str, object], naming: Layer | None) -> GroupSettings:
    built = {}
    for option in _OWN_GROUP:
        value = values[name, option.name]
        if option.name == "job":
            layer, own = whence[name, "job"]
            if layer is None and name != DEFAULT_GROUP:  # missing: where the pool is named
                layer, own = naming, True
            key, where = _key_and_where(name, "job", layer, own)
            value = _job_of(value, key, where, _running_job(running, name, value, master),
                            imported, fresh=running is not None)
        built[option.name] = value
    return GroupSettings(name=name, **built)


def _running_job(running: Settings | None, name: str, ref: object,
                 master: Mapping[str, Any]) -> JobSpec | None:
    """The running pool's job, when a HUP keeps it: given as an object (it cannot be
    imported again), or named the same with ``preload`` on."""
    if running is None or (name, "job") not in running.values:
        return None
    if running.values[name, "job"] is not ref and running.values[name, "job"] != ref:
        return None
    if isinstance(ref, str) and not master.get("preload"):
        return None  # imported afresh: HUP deploys new code
    return running.group(name).job


def _job_of(job: object, label: str, where: str, kept: JobSpec | None,
            imported: dict[str, object], fresh: bool = False) -> JobSpec:
    """The job's spec: ``kept`` (a HUP keeps it), or ``job`` built, imported by name
    (afresh on a HUP: at start, a module the program imported already is used as is)."""
    if kept is not None:
        return kept
    if job is None:
        raise ConfigError(label, None, "is missing: give the job as MODULE:ATTR "
                                       "(or job = ... in the config file)" + where)
    try:
        if isinstance(job, str):
            if job not in imported:
                imported[job] = import_job(job, fresh=fresh)
            return job_spec(imported[job])
        return job_spec(job)
    except ConfigError as error:
        if label == error.option and not where:
            raise
        why = str(error)[len(f"{error.option}={error.value!r}: "):]
        raise ConfigError(label, error.value, why + where) from None


# --- jobs by name ---------------------------------------------------------------------------

def import_job(ref: str, fresh: bool = False) -> object:
    """``"package.module:attr"`` (or ``path/to/file.py:attr``) -> the object it names;
    ``"module:attr(ARGS)"`` calls it with ARGS (Python literals: ``make("high", n=2)``).

    The current directory is importable, as with ``python -m``. ``fresh``: the module's
    top-level package is imported again from its files (what a HUP deploys), whatever
    ``sys.modules`` holds. Any failure raises ``ConfigError`` naming the job.
    """
    module_name, sep, attr = ref.partition(":")
    attr, call = _call_of(ref, attr.strip())
    module_name = module_name.strip()
    if not sep or not module_name or not attr:
        raise ConfigError("job", ref, "must be MODULE:ATTR, e.g. myapp.jobs:Mailer")
    if module_name.endswith(".py") or os.sep in module_name:
        path = os.path.abspath(module_name)
        if os.path.dirname(path) not in sys.path:  # once, not on every HUP
            sys.path.insert(0, os.path.dirname(path))
        module_name = os.path.splitext(os.path.basename(path))[0]
    elif "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    if fresh:
        _forget_package(module_name)
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
    if call is None:
        return target
    args, kwargs = call
    try:
        return target(*args, **kwargs)  # type: ignore[operator]
    except Exception as error:
        raise ConfigError("job", ref, f"calling {attr} raised {type(error).__name__}: "
                                      f"{error}") from None


def _call_of(ref: str, attr: str) -> tuple[str, tuple[tuple[Any, ...], dict[str, Any]] | None]:
    """``attr(ARGS)`` -> ``attr`` and its literal arguments (``None``: no call)."""
    if "(" not in attr and ")" not in attr:
        return attr, None
    import ast

    name, _, rest = attr.partition("(")
    try:
        call = ast.parse(f"f({rest}", mode="eval").body
        assert isinstance(call, ast.Call)
        args = tuple(ast.literal_eval(arg) for arg in call.args)
        kwargs = {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords if kw.arg}
        if len(kwargs) != len(call.keywords):
            raise ValueError("**")
    except (SyntaxError, ValueError, AssertionError, TypeError):
        raise ConfigError("job", ref, "arguments must be Python literals, e.g. "
                                      'myapp.jobs:make("high", batch=10)') from None
    return name.strip(), (args, kwargs)


def _forget_package(module_name: str) -> None:
    """Drop ``module_name``'s top-level package and its modules from ``sys.modules`` (not
    prefork's), so that the next import reads their files again."""
    top = module_name.split(".")[0]
    if top == "prefork" or top in sys.stdlib_module_names:
        return
    for name in [name for name in sys.modules if name == top or name.startswith(top + ".")]:
        del sys.modules[name]
    importlib.invalidate_caches()


# --- config files ---------------------------------------------------------------------------

def load_file(path: str) -> dict[str, Any]:
    """The top-level options of a TOML config file, by ``snake_case`` name, each checked
    (``file_layer`` reads its pools too)."""
    return dict(file_layer(path).shared)


def file_layer(path: str) -> Layer:
    """The options of a TOML config file: top-level keys (master options, and group
    options for every pool) and one ``[pool.NAME]`` table per pool.

    An unknown key, an option a file cannot set, a master option in a pool's table, or a
    bad value raises ``ConfigError`` naming the pool, the key and the file.
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
    tables = data.pop(POOL_TABLE, None)
    shared = _file_options(data, path, None)
    pools = None
    if tables is not None:
        if not isinstance(tables, dict) or not tables \
                or not all(isinstance(table, dict) for table in tables.values()):
            raise ConfigError(POOL_TABLE, tables, "must be one table per pool, "
                                                  f"[pool.NAME] (in {path})")
        pools = {name: MappingProxyType(_file_options(table, path, name))
                 for name, table in tables.items()}
    return Layer("file", MappingProxyType(shared), pools, path=path)


def _file_options(data: Mapping[str, Any], path: str, pool: str | None) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for key, value in data.items():
        name = key.replace("-", "_")
        label = name if pool is None else f"{POOL_TABLE}.{pool_key(pool)}.{name}"
        option = BY_NAME.get(name)
        if option is None:
            raise ConfigError(label, value, f"is not a prefork option (in {path})")
        if not in_files(option):
            raise ConfigError(label, value, f"cannot be set in a config file (in {path})")
        if pool is not None and option.scope != GROUP:
            raise ConfigError(label, value, f"is a master option: set it at the top level, "
                                            f"not in a pool's table (in {path})")
        why = option.kind.why_not(value)
        if why is not None:
            raise ConfigError(label, value, f"{why} (in {path})")
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
