"""The README's commands are the ones CI runs.

The README opens with two commands: the first installs prefork and runs something, the
second runs the tests. ``.ci/run`` must run that second command verbatim, so a reader who
copies it from the README runs exactly what CI runs.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FENCE = re.compile(r"^```(?:sh|bash|console|shell)\s*\n(.*?)^```", re.MULTILINE | re.DOTALL)


def readme_commands() -> list[str]:
    """The command lines of the README's shell blocks, in order (comments left out)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return [
        line.strip()
        for block in FENCE.findall(text)
        for line in block.splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]


def test_readme_opens_with_an_install_command_then_the_test_command() -> None:
    commands = readme_commands()
    assert len(commands) >= 2, commands
    install, tests = commands[:2]
    assert install.startswith("pip install "), install
    assert "pytest" in tests, tests


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    test_command = readme_commands()[1]
    ci_lines = [
        line.strip() for line in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    ]
    assert test_command in ci_lines, f"{test_command!r} is not a line of .ci/run"
