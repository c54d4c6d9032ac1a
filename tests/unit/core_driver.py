"""A minimal driver for unit tests of the core: answers Spawns with fresh pids.

It is deliberately tiny (the full simulated OS is ``prefork.testing``): unit tests script
events one at a time and look at the effects and the whole state after each step.
"""

from __future__ import annotations

from prefork.core import Effect, Event, Forked, PoolConfig, Spawn, Supervisor


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
