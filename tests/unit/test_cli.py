"""The ``prefork`` command, run as ``python -m prefork`` in a child process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import prefork

SRC = Path(__file__).resolve().parents[2] / "src"


def prefork_cmd(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m prefork ARGS`` and return what it did (10 s at most); ``env`` adds
    to the environment (and no PREFORK_ variable of this one leaks in)."""
    extra = env or {}
    env = {name: value for name, value in os.environ.items() if not name.startswith("PREFORK_")}
    env.update(extra)
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


def test_run_version_exits_0() -> None:
    done = prefork_cmd("run", "--version")
    assert (done.returncode, done.stdout) == (0, f"prefork {prefork.__version__}\n")


def test_true_or_false_options_are_switches() -> None:
    from prefork.cli import _run_parser, fold_switch_values

    run = _run_parser()
    assert run.parse_args(["j:J", "--graceful-term"]).graceful_term is True
    assert run.parse_args(["j:J", "--no-graceful-term"]).graceful_term is False
    assert run.parse_args(["j:J"]).graceful_term is None, "not given: the file decides"
    assert fold_switch_values(["--graceful-term", "true", "--preload", "off"]) == [
        "--graceful-term", "--no-preload"]
    assert fold_switch_values(["--graceful-term", "app:Job"]) == ["--graceful-term", "app:Job"]


def test_check_config_prints_the_settings_and_exits_0() -> None:
    done = prefork_cmd("run", "logging:getLogger", "-w", "3", "--check-config")
    assert done.returncode == 0, done.stderr
    lines = [" ".join(line.split()) for line in done.stdout.splitlines()]
    assert lines[0] == "master" and "pool default" in lines
    assert "workers = 3 (--workers)" in lines
    assert 'job = "logging:getLogger" (the MODULE:ATTR argument)' in lines
    assert "timeout = off (default)" in lines


@pytest.mark.parametrize(
    ("env", "line"),
    [
        ({"PREFORK_WORKERS": "many"},
         "prefork: PREFORK_WORKERS='many': 'many' is not a whole number\n"),
        ({"PREFORK_CMD_ARGS": "--workerz 3"},
         "prefork run: error: unrecognized arguments: --workerz (see 'prefork run --help') "
         "(in PREFORK_CMD_ARGS)\n"),
        ({"PREFORK_CMD_ARGS": "--check-config"},
         "prefork: PREFORK_CMD_ARGS='--check-config': holds options only\n"),
        ({"PREFORK_CMD_ARGS": "-w '3"},
         "prefork: PREFORK_CMD_ARGS=\"-w '3\": No closing quotation\n"),
    ],
)
def test_bad_environment_variables_are_one_line_and_exit_2(env, line) -> None:
    done = prefork_cmd("run", "logging:getLogger", "--check-config", env=env)
    assert (done.returncode, done.stdout, done.stderr) == (2, "", line)


def test_the_environment_can_name_the_job() -> None:
    done = prefork_cmd("run", "--check-config", env={"PREFORK_JOB": "logging:getLogger"})
    assert done.returncode == 0, done.stderr
    assert 'job = "logging:getLogger" (PREFORK_JOB)' in [
        " ".join(line.split()) for line in done.stdout.splitlines()]
