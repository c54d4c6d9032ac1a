"""Every ``scenario`` block of specs/ runs against the pure core, as one test.

The test id is the scenario's place in the spec (``master.md:123 QUIT lets a performing
worker finish``), and a failure names the file and line of the step that did not hold,
so the reader goes straight to the Markdown. Known gaps between the spec and the core go
in ``KNOWN_GAPS`` (by scenario name, with the reason); ``xfail_strict`` makes a gap that closes
fail until it is removed from the list.
"""

from __future__ import annotations

from typing import Any

import pytest
from spec_runner import ScenarioFailure, run_scenario
from spec_tables import load
from specparse import Scenario, SpecSyntaxError

SPEC_FILES = ("worker.md", "master.md")

# scenario name -> why the core does not (yet) do what the spec says (reported to the lead)
KNOWN_GAPS: dict[str, str] = {}


def scenario_cases() -> list[Any]:
    cases = []
    for name in SPEC_FILES:
        for scenario in load(name).scenarios:
            marks = []
            if scenario.name in KNOWN_GAPS:
                marks.append(pytest.mark.xfail(reason=KNOWN_GAPS[scenario.name]))
            cases.append(pytest.param(scenario, id=scenario.test_id, marks=marks))
    return cases


@pytest.mark.parametrize("scenario", scenario_cases())
def test_scenario(scenario: Scenario) -> None:
    try:
        run_scenario(scenario)
    except (ScenarioFailure, SpecSyntaxError) as failure:
        # the message names the spec file and line; this file's traceback would only hide it
        pytest.fail(str(failure), pytrace=False)


def test_scenario_names_are_unique() -> None:
    names = [s.name for name in SPEC_FILES for s in load(name).scenarios]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)


def test_known_gaps_name_real_scenarios() -> None:
    names = {s.name for name in SPEC_FILES for s in load(name).scenarios}
    assert set(KNOWN_GAPS) <= names, sorted(set(KNOWN_GAPS) - names)
