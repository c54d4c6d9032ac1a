"""Logs people can read, and logs programs can read: the handler, the formats, the banner.

prefork logs through the standard ``logging`` module, to the ``prefork`` logger (or the
``logger`` option's). ``install`` makes sure the lines go somewhere, as gunicorn does:
when the program configured nothing (neither the root logger nor the ``prefork`` logger
has a handler), it gives the ``prefork`` logger a handler of its own on stderr (fd 2,
which ``log_file`` redirects, in the master and in every worker, so USR1 reopens one
file for all), at ``log_level``. A program that configured logging keeps it: its
handlers get the lines, and only a ``log_level`` given explicitly changes the level.

Every line says when, which process, which master and where: ``[PID] NAME master`` for
the master, ``[PID] NAME POOL#SLOT`` for a worker (and for its perform children, with
their own pid)::

    2025-05-01 12:01:03,512 INFO [4242] prefork master: worker group=mail slot=0 pid=4250 spawned
    2025-05-01 12:01:03,530 INFO [4250] prefork mail#0: ...

``log_format = "json"`` writes one JSON object per line instead: ``time``, ``level``,
``name`` (the master's), ``pid``, ``process`` (``master`` or ``worker``), ``pool`` and
``slot`` (a worker's own), ``message``, and the line's fields: ``event`` (``spawned``,
``ready``, ``transition``, ``replaced``, ``timed_out``, ``killed``, ``exited`` with
``outcome``, ``status`` and ``perform``, ``scaled``, ``reloaded``, ``stopped``,
``started``...) with the worker's ``pool``, ``slot`` and ``worker_pid``.

The fields come from the core's ``Log`` effects (the loop hands them over as the
record's ``prefork`` attribute); the process's own place (master, or a worker's pool and
slot) is set once per process with ``set_worker``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Any

LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")
TEXT_FORMAT = ("%(asctime)s %(levelname)s [%(process)d] %(prefork_name)s %(prefork_where)s: "
               "%(message)s")
FIELDS = "prefork"  # the record attribute that holds a line's fields (a dict)

# where this process stands: the master's name, and a worker's pool and slot
_PLACE: dict[str, Any] = {"name": "prefork", "pool": None, "slot": None}


def set_master(name: str) -> None:
    """This process is the master ``name`` (and so are its lines)."""
    _PLACE.update(name=name, pool=None, slot=None)


def set_worker(pool: str, slot: int) -> None:
    """This process is (or was forked from) the worker of ``pool``'s ``slot``."""
    _PLACE["pool"], _PLACE["slot"] = pool, slot


class PlaceFilter(logging.Filter):
    """Adds the process's place to each record: ``prefork_name`` and ``prefork_where``
    (``master`` or ``POOL#SLOT``), for the formats to use."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.prefork_name = _PLACE["name"]
        pool = _PLACE["pool"]
        record.prefork_where = "master" if pool is None else f"{pool}#{_PLACE['slot']}"
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line (see the module's docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        pool = _PLACE["pool"]
        line: dict[str, Any] = {
            "time": _iso(record.created),
            "level": record.levelname.lower(),
            "name": _PLACE["name"],
            "pid": record.process,
            "process": "master" if pool is None else "worker",
        }
        if pool is not None:
            line["pool"], line["slot"] = pool, _PLACE["slot"]
        line["message"] = record.getMessage()
        fields = getattr(record, FIELDS, None)
        if fields:
            line.update({key: _plain(value) for key, value in fields.items()
                         if key not in _RESERVED})
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


_RESERVED = frozenset({"time", "level", "name", "pid", "process", "message"})


def _iso(created: float) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(created))
    return f"{seconds}.{int(created % 1 * 1000):03d}{time.strftime('%z', time.localtime(created))}"


def _plain(value: object) -> object:
    if value is None or isinstance(value, bool | int | float):
        return value
    return str(value)


class PreforkHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler ``install`` adds: to stderr as it is at each line (fd 2, which
    ``log_file`` redirects), never a stream object kept from before."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)
        self.addFilter(PlaceFilter())

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:  # StreamHandler.__init__ sets it
        pass


def formatter_for(log_format: str) -> logging.Formatter:
    if log_format == "json":
        return JsonFormatter()
    return logging.Formatter(TEXT_FORMAT)


def app_configured(logger: logging.Logger) -> bool:
    """Whether the program configured logging for ``logger`` itself: a handler, not ours,
    on it or on an ancestor it propagates to."""
    current: logging.Logger | None = logger
    while current is not None:
        if any(not isinstance(handler, PreforkHandler) for handler in current.handlers):
            return True
        current = current.parent if current.propagate else None
    return False


def install(logger: Any, name: str, level: str | None, log_format: str,
            explicit_level: bool = False) -> bool:
    """Make ``logger``'s lines go somewhere (see the module's docstring); whether prefork's
    own handler is in place. ``level`` is ``log_level``; ``explicit_level``: it was given
    (not the default), so it applies even to logging the program configured."""
    set_master(name)
    if not isinstance(logger, logging.Logger):
        return False
    numeric = getattr(logging, (level or "info").upper())
    ours = [handler for handler in logger.handlers if isinstance(handler, PreforkHandler)]
    for handler in ours:
        logger.removeHandler(handler)
    if app_configured(logger):
        if explicit_level:
            logger.setLevel(numeric)
        return False
    handler = PreforkHandler()
    handler.setFormatter(formatter_for(log_format))
    logger.addHandler(handler)
    logger.setLevel(numeric)
    logger.propagate = False
    return True


def banner(version: str, name: str, pools: list[tuple[str, str, str, int]],
           config_file: str | None, preload: bool) -> list[tuple[str, dict[str, Any]]]:
    """The lines a master starts with, and their fields: the version, the pid, the
    config file, then each pool with its job, strategy and count."""
    pid = os.getpid()
    lines = [(f"prefork {version} starting: master {name}, pid {pid}, config file "
              f"{config_file or 'none'}{', preload' if preload else ''}",
              {"event": "started", "version": version, "master_pid": pid,
               "config_file": config_file, "preload": preload})]
    for pool, job, strategy, workers in pools:
        lines.append((f"pool {pool}: job {job}, strategy {strategy}, {workers} workers",
                      {"event": "pool", "pool": pool, "job": job, "strategy": strategy,
                       "workers": workers}))
    return lines


def log(logger: Any, level: str, message: str, fields: Any = None) -> None:
    """Log ``message`` at ``level`` with its ``fields`` (pairs or a dict), on any
    logger-like object (one without ``extra`` gets the message alone)."""
    method = getattr(logger, level, None) or logger.info
    if fields and isinstance(logger, logging.Logger | logging.LoggerAdapter):
        method(message, extra={FIELDS: dict(fields)})
    else:
        method(message)
