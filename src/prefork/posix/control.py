"""The control socket: a UNIX socket where the master takes commands, one per connection.

The protocol: the client connects, sends one JSON object (ended by a newline, or by
shutting its side down), and reads one JSON object back; then the master closes. Both
carry ``"version": 1``. A request names its ``command`` and that command's fields::

    {"version": 1, "command": "status"}
    {"version": 1, "command": "scale", "pool": "mail", "n": "+2"}     (or "-1", or "5")
    {"version": 1, "command": "stop", "graceful": true}
    {"version": 1, "command": "reload"}          also "reopen-logs", "hold", "resume"

and the reply says ``"ok": true`` with what the command gives (``status``: the pool, as
``status_view`` makes it), or ``"ok": false`` with an ``"error"`` line. A malformed
request gets an error reply, is logged, and the master goes on.

No command adds behaviour: each becomes the event its signal already is (``stop`` is
TERM, ``stop --graceful`` QUIT, ``reload`` HUP, ``reopen-logs`` USR1, ``hold`` USR2,
``resume`` CONT) or the core's ``Scale`` command, so a command does exactly what the
signal does, and repeating one is harmless (a second ``stop`` while stopping is ignored
by the core, as a second QUIT is; ``scale mail 3`` twice leaves 3).

Who may ask: the socket file is made with mode 0600, and each connection's peer
credentials (``SO_PEERCRED``) are checked: root or the master's own user, anyone else
gets an error reply before a byte of theirs is read, and a warning in the log.

Where: ``control_socket``, or by default beside the pid file (``app.pid`` ->
``app.sock``), or else ``prefork-NAME.sock`` in ``$XDG_RUNTIME_DIR`` (the temporary
directory without one). A socket file left by a dead master is replaced at start; a live
master's is never taken: a master given that path refuses to start, one that only
defaulted to it runs without a control socket and says so.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import stat
import struct
import tempfile
import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from prefork.core.errors import ConfigError
from prefork.core.events import Event, Scale, Signal
from prefork.core.signals import Sig
from prefork.core.snapshot import Snapshot
from prefork.posix.serving import Connection, Server, bind
from prefork.posix.status_view import status_document

PROTOCOL_VERSION = 1
OFF = "off"
_UNIX_PATH_MAX = 107  # sun_path is 108 bytes with its terminating NUL
_PEERCRED = struct.Struct("3i")  # pid, uid, gid

# the commands that are a signal to the master, by name
SIGNAL_COMMANDS: dict[str, Sig] = {
    "reload": Sig.HUP,
    "reopen-logs": Sig.USR1,
    "hold": Sig.USR2,
    "resume": Sig.CONT,
}
COMMANDS = ("status", "scale", "stop", *SIGNAL_COMMANDS)


class EndpointInUse(Exception):
    """Another live master serves this control socket (or health address)."""


class MasterView(NamedTuple):
    """What the endpoints may ask of the loop: a snapshot, an event to handle, the loop's
    lag; and who the master is."""

    snapshot: Callable[[], Snapshot]
    feed: Callable[[Event], None]
    loop_lag: Callable[[], float]
    pid: int
    name: str
    durations: Callable[[], dict[str, tuple[list[int], float]]] = dict


class RequestError(Exception):
    """A request the master cannot take: its words are the error reply."""


def runtime_directory(environ: Mapping[str, str] | None = None) -> str:
    """Where a control socket goes by default when there is no pid file."""
    environ = os.environ if environ is None else environ
    return environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()


def socket_path(control_socket: str | None, pidfile: str | None, name: str,
                environ: Mapping[str, str] | None = None) -> str | None:
    """The control socket's path for these options (``None``: ``off``); ``environ``
    gives ``XDG_RUNTIME_DIR`` (default: this process's)."""
    if control_socket == OFF:
        return None
    if control_socket:
        return os.path.abspath(control_socket)
    if pidfile:
        stem, ext = os.path.splitext(os.path.abspath(pidfile))
        return (stem if ext == ".pid" else stem + ext) + ".sock"
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    return os.path.join(runtime_directory(environ), f"prefork-{safe}.sock")


def encode(message: dict[str, Any]) -> bytes:
    return (json.dumps({"version": PROTOCOL_VERSION, **message}) + "\n").encode()


def error_reply(why: str) -> bytes:
    return encode({"ok": False, "error": why})


class ControlServer(Server):
    """The master's end of the control socket (see the module's doc)."""

    max_request = 4096

    def __init__(self, listener: socket.socket, path: str, logger: Any) -> None:
        super().__init__(listener, logger)
        self.path = path
        self.inode = os.stat(path).st_ino

    def peer_of(self, sock: socket.socket, address: Any) -> Any:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
        return _PEERCRED.unpack(raw)  # (pid, uid, gid)

    def greet(self, connection: Connection) -> bytes | None:
        pid, uid, _ = connection.peer
        if uid in (0, os.geteuid()):
            return None
        self.logger.warning(f"control socket: refused pid={pid} uid={uid} (only root and "
                            f"uid {os.geteuid()} may control this master)")
        return error_reply(f"permission denied: uid {uid} may not control this master")

    def complete(self, inbox: bytearray) -> bool:
        return b"\n" in inbox

    def too_large(self) -> bytes:
        self.logger.warning(f"control socket: a request over {self.max_request} bytes, "
                            "refused")
        return error_reply(f"request too large (at most {self.max_request} bytes)")

    def internal_error(self) -> bytes:
        return error_reply("the master failed to answer (see its log)")

    def answer(self, connection: Connection) -> bytes:
        try:
            request = parse_request(bytes(connection.inbox))
            return encode({"ok": True, **self.carry_out(request, connection.peer)})
        except RequestError as error:
            self.logger.warning(f"control socket: bad request from pid={connection.peer[0]}: "
                                f"{error}")
            return error_reply(str(error))

    def carry_out(self, request: dict[str, Any], peer: tuple[int, int, int]) -> dict[str, Any]:
        """Do what ``request`` asks; return the reply's fields."""
        view = self.view
        assert view is not None, "the control server is not attached to a loop"
        command = request["command"]
        if command == "status":
            return {"status": status_document(view.snapshot(), view.pid, view.name,
                                              view.loop_lag())}
        if command != "status":
            self.logger.info(f"control socket: {describe(request)} (pid={peer[0]} "
                             f"uid={peer[1]})")
        if command == "scale":
            return self._scale(view, request)
        sig = SIGNAL_COMMANDS.get(command)
        if command == "stop":
            sig = Sig.QUIT if request.get("graceful") else Sig.TERM
        assert sig is not None
        view.feed(Signal(sig, at=time.monotonic()))
        return {"state": view.snapshot().state}

    def _scale(self, view: MasterView, request: dict[str, Any]) -> dict[str, Any]:
        pool, n = request.get("pool"), request.get("n")
        targets = dict(view.snapshot().targets)
        if pool not in targets:
            raise RequestError(f"no pool {pool!r} (pools: {', '.join(targets)})")
        target = scaled(targets[pool], n)
        view.feed(Scale(pool, target, at=time.monotonic()))
        after = dict(view.snapshot().targets).get(pool, target)
        return {"pool": pool, "from": targets[pool], "to": after}

    def release(self) -> None:
        """Close, and remove the socket file if it is still this master's."""
        self.close()
        with contextlib.suppress(OSError):
            if os.stat(self.path).st_ino == self.inode:
                os.unlink(self.path)


def scaled(current: int, n: object) -> int:
    """The target ``n`` asks for: ``"5"`` (or 5), ``"+2"``, ``"-1"``; never below 0."""
    text = str(n).strip() if isinstance(n, int | str) and not isinstance(n, bool) else ""
    try:
        value = int(text)
    except ValueError:
        raise RequestError(f"scale: N must be a number, +N or -N (got {n!r})") from None
    target = current + value if text[:1] in "+-" else value
    if target < 0:
        raise RequestError(f"scale: {text} would leave {target} workers")
    return target


def parse_request(data: bytes) -> dict[str, Any]:
    """The request in ``data``, checked (``RequestError`` says what is wrong)."""
    try:
        request = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise RequestError("malformed request: not a JSON object") from None
    if not isinstance(request, dict):
        raise RequestError("malformed request: not a JSON object")
    if request.get("version") != PROTOCOL_VERSION:
        raise RequestError(f"unsupported protocol version {request.get('version')!r} "
                           f"(this master speaks {PROTOCOL_VERSION})")
    if request.get("command") not in COMMANDS:
        raise RequestError(f"unknown command {request.get('command')!r} "
                           f"(commands: {', '.join(COMMANDS)})")
    return request


def describe(request: dict[str, Any]) -> str:
    command = request["command"]
    if command == "scale":
        return f"scale {request.get('pool')} {request.get('n')}"
    if command == "stop" and request.get("graceful"):
        return "stop --graceful"
    return command


def open_control(path: str, explicit: bool, logger: Any) -> ControlServer | None:
    """Listen on ``path`` (mode 0600). A stale socket file is replaced; a live master's
    raises ``EndpointInUse`` when ``explicit``, and is left alone otherwise (``None``)."""
    why_not = (f"is longer than {_UNIX_PATH_MAX} bytes" if len(os.fsencode(path)) >
               _UNIX_PATH_MAX else None if os.path.isdir(os.path.dirname(path))
               else "its directory does not exist")
    if why_not is not None:
        if explicit:
            raise ConfigError("control_socket", path, why_not)
        logger.warning(f"the default control socket {path} {why_not}: this master runs "
                       "without one (set control_socket)")
        return None
    if os.path.lexists(path):
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            raise ConfigError("control_socket", path, "exists and is not a socket")
        if _answers(path):
            why = f"the control socket {path} is in use by a running master"
            if explicit:
                raise EndpointInUse(why)
            logger.warning(f"{why}: this master runs without one (set control_socket)")
            return None
        os.unlink(path)  # a dead master's
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    mask = os.umask(0o177)  # made 0600 from the start, not chmod'ed after
    try:
        bind(listener, path, "control_socket", path)
    finally:
        os.umask(mask)
    os.chmod(path, 0o600)
    listener.listen(16)
    logger.info(f"control socket: {path}")
    return ControlServer(listener, path, logger)


def _answers(path: str) -> bool:
    """Whether a process listens on the socket file ``path``."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(path)
    except OSError:
        return False
    finally:
        probe.close()
    return True
