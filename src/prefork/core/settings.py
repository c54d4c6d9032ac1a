"""What the core needs to know about the pool, validated once into frozen data.

``PoolConfig`` holds only what the pure core decides with: groups and their sizes,
timeouts, bounds and the restart policy. The user-facing options (job, strategy, logger,
pidfile...) live in ``prefork.options`` and are turned into a ``PoolConfig`` there.
Every bad value raises ``ConfigError`` naming the option, at construction, so a running
pool never meets one.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from prefork.core.errors import ConfigError

DEFAULT_GROUP = "default"
_GROUP_NAME = re.compile(r"^[A-Za-z0-9_.:-]+$")


@dataclass(frozen=True)
class GroupConfig:
    """A named set of workers running the same job, with its own target count."""

    name: str
    workers: int


def _check_count(option: str, value: object, *, allow_none: bool = False, least: int = 0) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ConfigError(option, value, f"must be a whole number >= {least}")


def _check_seconds(option: str, value: object, *, allow_none: bool, positive: bool) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise ConfigError(option, value, "must be a number of seconds")
    if value < 0 or (positive and value == 0) or math.isinf(value):
        bound = "> 0" if positive else ">= 0"
        raise ConfigError(option, value, f"must be a finite number of seconds {bound}")


@dataclass(frozen=True)
class PoolConfig:
    """The pool's shape and timing, as the core sees it.

    Times are in seconds; ``None`` turns a timeout off. ``restart_backoff`` is the delay
    before the second consecutive crash of a slot is replaced (the first is replaced at
    once); each further crash doubles it, up to ``restart_backoff_max``. With
    ``max_restarts`` set, more than that many crash restarts within ``restart_period``
    seconds make the master give up: it stops its workers and exits with status 1.
    """

    groups: tuple[GroupConfig, ...] = (GroupConfig(DEFAULT_GROUP, 1),)
    timeout: float | None = None
    setup_timeout: float | None = 60.0
    graceful_timeout: float = 30.0
    kill_timeout: float = 10.0
    graceful_term: bool = False
    max_workers: int | None = None
    max_performs: int | None = None
    restart_backoff: float = 0.1
    restart_backoff_max: float = 30.0
    max_restarts: int | None = None
    restart_period: float = 60.0
    name: str = "prefork"

    def __post_init__(self) -> None:
        _check_count("max_workers", self.max_workers, allow_none=True)
        self._check_groups()
        _check_seconds("timeout", self.timeout, allow_none=True, positive=True)
        _check_seconds("setup_timeout", self.setup_timeout, allow_none=True, positive=True)
        _check_seconds("graceful_timeout", self.graceful_timeout, allow_none=False, positive=False)
        _check_seconds("kill_timeout", self.kill_timeout, allow_none=False, positive=False)
        # > 0: a fork that fails at once must never be retried in a tight loop
        _check_seconds("restart_backoff", self.restart_backoff, allow_none=False, positive=True)
        _check_seconds(
            "restart_backoff_max", self.restart_backoff_max, allow_none=False, positive=False
        )
        _check_seconds("restart_period", self.restart_period, allow_none=False, positive=True)
        if not isinstance(self.graceful_term, bool):
            raise ConfigError("graceful_term", self.graceful_term, "must be true or false")
        _check_count("max_restarts", self.max_restarts, allow_none=True)
        _check_count("max_performs", self.max_performs, allow_none=True, least=1)
        if self.restart_backoff_max < self.restart_backoff:
            raise ConfigError(
                "restart_backoff_max", self.restart_backoff_max,
                f"must be >= restart_backoff ({self.restart_backoff})",
            )
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError("name", self.name, "must be a non-empty string")

    def _check_groups(self) -> None:
        if not isinstance(self.groups, tuple) or not self.groups:
            raise ConfigError("groups", self.groups, "must name at least one group")
        seen: set[str] = set()
        for group in self.groups:
            if not isinstance(group.name, str) or not _GROUP_NAME.match(group.name):
                raise ConfigError(
                    "groups", group.name, "a group name is letters, digits and . _ : -"
                )
            if group.name in seen:
                raise ConfigError("groups", group.name, "names a group twice")
            seen.add(group.name)
            option = "workers" if group.name == DEFAULT_GROUP else f"groups.{group.name}"
            _check_count(option, group.workers)
            if self.max_workers is not None and group.workers > self.max_workers:
                raise ConfigError(
                    option, group.workers, f"exceeds max_workers ({self.max_workers})"
                )

    @classmethod
    def of(
        cls,
        workers: int | None = None,
        groups: Mapping[str, int] | None = None,
        **options: Any,
    ) -> PoolConfig:
        """Build from keyword options: ``workers=4`` or ``groups={"mail": 2, "sms": 1}``.

        An option prefork does not know raises ``ConfigError`` naming it.
        """
        known = {f.name for f in fields(cls)}
        for option in options:
            if option not in known:
                raise ConfigError(option, options[option], "is not a prefork option")
        if groups is not None and workers is not None:
            raise ConfigError("groups", dict(groups), "give either workers or groups, not both")
        if groups is None:
            groups = {DEFAULT_GROUP: 1 if workers is None else workers}
        if not isinstance(groups, Mapping):
            raise ConfigError("groups", groups, "must map group names to worker counts")
        built = tuple(GroupConfig(name, count) for name, count in groups.items())
        return cls(groups=built, **options)

    def with_options(self, **options: Any) -> PoolConfig:
        """A copy with some options changed (validated again)."""
        return replace(self, **options)

    @property
    def group_names(self) -> tuple[str, ...]:
        return tuple(group.name for group in self.groups)

    def workers_of(self, group: str) -> int:
        """The configured worker count of ``group`` (0 for a group the config lacks)."""
        for candidate in self.groups:
            if candidate.name == group:
                return candidate.workers
        return 0


