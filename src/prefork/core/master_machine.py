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

Three decisions follow from the whole picture rather than from one event: stop when the
last worker is reaped, finish a reload when the last old worker is, give up when
failures exceed the restart intensity. They are rows too: the supervisor fires
``workers_gone``, ``reload_finished`` and ``restarts_exhausted`` after every event, in
every state but ``stopped``, and the guards decide (``all_workers_reaped``...), so the
table shows what happens and when. Filling missing slots and retiring surplus workers
act on workers, not on the master's state: they are the supervisor's derived rules.

HUP with a ``config_file`` first asks the adapter to read it (``ReadConfig``); the
answer comes before any other event, as ``ConfigLoaded`` (take it and replace every
worker) or ``ConfigRejected`` (say why, keep the running config, and replace every
worker all the same, as a HUP without a file does).

The service manager (systemd) is told of the states it has words for (``NOTICES``:
ready once booted, reloading and ready again, stopping), and of the pool's
counts (``status_line``) whenever they change: ``Notify`` effects, which the adapter
sends when a service manager listens and drops otherwise.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from transitions import Machine

from prefork.core.context import MachineContext
from prefork.core.core_options import MASTER_OPTIONS
from prefork.core.effects import Exit, Log, Notify, ReadConfig, ReopenLogs, Reply, RunHook
from prefork.core.outcomes import describe_status
from prefork.core.report import StopReport
from prefork.core.restarts import RestartPolicy
from prefork.core.roster import Roster
from prefork.core.settings import PoolConfig
from prefork.core.signals import Sig
from prefork.core.snapshot import Snapshot, take_snapshot


class MasterState(StrEnum):
    """The states of the master machine (the names used in specs/master.md)."""

    BOOTING = "booting"
    RUNNING = "running"
    PAUSED = "paused"
    RELOADING = "reloading"
    DRAINING = "draining"
    TERMINATING = "terminating"
    STOPPED = "stopped"

    def __str__(self) -> str:
        return self.value


M = MasterState
UP = [M.RUNNING, M.PAUSED, M.RELOADING]
LEAVING = [M.DRAINING, M.TERMINATING]
# it has workers to look after: every state but booting and stopped
SUPERVISING = [*UP, *LEAVING]
SPAWNING_STATES = [M.RUNNING, M.RELOADING]
NOT_SPAWNING = [M.BOOTING, M.PAUSED, *LEAVING]

# requests that only make sense while the master is up; leaving, it logs and ignores them
_UP_ONLY = [
    "hup_received", "reload_requested", "winch_received", "ttin_received", "ttou_received",
    "start_worker_requested", "stop_worker_requested", "scale_requested",
]
# what the supervisor reviews after every event, in this order
REVIEWS = ("workers_gone", "reload_finished", "restarts_exhausted")

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
_UNRELOADABLE = tuple(option.name for option in MASTER_OPTIONS if not option.reloadable)

# What the service manager is told when the master enters a state (systemd's words, from
# sd_notify(3)): ready once up (booted, with the first workers forked by then; a reload
# over, or cut short by WINCH), reloading when a reload begins, stopping when the master
# begins to leave (again when a quick stop overtakes a graceful one: systemd does not
# mind). Only the state entered counts, so that each row of the table says it plainly.
NOTICES: dict[MasterState, str] = {
    M.RUNNING: "READY=1",
    M.PAUSED: "READY=1",
    M.RELOADING: "RELOADING=1",
    M.DRAINING: "STOPPING=1",
    M.TERMINATING: "STOPPING=1",
}


def notice(state: MasterState, now: float) -> Notify | None:
    """The ``Notify`` for the master entering ``state`` (``None``: the service manager is
    not told). ``RELOADING=1`` carries the time the reload began in ``CLOCK_MONOTONIC``
    microseconds, as ``Type=notify-reload`` requires: the core's clock is the adapter's
    monotonic clock."""
    message = NOTICES.get(state)
    if message is None:
        return None
    if state is M.RELOADING:
        message += f"\nMONOTONIC_USEC={int(now * 1_000_000)}"
    return Notify(message)


class MasterModel:
    """The master machine's model: its guards read the roster and the restart policy, its
    callbacks fire worker triggers through the roster and append effects."""

    state: MasterState

    def __init__(self, config: PoolConfig, context: MachineContext, roster: Roster,
                 restarts: RestartPolicy) -> None:
        self.config = config
        self.context = context
        self.roster = roster
        self.restarts = restarts
        self.has_terminal = False  # Boot says; a guard, read as a plain attribute
        self.exit_code = 0
        self.gave_up: str | None = None  # why the master gave up on a crash loop
        self.report = StopReport()  # the workers the stop ended
        self.awaiting_config: str | None = None  # a ReadConfig not answered yet
        self.holding = False  # USR2 came after the last CONT: new workers start held
        Machine(model=self, states=MasterState, transitions=MASTER_TRANSITIONS,
                initial=MasterState.BOOTING, auto_transitions=False,
                ignore_invalid_triggers=False)

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
        """More than ``max_restarts`` failures within the last ``restart_period``."""
        return self.restarts.exhausted(self.context.now)

    def spawn_unanswered(self, *_: Any) -> bool:
        """A Spawn awaits its answer: nothing may be sent to a worker with no pid yet."""
        return self.roster.first_unanswered() is not None

    # callbacks: only fire worker triggers, set fields and append effects ------------------

    def open_pool(self, *_: Any) -> None:
        """Spawn every slot, then tell the user's ``when_ready`` hook."""
        self.fill_missing_slots()
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

    def read_config(self, *_: Any) -> None:
        assert self.config.config_file is not None  # has_config_file guards this row
        self.awaiting_config = self.config.config_file
        self.context.emit(ReadConfig(self.config.config_file))

    def take_file_and_replace_workers(self, config: PoolConfig) -> None:
        self.context.emit(Log("info", f"config file {self.config.config_file} reloaded",
                              (("event", "reloaded"), ("config_file", self.config.config_file))))
        self.take_config_and_replace_workers(config)

    def take_config_and_replace_workers(self, config: PoolConfig) -> None:
        """A new config: groups come and go, kept groups' workers take their new options."""
        config = self._keep_unreloadable(config)
        self.config = config
        self.roster.adopt(config)
        self.restarts.reconfigure(config)
        self.roster.set_targets({g.name: g.workers for g in config.groups})
        self.replace_workers()

    def _keep_unreloadable(self, config: PoolConfig) -> PoolConfig:
        kept = {name: getattr(self.config, name) for name in _UNRELOADABLE
                if getattr(config, name) != getattr(self.config, name)}
        for name, value in kept.items():
            self.context.emit(Log("warning", f"{name} cannot change on a reload (restart "
                                             f"the master to change it): keeping {value!r}"))
        return config.with_options(**kept) if kept else config

    def keep_config_and_replace_workers(self, path: str, why: str) -> None:
        self.context.emit(Log("error", f"config file {path} not reloaded, the running "
                                       f"config stays: {why}"))
        self.replace_workers()

    def log_winch_ignored(self, *_: Any) -> None:
        self.context.emit(Log("info", "WINCH ignored: the master has a controlling terminal"))

    def log_ignored(self, *_: Any) -> None:
        self.context.emit(Log("warning", f"request ignored: the master is {self.state}"))

    def log_stray_child(self, pid: int, status: int) -> None:
        self.context.emit(Log("warning", f"reaped pid={pid} ({describe_status(status)}), "
                                         "which is not a live worker: ignored"))

    def resize_first_group(self, signo: Sig) -> None:
        """TTIN and TTOU: one worker more or fewer in the first group of the config."""
        first = next(iter(self.roster.targets))
        self.scale_group(first, self.roster.targets[first] + (1 if signo is Sig.TTIN else -1))

    def grow_group(self, group: str | None) -> None:
        group = group or next(iter(self.roster.targets))
        self.scale_group(group, self.roster.targets.get(group, 0) + 1)

    def shrink_group(self, group: str | None) -> None:
        group = group or next(iter(self.roster.targets))
        self.scale_group(group, self.roster.targets.get(group, 0) - 1)

    def scale_group(self, group: str, n: int) -> None:
        """Set a group's target within 0..max_workers; settle spawns or retires."""
        targets = self.roster.targets
        if group not in targets:
            self.context.emit(Log("warning", f"no group {group!r} to scale (groups: "
                                             f"{', '.join(targets)})"))
            return
        most = self.config.group(group).max_workers
        bounded = max(0, n if most is None else min(n, most))
        if bounded != n:
            self.context.emit(Log("warning", f"group {group} stays at {bounded} workers "
                                             f"(asked for {n}; bounds 0..{most})"))
        if bounded != targets[group]:
            self.context.emit(Log("info", f"group {group}: {targets[group]} -> {bounded} "
                                          "workers", (("event", "scaled"), ("pool", group),
                                                      ("from", targets[group]),
                                                      ("to", bounded))))
            self.roster.set_target(group, bounded)

    def reopen_logs(self, signo: Sig) -> None:
        self.context.emit(ReopenLogs())
        self.forward_to_workers(signo)

    def forward_to_workers(self, signo: Sig) -> None:
        if signo in (Sig.USR2, Sig.CONT):  # a hold is remembered for the workers to come
            self.holding = signo is Sig.USR2
        for worker in self.roster.workers:
            self.roster.change(worker, "signal_forwarded", signo)

    def reply_with_snapshot(self, request: object) -> None:
        self.context.emit(Reply(request, self.snapshot()))

    def give_up(self, *_: Any) -> None:
        self.exit_code = 1
        self.gave_up = (f"more than {self.config.max_restarts} crashes in "
                        f"{self.config.restart_period:g}s")
        self.context.emit(Log("error", f"{self.gave_up}: giving up"))
        self.terminate_all_workers()

    def exit(self, *_: Any) -> None:
        """The shutdown report, the last line before Exit."""
        self.context.emit(Log("info", self.report.line(self.exit_code, self.gave_up),
                              (("event", "stopped"), ("exit_code", self.exit_code))))
        self.context.emit(Exit(self.exit_code))

    # what the rows and the supervisor share -----------------------------------------------

    def fill_missing_slots(self) -> bool:
        """Running or reloading, and not past the restart intensity: spawn every vacant
        slot whose back-off is over. Whether it spawned anything. Not while a
        ``ReadConfig`` awaits its answer, which the adapter gives before anything else
        (so a Spawn asked for beside it could not be answered first)."""
        if (self.state not in SPAWNING_STATES or self.awaiting_config is not None
                or self.restarts.exhausted(self.context.now)):
            return False
        due = self.roster.due_vacancies(self.context.now)
        for group, slot in due:
            self.roster.enlist(self.config.group(group), slot, self.holding)
        return bool(due)

    def status_line(self) -> str | None:
        """The pool in a line, for the service manager's ``STATUS=``: the state and the
        live workers against the targets (each group's too when there are several), or
        how many workers are left while leaving. ``None`` before boot and once stopped."""
        if self.state in (M.BOOTING, M.STOPPED):
            return None
        if self.state in LEAVING:
            return f"{self.state}: {len(self.roster)} workers left"
        targets = self.roster.targets
        counts = {group: len(self.roster.active(group)) for group in targets}
        line = f"{self.state}: {sum(counts.values())}/{sum(targets.values())} workers"
        if len(targets) > 1:
            line += " (" + ", ".join(f"{group} {counts[group]}/{target}"
                                     for group, target in targets.items()) + ")"
        return line

    def title(self) -> str:
        """The master's process title: ``prefork master [NAME]: 4 workers in 2 pools
        (running)``: every worker not reaped yet, being forked or stopping included."""
        workers = len(self.roster)
        pools = len(self.roster.targets)
        return (f"prefork master [{self.config.name}]: {workers} worker"
                f"{'' if workers == 1 else 's'} in {pools} pool{'' if pools == 1 else 's'} "
                f"({self.state})")

    def snapshot(self) -> Snapshot:
        return take_snapshot(self.state, self.roster.targets, self.roster.workers,
                             self.exit_code)
