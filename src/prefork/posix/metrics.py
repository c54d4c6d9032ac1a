"""The Prometheus text format of a master, from its snapshot: ``GET /metrics``.

Everything comes from the core's ``Snapshot`` (the workers' states and counts as last
read from the scoreboard, the core's counters) and from the loop (its lag): nothing is
kept on disk and no multiprocess directory is needed, since the master reads every
worker's slot of shared memory itself. The text format (version 0.0.4) is written here,
a few lines of code, rather than with a dependency; ``prometheus_client``'s parser reads
it in the tests. docs/supervision.md lists the metrics.

Counters never go down while the master lives: a pool's performs are those of its live
workers plus those of its workers that are gone (the core's tally).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from prefork.core.outcomes import Outcome
from prefork.core.readiness import not_ready_because
from prefork.core.report import KILL_REASONS
from prefork.core.snapshot import Snapshot
from prefork.core.tally import RECYCLE_REASONS, GroupCounts
from prefork.posix.scoreboard import DURATION_BOUNDS

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
WORKER_STATES = ("spawning", "idle", "performing", "retiring", "stopping")

Sample = tuple[dict[str, str], float]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _family(name: str, kind: str, doc: str, samples: Iterable[Sample]) -> list[str]:
    # a counter's samples end in _total, and its HELP and TYPE lines name it so too
    sample_name = f"{name}_total" if kind == "counter" else name
    lines = [f"# HELP {sample_name} {doc}", f"# TYPE {sample_name} {kind}"]
    for labels, value in samples:
        text = ",".join(f'{key}="{_escape(val)}"' for key, val in labels.items())
        lines.append(f"{sample_name}{{{text}}} {value:g}" if text
                     else f"{sample_name} {value:g}")
    return lines


def _by_label(counts: Iterable[GroupCounts], field: str, label: str,
              known: Iterable[str]) -> list[Sample]:
    samples = []
    for group in counts:
        values = dict(getattr(group, field))
        for key in dict.fromkeys([*known, *values]):
            samples.append(({"pool": group.group, label: key}, values.get(key, 0)))
    return samples


def _per_pool(counts: Iterable[GroupCounts], value: Any) -> list[Sample]:
    return [({"pool": group.group}, value(group)) for group in counts]


def _workers_by_state(snapshot: Snapshot) -> list[Sample]:
    samples = []
    for group in dict.fromkeys(c.group for c in snapshot.counts):
        mine = [w for w in snapshot.workers if w.group == group and w.pid is not None]
        for state in WORKER_STATES:
            n = sum(1 for w in mine if (w.stopping if state == "stopping"
                                         else w.state == state and not w.stopping))
            samples.append(({"pool": group, "state": state}, n))
    return samples


def _histogram(name: str, doc: str, durations: dict[str, tuple[list[int], float]]
               ) -> list[str]:
    lines = [f"# HELP {name} {doc}", f"# TYPE {name} histogram"]
    for pool, (buckets, seconds) in durations.items():
        label = f'pool="{_escape(pool)}"'
        total = 0
        for bound, n in zip((*DURATION_BOUNDS, "+Inf"), buckets, strict=True):
            total += n
            le = bound if isinstance(bound, str) else f"{bound:g}"
            lines.append(f'{name}_bucket{{{label},le="{le}"}} {total}')
        lines.append(f"{name}_sum{{{label}}} {seconds!r}")
        lines.append(f"{name}_count{{{label}}} {total}")
    return lines


def render(snapshot: Snapshot, loop_lag: float,
           durations: dict[str, tuple[list[int], float]] | None = None) -> str:
    """The metrics of the master whose snapshot this is, in the text format;
    ``durations``: each pool's perform duration histogram (buckets not cumulative, and
    the seconds summed), from the scoreboard."""
    counts = snapshot.counts
    live_performs: dict[str, int] = {}
    for worker in snapshot.workers:
        live_performs[worker.group] = live_performs.get(worker.group, 0) + worker.performs
    targets = dict(snapshot.targets)
    lines: list[str] = []
    lines += _family("prefork_master_ready", "gauge",
                     "1 when the master is ready (what /readyz and prefork check say)",
                     [({}, 0 if not_ready_because(snapshot) else 1)])
    lines += _family("prefork_master_loop_lag_seconds", "gauge",
                     "how late the master's loop woke at its last timed wake-up",
                     [({}, loop_lag)])
    lines += _family("prefork_pool_target_workers", "gauge", "the workers a pool should have",
                     [({"pool": c.group}, targets.get(c.group, 0)) for c in counts])
    lines += _family("prefork_workers", "gauge", "live workers by pool and state",
                     _workers_by_state(snapshot))
    lines += _family("prefork_performs", "counter", "performs finished",
                     _per_pool(counts, lambda c: c.performs_of_ended
                               + live_performs.get(c.group, 0)))
    lines += _family("prefork_perform_failures", "counter",
                     "failed performs that did not end their worker (forking strategy)",
                     _per_pool(counts, lambda c: c.perform_failures))
    lines += _family("prefork_worker_exits", "counter", "workers gone, by outcome",
                     _by_label(counts, "exits", "outcome", [str(o) for o in Outcome
                                                           if o is not Outcome.PERFORM_FAILED]))
    lines += _family("prefork_worker_crashes", "counter",
                     "workers that crashed (non-zero exit, or a signal the master did not "
                     "send) once ready",
                     _per_pool(counts, lambda c: c.exit_count(str(Outcome.CRASHED),
                                                              str(Outcome.KILLED))))
    lines += _family("prefork_worker_timeouts", "counter", "performs that timed out",
                     _per_pool(counts, lambda c: c.exit_count(str(Outcome.TIMED_OUT))))
    lines += _family("prefork_worker_restarts", "counter",
                     "workers forked into a slot that had one before",
                     _per_pool(counts, lambda c: c.restarts))
    lines += _family("prefork_worker_kills", "counter",
                     "workers the master killed (ABRT or KILL), by why",
                     _by_label(counts, "kills", "reason", KILL_REASONS))
    lines += _family("prefork_worker_recycles", "counter",
                     "workers that retired to be replaced, by reason",
                     _by_label(counts, "recycles", "reason", RECYCLE_REASONS))
    if durations:
        order = [c.group for c in counts] + [pool for pool in durations if pool not in
                                             {c.group for c in counts}]
        lines += _histogram("prefork_perform_duration_seconds",
                            "how long performs took (timed by the workers)",
                            {pool: durations[pool] for pool in order if pool in durations})
    return "\n".join(lines) + "\n"
