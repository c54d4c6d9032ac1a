"""The master rows' callbacks for an operator's requests: sizing, and signals passed on.

* ``Sizing``: TTIN and TTOU (one worker more or fewer in the first group), and the
  commands ``StartWorker``, ``StopWorker`` and ``Scale``: each sets a group's target
  within ``0..max_workers``; the derived rules then spawn or retire.
* ``Forwarding``: USR1 (reopen the logs, then tell every worker), USR2 and CONT (hold
  and resume, told to every worker; a hold is remembered, so that workers forked during
  it start held).

The master model hands each row's callback to the part that carries it out
(``MasterModel.__getattr__``, from each part's ``CALLBACKS``); the parts read the model's
config, roster and context, which a reload may replace.
"""

from __future__ import annotations

from typing import Any

from prefork.core.effects import Log, ReopenLogs
from prefork.core.signals import Sig

# the master model (``master_machine.MasterModel``, which imports this module)
Master = Any


class Sizing:
    """Targets: one group's number of workers, within its bounds."""

    CALLBACKS = ("resize_first_group", "grow_group", "shrink_group", "scale_group")

    def __init__(self, master: Master) -> None:
        self.master = master

    def resize_first_group(self, signo: Sig) -> None:
        """TTIN and TTOU: one worker more or fewer in the first group of the config."""
        self._step(None, 1 if signo is Sig.TTIN else -1)

    def grow_group(self, group: str | None) -> None:
        self._step(group, 1)

    def shrink_group(self, group: str | None) -> None:
        self._step(group, -1)

    def _step(self, group: str | None, delta: int) -> None:
        targets = self.master.roster.targets
        group = group or next(iter(targets))
        self.scale_group(group, targets.get(group, 0) + delta)  # an unknown group: refused there

    def scale_group(self, group: str, n: int) -> None:
        """Set a group's target within 0..max_workers; settle spawns or retires."""
        master = self.master
        targets, emit = master.roster.targets, master.context.emit
        if group not in targets:
            emit(Log("warning", f"no group {group!r} to scale (groups: {', '.join(targets)})"))
            return
        most = master.config.group(group).max_workers
        bounded = max(0, n if most is None else min(n, most))
        if bounded != n:
            emit(Log("warning", f"group {group} stays at {bounded} workers (asked for {n}; "
                                f"bounds 0..{most})"))
        if bounded != targets[group]:
            emit(Log("info", f"group {group}: {targets[group]} -> {bounded} workers",
                     (("event", "scaled"), ("pool", group), ("from", targets[group]),
                      ("to", bounded))))
            master.roster.set_target(group, bounded)


class Forwarding:
    """Signals the workers are told of, and the hold that new workers inherit."""

    CALLBACKS = ("reopen_logs", "forward_to_workers")

    def __init__(self, master: Master) -> None:
        self.master = master
        self.holding = False  # USR2 came after the last CONT: new workers start held

    def reopen_logs(self, signo: Sig) -> None:
        self.master.context.emit(ReopenLogs())
        self.forward_to_workers(signo)

    def forward_to_workers(self, signo: Sig) -> None:
        if signo in (Sig.USR2, Sig.CONT):  # a hold is remembered for the workers to come
            self.holding = signo is Sig.USR2
        roster = self.master.roster
        for worker in roster.workers:
            roster.change(worker, "signal_forwarded", signo)
