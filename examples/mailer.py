import prefork
from examples.outbox import connect, next_message, send


class Mailer(prefork.Job):
    def setup(self):          # once per worker, after the fork: open connections here
        self.smtp = connect()

    def perform(self):        # again and again; each return is one unit of work done
        send(self.smtp, next_message())

    def teardown(self):       # optional: once, when the worker stops gracefully
        self.smtp.close()
