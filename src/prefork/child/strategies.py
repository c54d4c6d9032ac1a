"""The two perform loops: in the worker itself (simple), or in a child per perform (forking).

Both run in *batches*, which is what the worker process's machine sees of them:
``runtime.start_batch(done)`` attends to whatever the signals asked, and says whether a
batch may start (it fires ``batch_started``, or ``stop_requested``/``limit_reached``);
the batch runs until a signal is pending or the ``max_performs`` budget is spent; then
``runtime.end_batch()`` fires ``batch_ended``. With no signal, a worker's whole life is
one batch. Inside a batch nothing but the scoreboard hears of a perform: no trigger is
fired per perform (one costs ~5 µs; the simple loop's whole overhead is 0.036 µs).

``simple`` calls ``perform()`` in the worker. Per perform the loop does a few stores
into its scoreboard slot and no system call and no allocation beyond the perform's own
(the start time is stamped only when ``timeout`` is set, since nothing else reads it);
an exception ends the batch, the loop and the worker (``perform_failed``).

``forking`` runs each perform in a child of the worker: a crash or an exception there
kills only that child and is logged with its exit status (``perform_child_failed``, the
one trigger fired inside a batch, and only on that path). The worker just blocks in
``waitpid``; its signal handlers pass TERM, QUIT and ABRT on to the child (so a TERM
stops the perform, a QUIT turns the child's ``stopping`` True, and a timeout's ABRT
dumps the stack of the code that actually hung). What a perform costs here is mostly
pages copied, not instructions: see ``forking_loop``.
"""

from __future__ import annotations

import faulthandler
import gc
import itertools
import os
import signal
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from prefork.child.process_machine import EXIT_FAILED, EXIT_OK
from prefork.child.stack_dumps import rearm_stack_dumps
from prefork.posix import process
from prefork.posix.children import exit_status
from prefork.posix.scoreboard import IDLE, PERFORMING

if TYPE_CHECKING:
    from prefork.child.runtime import Runtime

Perform = Callable[[], object]


def simple_loop(runtime: Runtime, perform: Perform) -> None:
    """Perform in batches until told to stop or ``max_performs`` are done.

    The inner loops are the hot path: a ``for`` over a C iterator, a few stores into
    the slot, one attribute read. Everything else is bound to locals beforehand.
    """
    flags = runtime.flags
    state = runtime.slot.state
    count = runtime.slot.performs
    heartbeat = runtime.slot.heartbeat
    clock = time.monotonic
    limit = runtime.options.max_performs
    stamp = runtime.options.stamp_performs
    done = 0
    while runtime.start_batch(done):
        budget = itertools.repeat(None) if limit is None else itertools.repeat(
            None, limit - done)
        state[0] = PERFORMING
        if stamp:
            for _ in budget:
                heartbeat[0] = clock()
                perform()
                done += 1
                count[0] = done
                if flags.pending:
                    break
        else:
            for _ in budget:
                perform()
                done += 1
                count[0] = done
                if flags.pending:
                    break
        state[0] = IDLE
        runtime.end_batch()


def forking_loop(runtime: Runtime, perform: Perform) -> None:
    """Fork per perform, let the child perform, wait for it; in batches, as above.

    The worker blocks in ``waitpid`` and nothing else: signals interrupt it, their
    handlers pass QUIT, ABRT and TERM on to the child (``runtime.child``), and the wait
    goes on (PEP 475). The master's death arrives as the parent-death signal, or
    from the lifeline thread where there is none.

    What a perform costs beyond a bare fork/_exit/waitpid is mostly pages: each fork
    write-protects every private page of the worker again, and the first write to
    one, by the worker or by the child, copies it (a Python object is written as
    soon as it is used: its reference count); and the child maps afresh the code of
    every library it enters. So everything either side needs is bound to locals
    beforehand; the worker touches the same few objects each time (a ``range``
    counts, as in the bare loop), decodes the exit status only when it is not 0,
    and stamps the start only when ``timeout`` is set (nothing else reads it), as in
    the simple loop. The collector is frozen once for the whole loop, not around
    each fork: the children's collections never walk (and so never write to) what
    the worker held when the loop began, and the worker pays nothing per perform. The
    process machine is fired per batch, not per perform, for the same reason: a
    trigger writes to dozens of objects of ``transitions``.

    The child's code is written out in the loop, not in a function: a call there
    costs more pages than the rest (the function, its cells, its code object, its
    call site), and so would calls to Python helpers around C functions; the child
    makes no object on the way that succeeds (plain ``try``). The worker's handlers
    are inherited and do the right thing in the child: TERM re-raises with the
    default action (there is no grandchild to pass it to), QUIT sets ``stopping``; a
    signal's byte in the worker's self-pipe only wakes the worker for nothing. Per
    perform the child:

    - asks for KILL at the worker's death (a KILLed worker must not leave its
      perform running), then checks that the worker did not die before it asked;
    - arms the stack dump for ABRT: the worker's ABRT disposition is a Python
      handler that passes it on, and the child inherits that, not faulthandler's.
      It puts back faulthandler's, as the runtime's handlers saw it (faulthandler's
      own state, armed, comes with the fork); where that could not be saved, or the
      job turned faulthandler off, it calls ``rearm_stack_dumps`` (``disable`` puts
      back the dispositions from before ``arm_stack_dumps``, ``enable`` installs
      faulthandler's over them). Either way, an ABRT then dumps the child's stack
      and ends it with SIGABRT (faulthandler re-raises it with the disposition from
      before it was armed), which the worker logs; the next child arms its own;
    - performs;
    - flushes Python's buffers of stdout and stderr, which ``os._exit`` would drop,
      as ``process.flush_std_streams`` does (written out, for the reasons above).
    """
    flags = runtime.flags
    state = runtime.slot.state
    count = runtime.slot.performs
    heartbeat = runtime.slot.heartbeat
    clock = time.monotonic
    fork = os.fork
    wait = os.waitpid
    limit = runtime.options.max_performs
    stamp = runtime.options.stamp_performs
    # an iterator, so that a batch goes on counting where the last one stopped
    numbers = iter(itertools.count(1) if limit is None else range(1, limit + 1))
    done = 0
    # for the child
    ask_for_kill = process.parent_death_signal_call(signal.SIGKILL)
    getppid = os.getppid
    worker_pid = runtime.pid
    arm_dump = runtime.arm_child_dump if faulthandler.is_enabled() else rearm_stack_dumps
    exit_now = os._exit
    ok, failed = EXIT_OK, EXIT_FAILED
    gc.freeze()
    try:
        while runtime.start_batch(done):
            for done in numbers:
                state[0] = PERFORMING
                if stamp:
                    heartbeat[0] = clock()
                pid = fork()
                if pid == 0:  # the perform's own process, to os._exit ---------------------
                    code = failed
                    try:
                        ask_for_kill()
                        if getppid() != worker_pid:  # it died before we asked
                            exit_now(failed)
                        arm_dump()
                        perform()
                        code = ok
                    except BaseException:
                        runtime.perform_raised()
                    finally:
                        try:  # noqa: SIM105
                            sys.stdout.flush()
                        except Exception:  # closed, None or broken: nothing to save
                            pass
                        try:  # noqa: SIM105
                            sys.stderr.flush()
                        except Exception:
                            pass
                        exit_now(code)
                runtime.child = pid
                try:
                    if flags.stop:  # QUIT came between fork() and the line above
                        runtime.pass_on(signal.SIGQUIT)
                    _, status = wait(pid, 0)
                finally:
                    runtime.child = None
                count[0] = done
                state[0] = IDLE
                if status:
                    runtime.perform_child_failed(pid, exit_status(status))
                if flags.pending:
                    break
            runtime.end_batch()
    finally:
        gc.unfreeze()
