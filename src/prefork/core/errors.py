"""The two ways the core says no.

``ConfigError`` is the user's mistake (a bad option): its message names the option and
the value. ``CoreError`` is a broken contract (an event the tables have no row for, or an
adapter that broke its promises): the core stops the world loudly rather than limp on.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """An option has a value prefork cannot use; the message names the option."""

    def __init__(self, option: str, value: object, why: str) -> None:
        self.option = option
        self.value = value
        super().__init__(f"{option}={value!r}: {why}")


class CoreError(RuntimeError):
    """An event the core has no row for, in the state it arrived in.

    The message names the machine, the worker (if any), the state and the event, so the
    log line alone tells which rule is missing.
    """
