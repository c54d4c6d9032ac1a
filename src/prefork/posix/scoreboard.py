"""The scoreboard: shared memory where each worker says what it is doing.

Why shared memory: a worker must be able to say "I started a perform at t" thousands of
times a second without a system call, and the master must be able to look at every
worker without asking any of them. So the master maps anonymous shared memory *before*
forking, every worker inherits the mapping, and each worker writes its own fixed-size
slot with plain stores through typed ``memoryview`` casts (no system call, no
allocation). The master reads the slots of the workers that gave notice (below), and
every slot at its timed scans and before a status, and turns what changed into
``Observed`` events for the core.

A slot is 160 bytes::

    offset 0   double  heartbeat_at   monotonic time the current perform began, or of the
                                      last heartbeat(); 0 before the first perform
    offset 8   uint64  performs       performs finished
    offset 16  uint8   state          0 free, 1 spawning, 2 idle, 3 performing
    offset 17  uint8   recycle        0, or why the worker asks to be recycled:
                                      1 max_performs, 2 max_memory (it works on)
    offset 20  uint32  failures       failed performs that did not end the worker (a
                                      forked perform's child that raised or died):
                                      only the worker knows of them
    offset 24  double  perform_seconds  the time its performs took, summed
    offset 32  uint64  buckets[15]    how many performs took at most DURATION_BOUNDS[i]
                                      seconds (and more than the bound before); the last
                                      counts the rest (+Inf)
    offset 152 double  memory_mib     its own figure of its unique memory (USS), in MiB,
                                      when it asks for max_memory; 0 otherwise

The duration histogram is the worker's alone (the core never sees a duration): per
perform it reads the clock twice, adds to the sum and to one bucket (``bisect`` on the
bounds), all plain stores. The master reads it only when ``/metrics`` asks, and adds a
reaped worker's to its pool's before the slot is freed (``Durations``).

Slots are the adapter's, not the core's: during a reload an old and a new worker have
the same core slot number at once, so each forked worker gets a free scoreboard index
of its own, reset by the master before the fork and freed when the worker is reaped.
Memory comes in segments of 256 slots; a full scoreboard grows by another segment
(workers already running keep their segment, which stays mapped), so the pool size has
no fixed bound. Pages are only touched when used.

A worker's notice: when a worker has something to say at once (its setup is done, a
forked perform's child failed) it writes its slot's index on the notify pipe, four bytes
(``notice``), and the master reads that slot and no other (``noticed``). Each write is
atomic (a pipe's writes up to ``PIPE_BUF`` are), so notices never mix. Anything else on
the pipe, or a pipe that was full (notices may have been lost), is read as "look at
everyone".

Readings are samples, not a log: the master may miss a perform between two looks, and a
reading may mix two moments (the fields are written one by one). The core is built for
that: it only ever needs the latest state, the latest heartbeat, and counts of performs
and failures that never go down.
"""

from __future__ import annotations

import mmap
from typing import NamedTuple

from prefork.core.worker_machine import WorkerState

SLOT_SIZE = 160
SEGMENT_SLOTS = 256
_DOUBLES_PER_SLOT = SLOT_SIZE // 8
_STATE_OFFSET = 16
_RECYCLE_OFFSET = 17
_FAILURES_OFFSET = 20
_SECONDS_OFFSET = 24
_BUCKETS_OFFSET = 32
# the upper bounds of the perform duration histogram's buckets, in seconds (+Inf after)
DURATION_BOUNDS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                   30.0, 60.0)
BUCKETS = len(DURATION_BOUNDS) + 1
_MEMORY_OFFSET = 152

FREE, SPAWNING, IDLE, PERFORMING = 0, 1, 2, 3
STATE_NAMES: dict[int, WorkerState] = {
    SPAWNING: WorkerState.SPAWNING,
    IDLE: WorkerState.IDLE,
    PERFORMING: WorkerState.PERFORMING,
}


class Reading(NamedTuple):
    """One look at a slot (immutable).

    A ``NamedTuple`` rather than a frozen dataclass: its class costs ~0.15 ms to make at
    import where a frozen dataclass's costs ~1 ms (Python 3.11), and each reading (one
    per worker per scan) is a plain tuple to make and compare.
    """

    state: int
    heartbeat_at: float
    performs: int
    failures: int = 0
    recycle: int = 0
    memory_mib: float = 0.0

    @property
    def worker_state(self) -> WorkerState | None:
        return STATE_NAMES.get(self.state)

    @property
    def recycle_reason(self) -> str | None:
        """Why the worker asks to be recycled (``None``: it does not)."""
        return RECYCLE_REASONS.get(self.recycle)


# why a worker asks to be recycled, as its slot's ``recycle`` byte says it
RECYCLE_CODES: dict[str, int] = {"max_performs": 1, "max_memory": 2}
RECYCLE_REASONS: dict[int, str] = {code: reason for reason, code in RECYCLE_CODES.items()}

FRESH_READING = Reading(SPAWNING, 0.0, 0, 0)  # what ``allocate`` writes

NOTICE_SIZE = 4
EVERYONE = None  # what ``noticed`` returns when every slot must be read


def notice(index: int) -> bytes:
    """What the worker of slot ``index`` writes on the notify pipe to be looked at."""
    return index.to_bytes(NOTICE_SIZE, "little")


def noticed(data: bytes, full: bool) -> set[int] | None:
    """The slots named by what was read from the notify pipe (``full``: as much as the
    pipe holds was read, and notices may have been lost): ``EVERYONE`` when it is not
    a whole number of notices, or when some may be missing."""
    if full or len(data) % NOTICE_SIZE:
        return EVERYONE
    return {int.from_bytes(data[at:at + NOTICE_SIZE], "little")
            for at in range(0, len(data), NOTICE_SIZE)}


class Slot:
    """One worker's slot, as that worker writes it: four one-item typed views.

    ``slot.state[0] = PERFORMING``, ``slot.heartbeat[0] = time.monotonic()``,
    ``slot.performs[0] = n`` and ``slot.failures[0] = n`` are each a single store into
    shared memory (and so are ``recycle`` and ``memory``, written once, to ask).
    """

    __slots__ = ("buckets", "failures", "heartbeat", "index", "memory", "performs",
                 "recycle", "seconds", "state")

    def __init__(self, view: memoryview, index: int) -> None:
        self.index = index
        self.heartbeat = view[0:8].cast("d")
        self.performs = view[8:16].cast("Q")
        self.state = view[_STATE_OFFSET:_STATE_OFFSET + 1].cast("B")
        self.failures = view[_FAILURES_OFFSET:_FAILURES_OFFSET + 4].cast("I")
        self.seconds = view[_SECONDS_OFFSET:_SECONDS_OFFSET + 8].cast("d")
        self.buckets = view[_BUCKETS_OFFSET:_BUCKETS_OFFSET + 8 * BUCKETS].cast("Q")
        self.recycle = view[_RECYCLE_OFFSET:_RECYCLE_OFFSET + 1].cast("B")
        self.memory = view[_MEMORY_OFFSET:_MEMORY_OFFSET + 8].cast("d")


class _Segment:
    def __init__(self, slots: int) -> None:
        self.memory = mmap.mmap(-1, slots * SLOT_SIZE)  # anonymous and MAP_SHARED
        self.view = memoryview(self.memory)
        self.doubles = self.view.cast("d")
        self.counts = self.view.cast("Q")
        self.words = self.view.cast("I")
        self.bytes = self.view.cast("B")


class Scoreboard:
    """Every slot the master handed out, in segments of shared memory."""

    def __init__(self, segment_slots: int = SEGMENT_SLOTS) -> None:
        self._segment_slots = segment_slots
        self._segments: list[_Segment] = []
        self._free: list[int] = []

    @property
    def capacity(self) -> int:
        return len(self._segments) * self._segment_slots

    def allocate(self) -> int:
        """A free slot index, reset to "spawning" (call it before forking the worker)."""
        if not self._free:
            base = self.capacity
            self._segments.append(_Segment(self._segment_slots))
            self._free = list(range(base + self._segment_slots - 1, base - 1, -1))
        index = self._free.pop()
        self._write(index, *FRESH_READING)
        return index

    def release(self, index: int) -> None:
        """The worker of ``index`` is reaped: the slot may serve another worker."""
        self._write(index, FREE, 0.0, 0, 0)
        self._free.append(index)

    def read(self, index: int) -> Reading:
        segment, i = self._locate(index)
        return Reading(
            segment.bytes[i * SLOT_SIZE + _STATE_OFFSET],
            segment.doubles[i * _DOUBLES_PER_SLOT],
            segment.counts[i * _DOUBLES_PER_SLOT + 1],
            segment.words[(i * SLOT_SIZE + _FAILURES_OFFSET) // 4],
            segment.bytes[i * SLOT_SIZE + _RECYCLE_OFFSET],
            segment.doubles[(i * SLOT_SIZE + _MEMORY_OFFSET) // 8],
        )

    def durations(self, index: int) -> tuple[list[int], float]:
        """Slot ``index``'s perform duration histogram: each bucket's count (not
        cumulative), and the seconds summed."""
        segment, i = self._locate(index)
        first = (i * SLOT_SIZE + _BUCKETS_OFFSET) // 8
        return (list(segment.counts[first:first + BUCKETS]),
                segment.doubles[(i * SLOT_SIZE + _SECONDS_OFFSET) // 8])

    def slot(self, index: int) -> Slot:
        """The worker's own typed views of slot ``index``."""
        segment, i = self._locate(index)
        return Slot(segment.view[i * SLOT_SIZE:(i + 1) * SLOT_SIZE], index)

    def _write(self, index: int, state: int, heartbeat_at: float, performs: int,
               failures: int, recycle: int = 0, memory_mib: float = 0.0) -> None:
        segment, i = self._locate(index)
        segment.doubles[i * _DOUBLES_PER_SLOT] = heartbeat_at
        segment.counts[i * _DOUBLES_PER_SLOT + 1] = performs
        segment.words[(i * SLOT_SIZE + _FAILURES_OFFSET) // 4] = failures
        segment.doubles[(i * SLOT_SIZE + _SECONDS_OFFSET) // 8] = 0.0
        first = (i * SLOT_SIZE + _BUCKETS_OFFSET) // 8
        segment.counts[first:first + BUCKETS] = _NO_COUNTS
        segment.bytes[i * SLOT_SIZE + _RECYCLE_OFFSET] = recycle
        segment.doubles[(i * SLOT_SIZE + _MEMORY_OFFSET) // 8] = memory_mib
        segment.bytes[i * SLOT_SIZE + _STATE_OFFSET] = state

    def _locate(self, index: int) -> tuple[_Segment, int]:
        return self._segments[index // self._segment_slots], index % self._segment_slots


_NO_COUNTS = memoryview(bytes(8 * BUCKETS)).cast("Q")


class Durations:
    """Each pool's perform durations: the workers gone (added as each is reaped, before
    its slot is freed) plus, when read, the live ones' slots."""

    def __init__(self) -> None:
        self._gone: dict[str, tuple[list[int], float]] = {}

    def retire(self, group: str, board: Scoreboard, index: int) -> None:
        """The worker of slot ``index`` is reaped: keep what its slot counted."""
        self._gone[group] = _add(self._gone.get(group), board.durations(index))

    def histograms(self, board: Scoreboard, live: list[tuple[str, int]]
                   ) -> dict[str, tuple[list[int], float]]:
        """Each pool's buckets (not cumulative) and sum, ``live``: (group, index)."""
        merged = dict(self._gone)
        for group, index in live:
            merged[group] = _add(merged.get(group), board.durations(index))
        return merged


def _add(into: tuple[list[int], float] | None,
         more: tuple[list[int], float]) -> tuple[list[int], float]:
    if into is None:
        return list(more[0]), more[1]
    return [a + b for a, b in zip(into[0], more[0], strict=True)], into[1] + more[1]
