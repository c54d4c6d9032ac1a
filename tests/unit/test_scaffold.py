"""``prefork init``'s project: what it writes, that its config loads, and that it never
overwrites a file."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from prefork.options import build_settings
from prefork.scaffold import ScaffoldError, project_name, write_project


def test_the_project_loads_as_written(tmp_path: Path) -> None:
    project = tmp_path / "my shop"
    written = write_project(str(project), python="/opt/venv/bin/python")
    assert [Path(p).name for p in written] == [
        "jobs.py", "prefork.toml", "my-shop.service", "my-shop.logrotate", "README.md"]
    config = tomllib.loads((project / "prefork.toml").read_text())
    assert set(config["pool"]) == {"example", "heartbeat"}
    settings = build_settings(config_file=str(project / "prefork.toml"))
    assert [group.name for group in settings.groups] == ["example", "heartbeat"]
    assert settings.pool.group("example").workers == 2
    unit = (project / "my-shop.service").read_text()
    assert f"ExecStart=/opt/venv/bin/python -m prefork run -c {project}/prefork.toml" in unit
    assert "ExecReload=/bin/kill -HUP $MAINPID" in unit


def test_an_existing_file_stops_everything(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("mine\n")
    with pytest.raises(ScaffoldError, match=r"README\.md exists already: nothing written"):
        write_project(str(tmp_path))
    assert [p.name for p in tmp_path.iterdir()] == ["README.md"]


def test_a_name_safe_for_a_unit_file() -> None:
    assert project_name("/srv/My App!") == "My-App"
    assert project_name("/") == "prefork-app"
