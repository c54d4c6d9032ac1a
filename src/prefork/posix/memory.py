"""A worker's memory, as recycling by ``max_memory`` measures it: its unique set size.

Why USS and not RSS: RSS counts every page a process has resident, the pages it shares
copy-on-write with the master included (with ``preload``, most of the application). A
pool of workers that share 300 MiB each shows 300 MiB of RSS per worker while each costs
a few MiB of its own, so a limit on RSS would recycle healthy workers, and one on the sum
would count the shared pages once per worker. USS (private pages, clean or dirty) is what
the worker alone costs: what its exit would give back. Where the kernel gives no USS,
PSS (each shared page divided among its sharers) stands in.

What it costs: ``psutil``'s ``memory_full_info`` reads ``/proc/PID/smaps_rollup``, which
walks the process's page tables: 3.4 to 5.8 ms for a 110 MiB process on a development
machine. ``/proc/PID/statm`` (RSS) costs ~36 µs to read from Python. RSS is never below
USS, so both the worker's own check and the master's sample read RSS first, and pay for
USS only when RSS is over the limit. Under the limit, the figure given is RSS: an upper
bound of USS, and enough to say "not over".

``psutil`` is an optional extra (``pip install 'prefork[memory]'``): only ``max_memory``
needs it, and the options refuse ``max_memory`` without it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from prefork.core.events import MemorySampled

if TYPE_CHECKING:
    from prefork.core.settings import PoolConfig

try:
    import psutil
except ImportError:  # the memory extra is not installed: max_memory is refused
    psutil = None

MIB = 1024 * 1024
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def unique_mib(pid: int | None = None) -> float | None:
    """The USS (or PSS) of ``pid`` (``None``: this process) in MiB; ``None`` when it
    cannot be read (no psutil, the process is gone, or not ours to read)."""
    if psutil is None:
        return None
    try:
        info = psutil.Process(pid).memory_full_info()
    except (psutil.Error, OSError):
        return None
    figure = getattr(info, "uss", None) or getattr(info, "pss", None)
    return None if figure is None else figure / MIB


def resident_mib(pid: int | None = None) -> float | None:
    """The RSS of ``pid`` (``None``: this process) in MiB, from ``/proc/PID/statm``
    (psutil's figure where there is no /proc); ``None`` when it cannot be read."""
    path = f"/proc/{'self' if pid is None else pid}/statm"
    try:
        with open(path, "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE / MIB
    except (OSError, IndexError, ValueError):
        pass
    if psutil is None:
        return None
    try:
        return float(psutil.Process(pid).memory_info().rss) / MIB
    except (psutil.Error, OSError):
        return None


def memory_figure(limit: float, pid: int | None = None) -> float | None:
    """What to compare with ``limit`` (MiB): the RSS when it is at most the limit (USS is
    then too), else the USS; ``None`` when neither can be read."""
    rss = resident_mib(pid)
    if rss is not None and rss <= limit:
        return rss
    return unique_mib(pid)


SAMPLE_EVERY = 2.0
"""Seconds between two of the master's samples of its workers' memory. Only for pools with
``max_memory``: the workers check themselves after their performs (about every second),
so the master's samples are for a worker that no longer gets there, stuck inside a perform
that keeps growing; two samples over the limit, the later larger, are the evidence."""


class MemorySampler:
    """The master's low-rate samples of its workers' memory (``MemorySampled`` events).

    No pool with ``max_memory``, no samples and no wake-ups: ``next_at`` is ``None`` and
    an idle master sleeps as before.
    """

    def __init__(self, every: float = SAMPLE_EVERY,
                 measure: Callable[[float, int | None], float | None] = memory_figure) -> None:
        self.every = every
        self.measure = measure
        self.next_at: float | None = None

    def collect(self, workers: Iterable[tuple[int, str]], config: PoolConfig,
                now: float) -> list[MemorySampled]:
        """Samples of ``workers`` (pid, pool) whose pool has ``max_memory``, if one is due
        at ``now``; schedules the next one."""
        limits = {group.name: group.max_memory for group in config.groups
                  if group.max_memory is not None}
        workers = [(pid, limits[group]) for pid, group in workers if group in limits]
        if not workers:
            self.next_at = None
            return []
        if self.next_at is None:
            self.next_at = now + self.every
        if now < self.next_at:
            return []
        self.next_at = now + self.every
        samples = []
        for pid, limit in workers:
            mib = self.measure(limit, pid)
            if mib is not None:  # gone, or not ours to read: its reap will say
                samples.append(MemorySampled(pid, mib, at=now))
        return samples
