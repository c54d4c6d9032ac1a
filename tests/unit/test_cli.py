"""The ``prefork`` command, run as ``python -m prefork`` in a child process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import prefork

SRC = Path(__file__).resolve().parents[2] / "src"


def prefork_cmd(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m prefork ARGS`` and return what it did (10 s at most)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "prefork", *args],
        capture_output=True,
        text=True,
        timeout=10,
        env=env,
        check=False,
    )


def test_version_prints_name_and_version() -> None:
    done = prefork_cmd("--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"prefork {prefork.__version__}\n"
    assert prefork.__version__ == "0.1.0"


def test_help_shows_usage_and_the_run_command() -> None:
    done = prefork_cmd("--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: prefork")
    assert "run" in done.stdout
    assert done.stderr == ""


def test_no_arguments_print_usage_and_exit_2() -> None:
    done = prefork_cmd()
    assert done.returncode == 2
    assert "usage: prefork" in done.stderr


@pytest.mark.parametrize("args", [("--no-such-option",), ("no-such-command",)])
def test_bad_usage_exits_2_without_traceback(args: tuple[str, ...]) -> None:
    done = prefork_cmd(*args)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "prefork: error:" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("args", "line"),
    [
        ((), "prefork: run: give the job as MODULE:ATTR (or job = ... in --config FILE)\n"),
        (("nosuch_module_xyz:Job", "--workers", "3"),
         "prefork: job='nosuch_module_xyz:Job': cannot import nosuch_module_xyz "
         "(No module named 'nosuch_module_xyz')\n"),
    ],
)
def test_run_with_bad_input_says_why_in_one_line(args: tuple[str, ...], line: str) -> None:
    done = prefork_cmd("run", *args)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr == line


def test_run_help_exits_0() -> None:
    done = prefork_cmd("run", "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: prefork run")
