"""Hypothesis profiles for the property tests, chosen with ``HYPOTHESIS_PROFILE``.

``default`` is quick enough for every local run; ``ci`` searches much harder (run it in
CI, or before touching the core's tables): ``HYPOTHESIS_PROFILE=ci pytest tests/property``;
``mutation`` is for mutmut (docs/testing.md).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "default",
    max_examples=50,
    stateful_step_count=30,
    deadline=None,
)
settings.register_profile(
    "ci",
    max_examples=500,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
# mutation testing runs the suite once per mutant: fewer examples, no example database
# (a stored failing example would make every later mutant look killed)
settings.register_profile(
    "mutation",
    max_examples=20,
    stateful_step_count=30,
    deadline=None,
    database=None,
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
