"""``prefork init DIR`` (issue 12): the project it writes runs as it stands."""

from __future__ import annotations

import pytest
from e2e_support import alive, run_command

pytestmark = pytest.mark.timeout(60)


def test_init_writes_a_project_that_runs_as_it_stands(tmp_path, prefork_run) -> None:
    project = tmp_path / "shop"
    done = run_command(tmp_path, "init", str(project))
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in project.iterdir()) == [
        "README.md", "jobs.py", "prefork.toml", "shop.logrotate", "shop.service"]
    assert f"prefork run -c {project}/prefork.toml" in done.stdout
    unit = (project / "shop.service").read_text()
    assert "Type=notify" in unit and "KillMode=mixed" in unit
    assert "kill -USR1" in (project / "shop.logrotate").read_text()

    pool = prefork_run("-c", str(project / "prefork.toml"))
    pids = pool.workers_up(3, timeout=20)
    output = pool.output()
    assert "worker group=example slot=1" in output and "worker group=heartbeat slot=0" in output
    pool.kill("QUIT")
    assert pool.wait() == 0
    assert not any(alive(pid) for pid in pids)


def test_init_never_overwrites(tmp_path) -> None:
    project = tmp_path / "shop"
    project.mkdir()
    (project / "prefork.toml").write_text("# mine\n")
    done = run_command(tmp_path, "init", str(project))
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"prefork: init: {project}/prefork.toml exists already: nothing written"]
    assert sorted(p.name for p in project.iterdir()) == ["prefork.toml"]
    assert (project / "prefork.toml").read_text() == "# mine\n"
