"""Django's PostgreSQL backend with a health check that skips connections proven moments ago.

``CONN_HEALTH_CHECKS`` makes Django send ``SELECT 1`` before the first query of every request
on a persistent connection: a whole round trip, and on a busy server the largest share of a
single create's database time after the insert itself. A connection that finished a request
without error less than ``DATABASE_HEALTH_CHECK_WINDOW`` seconds ago (default 1) is taken as
alive without asking, as HikariCP does with its ``aliveBypassWindowMs`` (500 ms by default).
Under load every connection is used far more often than that, so checks stop; once a
connection has been idle longer (the time in which a server restart goes unnoticed) it is
checked again, exactly as before.

What the window costs: a connection the server dropped within that second fails the request
that next uses it (a 500 that writes nothing; the client's retry gets a new connection), and
Django closes it after that request (``errors_occurred``), as it always did for a drop between
the check and the query. After a PostgreSQL restart under load that is at most one request per
connection: workers x threads, 8 on two cores.
"""

import time

from django.conf import settings
from django.db.backends.postgresql import base


class DatabaseWrapper(base.DatabaseWrapper):
    # When this connection last finished a request without error (or was opened).
    proven_at = float("-inf")
    # Whether the request under way has used this connection (opened a cursor on it).
    served = False

    def connect(self):
        super().connect()
        self.proven_at = time.monotonic()

    def close_if_unusable_or_obsolete(self):
        # Called as a request starts and as it ends (and around each Celery task): a connection
        # the request used without an error is proven now, one it did not use keeps its time.
        if self.connection is not None and self.served and not self.errors_occurred:
            self.proven_at = time.monotonic()
        self.served = False
        super().close_if_unusable_or_obsolete()

    def close_if_health_check_failed(self):
        # Called each time a cursor is opened: before the request's first query it checks.
        if self.connection is not None:
            self.served = True
            if not self.health_check_done and time.monotonic() - self.proven_at < settings.DATABASE_HEALTH_CHECK_WINDOW:
                self.health_check_done = True
                return
        super().close_if_health_check_failed()
