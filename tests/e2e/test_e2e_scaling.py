"""Spare-worker scaling with real processes: a pool under a synthetic load grows to its
bound, and shrinks back once its idle surplus has lasted ``idle_timeout``.

The job (``jobs:Loaded``) works while the marker file ``busy`` exists in the test's tmp
dir and returns ``prefork.IDLE`` otherwise; the master learns which from the scoreboard,
which it scans every ``scale_interval``. The log's ``pool default: A -> B workers`` lines
are the rule's decisions, and ``worker ... spawning -> idle|performing`` and ``-> dead``
lines tell which workers are up.
"""

from __future__ import annotations

import re

import pytest
from e2e_support import wait_for
from test_e2e_pools import counts

pytestmark = pytest.mark.timeout(60)

SCALED = re.compile(r"pool default: (\d+) -> (\d+) workers")
LOADED = """\
job = "jobs:Loaded"
workers = 1
min_workers = 1
max_workers = 4
min_spare = 1
max_spare = 1
idle_timeout = 1.5
scale_interval = 0.2
graceful_timeout = 5
"""


def test_a_pool_under_load_grows_to_its_bound_and_shrinks_back(prefork_run, tmp_path) -> None:
    config = tmp_path / "pool.toml"
    config.write_text(LOADED)
    pool = prefork_run("-c", str(config))
    wait_for(lambda: counts(pool.output()) == {"default": 1}, 15, "one worker, idle")
    # (a fresh worker's first perform reads busy until it returns prefork.IDLE, so the
    # pool may grow and shrink once before the load: the decisions are read from here)
    loaded_at = len(pool.output())
    (tmp_path / "busy").touch()  # the load: every perform works
    wait_for(lambda: re.search(r"pool default: \d -> 4 workers", pool.output()[loaded_at:]),
             15, "growth to max_workers")
    wait_for(lambda: counts(pool.output()) == {"default": 4}, 15, "four workers, busy")
    (tmp_path / "busy").unlink()  # no load: every perform returns prefork.IDLE
    wait_for(lambda: counts(pool.output()) == {"default": 1}, 20, "one worker again")
    pool.kill("QUIT")
    assert pool.wait() == 0
    output = pool.output()
    every = [(int(a), int(b)) for a, b in SCALED.findall(output)]
    assert all(1 <= target <= 4 for step in every for target in step), every
    decisions = [(int(a), int(b)) for a, b in SCALED.findall(output[loaded_at:])]
    first_up = next(i for i, (a, b) in enumerate(decisions) if b > a)
    decisions = decisions[first_up:]  # (a shrink of the boot's growth may come first)
    ups = [step for step in decisions if step[1] > step[0]]
    downs = decisions[len(ups):]
    assert ups and all(b > a for a, b in ups) and ups[-1][1] == 4, decisions
    assert downs and all(b < a for a, b in downs) and downs[-1][1] == 1, decisions
    # every shrink waited for its surplus to last idle_timeout
    assert re.search(r"pool default: 4 -> \d workers \(\d idle beyond max_spare 1 for "
                     r"1\.5s\)", output[loaded_at:])


TWO_POOLS = """\
graceful_timeout = 5

[pool.web]
job = "jobs:Loaded"
workers = 1
max_workers = 3
min_spare = 1
max_spare = 1
scale_interval = 0.2

[pool.fixed]
job = "jobs:Loaded"
workers = 2
max_workers = 4
"""


def test_only_the_pool_that_scales_grows(prefork_run, tmp_path) -> None:
    """A fixed ``workers`` stays the default: under the same load, the pool without
    spare options keeps its count while its neighbour grows to its bound."""
    config = tmp_path / "pools.toml"
    config.write_text(TWO_POOLS)
    (tmp_path / "busy").touch()
    pool = prefork_run("-c", str(config))
    pool.expect(r"pool web: 2 -> 3 workers")
    wait_for(lambda: counts(pool.output()) == {"web": 3, "fixed": 2}, 15, "web at its bound")
    pool.kill("QUIT")
    assert pool.wait() == 0
    assert not re.search(r"pool fixed: \d+ -> \d+ workers", pool.output())
    assert not re.search(r"pool web: \d+ -> [04-9]\d* workers", pool.output())


CRASHING_POOL = """\
restart_backoff = 0.05
restart_backoff_max = 0.2

[pool.mail]
job = "jobs:BadSetup"
workers = 1
max_restarts = 4
restart_period = 60

[pool.web]
job = "jobs:Sleepy"
workers = 1
"""


def test_a_crash_loop_is_told_per_pool_and_its_own_intensity_gives_up(prefork_run,
                                                                     tmp_path) -> None:
    """The crash loop is in the log, in one line per back-off naming the pool; the pool
    that crashes is judged by its own intensity and named when the master gives up."""
    config = tmp_path / "pools.toml"
    config.write_text(CRASHING_POOL)
    pool = prefork_run("-c", str(config))
    pool.expect(r"pool mail: 2 crashes in 60s, next start in 0\.05s "
                r"\(slot mail\.0 failed 2 times in a row\)")
    pool.expect(r"pool mail: 3 crashes in 60s, next start in 0\.1s")
    pool.expect(r"pool mail: more than 4 crashes in 60s: giving up")
    assert pool.wait() == 1
    assert not re.search(r"pool web: \d+ crash", pool.output())
    assert re.search(r"gave up: more than 4 crashes in 60s \(pool mail\)", pool.output())
