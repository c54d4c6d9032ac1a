import prefork
from examples.outbox import connect, next_message, send


class Mailer(prefork.Job):
    def setup(self):       # once per worker, after the fork
        self.smtp = connect()

    def perform(self):     # again and again
        send(self.smtp, next_message())


prefork.Master(Mailer, workers=4, timeout=30).run()
