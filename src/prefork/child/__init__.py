"""What runs inside a worker process: its own small machine, and the two strategies.

The master forks and hands the child a ``Handoff`` (see ``prefork.posix.loop``);
``runtime.run_worker`` takes it from there: handlers, setup, the perform loop, teardown.
``process_machine`` is the worker's own table (setting up, idle, performing or waiting on
a perform child, holding, stopping, exited), ``runtime`` tells it what happened and
carries out what it answers, and ``strategies`` holds the two perform loops, which tell
it about batches of performs, never about each one. Nothing here imports the core's
supervisor: a worker process never decides for the pool.
"""
