"""What runs inside a worker process: its own small machine, and the two strategies.

The master forks and hands the child a ``Handoff`` (see ``prefork.posix.loop``);
``runtime.run_worker`` takes it from there: handlers, setup, the perform loop, teardown.
Nothing here imports the core's supervisor: a worker process never decides for the pool.
"""
