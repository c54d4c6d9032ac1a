import prefork
from examples.mailer import Mailer

master = prefork.Master(Mailer, workers=4, timeout=30)
exit_code = master.run()      # blocks until the pool has stopped
