"""Several pools in one master, from a config file that survives HUP (issue 11).

Each test writes a TOML file into its tmp dir, runs the real command on it, and reads
the master's log: ``worker group=NAME slot=N pid=P a -> b`` lines tell which workers of
which pool are up (``spawning -> idle|performing``) and gone (``-> dead``).
"""

from __future__ import annotations

import os
import re
import time

import pytest
from e2e_support import E2E, SRC, alive, run_command, wait_for

pytestmark = pytest.mark.timeout(60)

TRANSITION = re.compile(r"worker group=(.+?) slot=\d+ pid=(\d+) (\w+) -> (\w+)")


def live_by_group(output: str) -> dict[str, set[int]]:
    """Pool -> the pids of its workers that came up and are not dead yet, per the log."""
    live: dict[str, set[int]] = {}
    for group, pid, before, after in TRANSITION.findall(output):
        if before == "spawning" and after in ("idle", "performing"):
            live.setdefault(group, set()).add(int(pid))
        elif after == "dead":
            live.get(group, set()).discard(int(pid))
    return {group: pids for group, pids in live.items() if pids}


def counts(output: str) -> dict[str, int]:
    return {group: len(pids) for group, pids in live_by_group(output).items()}


def wait_for_counts(pool, expected: dict[str, int], what: str) -> dict[str, set[int]]:
    wait_for(lambda: counts(pool.output()) == expected, 15, f"{what}: {expected}")
    return live_by_group(pool.output())


TWO_POOLS = """\
graceful_timeout = 5

[pool.mail]
job = "pool_jobs:Tagged('mail')"
workers = 2

[pool."high,default"]
job = "jobs:Sleepy"
workers = 1
"""


def test_a_two_pool_file_runs_each_pool_with_its_own_job_and_count(prefork_run,
                                                                   tmp_path) -> None:
    config = tmp_path / "pools.toml"
    config.write_text(TWO_POOLS)
    pool = prefork_run("-c", str(config))
    live = wait_for_counts(pool, {"mail": 2, "high,default": 1}, "both pools up")
    tagged = pool.marker_lines("pool.mail")
    assert sorted(int(line.split()[0]) for line in tagged) == sorted(live["mail"])
    assert {line.split(" ", 1)[1] for line in tagged} == {"mail 0", "mail 1"}
    [other] = live["high,default"]
    assert pool.marker_lines(f"setup.{other}") == ["0"]
    assert not (set(live["mail"]) & {other})
    pool.kill("QUIT")
    assert pool.wait() == 0


def test_hup_grows_shrinks_adds_and_removes_pools_and_changes_their_options(
        prefork_run, tmp_path) -> None:
    config = tmp_path / "pools.toml"
    config.write_text('[pool.a]\njob = "jobs:Sleepy"\nworkers = 2\n'
                      '[pool.b]\njob = "jobs:Sleepy"\nworkers = 1\n'
                      '[pool.c]\njob = "jobs:Sleepy"\nworkers = 1\n')
    pool = prefork_run("-c", str(config), PERFORM_SECONDS="0.1")
    before = wait_for_counts(pool, {"a": 2, "b": 1, "c": 1}, "the first pools")
    config.write_text('[pool.a]\njob = "jobs:Sleepy"\nworkers = 1\n'
                      '[pool.b]\njob = "jobs:Sleepy"\nworkers = 3\nstrategy = "forking"\n'
                      '[pool.d]\njob = "pool_jobs:Tagged(\'d\')"\nworkers = 1\n')
    pool.kill("HUP")
    pool.expect(r"master got HUP")
    after = wait_for_counts(pool, {"a": 1, "b": 3, "d": 1}, "the pools of the new file")
    wait_for(lambda: "reloading -> running" in pool.output(), 10, "the reload to finish")
    old = set().union(*before.values())
    assert not old & set().union(*after.values()), "every worker was replaced"
    for pid in old:
        assert not alive(pid)
        assert pool.marker_lines(f"teardown.{pid}"), "stopped gracefully"
    for pid in after["b"]:  # forking now: each perform runs in a child of the worker
        wait_for(lambda pid=pid: pool.marker_lines(f"ends.{pid}"), 5, "a perform of b")
        assert str(pid) not in pool.marker_lines(f"ends.{pid}")
    for pid in after["a"]:
        wait_for(lambda pid=pid: pool.marker_lines(f"ends.{pid}"), 5, "a perform of a")
        assert set(pool.marker_lines(f"ends.{pid}")) == {str(pid)}, "a stays simple"
    assert [line.split()[1] for line in pool.marker_lines("pool.d")] == ["d"]
    pool.kill("QUIT")
    assert pool.wait() == 0


@pytest.mark.parametrize(
    ("broken", "says"),
    [
        ('[pool.mail]\njob = "jobs:Sleepy"\nworkers = 2\ntimeout = -1\n',
         r"pool\.mail\.timeout=-1: must be a finite number of seconds > 0 \(in {path}\)"),
        ("[pool.mail\n", r"config='{path}': is not valid TOML"),
        ('[pool.mail]\njob = "jobs:NoSuchJob"\n',
         r"pool\.mail\.job='jobs:NoSuchJob': jobs has no attribute NoSuchJob \(in {path}\)"),
    ],
    ids=["bad value", "not toml", "no such job"],
)
def test_hup_with_a_broken_file_keeps_the_running_config(prefork_run, tmp_path, broken,
                                                         says) -> None:
    config = tmp_path / "pools.toml"
    config.write_text('[pool.mail]\njob = "jobs:Sleepy"\nworkers = 2\n'
                      '[pool.sms]\njob = "jobs:Sleepy"\nworkers = 1\n')
    pool = prefork_run("-c", str(config))
    wait_for_counts(pool, {"mail": 2, "sms": 1}, "the pools")
    config.write_text(broken)
    pool.kill("HUP")
    pool.expect(r"master running -> reloading \(config_rejected\)")
    pool.expect(rf"ERROR \[\d+\] prefork master: config file {re.escape(str(config))} not "
                rf"reloaded, the "
                r"running config stays: " + says.format(path=re.escape(str(config))))
    time.sleep(0.3)
    wait_for_counts(pool, {"mail": 2, "sms": 1}, "the running pools, untouched")
    pool.kill("TTIN")
    pool.expect(r"group mail: 2 -> 3 workers")
    wait_for_counts(pool, {"mail": 3, "sms": 1}, "TTIN grows the first pool")
    pool.kill("QUIT")
    assert pool.wait() == 0


def test_flags_survive_three_hups(prefork_run, tmp_path) -> None:
    config = tmp_path / "prefork.toml"
    config.write_text('job = "jobs:Sleepy"\nworkers = 1\nmax_workers = 4\n')
    pool = prefork_run("--config", str(config), "-w", "3", "--max-workers", "3")
    wait_for_counts(pool, {"default": 3}, "the flag's count")
    pidfile = tmp_path / "later.pid"
    for workers in (2, 4, 1):
        config.write_text(f'job = "jobs:Sleepy"\nworkers = {workers}\nmax_workers = 9\n'
                          f'pidfile = "{pidfile}"\n')
        pool.kill("HUP")
        pool.expect(rf"WARNING \[\d+\] prefork master: pidfile changed "
                    rf"\({re.escape(str(config))}\): it "
                    r"needs a restart, so None stays in force")
        pool.expect(rf"config file {re.escape(str(config))} reloaded")
        pool.expect(r"master reloading -> running")
        assert counts(pool.output()) == {"default": 3}
    assert not pidfile.exists()
    pool.kill("TTIN")
    pool.expect(r"group default stays at 3 workers \(asked for 4; bounds 0\.\.3\)")
    pool.kill("QUIT")
    assert pool.wait() == 0


def test_usr1_after_a_hup_reopens_a_renamed_log(prefork_run, tmp_path) -> None:
    log = tmp_path / "pool.log"
    config = tmp_path / "prefork.toml"
    config.write_text('job = "jobs:Sleepy"\nworkers = 1\n')
    pool = prefork_run("-c", str(config), "--log-file", str(log), PRINT_PERFORMS="1")
    wait_for(lambda: log.exists() and counts(log.read_text()) == {"default": 1}, 5, "the log")
    [old] = live_by_group(log.read_text())["default"]
    pool.kill("HUP")
    wait_for(lambda: "reloading -> running" in log.read_text(), 10, "the reload")
    wait_for(lambda: live_by_group(log.read_text()).get("default", {old}) != {old}, 10,
             "the new worker")
    [new] = live_by_group(log.read_text())["default"]
    rotated = tmp_path / "pool.log.1"
    os.rename(log, rotated)
    pool.kill("USR1")
    wait_for(lambda: log.exists() and "reopened the log files" in log.read_text(), 5,
             "the master to reopen the log file")
    wait_for(lambda: f"perform by pid={new}" in log.read_text(), 5,
             "the new worker to write into the new log file")
    pool.kill("TTIN")
    wait_for(lambda: "group default: 1 -> 2 workers" in log.read_text(), 5, "TTIN logged")
    size = rotated.stat().st_size
    time.sleep(0.3)
    assert rotated.stat().st_size == size, "nobody writes the rotated file any more"
    pool.kill("QUIT")
    assert pool.wait() == 0


def test_hup_deploys_the_jobs_new_code(prefork_run, tmp_path) -> None:
    module = tmp_path / "deployed.py"
    code = ("import os\nfrom jobs import mark\nVERSION = {v}\n\n\n"
            "def perform():\n    mark(f'version.{{VERSION}}', str(os.getpid()))\n")
    module.write_text(code.format(v=1))
    config = tmp_path / "prefork.toml"
    config.write_text('job = "deployed:perform"\nworkers = 2\n')
    path = os.pathsep.join([str(SRC), str(E2E), str(tmp_path)])
    pool = prefork_run("-c", str(config), PYTHONPATH=path)
    wait_for(lambda: len(set(pool.marker_lines("version.1"))) == 2, 10, "version 1 runs")
    for version in (22, 333):  # each edit changes the file's size: no stale bytecode
        module.write_text(code.format(v=version))
        pool.kill("HUP")
        pool.expect(r"reloading -> running")
        wait_for(lambda v=version: len(set(pool.marker_lines(f"version.{v}"))) == 2, 10,
                 f"version {version} to run in both new workers")
        fresh = set(map(int, pool.marker_lines(f"version.{version}")))
        wait_for(lambda f=fresh: live_by_group(pool.output()) == {"default": f}, 5,
                 "the workers that run the new code to be the live ones")
    pool.kill("QUIT")
    assert pool.wait() == 0


def test_the_environment_gives_what_flags_do_not(prefork_run, tmp_path) -> None:
    pool = prefork_run("jobs:Sleepy", "--max-workers", "3", PREFORK_WORKERS="2",
                       PREFORK_MAX_WORKERS="9", PREFORK_CMD_ARGS="--max-workers 2 -w 1")
    wait_for_counts(pool, {"default": 1}, "PREFORK_CMD_ARGS over PREFORK_WORKERS")
    pool.kill("TTIN")  # one at a time: two pending TTINs are delivered as one
    pool.expect(r"group default: 1 -> 2 workers")
    pool.kill("TTIN")
    pool.expect(r"group default: 2 -> 3 workers")
    pool.kill("TTIN")
    pool.expect(r"group default stays at 3 workers \(asked for 4; bounds 0\.\.3\)")
    pool.kill("QUIT")
    assert pool.wait() == 0


def test_check_config_prints_each_pools_settings_and_where_they_come_from(tmp_path) -> None:
    config = tmp_path / "pools.toml"
    config.write_text(TWO_POOLS)
    done = run_command(tmp_path, "run", "-c", str(config), "--strategy", "forking",
                       "--check-config", env={"PREFORK_TIMEOUT": "7"})
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    sections: dict[str, list[str]] = {}
    title = ""
    for line in done.stdout.splitlines():  # one section per pool, one line per option
        if line.startswith("  "):
            sections[title].append(" ".join(line.split()))
        else:
            title = line
            sections[title] = []
    assert list(sections) == ["master", "pool mail", 'pool "high,default"']
    mail, other = sections["pool mail"], sections['pool "high,default"']
    assert f"workers = 2 ({config} [pool.mail])" in mail
    assert f"workers = 1 ({config} [pool.\"high,default\"])" in other
    assert "job = \"pool_jobs:Tagged('mail')\" (" + f"{config} [pool.mail])" in mail
    assert 'strategy = "forking" (--strategy)' in mail and 'strategy = "forking" (--strategy)' \
        in other
    assert "timeout = 7 (PREFORK_TIMEOUT)" in mail
    assert f"graceful_timeout = 5 ({config})" in mail
    assert "max_performs = off (default)" in other
    assert f'config_file = "{config}" (--config-file)' in sections["master"]
    assert not list(tmp_path.glob("setup.*")), "nothing was started"


def test_check_config_on_a_bad_file_says_why_in_one_line(tmp_path) -> None:
    config = tmp_path / "pools.toml"
    config.write_text('[pool."high,default"]\njob = "jobs:Sleepy"\nworkers = "two"\n')
    done = run_command(tmp_path, "run", "-c", str(config), "--check-config")
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr == (f"prefork: pool.\"high,default\".workers='two': must be a whole "
                           f"number >= 0 (in {config})\n")


def test_a_hold_applies_to_every_pool_and_is_remembered_across_a_ttin(prefork_run,
                                                                      tmp_path) -> None:
    config = tmp_path / "pools.toml"
    config.write_text('[pool.mail]\njob = "jobs:Sleepy"\nworkers = 1\n'
                      '[pool.sms]\njob = "jobs:Sleepy"\nworkers = 1\n')
    pool = prefork_run("-c", str(config))
    before = wait_for_counts(pool, {"mail": 1, "sms": 1}, "both pools")
    pids = before["mail"] | before["sms"]
    pool.kill("USR2")
    pool.expect(r"master got USR2")
    for pid in pids:
        wait_for(lambda pid=pid: f"pid={pid} holding (USR2)" in pool.output(), 5,
                 f"worker {pid} to hold")
    pool.kill("TTIN")
    pool.expect(r"group mail: 1 -> 2 workers")
    [new] = wait_for_counts(pool, {"mail": 2, "sms": 1}, "the new worker")["mail"] - pids
    wait_for(lambda: f"pid={new} holding (USR2)" in pool.output(), 5, "the new one to hold")
    time.sleep(0.3)
    assert not pool.marker_lines(f"starts.{new}"), "a worker started during a hold is held"
    pool.kill("CONT")
    wait_for(lambda: len(pool.marker_lines(f"ends.{new}")) >= 2, 5, "the new one to perform")
    for pid in pids:
        wait_for(lambda pid=pid: f"pid={pid} resuming (CONT)" in pool.output(), 5,
                 f"worker {pid} to go on")
    pool.kill("QUIT")
    assert pool.wait() == 0
