"""The command's bad input: one clear line on stderr, no traceback, exit status 2."""

from __future__ import annotations

import pytest
from e2e_support import run_command

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run"], "give the job as MODULE:ATTR"),
        (["run", "no_such_module:Job"], "job='no_such_module:Job': cannot import no_such_module"),
        (["run", "jobs:NoSuchJob"], "job='jobs:NoSuchJob': jobs has no attribute NoSuchJob"),
        (["run", "jobs"], "job='jobs': must be MODULE:ATTR"),
        (["run", "jobs:DIR"], "needs a perform() method, or must be a function"),
        (["run", "jobs:Sleepy", "--workers", "-1"], "workers=-1: must be a whole number >= 0"),
        (["run", "jobs:Sleepy", "--workers", "many"], "argument --workers: 'many' is not"),
        (["run", "jobs:Sleepy", "--strategy", "threads"], "strategy='threads': must be one of"),
        (["run", "jobs:Sleepy", "--timeout", "0"], "timeout=0.0: must be a finite number"),
        (["run", "jobs:Sleepy", "--max-workers", "1", "--workers", "2"],
         "workers=2: exceeds max_workers (1)"),
        (["run", "jobs:Sleepy", "--no-such-flag"], "unrecognized arguments: --no-such-flag"),
        (["run", "jobs:Sleepy", "--config", "/no/such/file.toml"], "cannot be read"),
        (["run", "jobs:Sleepy", "--pidfile", "/no/such/dir/x.pid"], "does not exist"),
    ],
)
def test_bad_usage_exits_2_with_one_line(tmp_path, args, message) -> None:
    done = run_command(tmp_path, *args)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert message in lines[0]
    assert lines[0].startswith("prefork")


def test_a_bad_option_in_a_config_file_names_it(tmp_path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('job = "jobs:Sleepy"\nworkerz = 3\n')
    done = run_command(tmp_path, "run", "--config", str(config))
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"prefork: workerz=3: is not a prefork option (in {config})"
    )


def test_a_pidfile_is_written_and_removed(tmp_path, prefork_run) -> None:
    pidfile = tmp_path / "prefork.pid"
    pool = prefork_run("jobs:Sleepy", "--pidfile", str(pidfile))
    pool.workers_up(1)
    assert pidfile.read_text().strip() == str(pool.pid)
    again = run_command(tmp_path, "run", "jobs:Sleepy", "--pidfile", str(pidfile))
    assert again.returncode == 1
    assert f"is held by a running master (pid {pool.pid})" in again.stderr
    pool.kill("QUIT")
    assert pool.wait() == 0
    assert not pidfile.exists()
