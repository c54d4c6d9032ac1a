"""The library without the command: the API without the loop, and config files."""

from __future__ import annotations

import re
import sys

import pexpect
import pytest
from e2e_support import E2E, ROOT, STARTED, alive, command_env, wait_for

pytestmark = pytest.mark.timeout(30)


@pytest.mark.parametrize("strategy", ["simple", "forking"])
def test_start_worker_stop_worker_stop_all_without_the_loop(tmp_path, strategy) -> None:
    child = pexpect.spawn(sys.executable, [str(E2E / "api_script.py"), strategy],
                          cwd=str(ROOT), env=command_env(tmp_path), encoding="utf-8",
                          timeout=10)
    STARTED.add(child.pid)
    try:
        child.expect(r"started (\d+) (\d+)")
        first, second = int(child.match.group(1)), int(child.match.group(2))
        child.expect(r"handlers untouched (\w+)")
        assert child.match.group(1) == "True", "no signal handler installed without run()"
        child.expect(r"stopped (\d+); live (\d+)")
        stopped, live = int(child.match.group(1)), int(child.match.group(2))
        assert {stopped, live} == {first, second}
        assert not alive(stopped), "stop_worker() waits for the worker to exit"
        assert (tmp_path / f"teardown.{stopped}").exists(), "and stops it gracefully"
        child.expect(r"all stopped 0; live \[\]")
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == 0
        assert not alive(first) and not alive(second)
        assert (tmp_path / f"teardown.{live}").exists()
    finally:
        child.close(force=True)


def test_a_config_file_is_reread_on_hup(prefork_run, tmp_path) -> None:
    config = tmp_path / "prefork.toml"
    config.write_text('job = "jobs:Sleepy"\nworkers = 1\ngraceful-timeout = 5\n')
    pool = prefork_run("--config", str(config))
    [first] = pool.workers_up(1)
    config.write_text('job = "jobs:Sleepy"\nworkers = 2\n')
    pool.kill("HUP")
    pool.expect(r"master running -> reloading \(config_loaded\)")
    pool.expect(rf"config file {re.escape(str(config))} reloaded")
    fresh = pool.workers_up(2)
    assert first not in fresh
    wait_for(lambda: "reloading -> running" in pool.output(), 5, "the reload to finish")
    config.write_text("workers = [not toml")
    pool.kill("HUP")
    pool.expect(r"master running -> reloading \(config_rejected\)")
    pool.expect(rf"config file {re.escape(str(config))} not reloaded, the running config "
                rf"stays: config={re.escape(repr(str(config)))}: is not valid TOML")
    assert len(pool.workers_up(2)) == 2, "the workers are replaced all the same"
    pool.kill("QUIT")
    assert pool.wait() == 0
