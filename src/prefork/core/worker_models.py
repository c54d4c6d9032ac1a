"""The one ``transitions`` machine every worker of a roster is a model of, and how it
holds its models."""

from __future__ import annotations

from transitions import Machine

from prefork.core.worker_machine import WORKER_TRANSITIONS, Worker, WorkerState


class _Models(dict[Worker, None]):
    """The machine's models as ``transitions`` uses them (``append``, ``remove``, ``in``,
    iteration in order), kept by identity.

    A list's ``in`` and ``remove`` compare the model with every model before it, which
    writes each one's reference count: in the master, every page is shared with the
    worker forked last, so each of those writes copies a page. With 1024 workers that
    was a thousand page faults, some 3 ms, in each respawn's decision."""

    def append(self, model: Worker) -> None:
        self[model] = None

    def remove(self, model: Worker) -> None:
        del self[model]



def new_worker_machine() -> Machine:
    """The one machine every worker of a roster is a model of."""
    machine = Machine(
        model=None, states=WorkerState, transitions=WORKER_TRANSITIONS,
        initial=WorkerState.SPAWNING, auto_transitions=False, ignore_invalid_triggers=False,
    )
    machine.models = _Models()
    return machine
