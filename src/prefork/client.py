"""The other end of the control socket: find a running master, ask it one thing.

``prefork status``, ``scale``, ``stop``, ``reload``, ``check``... each send one request
(``prefork.posix.control`` has the protocol) and print the reply. The master is found,
first match wins, by:

1. ``-s SOCKET``, the socket's path (or ``PREFORK_CONTROL_SOCKET``);
2. ``-p PIDFILE``: the socket beside it, as the master makes it (``app.pid`` ->
   ``app.sock``; or ``PREFORK_PIDFILE``);
3. ``-c FILE``: the ``control_socket``, ``pidfile`` and ``name`` the config file gives
   (the file is read as TOML, its job is not imported);
4. the default place for a master named ``name`` (``PREFORK_NAME``, else ``prefork``):
   ``prefork-NAME.sock`` in ``$XDG_RUNTIME_DIR`` or the temporary directory.

A master that does not answer within ``timeout`` seconds is unreachable: dead, or its
loop stalled (a live loop answers at once).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from collections.abc import Mapping
from typing import Any

from prefork.options import load_file
from prefork.posix.control import PROTOCOL_VERSION, socket_path
from prefork.posix.memory import MIB, unique_mib

DEFAULT_TIMEOUT = 5.0
_MAX_REPLY = 16 * 1024 * 1024


class Unreachable(Exception):
    """No master answered at the socket (its words say where and why)."""


class Refused(Exception):
    """The master answered with an error (its words are the master's)."""


def find_socket(socket_arg: str | None = None, pidfile: str | None = None,
                config_file: str | None = None,
                environ: Mapping[str, str] | None = None) -> str:
    """The control socket's path (see the module's doc for the order)."""
    environ = os.environ if environ is None else environ
    socket_arg = socket_arg or environ.get("PREFORK_CONTROL_SOCKET")
    if socket_arg:
        return os.path.abspath(socket_arg)
    pidfile = pidfile or environ.get("PREFORK_PIDFILE")
    name = environ.get("PREFORK_NAME") or "prefork"
    control = None
    if config_file:
        data = load_file(config_file)
        control = _key(data, "control_socket")
        pidfile = pidfile or _key(data, "pidfile")
        name = _key(data, "name") or name
    path = socket_path(control, pidfile, name, environ)
    if path is None:
        raise Unreachable("the master's control socket is off (control_socket = \"off\")")
    return path


def _key(data: Mapping[str, Any], name: str) -> Any:
    value = data.get(name, data.get(name.replace("_", "-")))
    return value if isinstance(value, str) and value else None


def ask(path: str, command: str, timeout: float = DEFAULT_TIMEOUT, **fields: Any
        ) -> dict[str, Any]:
    """Send ``command`` with ``fields`` to the master at ``path``; its reply's fields.
    Raises ``Unreachable`` (no answer) or ``Refused`` (an error reply)."""
    request = json.dumps({"version": PROTOCOL_VERSION, "command": command, **fields})
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.settimeout(timeout)
    try:
        client.connect(path)
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            client.sendall(request.encode() + b"\n")  # a refusal may come first
        data = _read_all(client)
    except TimeoutError:
        raise Unreachable(f"the master at {path} did not answer within {timeout:g}s "
                          "(its loop is stalled, or it is not a master)") from None
    except OSError as error:
        raise Unreachable(f"no master answers at {path} ({error.strerror or error})") from None
    finally:
        client.close()
    try:
        reply = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise Unreachable(f"the answer at {path} is not a master's") from None
    if not isinstance(reply, dict) or not reply.get("ok"):
        why = reply.get("error") if isinstance(reply, dict) else None
        raise Refused(str(why or "the master refused the request"))
    return reply


def _read_all(client: socket.socket) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while size < _MAX_REPLY:
        try:
            chunk = client.recv(65536)
        except ConnectionResetError:  # closed with our request unread (a refusal)
            break
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


# the status table ------------------------------------------------------------------------

def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s" if seconds < 10 else f"{seconds:.0f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "K", "M", "G"):
        if n < 1024 or unit == "G":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


# how a column's value is shown (any other: as it is, "-" for none)
_SHOWN = {"age": _duration, "perform": _duration, "uss": _size}


def _cell(column: str, value: Any) -> str:
    shown = _SHOWN.get(column)
    if shown is not None:
        return shown(value)
    return "-" if value is None else str(value)


def measure_memory(status: Mapping[str, Any]) -> None:
    """Fill in the USS of the workers the master did not sample (it samples only pools
    with ``max_memory``): measured here, in the command's own process, so that a status
    request costs the master nothing more. Without psutil, or for a worker this user
    may not read, the cell stays empty."""
    for worker in status["workers"]:
        if worker.get("uss") is None and worker.get("pid") is not None:
            mib = unique_mib(worker["pid"])
            worker["uss"] = None if mib is None else round(mib * MIB)


def status_table(status: Mapping[str, Any]) -> str:
    """``prefork status``'s text: the master's line, one line per pool (with its crash
    loop, if any), then one row per worker with every column the master sent."""
    master = status["master"]
    ready = "ready" if master["ready"] else "not ready: " + "; ".join(master["not_ready"])
    lines = [f"master {master['name']} pid {master['pid']}: {master['state']}, {ready}"]
    for pool in status["pools"]:
        exits = pool.get("exits", {})
        crashes = exits.get("crashed", 0) + exits.get("killed", 0)
        failed_setups = exits.get("setup failed", 0)
        lines.append(
            f"pool {pool['pool']}: {pool['ready']}/{pool['target']} ready, "
            f"{pool['restarts']} restarts, {crashes} crashes, "
            + (f"{failed_setups} failed setups, " if failed_setups else "")
            + f"{exits.get('timed out', 0)} timeouts, {sum(pool['recycles'].values())} "
            "recycled")
        if pool.get("crash_loop"):
            lines.append(f"  {pool['crash_loop']}")
    workers = status["workers"]
    columns = [name for name in (workers[0] if workers else {}) if name != "generation"]
    if not columns:
        return "\n".join([*lines, "(no workers)"])
    rows = [[column.upper() for column in columns]]
    rows += [[_cell(column, worker.get(column)) for column in columns] for worker in workers]
    widths = [max(len(row[i]) for row in rows) for i in range(len(columns))]
    lines.append("")
    lines += ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)
                        ).rstrip() for row in rows]
    return "\n".join(lines)
