"""The generated docs must match the machines they are generated from."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _load_generator():
    spec = importlib.util.spec_from_file_location("gen_machines", ROOT / "scripts/gen_machines.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_machine_diagrams_are_fresh() -> None:
    generator = _load_generator()
    stale = "docs/machines.md is stale: run python scripts/gen_machines.py"
    assert (ROOT / "docs/machines.md").read_text() == generator.render(), stale


def test_diagrams_name_every_state() -> None:
    from prefork.core import MasterState, WorkerState

    text = (ROOT / "docs/machines.md").read_text()
    for state in [*WorkerState, *MasterState]:
        assert f'state "{state.value}"' in text
