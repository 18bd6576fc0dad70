"""Running test code in several threads at once, each with its own database connection."""

import threading

from django.db import connection


def in_parallel(n: int, fn) -> list:
    """``fn(0) .. fn(n - 1)`` in ``n`` threads released together (a barrier), so their requests
    really overlap; their results in order. Each thread closes its database connection."""
    barrier = threading.Barrier(n)
    results = [None] * n

    def run(i):
        try:
            barrier.wait()
            results[i] = fn(i)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results
