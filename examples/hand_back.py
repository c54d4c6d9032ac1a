import prefork
from examples.outbox import queue, send


class Mailer(prefork.Job):
    def perform(self):
        message = queue.take()
        try:
            send(message)
        except (prefork.Shutdown, prefork.PerformTimeout):
            queue.put_back(message)     # hand the work back, then let it through
            raise
