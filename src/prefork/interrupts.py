"""The exceptions prefork raises inside a job, to interrupt it so that it can clean up.

Both are raised by a worker's signal handlers, wherever the job's code stands (in a
``time.sleep``, in blocking I/O, in a Python loop): a job catches them to put its work
back, and its ``finally`` blocks run. Neither can interrupt C code that never returns to
the interpreter; the master's KILL ends that.
"""

from __future__ import annotations


class Shutdown(BaseException):
    """A quick stop (TERM or INT): the worker is stopping now, without ``teardown()``.

    Raised inside the perform (or setup, or teardown) once per process, so that a second
    TERM does not cut its ``finally`` blocks short. A ``BaseException``, like
    ``KeyboardInterrupt``, so that ``except Exception`` in a job does not swallow it: put
    the work back and let it through.
    """


class PerformTimeout(Exception):
    """The perform ran past ``soft_timeout``: clean up, hand the work back, and return.

    A perform that catches it and returns counts as done; one that lets it out is a
    failed perform. The hard ``timeout`` still applies, and kills.
    """
