import prefork
from examples.mailer import Mailer

master = prefork.Master(Mailer, workers=0)
pid = master.start_worker()   # fork one more worker; returns its pid
master.stop_worker()          # stop one worker gracefully
master.stop_all()             # stop every worker gracefully and wait for them
