"""The trivial RQ job of ``bench/rq_bench.py``."""


def noop() -> None:
    return None
