"""The loop carries out the effects that replace upward calls: ReadConfig, RunHook, Reply.

A scripted core stands in for the supervisor: it answers chosen events with chosen
effects and remembers every event it was handed, so the order of answers is visible.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from prefork.core.effects import Effect, Log, ReadConfig, Reply, RunHook
from prefork.core.errors import ConfigError
from prefork.core.events import (
    ConfigLoaded,
    ConfigRejected,
    Event,
    Reload,
    Scale,
    Status,
    StopAll,
)
from prefork.core.settings import PoolConfig
from prefork.posix.loop import PosixLoop, scan_interval


class ScriptedCore:
    """Answers an event of a given type with given effects; remembers what it was handed."""

    def __init__(self, script: dict[type, list[Effect]] | None = None) -> None:
        self.config = PoolConfig.of(workers=0)
        self.script = script or {}
        self.seen: list[Event] = []

    def handle(self, event: Event) -> list[Effect]:
        self.seen.append(event)
        if isinstance(event, Status):
            return [Reply(event.request, f"snapshot for {event.request!r}")]
        if isinstance(event, Reload | ConfigLoaded):
            self.config = event.config
        return list(self.script.get(type(event), []))


def no_worker(spec):  # type: ignore[no-untyped-def]
    raise AssertionError("nothing is forked here")


@pytest.fixture
def make_loop() -> Iterator:
    loops: list[PosixLoop] = []

    def make(core: ScriptedCore, **parts) -> PosixLoop:  # type: ignore[no-untyped-def]
        loop = PosixLoop(core, no_worker, logging.getLogger("test"),  # type: ignore[arg-type]
                         handle_signals=False, set_titles=False, **parts)
        loops.append(loop)
        return loop

    yield make
    for loop in loops:
        loop.close()


def hand_over(loop: PosixLoop, *events: Event) -> None:
    """Queue ``events`` at once, as one turn of the loop collects them, and process them."""
    loop._pending.extend(events)
    loop._process()


def test_read_config_is_answered_at_once_ahead_of_every_other_event(make_loop) -> None:
    fresh = PoolConfig.of(workers=3, timeout=4)
    read: list[str] = []
    core = ScriptedCore({StopAll: [ReadConfig("prefork.toml"), Log("info", "after")]})
    loop = make_loop(core, read_config=lambda path: read.append(path) or fresh)
    hand_over(loop, StopAll(), Scale("default", 1))
    assert read == ["prefork.toml"]
    assert [type(e) for e in core.seen] == [StopAll, ConfigLoaded, Scale]
    assert core.seen[1].config is fresh


def test_a_bad_config_file_is_rejected_with_the_readers_words(make_loop) -> None:
    def reader(path: str) -> PoolConfig:
        raise ConfigError("workers", -1, f"must be a whole number >= 0 (in {path})")

    core = ScriptedCore({StopAll: [ReadConfig("bad.toml")]})
    hand_over(make_loop(core, read_config=reader), StopAll())
    assert core.seen[1] == ConfigRejected(
        "bad.toml", "workers=-1: must be a whole number >= 0 (in bad.toml)", at=core.seen[1].at)


def test_a_reader_that_breaks_is_logged_and_the_config_rejected(make_loop, caplog) -> None:
    def reader(path: str) -> PoolConfig:
        raise RuntimeError("a bug")

    core = ScriptedCore({StopAll: [ReadConfig("x.toml")]})
    with caplog.at_level(logging.ERROR, logger="test"):
        hand_over(make_loop(core, read_config=reader), StopAll())
    rejected = core.seen[1]
    assert isinstance(rejected, ConfigRejected)
    assert rejected.why == "reading it raised RuntimeError: a bug"
    assert "Traceback" in caplog.text and "a bug" in caplog.text
    core_without_reader = ScriptedCore({StopAll: [ReadConfig("x.toml")]})
    hand_over(make_loop(core_without_reader), StopAll())
    assert isinstance(core_without_reader.seen[1], ConfigRejected)


def test_run_hook_calls_the_hook_of_that_name(make_loop, caplog) -> None:
    calls: list[tuple] = []

    def broken(*args: object) -> None:
        raise ValueError("hook broke")

    core = ScriptedCore({StopAll: [RunHook("before_fork", ("mail", 2)), RunHook("unset"),
                                   RunHook("on_worker_exit", (42, 1)), Log("info", "on")]})
    loop = make_loop(core, hooks={"before_fork": lambda *a: calls.append(a),
                                  "on_worker_exit": broken})
    with caplog.at_level(logging.INFO, logger="test"):
        hand_over(loop, StopAll(), Scale("default", 1))
    assert calls == [("mail", 2)]
    assert "hook on_worker_exit raised" in caplog.text and "hook broke" in caplog.text
    assert "Traceback" in caplog.text
    assert caplog.messages[-1] == "on", "a raising hook stops nothing"
    assert [type(e) for e in core.seen] == [StopAll, Scale]


def test_a_reply_goes_to_whoever_asked(make_loop, caplog) -> None:
    core = ScriptedCore({StopAll: [Reply("nobody", "a snapshot")]})
    loop = make_loop(core)
    assert loop.ask_status() == f"snapshot for {core.seen[-1].request!r}"
    assert not loop._replies, "nothing is kept once handed over"
    with caplog.at_level(logging.WARNING, logger="test"):
        hand_over(loop, StopAll())
    assert "nobody is waiting for" in caplog.text
    assert not loop._replies


def test_the_scoreboard_scan_follows_the_config_the_core_runs(make_loop) -> None:
    core = ScriptedCore()
    loop = make_loop(core)
    assert loop.scan_every is None
    hand_over(loop, Reload(PoolConfig.of(groups={"a": {"workers": 1, "timeout": 7},
                                                 "b": {"workers": 1, "timeout": 3}})))
    assert loop.scan_every == 3 == scan_interval(core.config)


def test_a_scaling_pool_is_scanned_every_scale_interval_and_a_fixed_one_never() -> None:
    assert scan_interval(PoolConfig.of(workers=4, max_workers=8)) is None
    scaling = {"workers": 1, "max_workers": 4, "min_spare": 1, "scale_interval": 0.5}
    assert scan_interval(PoolConfig.of(groups={"a": scaling, "b": 2})) == 0.5
    assert scan_interval(PoolConfig.of(groups={"a": {**scaling, "timeout": 0.2}})) == 0.2


def test_a_reading_hands_the_core_the_workers_failed_performs(make_loop) -> None:
    """Failed performs only the worker knows of (a forked perform's child that raised)
    reach the core with the rest of the reading, for it to count once."""
    from prefork.core.events import Observed
    from prefork.posix.loop import _Worker
    from prefork.posix.scoreboard import FRESH_READING, PERFORMING

    loop = make_loop(ScriptedCore())
    index = loop.board.allocate()
    slot = loop.board.slot(index)
    slot.state[0], slot.performs[0], slot.failures[0] = PERFORMING, 5, 2
    worker = _Worker(4242, "default", 0, index, FRESH_READING)
    observed = loop._observe(worker, 1.0)
    assert isinstance(observed, Observed)
    assert (observed.pid, observed.performs, observed.failures) == (4242, 5, 2)
