"""The control socket, the commands and the health port, against a real master.

Real processes, a real UNIX socket and real HTTP: ``prefork status`` and ``scale``
against a two-pool master; a request from another user, a malformed one, a silent
client and an oversized one are refused while the pool goes on; ``prefork check``
during boot, running, a crash loop and a stop; ``/metrics`` read by prometheus_client's
parser.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from e2e_support import ROOT, Running, command_env, wait_for
from prometheus_client.parser import text_string_to_metric_families

NOBODY = 65534


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory with a short path (a UNIX socket's path is at most 107 bytes), which
    another user may enter (for the other-user test)."""
    path = Path(tempfile.mkdtemp(prefix="pf-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def prefork(*args: str, tmp_path: Path, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    """Run ``python -m prefork ARGS`` to its end."""
    return subprocess.run([sys.executable, "-m", "prefork", *args], cwd=str(ROOT),
                          env=command_env(tmp_path), capture_output=True, text=True,
                          timeout=timeout, check=False)


def ask(path: Path, data: bytes, timeout: float = 10) -> dict[str, object]:
    """Send raw ``data`` to the control socket; the JSON reply."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(timeout)
        client.connect(str(path))
        client.sendall(data)
        reply = b""
        while chunk := client.recv(65536):
            reply += chunk
    return json.loads(reply)


def status(path: Path) -> dict[str, object]:
    reply = ask(path, b'{"version": 1, "command": "status"}\n')
    assert reply["ok"] is True, reply
    return reply["status"]  # type: ignore[return-value]


def ready_workers(path: Path, pool: str) -> int:
    return next(p["ready"] for p in status(path)["pools"] if p["pool"] == pool)  # type: ignore[index,union-attr]


def two_pools(tmp_path: Path, sock: Path) -> Path:
    config = tmp_path / "prefork.toml"
    config.write_text(f'control_socket = "{sock}"\ntimeout = 30\n\n'
                      '[pool.mail]\njob = "jobs:Sleepy"\nworkers = 2\n\n'
                      '[pool.sms]\njob = "jobs:Sleepy"\nworkers = 1\n')
    return config


@pytest.mark.timeout(90)
def test_status_and_scale_against_a_two_pool_master(
        prefork_run: Callable[..., Running], tmp_path: Path, short_dir: Path) -> None:
    sock = short_dir / "m.sock"
    config = two_pools(tmp_path, sock)
    master = prefork_run("-c", str(config))
    master.workers_up(3)
    assert oct(sock.stat().st_mode & 0o777) == "0o600"
    wait_for(lambda: ready_workers(sock, "mail") == 2 and ready_workers(sock, "sms") == 1,
             15, "both pools ready")

    table = prefork("status", "-c", str(config), tmp_path=tmp_path)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].startswith(f"master prefork pid {master.pid}: running, ready")
    assert "pool mail: 2/2 ready" in lines[1] and "pool sms: 1/1 ready" in lines[2]
    header = next(line for line in lines if line.startswith("POOL"))
    assert header.split() == ["POOL", "SLOT", "PID", "STATE", "PERFORMS", "AGE", "PERFORM",
                              "USS"]
    rows = [line.split() for line in lines[lines.index(header) + 1:]]
    assert [(row[0], row[1]) for row in rows] == [("mail", "0"), ("mail", "1"), ("sms", "0")]
    # the command measures each worker's unique memory itself (these pools have no
    # max_memory, so the master samples none): a size in MiB, not "-"
    assert all(row[-1].endswith("M") for row in rows), rows

    as_json = prefork("status", "--json", "-s", str(sock), tmp_path=tmp_path)
    document = json.loads(as_json.stdout)
    assert document["master"]["pid"] == master.pid
    assert {w["pid"] for w in document["workers"]} == {int(row[2]) for row in rows}
    # the workers closed their copies of the listening socket right after the fork
    listening = f"socket:[{socket_inode(sock)}]"
    assert listening in open_sockets(master.pid)
    for worker in document["workers"]:
        assert listening not in open_sockets(worker["pid"])

    grown = prefork("scale", "mail", "+2", "-s", str(sock), tmp_path=tmp_path)
    assert grown.returncode == 0, grown.stderr
    assert grown.stdout.strip() == "pool mail: 2 -> 4 workers"
    wait_for(lambda: ready_workers(sock, "mail") == 4, 15, "mail at 4 workers")
    again = prefork("scale", "mail", "4", "-s", str(sock), tmp_path=tmp_path)  # idempotent
    assert again.returncode == 0 and again.stdout.strip() == "pool mail: 4 -> 4 workers"
    shrunk = prefork("scale", "sms", "0", "-s", str(sock), tmp_path=tmp_path)
    assert shrunk.returncode == 0, shrunk.stderr
    wait_for(lambda: not [w for w in status(sock)["workers"] if w["pool"] == "sms"],  # type: ignore[attr-defined,index]
             15, "sms emptied")
    unknown = prefork("scale", "fax", "1", "-s", str(sock), tmp_path=tmp_path)
    assert unknown.returncode == 1
    assert unknown.stderr.strip() == "prefork scale: no pool 'fax' (pools: mail, sms)"

    stopped = prefork("stop", "--graceful", "-s", str(sock), tmp_path=tmp_path)
    assert stopped.returncode == 0, stopped.stderr
    assert master.wait() == 0
    assert not sock.exists()  # the socket file goes with its master
    gone = prefork("status", "-s", str(sock), tmp_path=tmp_path)
    assert gone.returncode == 1 and gone.stderr.startswith("prefork status: no master answers")


def socket_inode(path: Path) -> str:
    """The inode of the socket listening at ``path`` (/proc/net/unix)."""
    for line in Path("/proc/net/unix").read_text().splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 8 and fields[7] == str(path):
            return fields[6]
    raise AssertionError(f"nothing listens at {path}")


def open_sockets(pid: int) -> set[str]:
    links = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            links.add(os.readlink(f"/proc/{pid}/fd/{fd}"))
    return links


def _ask_as(uid: int, path: Path) -> bytes:
    """Connect to ``path`` as ``uid`` (a forked child that drops to it); what the master
    answered (it answers a stranger at once, before reading a byte)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child)
        code = 1
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
                client.settimeout(10)
                client.connect(str(path))
                reply = b""
                while chunk := client.recv(65536):
                    reply += chunk
            os.write(write_end, reply)
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:
        reply = reader.read()
    _, status_ = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status_) == 0
    return reply


@pytest.mark.timeout(90)
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to be another user")
def test_another_user_a_malformed_a_silent_and_a_huge_request_are_refused(
        prefork_run: Callable[..., Running], tmp_path: Path, short_dir: Path) -> None:
    sock = short_dir / "m.sock"
    master = prefork_run("jobs:Sleepy", "-w", "2", "--control-socket", str(sock))
    master.workers_up(2)
    # the file's mode would stop another user at connect(): open it, so that what
    # refuses them is the master's own check of the peer's credentials
    sock.chmod(0o666)
    reply = json.loads(_ask_as(NOBODY, sock))
    assert reply == {"version": 1, "ok": False,
                     "error": f"permission denied: uid {NOBODY} may not control this master"}
    master.expect(rf"control socket: refused pid=\d+ uid={NOBODY}")

    silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    silent.connect(str(sock))  # and says nothing: it must not hold the loop
    try:
        for garbage in (b"this is not json\n", b'[1, 2]\n', b'{"command": "status"}\n',
                        b'{"version": 1, "command": "explode"}\n'):
            refused = ask(sock, garbage)
            assert refused["ok"] is False and refused["error"], refused
        assert "unknown command 'explode'" in str(refused["error"])
        huge = ask(sock, b'{"version": 1, "command": "status", "pad": "' + b"x" * 10000)
        assert huge == {"version": 1, "ok": False,
                        "error": "request too large (at most 4096 bytes)"}
        # the pool went on: the same workers, both ready, the master answers
        assert status(sock)["master"]["state"] == "running"  # type: ignore[index]
        assert ready_workers(sock, "default") == 2
        silent.settimeout(15)
        assert silent.recv(1) == b""  # the master gave up on it, and closed
    finally:
        silent.close()
    assert master.exit_status is None and os.path.exists(sock)


def check(tmp_path: Path, sock: Path) -> subprocess.CompletedProcess[str]:
    return prefork("check", "-s", str(sock), tmp_path=tmp_path)


def http_get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


@pytest.mark.timeout(120)
def test_check_during_boot_running_a_crash_loop_and_a_stop(
        prefork_run: Callable[..., Running], tmp_path: Path, short_dir: Path) -> None:
    sock = short_dir / "m.sock"
    master = prefork_run("jobs:SlowSetup", "-w", "1", "--control-socket", str(sock),
                         "--health-bind", "127.0.0.1:0", SETUP_SECONDS="4",
                         PERFORM_SECONDS="5")
    port = int(master.expect(r"health endpoints: http://127\.0\.0\.1:(\d+)/").group(1))
    wait_for(sock.exists, 10, "the control socket")
    booting = check(tmp_path, sock)
    assert booting.returncode == 1
    assert booting.stderr.strip() == "not ready: pool default has 0/1 workers ready"
    assert http_get(port, "/livez") == (200, "live\n")
    assert http_get(port, "/readyz")[0] == 503

    running = wait_for(lambda: (r := check(tmp_path, sock)).returncode == 0 and r, 20,
                       "ready once set up")
    assert running.stdout.startswith(f"ready: master prefork pid {master.pid} running")
    assert http_get(port, "/readyz") == (200, "ready\n")

    master.kill("QUIT")  # a graceful stop; the perform runs on for seconds
    master.expect("master running -> draining")
    stopping = check(tmp_path, sock)
    assert stopping.returncode == 1
    assert stopping.stderr.startswith("not ready: the master is draining")
    assert http_get(port, "/readyz")[0] == 503
    master.kill("TERM")
    master.wait()
    gone = check(tmp_path, sock)
    assert gone.returncode == 1 and "no master answers" in gone.stderr


@pytest.mark.timeout(90)
def test_check_sees_a_crash_loop(prefork_run: Callable[..., Running], tmp_path: Path,
                                 short_dir: Path) -> None:
    sock = short_dir / "m.sock"
    master = prefork_run("jobs:BadSetup", "-w", "1", "--control-socket", str(sock),
                         "--restart-backoff", "30", "--restart-backoff-max", "60",
                         "--max-restarts", "100")
    master.expect("next start in 30s")  # the second failure in a row: backed off
    looping = check(tmp_path, sock)
    assert looping.returncode == 1
    assert "pool default slot 0 is in a crash loop (2 failures in a row)" in looping.stderr
    assert "pool default has 0/1 workers ready" in looping.stderr
    master.kill("TERM")
    master.wait()


def _metrics(port: int) -> dict[str, list[tuple[dict[str, str], float]]]:
    code, text = http_get(port, "/metrics")
    assert code == 200
    return {family.name: [(sample.labels, sample.value) for sample in family.samples]
            for family in text_string_to_metric_families(text)}


@pytest.mark.timeout(90)
def test_metrics_read_by_prometheus_clients_parser(
        prefork_run: Callable[..., Running], tmp_path: Path, short_dir: Path) -> None:
    master = prefork_run("jobs:Sleepy", "-w", "2", "--control-socket", "off",
                         "--health-bind", "127.0.0.1:0")
    port = int(master.expect(r"health endpoints: http://127\.0\.0\.1:(\d+)/").group(1))
    first, _ = master.workers_up(2)
    families = wait_for(lambda: (f := _metrics(port))["prefork_master_ready"][0][1] == 1 and f,
                        15, "ready in the metrics")
    assert families["prefork_pool_target_workers"] == [({"pool": "default"}, 2.0)]
    by_state = dict((labels["state"], value) for labels, value in families["prefork_workers"])
    assert by_state["idle"] + by_state["performing"] == 2 and by_state["stopping"] == 0
    assert families["prefork_worker_crashes"] == [({"pool": "default"}, 0.0)]

    os.kill(first, 9)  # a signal the master did not send: a crash, and its restart
    master.expect(rf"pid={first} killed by signal 9")
    master.workers_up(1)
    families = wait_for(
        lambda: (f := _metrics(port))["prefork_worker_restarts"][0][1] == 1 and f,
        15, "the restart counted")
    assert families["prefork_worker_crashes"] == [({"pool": "default"}, 1.0)]
    exits = {labels["outcome"]: value for labels, value in families["prefork_worker_exits"]}
    assert exits["killed"] == 1 and exits["crashed"] == 0
    performs = families["prefork_performs"][0][1]
    later = wait_for(lambda: (n := _metrics(port)["prefork_performs"][0][1]) > performs and n,
                     15, "performs counted")
    assert later > performs
    assert {name for name in families} >= {
        "prefork_master_loop_lag_seconds", "prefork_perform_failures",
        "prefork_worker_timeouts", "prefork_worker_kills", "prefork_worker_recycles"}

    def read_durations() -> dict[str | None, float]:
        return {labels.get("le"): value for labels, value in
                _metrics(port)["prefork_perform_duration_seconds"] if "le" in labels}

    # the workers copy their counts into their slots every half second at most
    durations = wait_for(lambda: (d := read_durations())["+Inf"] > 0 and d, 15, "durations")
    assert durations["+Inf"] > 0 and durations["0.001"] <= durations["+Inf"]
    assert durations["0.01"] == 0  # a Sleepy perform sleeps 0.05 s
    assert http_get(port, "/nope")[0] == 404
    with contextlib.suppress(Exception):
        master.kill("QUIT")
    assert master.wait() == 0


@pytest.mark.timeout(90)
def test_hold_resume_reopen_logs_and_reload_are_what_their_signals_are(
        prefork_run: Callable[..., Running], tmp_path: Path, short_dir: Path) -> None:
    sock = short_dir / "m.sock"
    master = prefork_run("jobs:Sleepy", "-w", "1", "--control-socket", str(sock))
    [pid] = master.workers_up(1)
    wait_for(sock.exists, 10, "the control socket")

    def command(*args: str) -> str:
        done = prefork(*args, "-s", str(sock), tmp_path=tmp_path)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    assert command("hold") == "hold: done (master running)"
    master.expect(rf"pid={pid} holding \(USR2\)")
    assert command("hold") == "hold: done (master running)"  # again: nothing refused
    assert command("resume") == "resume: done (master running)"
    master.expect(rf"pid={pid} resuming \(CONT\)")
    assert command("reopen-logs") == "reopen-logs: done (master running)"
    master.expect(r"reopened the log files \(USR1\)")
    assert command("reload") == "reload: done (master reloading)"
    master.expect(r"master running -> reloading \(hup_received\)")
    master.workers_up(1)  # the new generation
    # the old worker may be reaped, and the reload finished, before the new one is up
    wait_for(lambda: "master reloading -> running" in master.output(), 10, "the reload")
    assert command("stop") == "stop: done (master terminating)"
    assert master.wait() == 0
