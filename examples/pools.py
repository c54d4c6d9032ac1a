import prefork
from examples.consume import consume
from examples.mailer import Mailer

master = prefork.Master(
    pools={
        "mail": prefork.Pool(Mailer, workers=4, timeout=30),
        "high,default": prefork.Pool(consume, workers=2, strategy="forking"),
    },
    graceful_timeout=10,      # every pool's, unless a Pool says otherwise
)
master.run()
