"""What the core tells the service manager, in order, over a whole life: ready after the
boot's forks, reloading then ready on HUP, stopping on QUIT, the status line on changes.
(specs/master.md's scenarios check each message; this checks their order.)"""

from __future__ import annotations

from core_driver import Driver

from prefork.core import (
    Boot,
    ChildExited,
    Notify,
    PoolConfig,
    Sig,
    Signal,
    Spawn,
)


def notices(effects: list) -> list[str]:  # type: ignore[type-arg]
    return [effect.message for effect in effects if isinstance(effect, Notify)]


def test_a_life_in_notices() -> None:
    driver = Driver(PoolConfig.of(workers=2))
    told: list[str] = []
    effects = driver.send(Boot(at=1.0))
    spawns = [i for i, e in enumerate(effects) if isinstance(e, Spawn)]
    ready = next(i for i, e in enumerate(effects)
                 if isinstance(e, Notify) and e.message == "READY=1")
    assert ready > max(spawns), "ready only once the first workers are forked"
    told += notices(effects)
    first, second = driver.pids()
    told += notices(driver.send(Signal(Sig.HUP, at=2.5)))
    told += notices(driver.send(ChildExited(first, 0, at=3.0)))
    told += notices(driver.send(ChildExited(second, 0, at=3.5)))
    told += notices(driver.send(Signal(Sig.QUIT, at=4.0)))
    for pid in driver.pids():
        told += notices(driver.send(ChildExited(pid, 0, at=5.0)))
    assert told == [
        "READY=1",
        "STATUS=running: 2/2 workers",
        "RELOADING=1\nMONOTONIC_USEC=2500000",
        "STATUS=reloading: 2/2 workers",
        "READY=1",
        "STATUS=running: 2/2 workers",
        "STOPPING=1",
        "STATUS=draining: 2 workers left",
        "STATUS=draining: 1 workers left",
    ]


def test_notices_are_the_same_for_the_same_events() -> None:
    """Determinism holds for them too: no clock of their own."""
    runs = []
    for _ in range(2):
        driver = Driver(PoolConfig.of(workers=1))
        runs.append(notices(driver.send(Boot(at=7.25))) + notices(
            driver.send(Signal(Sig.HUP, at=8.5))))
    assert runs[0] == runs[1]
    assert "RELOADING=1\nMONOTONIC_USEC=8500000" in runs[0]
