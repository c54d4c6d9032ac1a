import prefork
from examples.outbox import handle, queue


class Consumer(prefork.Job):
    queue = queue

    def perform(self):
        message = self.queue.get(timeout=1)     # block briefly, so stops are seen
        if message is None:
            return prefork.IDLE
        self.worker.heartbeat()                 # busy from here
        handle(message)
