"""The master as a service: who the workers run as, the working directory and umask,
readiness from the core's first READY=1, and the options that set them."""

from __future__ import annotations

import grp
import logging
import os
import pwd
import socket
import tempfile
from pathlib import Path

import pytest

from prefork.core.errors import ConfigError
from prefork.options import BY_NAME, build_settings, umask_of
from prefork.posix.service import Identity, Service, resolve_identity

LOG = logging.getLogger("test")


def test_no_user_or_group_is_no_identity() -> None:
    assert resolve_identity(None, None) is None


def test_who_the_master_is_already_needs_no_switch() -> None:
    me = pwd.getpwuid(os.geteuid())
    assert resolve_identity(me.pw_name, None) is None
    assert resolve_identity(str(me.pw_uid), grp.getgrgid(os.getegid()).gr_name) is None


def test_unknown_names_are_refused_by_name() -> None:
    with pytest.raises(ConfigError, match="user='no-such-user-here': is not a user"):
        resolve_identity("no-such-user-here", None)
    with pytest.raises(ConfigError, match="group='no-such-group-here': is not a group"):
        resolve_identity(None, "no-such-group-here")


def test_switching_needs_root() -> None:
    other = next(entry for entry in pwd.getpwall() if entry.pw_uid != os.geteuid())
    with pytest.raises(ConfigError, match="needs the master to run as root"):
        resolve_identity(other.pw_name, None, euid=4242)


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can switch users")
def test_root_switches_to_the_users_own_group() -> None:
    nobody = pwd.getpwnam("nobody")
    assert resolve_identity("nobody", None) == Identity(nobody.pw_uid, nobody.pw_gid,
                                                         "nobody")


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can switch users")
def test_a_worker_runs_as_the_user(tmp_path: Path) -> None:
    service = Service(LOG, user="nobody")
    service.start()
    body = service.worker_main(lambda: 0)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the "worker"
        body()
        os.write(write, f"{os.getuid()} {os.getgid()}".encode())
        os._exit(0)
    os.close(write)
    said = os.read(read, 100).decode()
    os.close(read)
    os.waitpid(pid, 0)
    nobody = pwd.getpwnam("nobody")
    assert said == f"{nobody.pw_uid} {nobody.pw_gid}"
    assert os.getuid() == 0, "the master stays who it was"


def test_start_enters_chdir_and_sets_umask(tmp_path: Path) -> None:
    before_dir, before_mask = os.getcwd(), os.umask(0o022)
    try:
        Service(LOG, chdir=str(tmp_path), umask=0o027).start()
        assert os.getcwd() == str(tmp_path)
        assert os.umask(0o022) == 0o027
    finally:
        os.chdir(before_dir)
        os.umask(before_mask)


def test_a_chdir_that_cannot_be_entered_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"chdir='.*/nope': cannot be entered \(No such"):
        Service(LOG, chdir=str(tmp_path / "nope")).start()


def test_ready_is_the_first_ready_and_writes_the_pidfile(tmp_path: Path,
                                                         monkeypatch) -> None:
    directory = tempfile.mkdtemp(prefix="pfs-")
    address = os.path.join(directory, "notify")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(address)
    listener.settimeout(5)
    monkeypatch.setenv("NOTIFY_SOCKET", address)
    pidfile = tmp_path / "m.pid"
    service = Service(LOG, pidfile=str(pidfile))
    try:
        service.start()
        assert pidfile.read_text() == ""
        service.notify("STATUS=booting", 1.0)
        assert not service.is_ready and pidfile.read_text() == ""
        service.notify("READY=1", 2.0)
        assert service.is_ready and pidfile.read_text() == f"{os.getpid()}\n"
        assert [listener.recv(100) for _ in range(2)] == [b"STATUS=booting", b"READY=1"]
        assert "NOTIFY_SOCKET" not in os.environ, "not for the workers"
        assert service.wake_at is None, "no watchdog asked for"
    finally:
        service.stop()
        listener.close()
        os.unlink(address)
        os.rmdir(directory)
    assert not pidfile.exists()


@pytest.mark.parametrize(("given", "value"), [("027", 0o027), ("0o777", 0o777), (0o22, 0o22)])
def test_umask_takes_octal_text_or_a_number(given, value) -> None:
    assert umask_of(build_settings(lambda: None, umask=given).umask) == value


@pytest.mark.parametrize("given", ["rw-r", "8", 0o1000, -1, True])
def test_a_bad_umask_is_refused(given) -> None:
    with pytest.raises(ConfigError, match=r"umask=.*must be an octal mask"):
        build_settings(lambda: None, umask=given)


def test_the_service_options_are_master_options_that_need_a_restart() -> None:
    for name in ("daemonize", "chdir", "umask", "user", "group", "pidfile"):
        option = BY_NAME[name]
        assert option.scope == "master" and not option.reloadable, name
    assert BY_NAME["umask"].kind.parse("027") == 0o027
