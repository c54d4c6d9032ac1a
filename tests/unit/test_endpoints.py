"""The control socket, the health port and the metrics, piece by piece, on real sockets
(the whole of them against a real master is tests/e2e/test_e2e_endpoints.py)."""

from __future__ import annotations

import json
import logging
import os
import select
import socket
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from prefork import ConfigError, Master
from prefork.client import measure_memory, status_table
from prefork.core import (
    Boot,
    ChildExited,
    Forked,
    Observed,
    PoolConfig,
    Supervisor,
    Tick,
    WorkerState,
)
from prefork.core.effects import Spawn
from prefork.core.events import Event, MemorySampled, Scale, Signal
from prefork.core.signals import Sig
from prefork.posix import metrics
from prefork.posix.control import (
    ControlServer,
    EndpointInUse,
    MasterView,
    RequestError,
    open_control,
    parse_request,
    scaled,
    socket_path,
)
from prefork.posix.health import HealthServer, open_health
from prefork.posix.serving import Connection, Endpoints
from prefork.posix.status_view import status_document

LOGGER = logging.getLogger("test.endpoints")


def running_pool() -> Supervisor:
    supervisor = Supervisor(PoolConfig.of(groups={"mail": 2, "sms": 1}))
    supervisor.handle(Boot(at=0.0))
    for group, slot, pid in (("mail", 0, 101), ("mail", 1, 102), ("sms", 0, 103)):
        supervisor.handle(Forked(group, slot, pid, at=0.0))
    for pid in (101, 102, 103):
        supervisor.handle(Observed(pid, WorkerState.IDLE, at=0.5))
    supervisor.handle(Observed(101, WorkerState.PERFORMING, heartbeat_at=9.0, performs=4,
                               at=10.0))
    return supervisor


class Master_:
    """A stand-in for the loop: the core, and the events the endpoints fed it."""

    def __init__(self) -> None:
        self.core = running_pool()
        self.fed: list[Event] = []
        self.pid = 200

    def feed(self, event: Event) -> None:
        self.fed.append(event)
        for effect in self.core.handle(event):
            if isinstance(effect, Spawn):  # answered at once, as the loop does
                self.pid += 1
                self.feed(Forked(effect.group, effect.slot, self.pid))

    def view(self) -> MasterView:
        return MasterView(self.core.snapshot, self.feed, lambda: 0.002, 4242, "test",
                          lambda: {"mail": ([1, 2] + [0] * 13, 0.003)})


# the protocol's words ----------------------------------------------------------------------

@pytest.mark.parametrize(("current", "n", "target"), [
    (2, "5", 5), (2, 5, 5), (2, "+2", 4), (2, "-1", 1), (2, " 3 ", 3), (0, "0", 0)])
def test_scale_takes_a_number_or_a_step(current: int, n: object, target: int) -> None:
    assert scaled(current, n) == target


@pytest.mark.parametrize("n", ["x", "", None, True, "-3", 1.5])
def test_scale_refuses_what_is_not_a_number_or_goes_below_zero(n: object) -> None:
    with pytest.raises(RequestError):
        scaled(2, n)


@pytest.mark.parametrize(("data", "words"), [
    (b"nope\n", "not a JSON object"), (b"[1]\n", "not a JSON object"),
    (b"\xff\n", "not a JSON object"),
    (b'{"command": "status"}\n', "unsupported protocol version None"),
    (b'{"version": 2, "command": "status"}\n', "unsupported protocol version 2"),
    (b'{"version": 1, "command": "rm -rf"}\n', "unknown command 'rm -rf'")])
def test_a_malformed_request_is_refused_with_its_reason(data: bytes, words: str) -> None:
    with pytest.raises(RequestError, match=words):
        parse_request(data)


def test_where_the_socket_goes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    assert socket_path("off", "/run/app.pid", "x") is None
    assert socket_path("/run/my.sock", "/run/app.pid", "x") == "/run/my.sock"
    assert socket_path(None, "/run/app.pid", "x") == "/run/app.sock"
    assert socket_path(None, "/run/app.lock", "x") == "/run/app.lock.sock"
    assert socket_path(None, None, "my app/1") == str(tmp_path / "prefork-my_app_1.sock")
    monkeypatch.chdir(tmp_path)
    assert socket_path("rel.sock", None, "x") == str(tmp_path / "rel.sock")


def test_the_options_are_checked_by_name() -> None:
    with pytest.raises(ConfigError, match="health_bind"):
        Master(lambda: None, health_bind="localhost")
    with pytest.raises(ConfigError, match="control_socket"):
        Master(lambda: None, control_socket="/no/such/dir/m.sock")


# the socket file -----------------------------------------------------------------------------

def test_the_socket_is_0600_and_goes_at_the_end_if_still_ours(tmp_path: Path) -> None:
    path = tmp_path / "m.sock"
    server = open_control(str(path), True, LOGGER)
    assert server is not None
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    server.release()
    assert not path.exists()
    server = open_control(str(path), True, LOGGER)
    assert server is not None
    path.unlink()
    path.write_text("someone else's now")
    server.release()
    assert path.read_text() == "someone else's now"


def test_a_dead_masters_socket_is_replaced_a_live_ones_is_not(tmp_path: Path,
                                                               caplog: pytest.LogCaptureFixture
                                                               ) -> None:
    path = tmp_path / "m.sock"
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(path))
    dead.close()  # the file stays, and nobody listens: a dead master's
    live = open_control(str(path), True, LOGGER)
    assert live is not None
    try:
        with pytest.raises(EndpointInUse, match="in use by a running master"):
            open_control(str(path), True, LOGGER)
        with caplog.at_level(logging.WARNING, LOGGER.name):
            assert open_control(str(path), False, LOGGER) is None  # only defaulted to it
        assert "runs without one" in caplog.text
    finally:
        live.release()


def test_a_file_that_is_not_a_socket_is_not_replaced(tmp_path: Path) -> None:
    path = tmp_path / "m.sock"
    path.write_text("data")
    with pytest.raises(ConfigError, match="exists and is not a socket"):
        open_control(str(path), True, LOGGER)
    assert path.read_text() == "data"


# serving, through a real poll set --------------------------------------------------------------

class Served:
    """Endpoints attached to a poll set, and the loop's part: poll, then serve."""

    def __init__(self, master: Master_, *servers: object) -> None:
        self.poller = select.poll()
        self.endpoints = Endpoints(list(servers))  # type: ignore[arg-type]
        self.endpoints.attach(self.poller, master.view())

    def turn(self, now: float = 0.0) -> None:
        ready = {fd for fd, _ in self.poller.poll(50)}
        self.endpoints.serve(ready, now)

    def exchange(self, client: socket.socket, data: bytes) -> bytes:
        client.sendall(data)
        reply = b""
        while True:
            self.turn()
            try:
                chunk = client.recv(65536)
            except BlockingIOError:
                continue
            if not chunk:
                return reply
            reply += chunk


def _client(path: Path) -> socket.socket:
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.connect(str(path))
    client.setblocking(False)
    return client


def test_status_scale_and_stop_through_the_socket(tmp_path: Path) -> None:
    master = Master_()
    server = open_control(str(tmp_path / "m.sock"), True, LOGGER)
    served = Served(master, server)
    with _client(tmp_path / "m.sock") as client:
        reply = json.loads(served.exchange(client, b'{"version": 1, "command": "status"}\n'))
    assert reply["version"] == 1 and reply["ok"] is True
    assert reply["status"]["master"] == {
        "pid": 4242, "name": "test", "state": "running", "ready": True, "not_ready": [],
        "loop_lag": 0.002, "crash_loops": []}
    assert [(w["pool"], w["slot"], w["pid"], w["state"]) for w in reply["status"]["workers"]] \
        == [("mail", 0, 101, "performing"), ("mail", 1, 102, "idle"), ("sms", 0, 103, "idle")]
    assert reply["status"]["workers"][0]["perform"] == 1.0  # since its heartbeat at 9
    with _client(tmp_path / "m.sock") as client:
        scale = json.loads(served.exchange(
            client, b'{"version": 1, "command": "scale", "pool": "mail", "n": "+1"}\n'))
    assert scale == {"version": 1, "ok": True, "pool": "mail", "from": 2, "to": 3}
    assert isinstance(master.fed[-2], Scale) and master.fed[-2].n == 3  # then its Forked
    with _client(tmp_path / "m.sock") as client:
        stop = json.loads(served.exchange(
            client, b'{"version": 1, "command": "stop", "graceful": true}\n'))
    assert stop == {"version": 1, "ok": True, "state": "draining"}
    assert isinstance(master.fed[-1], Signal) and master.fed[-1].signo is Sig.QUIT
    served.endpoints.close()
    assert not (tmp_path / "m.sock").exists()


def test_a_silent_client_is_dropped_at_its_deadline_and_the_loop_never_waits(
        tmp_path: Path) -> None:
    master = Master_()
    served = Served(master, open_control(str(tmp_path / "m.sock"), True, LOGGER))
    silent = _client(tmp_path / "m.sock")
    served.turn(now=100.0)  # accepted; nothing to read
    assert served.endpoints.wake_at == 100.0 + ControlServer.timeout
    served.endpoints.serve(set(), 100.0 + ControlServer.timeout)  # its deadline
    assert served.endpoints.wake_at is None and not served.endpoints.connections
    silent.setblocking(True)
    assert silent.recv(1) == b""  # closed, without a reply
    silent.close()
    served.endpoints.close()


def test_a_stranger_is_refused_before_a_byte_is_read(tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    server = open_control(str(tmp_path / "m.sock"), True, LOGGER)
    assert server is not None
    a, b = socket.socketpair()
    with a, b, caplog.at_level(logging.WARNING, LOGGER.name):
        mine = server.peer_of(a, None)
        assert mine[1] == os.geteuid()  # SO_PEERCRED of a real socket
        assert server.greet(Connection(a, 0.0, mine)) is None
        refusal = server.greet(Connection(a, 0.0, (77, 65534, 65534)))
    assert json.loads(refusal or b"") == {
        "version": 1, "ok": False,
        "error": "permission denied: uid 65534 may not control this master"}
    assert "refused pid=77 uid=65534" in caplog.text
    server.release()


# health and metrics ----------------------------------------------------------------------------

def _http(served: Served, port: int, request: bytes) -> tuple[int, str]:
    with socket.create_connection(("127.0.0.1", port)) as client:
        client.setblocking(False)
        head, _, body = served.exchange(client, request).decode().partition("\r\n\r\n")
    return int(head.split()[1]), body


def test_the_health_port_answers_livez_readyz_metrics(tmp_path: Path) -> None:
    master = Master_()
    server = open_health("127.0.0.1:0", LOGGER)
    port = server.listener.getsockname()[1]
    served = Served(master, server)
    assert _http(served, port, b"GET /livez HTTP/1.0\r\n\r\n") == (200, "live\n")
    assert _http(served, port, b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n") == (200, "ready\n")
    code, text = _http(served, port, b"GET /metrics HTTP/1.0\r\n\r\n")
    assert code == 200 and "prefork_workers" in text
    assert _http(served, port, b"GET /other HTTP/1.0\r\n\r\n")[0] == 404
    assert _http(served, port, b"POST /livez HTTP/1.0\r\n\r\n")[0] == 405
    assert _http(served, port, b"hello\r\n\r\n")[0] == 400
    master.feed(Signal(Sig.QUIT, at=11.0))  # a stop: readiness goes first
    assert _http(served, port, b"GET /readyz HTTP/1.0\r\n\r\n") == (
        503, "not ready: the master is draining\n")
    served.endpoints.close()
    assert isinstance(server, HealthServer)


def test_the_metrics_parse_and_count_what_the_core_counted() -> None:
    core = running_pool()
    core.handle(ChildExited(102, 1, performs=7, at=11.0))  # a crash, then its restart
    core.handle(Forked("mail", 1, 104, at=11.0))
    text = metrics.render(core.snapshot(), 0.25, {"mail": ([1, 2] + [0] * 13, 0.003)})
    families = {family.name: family for family in text_string_to_metric_families(text)}
    values = {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
              for family in families.values() for sample in family.samples}
    assert values["prefork_performs_total", (("pool", "mail"),)] == 4 + 7
    assert values["prefork_worker_crashes_total", (("pool", "mail"),)] == 1
    assert values["prefork_worker_restarts_total", (("pool", "mail"),)] == 1
    assert values["prefork_worker_exits_total", (("outcome", "crashed"), ("pool", "mail"))] == 1
    assert values["prefork_workers", (("pool", "mail"), ("state", "spawning"))] == 1
    assert values["prefork_master_loop_lag_seconds", ()] == 0.25
    assert values["prefork_master_ready", ()] == 0  # mail has 1/2 ready
    assert families["prefork_perform_duration_seconds"].type == "histogram"
    assert values["prefork_perform_duration_seconds_bucket",
                  (("le", "0.005"), ("pool", "mail"))] == 3
    assert values["prefork_perform_duration_seconds_count", (("pool", "mail"),)] == 3


def test_the_status_table_shows_every_column_it_is_sent() -> None:
    document = json.loads(json.dumps(status_document(running_pool().snapshot(), 7, "app",
                                                     0.0)))
    document["workers"][0]["uss"] = 12 * 1024 * 1024
    lines = status_table(document).splitlines()
    assert lines[0] == "master app pid 7: running, ready"
    assert lines[1] == "pool mail: 2/2 ready, 0 restarts, 0 crashes, 0 timeouts, 0 recycled"
    assert lines[4].split() == ["POOL", "SLOT", "PID", "STATE", "PERFORMS", "AGE", "PERFORM",
                                "USS"]
    assert lines[5].split() == ["mail", "0", "101", "performing", "4", "10s", "1.0s", "12.0M"]


def test_a_pool_in_a_crash_loop_says_so_under_its_line() -> None:
    supervisor = Supervisor(PoolConfig.of(groups={"mail": {"workers": 1,
                                                           "restart_backoff": 4}}))
    supervisor.handle(Boot(at=0.0))
    supervisor.handle(Forked("mail", 0, 101, at=0.0))
    supervisor.handle(ChildExited(101, 1, at=1.0))  # setup failed: respawned at once
    supervisor.handle(Forked("mail", 0, 102, at=1.0))
    supervisor.handle(ChildExited(102, 1, at=2.0))  # again: backed off 4s
    document = json.loads(json.dumps(status_document(supervisor.snapshot(), 7, "app", 0.0)))
    [mail] = document["pools"]
    assert mail["crash_loop"] == "pool mail: 2 crashes in 60s, next start in 4s"
    assert (mail["min_workers"], mail["max_workers"], mail["scaling"]) == (0, None, False)
    lines = status_table(document).splitlines()
    assert lines[1] == ("pool mail: 0/1 ready, 1 restarts, 0 crashes, 2 failed setups, "
                        "0 timeouts, 0 recycled")
    assert lines[2] == "  pool mail: 2 crashes in 60s, next start in 4s"
    supervisor.handle(Tick(3.12345))  # between two events: the wait left, in 3 digits
    assert supervisor.snapshot().pools[0].crash_loop == (
        "pool mail: 2 crashes in 60s, next start in 2.88s")


def test_the_uss_cell_is_the_master_s_latest_sample_when_it_took_one() -> None:
    supervisor = Supervisor(PoolConfig.of(groups={"mail": {"workers": 1, "max_memory": 500}}))
    supervisor.handle(Boot(at=0.0))
    supervisor.handle(Forked("mail", 0, 101, at=0.0))
    supervisor.handle(Observed(101, WorkerState.IDLE, at=0.5))
    supervisor.handle(MemorySampled(101, 12.5, at=2.0))
    [worker] = status_document(supervisor.snapshot(), 7, "app", 0.0)["workers"]
    assert worker["uss"] == round(12.5 * 1024 * 1024)


def test_the_command_measures_the_memory_the_master_did_not() -> None:
    status = {"workers": [{"pid": os.getpid(), "uss": None}, {"pid": None, "uss": None},
                          {"pid": os.getpid(), "uss": 5}]}
    measure_memory(status)
    mine, unforked, sampled = status["workers"]
    assert mine["uss"] > 1024 * 1024, "this process's own unique memory"
    assert unforked["uss"] is None and sampled["uss"] == 5


def test_an_answer_that_raises_is_logged_and_answered_and_the_loop_goes_on(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    master = Master_()
    server = open_control(str(tmp_path / "m.sock"), True, LOGGER)
    served = Served(master, server)
    server.view = server.view._replace(snapshot=lambda: 1 / 0)
    with caplog.at_level(logging.ERROR, LOGGER.name), _client(tmp_path / "m.sock") as client:
        reply = json.loads(served.exchange(client, b'{"version": 1, "command": "status"}\n'))
    assert reply == {"version": 1, "ok": False,
                     "error": "the master failed to answer (see its log)"}
    assert "answering a request raised" in caplog.text
    served.endpoints.close()


def test_the_commands_find_the_master_by_socket_pid_file_config_or_name(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from prefork.client import Unreachable, find_socket

    monkeypatch.chdir(tmp_path)
    env = {"XDG_RUNTIME_DIR": str(tmp_path)}
    assert find_socket("m.sock", environ=env) == str(tmp_path / "m.sock")
    assert find_socket(None, "run/app.pid", environ=env) == str(tmp_path / "run/app.sock")
    assert find_socket(environ={**env, "PREFORK_CONTROL_SOCKET": "/x.sock"}) == "/x.sock"
    assert find_socket(environ={**env, "PREFORK_NAME": "shop"}) == str(
        tmp_path / "prefork-shop.sock")
    config = tmp_path / "prefork.toml"
    config.write_text('name = "shop"\npidfile = "/run/shop.pid"\njob = "nowhere:Job"\n')
    assert find_socket(None, None, str(config), env) == "/run/shop.sock"
    config.write_text('control-socket = "/srv/c.sock"\njob = "nowhere:Job"\n')
    assert find_socket(None, None, str(config), env) == "/srv/c.sock"
    config.write_text('control_socket = "off"\n')
    with pytest.raises(Unreachable, match="off"):
        find_socket(None, None, str(config), env)
