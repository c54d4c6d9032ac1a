"""The fault battery's fixtures: real processes, and nothing left behind.

The battery reuses the end-to-end tests' machinery rather than copying it: their
support module (the process table, ``Running``, waiting) and their two autouse
fixtures (this session becomes a child subreaper; each test must leave no process
behind). tests/e2e is put on ``sys.path`` and its conftest loaded under another name.

``pool(*args, **env)`` starts ``prefork run ARGS`` with no controlling terminal (a
master killed with SIGKILL must not hang up its workers' terminal), with this directory
on the job's ``PYTHONPATH`` so that ``fault_jobs:NAME`` imports.

The expected failures (strict: each mark must come off the day its feature lands) are
listed in README.md next to this file.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

E2E = Path(__file__).resolve().parents[1] / "e2e"
if str(E2E) not in sys.path:
    sys.path.insert(0, str(E2E))

from e2e_support import Running  # noqa: E402
from fault_support import fault_pythonpath  # noqa: E402

# the leak checks read /proc and need PR_SET_CHILD_SUBREAPER: Linux only
collect_ignore_glob = [] if sys.platform.startswith("linux") else ["test_*.py"]

_spec = importlib.util.spec_from_file_location("e2e_conftest", E2E / "conftest.py")
assert _spec is not None and _spec.loader is not None
_e2e_conftest = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_e2e_conftest)

# the e2e fixtures, made this directory's too
subreaper = _e2e_conftest.subreaper
nothing_left_behind = _e2e_conftest.nothing_left_behind
prefork_run = _e2e_conftest.prefork_run


@pytest.fixture
def pool(prefork_run: Callable[..., Running]) -> Callable[..., Running]:
    """Start ``prefork run ARGS`` without a terminal, with the fault jobs importable."""

    def start(*args: str, timeout: float = 15.0, **env: str) -> Running:
        return prefork_run(*args, tty=False, timeout=timeout,
                           PYTHONPATH=fault_pythonpath(), **env)

    return start


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every fault test must carry its own timeout mark (the battery never hangs)."""
    for item in items:
        if Path(str(item.fspath)).parent == Path(__file__).parent and \
                item.get_closest_marker("timeout") is None:
            raise pytest.UsageError(f"{item.nodeid}: a fault test needs pytest.mark.timeout")
