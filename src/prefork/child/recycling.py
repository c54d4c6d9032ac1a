"""The worker's own recycling checks: its share of the jitter, its count, its memory.

The worker, not the master, decides when it is due for recycling, and only says so (the
process machine's ``recycle_due``; the master then forks a replacement first, see
``prefork.core.recycling``):

* **by work done**: its limit is ``max_performs`` plus a random ``0..max_performs_jitter``
  drawn here, once per worker (gunicorn's ``max_requests_jitter``), so that workers
  started together are not all recycled together. The draw is the only randomness of
  recycling, and it happens in the worker process, outside the pure core.
* **by memory**: after its performs, at most every ``check_every`` seconds, it compares
  its memory with ``max_memory`` (``prefork.posix.memory.memory_figure``: RSS first,
  which costs ~36 µs, and USS, ~3-6 ms, only when RSS is over the limit).

Nothing here runs per perform. The perform loops run in batches, and a batch's budget
(``budget``) ends it where a check is due: at the count limit, and after about
``check_every`` seconds of performs, estimated from the rate of the batch before (one
perform at first). Between batches ``due`` says what to ask for, if anything. So a job
whose performs take 1 µs is checked about once a second, as is one whose performs take
0.5 s, and the loop's hot path is unchanged: the cost is two process-machine triggers
and a clock read per check, plus the memory reading.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from typing import NamedTuple

from prefork.core.recycling import describe_memory
from prefork.posix.memory import memory_figure

MAX_BUDGET = 1_000_000  # performs in a batch at most, however fast they are
CHECK_EVERY = 1.0  # seconds between two checks of the worker's memory, at most


class Due(NamedTuple):
    """What the worker asks for: ``reason``, the words of its log line, its memory."""

    reason: str
    why: str
    memory_mib: float | None = None


class SelfCheck:
    """When a worker is due for recycling, checked between its batches of performs."""

    def __init__(self, max_performs: int | None, jitter: int, max_memory: int | None,
                 *, check_every: float = CHECK_EVERY,
                 draw: Callable[[int, int], int] = random.randint,
                 clock: Callable[[], float] = time.monotonic,
                 measure: Callable[[float], float | None] = memory_figure) -> None:
        self.max_performs = max_performs
        self.jitter = jitter if max_performs is not None else 0
        self.extra = draw(0, self.jitter) if self.jitter else 0
        self.limit = None if max_performs is None else max_performs + self.extra
        self.max_memory = max_memory
        self.check_every = check_every
        self.clock = clock
        self.measure = measure
        self.asked = False
        self._checked_at = clock()
        self._checked_done = 0
        self._memory_budget = 1  # perform once, then measure the rate

    def budget(self, done: int) -> int | None:
        """How many performs the next batch may run before a check is due (``None``:
        none is: the worker has asked already, or has no limit)."""
        if self.asked:
            return None
        budgets = []
        if self.limit is not None:
            budgets.append(max(1, self.limit - done))
        if self.max_memory is not None:
            budgets.append(self._memory_budget)
        return min(budgets, default=None)

    def due(self, done: int) -> Due | None:
        """Between batches, ``done`` performs done: what to ask for (once), if anything."""
        if self.asked:
            return None
        if self.limit is not None and done >= self.limit:
            return self._ask(Due("max_performs", self._count_words(done)))
        if self.max_memory is None:
            return None
        now = self.clock()
        elapsed, performed = now - self._checked_at, done - self._checked_done
        if elapsed < self.check_every:  # early (a signal ended the batch, or the rate
            # rose): no reading; the next batch runs to about the time it is due
            self._memory_budget = self._rate_budget(performed, elapsed,
                                                    self.check_every - elapsed)
            return None
        self._checked_at, self._checked_done = now, done
        self._memory_budget = self._rate_budget(performed, elapsed, self.check_every)
        mib = self.measure(self.max_memory)
        if mib is None or mib <= self.max_memory:
            return None
        words = describe_memory(mib, self.max_memory)
        return self._ask(Due("max_memory", words, mib))

    def _ask(self, due: Due) -> Due:
        self.asked = True
        return due

    def _count_words(self, done: int) -> str:
        drawn = f" + {self.extra} of jitter {self.jitter}" if self.jitter else ""
        return f"did {done} performs (max_performs {self.max_performs}{drawn})"

    @staticmethod
    def _rate_budget(performed: int, elapsed: float, span: float) -> int:
        """The performs that fit in ``span`` seconds at the rate just seen (1 at least)."""
        if performed <= 0 or elapsed <= 0:
            return 1
        return max(1, min(MAX_BUDGET, math.ceil(performed / elapsed * span)))
