"""Hypothesis profiles for the property tests, chosen with ``HYPOTHESIS_PROFILE``.

``default`` is quick enough for every local run; ``ci`` searches much harder (run it in
CI, or before touching the core's tables): ``HYPOTHESIS_PROFILE=ci pytest tests/property``.
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
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
