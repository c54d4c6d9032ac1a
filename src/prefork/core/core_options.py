"""The options the core decides with, each declared once: name, kind, default, doc, scope.

Why a registry: an option used to be spelled out in four places (the ``Master``
keyword arguments, the config file's keys, the command's flags and the core's config),
and they drifted. Now each option is one ``Option`` here (or, for the options only the
adapter reads, in ``prefork.options``, which adds those to these), and everything else is
made from the declarations: the core's ``GroupConfig`` and ``PoolConfig`` fields and
their validation, the keyword arguments, the file keys, the ``--kebab-case`` flags, the
error messages and the options table of the docs.

``scope`` says where an option lives: ``master`` options are one per master,
``group`` options are one per group of workers (a pool), so that two pools can differ in
timeouts, recycling or back-off. ``reloadable`` says whether a HUP can change it.

A ``Kind`` checks a value (``why_not`` returns what is wrong, or ``None``) and parses the
text of a flag, an environment variable or a file. The messages read as the end of
``option=value: ...``, which ``ConfigError`` puts together.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from prefork.core.errors import ConfigError

MASTER = "master"
GROUP = "group"
_OFF_WORDS = ("none", "off")


class Kind:
    """How the values of an option are checked and read from text."""

    metavar = "VALUE"
    optional = False

    def why_not(self, value: object) -> str | None:
        """What is wrong with ``value``, or ``None`` when it is good."""
        return None

    def parse(self, text: str) -> Any:
        """The value a flag, an environment variable or a file's text stands for.

        Raises ``ValueError`` with the reason; ``none`` or ``off`` turn an optional
        option off.
        """
        if self.optional and text.strip().lower() in _OFF_WORDS:
            return None
        return self.parse_value(text)

    def parse_value(self, text: str) -> Any:
        return text

    def describe(self) -> str:
        """The kind in words, for the docs' options table."""
        return "text"


@dataclass(frozen=True)
class Count(Kind):
    """A whole number of at least ``least`` (or ``None`` when ``optional``)."""

    least: int = 0
    optional: bool = False
    metavar = "N"

    def why_not(self, value: object) -> str | None:
        if value is None and self.optional:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < self.least:
            return f"must be a whole number >= {self.least}"
        return None

    def parse_value(self, text: str) -> int:
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a whole number") from None

    def describe(self) -> str:
        return f"whole number >= {self.least}" + (", or off" if self.optional else "")


@dataclass(frozen=True)
class Seconds(Kind):
    """A finite number of seconds, > 0 when ``positive`` else >= 0 (or ``None``)."""

    positive: bool = False
    optional: bool = False
    metavar = "SECONDS"

    def why_not(self, value: object) -> str | None:
        if value is None and self.optional:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
            return "must be a number of seconds"
        if value < 0 or (self.positive and value == 0) or math.isinf(value):
            return f"must be a finite number of seconds {'> 0' if self.positive else '>= 0'}"
        return None

    def parse_value(self, text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a number of seconds") from None
        return int(value) if value.is_integer() else value

    def describe(self) -> str:
        bound = "> 0" if self.positive else ">= 0"
        return f"seconds {bound}" + (", or off" if self.optional else "")


@dataclass(frozen=True)
class Flag(Kind):
    """True or false."""

    metavar = "BOOL"

    def why_not(self, value: object) -> str | None:
        return None if isinstance(value, bool) else "must be true or false"

    def parse_value(self, text: str) -> bool:
        lowered = text.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"{text!r} is not true or false")

    def describe(self) -> str:
        return "true or false"


@dataclass(frozen=True)
class Text(Kind):
    """A non-empty string."""

    metavar = "TEXT"

    def why_not(self, value: object) -> str | None:
        return None if isinstance(value, str) and value else "must be a non-empty string"


@dataclass(frozen=True)
class FilePath(Kind):
    """The path of a file, as text (the core never opens it; the adapter reads it), or
    ``None`` when ``optional``."""

    optional: bool = False
    metavar = "PATH"

    def why_not(self, value: object) -> str | None:
        if value is None and self.optional:
            return None
        return None if isinstance(value, str) and value else "must be a path (non-empty text)"

    def describe(self) -> str:
        return "file path" + (", or none" if self.optional else "")


@dataclass(frozen=True)
class Option:
    """One option, declared once.

    ``short`` is the one-letter flag people type from habit (``-w``), if it has one.
    """

    name: str
    kind: Kind
    default: Any
    doc: str
    scope: str = GROUP
    reloadable: bool = True
    short: str | None = None

    def check(self, value: object, label: str | None = None) -> None:
        """Raise ``ConfigError`` naming the option (or ``label``) when ``value`` is bad."""
        why = self.kind.why_not(value)
        if why is not None:
            raise ConfigError(label or self.name, value, why)

    @property
    def flag(self) -> str:
        """The long command-line flag: ``--graceful-timeout``."""
        return "--" + self.name.replace("_", "-")


CORE_OPTIONS: tuple[Option, ...] = (
    # group options: workers first, as GroupConfig("mail", 2) spells it
    Option("workers", Count(0), 1, "workers to keep running in the pool", short="-w"),
    Option("timeout", Seconds(positive=True, optional=True), None,
           "a perform that shows no sign of life for this long is killed (off by default)"),
    Option("setup_timeout", Seconds(positive=True, optional=True), 60.0,
           "how long setup() may take before the worker is killed"),
    Option("graceful_timeout", Seconds(), 30.0,
           "after a graceful stop (QUIT), workers still running are killed after this long"),
    Option("kill_timeout", Seconds(), 10.0,
           "after TERM or a timeout, workers still running are killed after this long"),
    Option("max_workers", Count(0, optional=True), None,
           "TTIN (and scaling) never grows the pool above this"),
    Option("min_workers", Count(0), 0,
           "TTOU (and scaling) never shrinks the pool below this"),
    Option("min_spare", Count(0, optional=True), None,
           "spare-worker scaling: grow while fewer workers than this are spare (idle, or "
           "still in setup; needs max_workers; off by default)"),
    Option("max_spare", Count(0, optional=True), None,
           "spare-worker scaling: stop the idle workers beyond this once they have been "
           "idle for idle_timeout (off by default)"),
    Option("idle_timeout", Seconds(positive=True), 30.0,
           "spare-worker scaling: how long an idle surplus must last before it is stopped"),
    Option("scale_interval", Seconds(positive=True), 1.0,
           "spare-worker scaling: the master reads the workers this often, and grows at "
           "most once per interval (1, 2, 4... workers, up to 32)"),
    Option("max_performs", Count(1, optional=True), None,
           "a worker is recycled after this many performs: its replacement is forked and "
           "ready before it is told to stop"),
    Option("max_performs_jitter", Count(0), 0,
           "each worker adds a random 0..N to max_performs, drawn on its own, so that a "
           "pool never recycles all at once"),
    Option("max_memory", Count(1, optional=True), None,
           "a worker whose unique memory (USS, in MiB) grows past this is recycled; one "
           "still growing inside a perform is stopped (QUIT, then KILL)"),
    Option("restart_backoff", Seconds(positive=True), 0.1,
           "delay before a slot that crashed twice in a row is refilled; doubles per crash"),
    Option("restart_backoff_max", Seconds(), 30.0,
           "the restart back-off doubles up to this; a worker up this long resets it"),
    Option("max_restarts", Count(0, optional=True), None,
           "the restart intensity: give up (exit 1) after more crashes of the pool than "
           "this within restart_period"),
    Option("restart_period", Seconds(positive=True), 60.0,
           "the window of max_restarts, in seconds"),
    # master options
    Option("graceful_term", Flag(), False,
           "TERM stops gracefully, like QUIT (systemd, Docker and Kubernetes send TERM)",
           scope=MASTER),
    Option("name", Text(), "prefork", "names the master in process titles and log lines",
           scope=MASTER, short="-n"),
    Option("config_file", FilePath(optional=True), None, "the TOML file a HUP reads again",
           scope=MASTER, reloadable=False),
)

GROUP_OPTIONS: tuple[Option, ...] = tuple(o for o in CORE_OPTIONS if o.scope == GROUP)
MASTER_OPTIONS: tuple[Option, ...] = tuple(o for o in CORE_OPTIONS if o.scope == MASTER)
CORE_OPTION_NAMES: frozenset[str] = frozenset(o.name for o in CORE_OPTIONS)
