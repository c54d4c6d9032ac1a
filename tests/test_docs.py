"""The generated docs must match the machines they are generated from."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _load_generator(name: str = "gen_machines"):
    spec = importlib.util.spec_from_file_location(name, ROOT / f"scripts/{name}.py")
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


def test_the_options_table_is_fresh() -> None:
    generator = _load_generator("gen_options")
    guide = (ROOT / "docs/guide.md").read_text()
    stale = "docs/guide.md's options table is stale: run python scripts/gen_options.py"
    assert guide == generator.render(guide), stale


def test_the_options_table_names_every_option_with_its_scope() -> None:
    from prefork.options import OPTIONS

    guide = (ROOT / "docs/guide.md").read_text()
    for option in OPTIONS:
        scope_and_hup = f"| {option.scope} | {'yes' if option.reloadable else 'restart'} |"
        row = next(line for line in guide.splitlines() if line.startswith(f"| `{option.name}` |"))
        assert scope_and_hup in row, option.name
