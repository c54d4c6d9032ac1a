from examples.outbox import handle, queue


def consume(worker):
    while not worker.stopping:
        handle(queue.get(timeout=1))
        worker.heartbeat()
