"""The worker process's machine, pure: every state and trigger, and what each row emits.

No process, no Markdown: a fresh ``WorkerProcess`` per test, triggers in, effects out.
The product test asks the code's own table which rows apply, so it checks the machinery
(the row's destination is reached, a pair without a row raises ``ProcessMachineError``
naming machine, worker, state and trigger, and leaves the state alone); what the rows
*should* be is specs/process.md's business (tests/spec/test_process_spec.py).
"""

from __future__ import annotations

from typing import Any

import pytest

from prefork.child.process_machine import (
    EXIT_PERFORM_RAISED,
    PROCESS_TRANSITIONS,
    PROCESS_TRIGGERS,
    BackOff,
    BackoffSettings,
    CountFailure,
    ExitWith,
    LogFailure,
    LogLine,
    MarkIdle,
    NotifyMaster,
    ProcessEffect,
    ProcessMachineError,
    ProcessState,
    ReopenLogFiles,
    SetStopping,
    StartDeadline,
    WorkerProcess,
    new_process_machine,
)
from prefork.core.errors import CoreError

S = ProcessState
LABEL = "worker group=mail slot=3 pid=4000"
ARGS: dict[str, tuple[Any, ...]] = {"setup_failed": ("setup",), "perform_child_failed": (9, 1),
                                    "recycle_due": ("max_performs", "did 10 performs")}


def new_process(forking: bool = False, master_gone: bool = False,
                state: ProcessState = S.SETTING_UP) -> WorkerProcess:
    """A fresh model on a machine of its own, put straight into ``state``."""
    model = WorkerProcess(LABEL, 3999, forking)
    machine = new_process_machine()
    machine.add_model(model)
    if master_gone:
        model.fire("master_lost")
    machine.set_state(state, model)
    return model


def _names(value: Any) -> list[Any]:
    return [] if value is None else value if isinstance(value, list) else [value]


def code_row(model: WorkerProcess, trigger: str) -> dict[str, Any] | None:
    """The row of the code's table that applies to ``model`` now, if any."""
    for row in PROCESS_TRANSITIONS:
        if row["trigger"] != trigger or model.state not in _names(row["source"]):
            continue
        if all(getattr(model, g)() for g in _names(row.get("conditions"))) and not any(
            getattr(model, g)() for g in _names(row.get("unless"))
        ):
            return row
    return None


@pytest.mark.parametrize("master_gone", [False, True], ids=["", "master_gone"])
@pytest.mark.parametrize("forking", [False, True], ids=["simple", "forking"])
@pytest.mark.parametrize("trigger", PROCESS_TRIGGERS)
@pytest.mark.parametrize("state", list(ProcessState), ids=str)
def test_every_state_and_trigger(
    state: ProcessState, trigger: str, forking: bool, master_gone: bool
) -> None:
    model = new_process(forking, master_gone, state)
    row = code_row(model, trigger)
    if row is None:
        with pytest.raises(ProcessMachineError) as raised:
            model.fire(trigger, *ARGS.get(trigger, ()))
        message = str(raised.value)
        for part in ("worker process machine", f"no row for {trigger} in state {state}",
                     LABEL):
            assert part in message
        assert model.state is state, "a refused trigger leaves the state as it was"
        assert model.outbox == []
        return
    effects = model.fire(trigger, *ARGS.get(trigger, ()))
    assert model.state is (state if row["dest"] is None else row["dest"])
    assert all(isinstance(effect, ProcessEffect) for effect in effects)
    assert model.outbox == [], "fire hands over the outbox"


@pytest.mark.parametrize("name", ["fire", "mark_idle", "begin", "reported_idle", "to_IDLE"])
def test_what_is_not_a_trigger_is_refused_the_same_way(name: str) -> None:
    model = new_process(state=S.IDLE)
    with pytest.raises(ProcessMachineError, match=f"no row for {name} in state idle"):
        model.fire(name)
    assert model.state is S.IDLE


def test_the_error_is_one_of_the_core_family() -> None:
    assert issubclass(ProcessMachineError, CoreError)


def test_only_exited_is_terminal_and_every_state_is_left_or_reached() -> None:
    sources = {s for row in PROCESS_TRANSITIONS for s in _names(row["source"])}
    dests = {row["dest"] for row in PROCESS_TRANSITIONS if row["dest"] is not None}
    assert set(ProcessState) - sources == {S.EXITED}
    assert set(ProcessState) - dests == {S.SETTING_UP}, "only the initial state is not reached"


def test_the_strategy_chooses_the_batch_state() -> None:
    assert new_process(state=S.IDLE).fire("batch_started") == []
    simple, forking = new_process(state=S.IDLE), new_process(forking=True, state=S.IDLE)
    simple.fire("batch_started")
    forking.fire("batch_started")
    assert (simple.state, forking.state) == (S.PERFORMING, S.WAITING)


def test_setup_finished_marks_the_slot_before_it_wakes_the_master() -> None:
    model = new_process()
    assert model.fire("setup_finished") == [MarkIdle(), NotifyMaster()]
    assert model.state is S.IDLE


def test_a_lost_master_is_noted_once_and_raises_the_stop_flag() -> None:
    model = new_process()
    assert model.fire("master_lost") == [
        LogLine("warning", f"{LABEL}: master pid=3999 is gone; stopping"), SetStopping(),
        StartDeadline(),
    ]
    model.fire("setup_finished")
    assert model.fire("master_lost") == [], "noticed twice, said once"
    assert model.state is S.IDLE, "the stop is stop_requested's, at the next attend"


@pytest.mark.parametrize(("trigger", "args", "message"), [
    ("setup_failed", ("after_fork",), f"{LABEL}: hook after_fork raised"),
    ("setup_failed", ("setup",), f"{LABEL} setup failed"),
])
def test_a_failed_setup_exits_1(trigger: str, args: tuple[Any, ...], message: str) -> None:
    model = new_process()
    assert model.fire(trigger, *args) == [LogFailure(message), ExitWith(1)]
    assert model.state is S.EXITED


@pytest.mark.parametrize("state", [S.IDLE, S.HOLDING, S.PERFORMING, S.WAITING], ids=str)
def test_a_failure_of_the_perform_loop_exits_1(state: ProcessState) -> None:
    model = new_process(forking=state is S.WAITING, state=state)
    assert model.fire("perform_failed") == [LogFailure(f"{LABEL} perform failed"), ExitWith(1)]
    assert model.state is S.EXITED


@pytest.mark.parametrize(("status", "how"), [(1, "exit status 1"), (-9, "killed by signal 9")])
def test_a_perform_child_dead_without_a_word_is_logged_counted_and_backed_off(
        status: int, how: str) -> None:
    model = new_process(forking=True, state=S.WAITING)
    assert model.fire("perform_child_failed", 77, status) == [
        LogLine("error", f"{LABEL}: perform in pid=77 failed ({how})"), CountFailure(),
        NotifyMaster(), BackOff(0.0),
    ]
    assert model.state is S.WAITING


def test_a_perform_child_that_logged_its_traceback_is_not_logged_again() -> None:
    model = new_process(forking=True, state=S.WAITING)
    assert model.fire("perform_child_failed", 77, EXIT_PERFORM_RAISED) == [
        CountFailure(), NotifyMaster(), BackOff(0.0)]


def test_failed_perform_children_back_off_with_the_groups_settings_until_one_succeeds() -> None:
    model = new_process(forking=True, state=S.WAITING)
    model.begin(LABEL, 3999, forking=True, backoff=BackoffSettings(0.5, 1.5))
    delays = [model.fire("perform_child_failed", n, EXIT_PERFORM_RAISED)[-1]
              for n in range(5)]
    assert delays == [BackOff(0.0), BackOff(0.5), BackOff(1.0), BackOff(1.5), BackOff(1.5)]
    assert model.fire("perform_child_recovered") == []
    assert model.fire("perform_child_failed", 9, 1)[-1] == BackOff(0.0), "a new run"


@pytest.mark.parametrize("state", [s for s in ProcessState if s is not S.EXITED], ids=str)
def test_a_quick_stop_exits_0_from_anywhere_without_teardown(state: ProcessState) -> None:
    model = new_process(forking=state is S.WAITING, state=state)
    assert model.fire("shut_down") == [
        LogLine("info", f"{LABEL}: quick stop (Shutdown); exiting without teardown"),
        ExitWith(0),
    ]
    assert model.state is S.EXITED


def test_hold_reopen_resume() -> None:
    model = new_process(state=S.IDLE)
    assert model.fire("hold_requested") == [
        MarkIdle(), LogLine("info", f"{LABEL} holding (USR2); CONT resumes")
    ]
    assert model.fire("reopen_requested") == [ReopenLogFiles()]
    assert model.state is S.HOLDING
    assert model.fire("resume_requested") == [LogLine("info", f"{LABEL} resuming (CONT)")]
    assert model.state is S.IDLE


@pytest.mark.parametrize(("state", "trigger"), [
    (S.IDLE, "stop_requested"), (S.HOLDING, "stop_requested"), (S.IDLE, "limit_reached"),
])
def test_a_graceful_stop_then_teardown(state: ProcessState, trigger: str) -> None:
    model = new_process(state=state)
    assert model.fire(trigger) == [MarkIdle()]
    assert model.state is S.STOPPING
    assert model.fire("teardown_finished") == [ExitWith(0)]
    assert model.state is S.EXITED


def test_a_failed_teardown_exits_1() -> None:
    model = new_process(state=S.STOPPING)
    assert model.fire("teardown_failed") == [LogFailure(f"{LABEL} teardown failed"), ExitWith(1)]


def test_begin_makes_the_model_new_again() -> None:
    model = new_process()
    model.fire("master_lost")
    model.begin("worker group=default slot=0 pid=1", 2, forking=True)
    assert model.forks_performs() and not model.master_known_gone()
    assert model.fire("master_lost")[0] == LogLine(
        "warning", "worker group=default slot=0 pid=1: master pid=2 is gone; stopping")
