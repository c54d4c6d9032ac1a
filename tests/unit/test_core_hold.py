"""A hold (USR2) is remembered: workers forked during it are asked for held."""

from __future__ import annotations

from prefork.core.effects import Kill, Spawn
from prefork.core.events import Boot, Forked, Observed, Signal
from prefork.core.settings import PoolConfig
from prefork.core.signals import Sig
from prefork.core.supervisor import Supervisor
from prefork.core.worker_machine import WorkerState


def spawns(effects: list) -> list[Spawn]:
    return [effect for effect in effects if isinstance(effect, Spawn)]


def test_a_worker_forked_during_a_hold_is_spawned_held_until_cont() -> None:
    core = Supervisor(PoolConfig.of(groups={"mail": 1, "sms": 1}, setup_timeout=None))
    assert [s.held for s in spawns(core.handle(Boot(at=0.0)))] == [False, False]
    core.handle(Forked("mail", 0, 101, at=0.0))
    core.handle(Forked("sms", 0, 102, at=0.0))
    for pid in (101, 102):
        core.handle(Observed(pid, WorkerState.IDLE, at=0.0))
    held = core.handle(Signal(Sig.USR2, at=1.0))
    assert held == [Kill(101, Sig.USR2), Kill(102, Sig.USR2)], "every pool holds"
    assert spawns(core.handle(Signal(Sig.TTIN, at=2.0))) == [Spawn("mail", 1, held=True)]
    core.handle(Forked("mail", 1, 103, at=2.0))
    resumed = core.handle(Signal(Sig.CONT, at=3.0))
    assert resumed == [Kill(101, Sig.CONT), Kill(102, Sig.CONT), Kill(103, Sig.CONT)]
    assert spawns(core.handle(Signal(Sig.TTIN, at=4.0))) == [Spawn("mail", 2, held=False)]


def test_a_reload_during_a_hold_spawns_its_new_generation_held() -> None:
    core = Supervisor(PoolConfig.of(workers=1, setup_timeout=None))
    core.handle(Boot(at=0.0))
    core.handle(Forked("default", 0, 101, at=0.0))
    core.handle(Signal(Sig.USR2, at=1.0))
    assert [s.held for s in spawns(core.handle(Signal(Sig.HUP, at=2.0)))] == [True]
