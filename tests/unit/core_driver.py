"""A minimal driver for unit tests of the core: answers Spawns with fresh pids.

It is deliberately tiny (the full simulated OS is ``prefork.testing``): unit tests script
events one at a time and look at the effects and the whole state after each step.
"""

from __future__ import annotations

from prefork.core import Effect, Event, Forked, PoolConfig, Spawn, Supervisor
from prefork.core.context import MachineContext
from prefork.core.roster import Roster
from prefork.core.worker_machine import Worker


class Driver:
    def __init__(self, config: PoolConfig | None = None, first_pid: int = 100) -> None:
        self.core = Supervisor(config)
        self.next_pid = first_pid
        self.effects: list[Effect] = []

    def send(self, event: Event) -> list[Effect]:
        """Handle ``event``, answer every Spawn with Forked; return all effects."""
        effects = self.core.handle(event)
        assert not self.core.recount(), self.core.recount()
        answered: list[Effect] = []
        for effect in effects:
            answered.append(effect)
            if isinstance(effect, Spawn):
                pid, self.next_pid = self.next_pid, self.next_pid + 1
                answered += self.send(Forked(effect.group, effect.slot, pid))
        self.effects = answered
        return answered

    def pids(self, state: str | None = None) -> list[int]:
        return [w.pid for w in self.core.workers
                if w.pid is not None and (state is None or w.state.value == state)]

    def of(self, kind: type) -> list[Effect]:
        return [e for e in self.effects if isinstance(e, kind)]


def bare_roster(**groups: int) -> tuple[Roster, PoolConfig, MachineContext]:
    """A roster alone, no supervisor and no rules: a test drives it through its door."""
    context = MachineContext()
    config = PoolConfig.of(groups=groups, setup_timeout=None)
    return Roster(config, context, lambda group, slot: 0.0), config, context


def working(roster: Roster, config: PoolConfig, group: str, slot: int, pid: int) -> Worker:
    """Enlist a worker for ``slot`` of ``group``, fork it as ``pid``, and read it idle."""
    worker = roster.enlist(config.group(group), slot)
    roster.change(worker, "forked", pid)
    roster.change(worker, "reported_idle", 0.0, 0)
    return worker
