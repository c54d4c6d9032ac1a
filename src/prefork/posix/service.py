"""Being a service: the master's start and end as init systems and operators see them.

What a master started by systemd, an init script, monit or a container needs around its
loop, in one place: the working directory and umask, the double fork with its ready pipe
(``daemon``), the pid file and its lock (``pidfile``), the service manager's notification
socket and watchdog (``notify``), and the user and group the workers run as.

Order at start (``start``): enter ``chdir``, set ``umask``, resolve ``user``/``group``
(an unknown name is refused before anything is forked), daemonize, then claim the pid
file in the daemon (the lock belongs to the process that keeps it; a refusal goes back
to the launcher as the master's own line). Then the master builds its loop and boots.

*Ready* is the core's word: its first ``Notify`` with ``READY=1``, sent once the first
workers are forked. Then the pid file is written, the launcher is released (exit 0), and
the message goes on to the service manager. The watchdog starts with it, and its pings
are sent by the loop (``keepalive``) for as long as the loop turns.

At the end (``stop``): the pid file is removed (if it is still this master's) and the
socket closed. A start that failed is told to the launcher with ``failed``.
"""

from __future__ import annotations

import grp
import os
import pwd
from collections.abc import Callable
from typing import Any, NamedTuple

from prefork.core.errors import ConfigError
from prefork.posix import daemon
from prefork.posix.notify import Notifier
from prefork.posix.pidfile import PidFile


class Identity(NamedTuple):
    """Who the workers run as: a user (its name, for its supplementary groups) and a
    group; ``name`` is ``None`` when only a group was given."""

    uid: int | None
    gid: int
    name: str | None


def resolve_identity(user: str | None, group: str | None,
                     euid: int | None = None) -> Identity | None:
    """The identity ``user`` and ``group`` name (names or numeric ids), or ``None`` when
    neither is given or they name who the master is already.

    Raises ``ConfigError`` for an unknown name, or when switching needs root and the
    master is not root.
    """
    if user is None and group is None:
        return None
    euid = os.geteuid() if euid is None else euid
    uid = name = None
    gid = os.getegid()
    if user is not None:
        try:
            entry = pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
        except (KeyError, OverflowError):
            raise ConfigError("user", user, "is not a user of this system") from None
        uid, gid, name = entry.pw_uid, entry.pw_gid, entry.pw_name
    if group is not None:
        try:
            gid = (grp.getgrgid(int(group)) if group.isdigit() else grp.getgrnam(group)).gr_gid
        except (KeyError, OverflowError):
            raise ConfigError("group", group, "is not a group of this system") from None
    if (uid is None or uid == euid) and gid == os.getegid():
        return None  # already so
    if euid != 0:
        option, value = ("user", user) if user is not None and uid != euid else ("group", group)
        raise ConfigError(option, value, f"needs the master to run as root to switch the "
                                         f"workers to it (it runs as uid {euid})")
    return Identity(uid, gid, name)


def become(identity: Identity) -> None:
    """In a freshly forked worker: drop to ``identity`` (groups first, the user last)."""
    if identity.name is not None:
        os.initgroups(identity.name, identity.gid)
    else:
        os.setgroups([identity.gid])
    os.setgid(identity.gid)
    if identity.uid is not None:
        os.setuid(identity.uid)


class Service:
    """The master as a service (see the module's doc). Everything is optional: without
    options, ``start`` and ``stop`` do nothing but look for ``NOTIFY_SOCKET``."""

    def __init__(self, logger: Any, *, pidfile: str | None = None, daemonize: bool = False,
                 chdir: str | None = None, umask: int | None = None, user: str | None = None,
                 group: str | None = None) -> None:
        self.logger = logger
        self.pidfile = PidFile(os.path.abspath(pidfile), logger) if pidfile else None
        self.daemonize = daemonize
        self.chdir = chdir
        self.umask = umask
        self.user = user
        self.group = group
        self.identity: Identity | None = None
        self.launch = daemon.ReadyPipe(None)
        self.notifier: Notifier | None = None
        self.is_ready = False

    # start and end ----------------------------------------------------------------------

    def start(self) -> None:
        """Everything before the loop (see the module's doc). Raises ``ConfigError`` or
        ``PidFileInUse``; the caller reports it with ``failed``."""
        if self.chdir is not None:
            try:
                os.chdir(self.chdir)
            except OSError as error:
                raise ConfigError("chdir", self.chdir,
                                  f"cannot be entered ({error.strerror})") from None
        if self.umask is not None:
            os.umask(self.umask)
        self.identity = resolve_identity(self.user, self.group)
        if self.daemonize:
            self.launch = daemon.daemonize()
        self.notifier = Notifier.from_environ(self.logger)
        if self.pidfile is not None:
            self.pidfile.claim()

    def failed(self, code: int, line: str) -> None:
        """The master could not start (or died before it was ready): tell the launcher."""
        self.launch.failed(code, line)

    def stop(self) -> None:
        """The master is leaving: its pid file goes, and the socket closes."""
        if self.pidfile is not None:
            self.pidfile.release()
        if self.notifier is not None:
            self.notifier.close()
        if self.launch.waiting:  # stopped before it was ever ready
            self.launch.failed(daemon.EXIT_FAILED, "prefork: the master stopped before it "
                                                   "was ready (see its log)")

    # what the loop calls ------------------------------------------------------------------

    def notify(self, message: str, now: float) -> None:
        """The core's ``Notify``: the first ``READY=1`` makes the master ready; every
        message goes on to the service manager, if there is one."""
        if not self.is_ready and "READY=1" in message.splitlines():
            self._ready(now)
        if self.notifier is not None:
            self.notifier.send(message)

    def _ready(self, now: float) -> None:
        self.is_ready = True
        if self.pidfile is not None:
            self.pidfile.write(os.getpid())
        self.launch.ready()
        if self.notifier is not None:
            self.notifier.start_watchdog(now)

    @property
    def wake_at(self) -> float | None:
        """When the loop must wake for the watchdog (``None``: never)."""
        return None if self.notifier is None else self.notifier.due

    def keepalive(self, now: float) -> None:
        """The loop turned: ping the watchdog if a ping is due."""
        if self.notifier is not None:
            self.notifier.keepalive(now)

    def worker_main(self, body: Callable[..., int]) -> Callable[..., int]:
        """``body`` (a worker's main), run as ``user``/``group`` when they are set."""
        identity = self.identity
        if identity is None:
            return body

        def as_identity(*args: Any) -> int:
            become(identity)
            return body(*args)

        return as_identity
