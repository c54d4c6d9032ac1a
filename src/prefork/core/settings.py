"""What the core needs to know about the pool, validated once into frozen data.

``PoolConfig`` holds the master's options and one ``GroupConfig`` per group of workers;
a group holds its own size, timeouts, bounds and back-off, so two pools of one master can
differ. Both classes are made from the declarations in ``core_options`` (one field per
option, its default, its check), so an option is declared in one place only. The
user-facing options (job, strategy, logger, pidfile...) live in ``prefork.options``,
which builds a ``PoolConfig``. Every bad value raises ``ConfigError`` naming the option
(and the group), at construction, so a running pool never meets one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import field, make_dataclass, replace
from typing import Any

from prefork.core.core_options import (
    CORE_OPTION_NAMES,
    GROUP_OPTIONS,
    MASTER_OPTIONS,
    Option,
)
from prefork.core.errors import ConfigError

DEFAULT_GROUP = "default"


def _is_group_name(name: object) -> bool:
    """A group (pool) name is free text: resque-pool names pools by their queue lists
    (``"high,default"``). Only what would break a log line or a title is refused."""
    return isinstance(name, str) and bool(name) and name.isprintable()


def _fields(options: tuple[Option, ...]) -> list[tuple[str, Any, Any]]:
    return [(option.name, Any, field(default=option.default)) for option in options]


def _option_label(group: str, option: str) -> str:
    """How an error names a group's option: ``timeout``, or ``groups.mail.timeout``.

    A group's size is ``workers`` in the default group and ``groups.NAME`` in others,
    the key it came from in ``PoolConfig.of(groups={NAME: count})``.
    """
    if group == DEFAULT_GROUP:
        return option
    return f"groups.{group}" if option == "workers" else f"groups.{group}.{option}"


def _check_group(group: Any) -> None:
    if not _is_group_name(group.name):
        raise ConfigError("groups", group.name,
                          "a group name is non-empty text without control characters")
    for option in GROUP_OPTIONS:
        option.check(getattr(group, option.name), _option_label(group.name, option.name))
    if group.restart_backoff_max < group.restart_backoff:
        raise ConfigError(
            _option_label(group.name, "restart_backoff_max"), group.restart_backoff_max,
            f"must be >= restart_backoff ({group.restart_backoff})",
        )
    if group.max_workers is not None and group.workers > group.max_workers:
        raise ConfigError(
            _option_label(group.name, "workers"), group.workers,
            f"exceeds max_workers ({group.max_workers})",
        )


GroupConfig = make_dataclass(
    "GroupConfig",
    [("name", str), *_fields(GROUP_OPTIONS)],
    frozen=True,
    namespace={
        "__doc__": "A named group of workers running one job: its size and its own "
                   "timeouts, bounds and back-off (the group options of core_options).",
        "__post_init__": _check_group,
        "__module__": __name__,
    },
)


def _check_pool(config: Any) -> None:
    groups = config.groups
    if not isinstance(groups, tuple) or not groups:
        raise ConfigError("groups", groups, "must name at least one group")
    seen: set[str] = set()
    for group in groups:
        if group.name in seen:
            raise ConfigError("groups", group.name, "names a group twice")
        seen.add(group.name)
    for option in MASTER_OPTIONS:
        option.check(getattr(config, option.name))


def _of(
    cls: type,
    workers: int | None = None,
    groups: Mapping[str, Any] | None = None,
    **options: Any,
) -> Any:
    """Build from keyword options: ``workers=4`` or ``groups={"mail": 2, "sms": 1}``.

    Group options given here apply to every group; a group given as a mapping
    (``groups={"mail": {"workers": 2, "timeout": 5}}``) may set its own, which win. An
    option prefork does not know raises ``ConfigError`` naming it.
    """
    for option in options:
        if option not in CORE_OPTION_NAMES or option == "workers":
            raise ConfigError(option, options[option], "is not a prefork option")
    if groups is not None and workers is not None:
        raise ConfigError("groups", dict(groups), "give either workers or groups, not both")
    if groups is None:
        groups = {DEFAULT_GROUP: 1 if workers is None else workers}
    if not isinstance(groups, Mapping):
        raise ConfigError("groups", groups, "must map group names to worker counts")
    shared = {name: value for name, value in options.items() if name in _GROUP_NAMES}
    built = tuple(_group_of(name, spec, shared) for name, spec in groups.items())
    master = {name: value for name, value in options.items() if name not in _GROUP_NAMES}
    return cls(groups=built, **master)


def _group_of(name: str, spec: Any, shared: Mapping[str, Any]) -> Any:
    if isinstance(spec, Mapping):
        for option in spec:
            if option not in _GROUP_NAMES:
                raise ConfigError(_option_label(name, option), spec[option],
                                  "is not an option of a group")
        return GroupConfig(name, **{**shared, **spec})
    return GroupConfig(name, spec, **shared)


def _with_options(self: Any, **options: Any) -> Any:
    """A copy with some options changed (validated again); group options change in
    every group."""
    shared = {name: value for name, value in options.items() if name in _GROUP_NAMES}
    master = {name: value for name, value in options.items() if name not in _GROUP_NAMES}
    groups = tuple(replace(group, **shared) for group in self.groups)
    return replace(self, groups=groups, **master)


def _group(self: Any, name: str) -> Any:
    """The settings of group ``name`` (``KeyError`` for a group the config lacks)."""
    for group in self.groups:
        if group.name == name:
            return group
    raise KeyError(name)


def _group_names(self: Any) -> tuple[str, ...]:
    return tuple(group.name for group in self.groups)


def _workers_of(self: Any, name: str) -> int:
    """The configured worker count of group ``name`` (0 for a group the config lacks)."""
    for group in self.groups:
        if group.name == name:
            return group.workers
    return 0


_GROUP_NAMES = frozenset(option.name for option in GROUP_OPTIONS)

PoolConfig = make_dataclass(
    "PoolConfig",
    [("groups", tuple, field(default=(GroupConfig(DEFAULT_GROUP, 1),))),
     *_fields(MASTER_OPTIONS)],
    frozen=True,
    namespace={
        "__doc__": "The pool as the core sees it: the master options of core_options, and "
                   "one GroupConfig per group. Times are in seconds; None turns a timeout "
                   "off. With max_restarts set, more crash restarts than that within "
                   "restart_period seconds make the master give up and exit 1.",
        "__post_init__": _check_pool,
        "__module__": __name__,
        "of": classmethod(_of),
        "with_options": _with_options,
        "group": _group,
        "group_names": property(_group_names),
        "workers_of": _workers_of,
    },
)
