"""The master machine: its table, and the model whose callbacks carry its rows out.

Theory of operation
-------------------

The master is up (``running``, ``paused`` or ``reloading``) or leaving (``draining``
or ``terminating``) or gone (``stopped``). Up states keep each group at its target:
``running`` spawns what is missing, ``paused`` (WINCH) keeps the targets but runs no
workers, ``reloading`` (HUP) runs a new generation while the old one drains. Leaving
states never spawn; they wait for every worker to be reaped. Draining is graceful (QUIT:
each worker finishes its perform), terminating is quick (TERM), and a quick stop can
overtake a graceful one but never the other way round.

Every signal and command is a trigger, and every (state, trigger) pair the master can
meet is a row below, even when the row does nothing but log that the request was
ignored: the table is the whole behaviour, and a pair without a row raises
``CoreError``. Rows that change the master's state log the change and set the process
title; rows that act on workers fire worker triggers through the roster, one worker at
a time.

Four decisions follow from the whole picture rather than from one event: stop when the
last worker is reaped, finish a reload when the last old worker is, give up when
failures exceed the restart intensity, and move the targets of the pools that scale by
their spare workers (``scaling``). They are rows too: the supervisor fires
``workers_gone``, ``reload_finished``, ``restarts_exhausted`` and ``spares_reviewed``
after every event, in every state but ``stopped``, and the guards (or the scaling rule)
decide (``all_workers_reaped``...), so the table shows what happens and when. Filling
missing slots and retiring surplus workers act on workers, not on the master's state:
they are derived rules (``rules``).

HUP with a ``config_file`` first asks the adapter to read it (``ReadConfig``); the
answer comes before any other event, as ``ConfigLoaded`` (take it and replace every
worker) or ``ConfigRejected`` (say why, keep the running config, and replace every
worker all the same, as a HUP without a file does).

The rows for an operator's requests (sizing: TTIN, TTOU, ``Scale``...; signals passed
on to the workers: USR1, USR2, CONT) are carried out by two small parts of the model
(``pool_requests``), and what the service manager is told is ``status``'s business.
"""

from __future__ import annotations

from typing import Any

from transitions import Machine

from prefork.core.context import MachineContext
from prefork.core.effects import Exit, Log, Reply, RunHook
from prefork.core.master_states import (
    LEAVING,
    NOT_SPAWNING,
    SPAWNING_STATES,
    SUPERVISING,
    UP,
    M,
    MasterState,
)
from prefork.core.master_views import MasterViews
from prefork.core.outcomes import describe_status
from prefork.core.pool_requests import Forwarding, Sizing
from prefork.core.reloads import Reloads
from prefork.core.report import StopReport
from prefork.core.restarts import RestartPolicy
from prefork.core.roster import Roster
from prefork.core.rules import fill_missing_slots
from prefork.core.scaling import SpareScaling
from prefork.core.settings import PoolConfig
from prefork.core.signals import Sig
from prefork.core.tally import Tally

__all__ = [
    "LEAVING", "MASTER_TRANSITIONS", "MASTER_TRIGGERS", "NOT_SPAWNING", "SIGNAL_TRIGGERS",
    "SPAWNING_STATES", "SUPERVISING", "UP", "MasterModel", "MasterState",
]

# requests that only make sense while the master is up; leaving, it logs and ignores them
_UP_ONLY = [
    "hup_received", "reload_requested", "winch_received", "ttin_received", "ttou_received",
    "start_worker_requested", "stop_worker_requested", "scale_requested",
]
MASTER_TRANSITIONS: list[dict[str, Any]] = [
    # booting
    {"trigger": "booted", "source": M.BOOTING, "dest": M.RUNNING, "after": "open_pool"},
    # graceful stop
    {"trigger": "quit_received", "source": UP, "dest": M.DRAINING, "after": "stop_all_workers"},
    {"trigger": "stop_all_requested", "source": UP, "dest": M.DRAINING,
     "after": "stop_all_workers"},
    {"trigger": "term_received", "source": UP, "dest": M.DRAINING,
     "conditions": "graceful_term", "after": "stop_all_workers"},
    {"trigger": "quit_received", "source": LEAVING, "dest": None},
    {"trigger": "stop_all_requested", "source": LEAVING, "dest": None},
    {"trigger": "term_received", "source": M.DRAINING, "dest": None,
     "conditions": "graceful_term"},
    # quick stop
    {"trigger": "term_received", "source": [*UP, M.DRAINING], "dest": M.TERMINATING,
     "unless": "graceful_term", "after": "terminate_all_workers"},
    {"trigger": "int_received", "source": [*UP, M.DRAINING], "dest": M.TERMINATING,
     "after": "terminate_all_workers"},
    {"trigger": "term_received", "source": M.TERMINATING, "dest": None},
    {"trigger": "int_received", "source": M.TERMINATING, "dest": None},
    # reload
    {"trigger": "hup_received", "source": UP, "dest": M.RELOADING,
     "unless": "has_config_file", "after": "replace_workers"},
    {"trigger": "hup_received", "source": UP, "dest": None,
     "conditions": "has_config_file", "after": "read_config"},
    {"trigger": "config_loaded", "source": UP, "dest": M.RELOADING,
     "after": "take_file_and_replace_workers"},
    {"trigger": "config_rejected", "source": UP, "dest": M.RELOADING,
     "after": "keep_config_and_replace_workers"},
    {"trigger": "reload_requested", "source": UP, "dest": M.RELOADING,
     "after": "take_config_and_replace_workers"},
    # pause
    {"trigger": "winch_received", "source": [M.RUNNING, M.RELOADING], "dest": M.PAUSED,
     "unless": "has_terminal", "after": "stop_all_workers"},
    {"trigger": "winch_received", "source": M.PAUSED, "dest": None, "unless": "has_terminal"},
    {"trigger": "winch_received", "source": UP, "dest": None, "conditions": "has_terminal",
     "after": "log_winch_ignored"},
    # sizing
    {"trigger": "ttin_received", "source": UP, "dest": None, "after": "resize_first_group"},
    {"trigger": "ttou_received", "source": UP, "dest": None, "after": "resize_first_group"},
    {"trigger": "start_worker_requested", "source": UP, "dest": None, "after": "grow_group"},
    {"trigger": "stop_worker_requested", "source": UP, "dest": None, "after": "shrink_group"},
    {"trigger": "scale_requested", "source": UP, "dest": None, "after": "scale_group"},
    # requests that make no sense while leaving
    *({"trigger": trigger, "source": LEAVING, "dest": None, "after": "log_ignored"}
      for trigger in _UP_ONLY),
    # passed on to the workers
    {"trigger": "usr1_received", "source": SUPERVISING, "dest": None, "after": "reopen_logs"},
    {"trigger": "usr2_received", "source": SUPERVISING, "dest": None,
     "after": "forward_to_workers"},
    {"trigger": "cont_received", "source": SUPERVISING, "dest": None,
     "after": "forward_to_workers"},
    # questions
    {"trigger": "status_requested", "source": SUPERVISING, "dest": None,
     "after": "reply_with_snapshot"},
    # children
    {"trigger": "chld_received", "source": SUPERVISING, "dest": None},
    {"trigger": "stray_child_exited", "source": SUPERVISING, "dest": None,
     "after": "log_stray_child"},
    # the decisions reviewed after every event
    {"trigger": "workers_gone", "source": LEAVING, "dest": M.STOPPED,
     "conditions": "all_workers_reaped", "after": "exit"},
    {"trigger": "workers_gone", "source": LEAVING, "dest": None,
     "unless": "all_workers_reaped"},
    {"trigger": "workers_gone", "source": [M.BOOTING, *UP], "dest": None},
    {"trigger": "reload_finished", "source": M.RELOADING, "dest": M.RUNNING,
     "conditions": "old_generation_reaped"},
    {"trigger": "reload_finished", "source": M.RELOADING, "dest": None,
     "unless": "old_generation_reaped"},
    {"trigger": "reload_finished", "source": [M.BOOTING, M.RUNNING, M.PAUSED, *LEAVING],
     "dest": None},
    {"trigger": "restarts_exhausted", "source": SPAWNING_STATES, "dest": M.TERMINATING,
     "conditions": "restart_intensity_exceeded", "unless": "spawn_unanswered",
     "after": "give_up"},
    {"trigger": "restarts_exhausted", "source": SPAWNING_STATES, "dest": None,
     "unless": "restart_intensity_exceeded"},
    {"trigger": "restarts_exhausted", "source": SPAWNING_STATES, "dest": None,
     "conditions": ["restart_intensity_exceeded", "spawn_unanswered"]},
    {"trigger": "restarts_exhausted", "source": NOT_SPAWNING, "dest": None},
    {"trigger": "spares_reviewed", "source": SPAWNING_STATES, "dest": None, "after": "rescale"},
    {"trigger": "spares_reviewed", "source": NOT_SPAWNING, "dest": None,
     "after": "rest_scaling"},
]

MASTER_TRIGGERS: tuple[str, ...] = tuple(
    dict.fromkeys(row["trigger"] for row in MASTER_TRANSITIONS)
)

# which master trigger each signal fires
SIGNAL_TRIGGERS: dict[Sig, str] = {
    sig: f"{sig.value.lower()}_received"
    for sig in (Sig.QUIT, Sig.TERM, Sig.INT, Sig.HUP, Sig.WINCH, Sig.TTIN, Sig.TTOU,
                Sig.USR1, Sig.USR2, Sig.CONT, Sig.CHLD)
}

class MasterModel(Reloads, MasterViews):
    """The master machine's model: its guards read the roster and the restart policy, its
    callbacks fire worker triggers through the roster and append effects. The callbacks
    of an operator's requests are its parts' (``sizing``, ``forwarding``)."""

    state: MasterState

    def __init__(self, config: PoolConfig, context: MachineContext, roster: Roster,
                 restarts: RestartPolicy, tally: Tally | None = None) -> None:
        self.config = config
        self.context = context
        self.roster = roster
        self.restarts = restarts
        self.tally = tally if tally is not None else Tally()  # what the metrics count
        self.has_terminal = False  # Boot says; a guard, read as a plain attribute
        self.exit_code = 0
        self.gave_up: str | None = None  # why the master gave up on a crash loop
        self.report = StopReport()  # the workers the stop ended
        self.awaiting_config: str | None = None  # a ReadConfig not answered yet
        self.sizing = Sizing(self)
        self.forwarding = Forwarding(self)
        self.scaling = SpareScaling(self)
        Machine(model=self, states=MasterState, transitions=MASTER_TRANSITIONS,
                initial=MasterState.BOOTING, auto_transitions=False,
                ignore_invalid_triggers=False)

    def __getattr__(self, name: str) -> Any:
        """The rows' callbacks that a part carries out (``pool_requests``)."""
        part = _PARTS.get(name)
        if part is None:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        return getattr(self.__dict__[part], name)

    # guards ---------------------------------------------------------------------------

    def graceful_term(self, *_: Any) -> bool:
        """TERM means QUIT (systemd, Docker and Kubernetes stop services with TERM)."""
        return bool(self.config.graceful_term)

    def has_config_file(self, *_: Any) -> bool:
        return self.config.config_file is not None

    def all_workers_reaped(self, *_: Any) -> bool:
        return not len(self.roster)

    def old_generation_reaped(self, *_: Any) -> bool:
        return not self.roster.old_workers

    def restart_intensity_exceeded(self, *_: Any) -> bool:
        """Some group failed more than its ``max_restarts`` times within the last
        ``restart_period`` seconds."""
        return self.restarts.exhausted(self.context.now)

    def spawn_unanswered(self, *_: Any) -> bool:
        """A Spawn awaits its answer: nothing may be sent to a worker with no pid yet."""
        return self.roster.first_unanswered() is not None

    # callbacks: only fire worker triggers, set fields and append effects ------------------

    def open_pool(self, *_: Any) -> None:
        """Spawn every slot, then tell the user's ``when_ready`` hook."""
        fill_missing_slots(self)
        self.context.emit(RunHook("when_ready", ()))

    def stop_all_workers(self, *_: Any) -> None:
        for worker in self.roster.workers:
            self.roster.change(worker, "stop_requested")

    def terminate_all_workers(self, *_: Any) -> None:
        for worker in self.roster.workers:
            self.roster.change(worker, "terminate_requested")

    def replace_workers(self, *_: Any) -> None:
        """A new generation: every current worker is stopped gracefully; settle refills."""
        self.roster.new_generation()
        self.stop_all_workers()

    def log_winch_ignored(self, *_: Any) -> None:
        self.context.emit(Log("info", "WINCH ignored: the master has a controlling terminal"))

    def log_ignored(self, *_: Any) -> None:
        self.context.emit(Log("warning", f"request ignored: the master is {self.state}"))

    def log_stray_child(self, pid: int, status: int) -> None:
        self.context.emit(Log("warning", f"reaped pid={pid} ({describe_status(status)}), "
                                         "which is not a live worker: ignored"))

    def reply_with_snapshot(self, request: object) -> None:
        self.context.emit(Reply(request, self.snapshot()))

    def give_up(self, *_: Any) -> None:
        """The pool past its restart intensity is named: the others were doing well."""
        self.exit_code = 1
        pool = self.restarts.exhausted_group(self.context.now)
        assert pool is not None  # restart_intensity_exceeded guards this row
        group = self.config.group(pool)
        self.gave_up = (f"more than {group.max_restarts} crashes in "
                        f"{group.restart_period:g}s (pool {pool})")
        self.context.emit(Log("error", f"pool {pool}: more than {group.max_restarts} crashes "
                                       f"in {group.restart_period:g}s: giving up",
                              (("event", "gave_up"), ("pool", pool))))
        self.terminate_all_workers()

    def exit(self, *_: Any) -> None:
        """The shutdown report, the last line before Exit."""
        self.context.emit(Log("info", self.report.line(self.exit_code, self.gave_up),
                              (("event", "stopped"), ("exit_code", self.exit_code))))
        self.context.emit(Exit(self.exit_code))


# which part of the model carries out each of these rows' callbacks
_PARTS: dict[str, str] = {
    **dict.fromkeys(Sizing.CALLBACKS, "sizing"),
    **dict.fromkeys(Forwarding.CALLBACKS, "forwarding"),
    **dict.fromkeys(SpareScaling.CALLBACKS, "scaling"),
}
