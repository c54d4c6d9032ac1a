"""Logs people can read, with real processes: a bare ``Master(job).run()`` logs at INFO,
every line names its master, process and place, the JSON format carries the events,
``--log-level debug`` adds the lifecycle detail, and USR1 after a rename reopens the log
file in the master and in every worker."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from e2e_support import E2E, ROOT, STARTED, command_env, wait_for

pytestmark = pytest.mark.timeout(60)

TEXT_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR) "
                       r"\[(\d+)\] (\S+) (master|\S+#\d+): ")

BARE = """\
import jobs
import prefork
prefork.Master(jobs.Sleepy, workers=2).run()
"""


def test_a_bare_master_run_logs_the_banner_and_lifecycle_at_info(tmp_path) -> None:
    script = tmp_path / "bare.py"
    script.write_text(BARE)
    log = tmp_path / "out.log"
    with open(log, "w") as out:
        master = subprocess.Popen([sys.executable, str(script)], cwd=str(ROOT),
                                  env=command_env(tmp_path), stdin=subprocess.DEVNULL,
                                  stdout=out, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    STARTED.add(master.pid)
    try:
        wait_for(lambda: log.read_text().count("spawning -> ") == 2, 10, "two workers up")
        master.send_signal(3)  # QUIT
        assert master.wait(20) == 0
    finally:
        if master.poll() is None:
            master.kill()
            master.wait()
    text = log.read_text()
    lines = text.splitlines()
    assert re.search(rf"INFO \[{master.pid}\] prefork master: prefork \S+ starting: master "
                     rf"prefork, pid {master.pid}, config file none", text)
    assert "pool default: job Sleepy, strategy simple, 2 workers" in text
    assert "master booting -> running (booted)" in text
    assert text.count(" spawned") == 2 and "master draining -> stopped" in text
    for line in lines:
        match = TEXT_LINE.match(line)
        assert match, f"a line without its time, master, pid and place: {line!r}"
        assert match.group(3) == "prefork"
    assert not any(" idle -> performing" in line for line in lines), "samples are debug"


def test_json_lines_carry_the_lifecycle_events(prefork_run, tmp_path) -> None:
    pool = prefork_run("jobs:Sleepy", "-w", "2", "--log-format", "json", "--name", "jsonpool",
                       tty=False)
    pool.expect(r'"event": "ready"')
    pool.expect(r'"event": "ready"')
    pool.kill("TTIN")
    pool.expect(r'"event": "scaled"')
    pool.expect(r'"event": "ready"')
    pool.kill("QUIT")
    assert pool.wait() == 0
    records = [json.loads(line) for line in pool.output().splitlines() if line.startswith("{")]
    assert all(record["name"] == "jsonpool" for record in records)
    events = {record.get("event") for record in records}
    assert {"started", "pool", "spawned", "ready", "scaled", "exited", "stopped",
            "master"} <= events
    [started] = [record for record in records if record.get("event") == "started"]
    assert started["master_pid"] == pool.pid and started["process"] == "master"
    exited = [record for record in records if record.get("event") == "exited"]
    assert len(exited) == 3
    assert all(record["outcome"] == "retired" and record["status"] == 0
               and record["pool"] == "default" and isinstance(record["worker_pid"], int)
               for record in exited)
    [scaled] = [record for record in records if record.get("event") == "scaled"]
    assert (scaled["from"], scaled["to"]) == (2, 3)


def test_debug_adds_forks_signals_reaps_and_deadlines(prefork_run) -> None:
    pool = prefork_run("jobs:Sleepy", "-w", "1", "--log-level", "debug", "--timeout", "5")
    [pid] = pool.workers_up(1)
    pool.kill("QUIT")
    assert pool.wait() == 0
    text = pool.output()
    for detail in (f"forked pid={pid}", f"sending QUIT to pid={pid}", f"reaped pid={pid}",
                   "next deadline in"):
        assert detail in text, detail


def test_usr1_after_a_rename_reopens_the_file_in_the_master_and_every_worker(
        prefork_run, tmp_path) -> None:
    log = tmp_path / "app.log"
    pool = prefork_run("jobs:Sleepy", "-w", "2", "--log-file", str(log), tty=False,
                       PRINT_PERFORMS="1")
    wait_for(lambda: log.exists() and log.read_text().count("spawning -> ") == 2, 10,
             "two workers up")
    workers = [int(pid) for pid in re.findall(r"pid=(\d+) spawning -> ", log.read_text())]
    rotated = tmp_path / "app.log.1"
    log.rename(rotated)  # as logrotate does
    pool.kill("USR1")
    wait_for(lambda: log.exists() and "reopened the log files (USR1)" in log.read_text(), 10,
             "the master to reopen")
    for pid in workers:  # after its current perform, each worker writes the new file
        wait_for(lambda pid=pid: f"perform by pid={pid}" in log.read_text(), 10,
                 f"worker {pid} to write the new file")
    pool.kill("QUIT")
    assert pool.wait() == 0
    assert "master got USR1" in rotated.read_text()
    assert "master draining -> stopped" in log.read_text()
    assert E2E.exists()
