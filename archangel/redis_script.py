"""Run a registered Lua script with one pooled connection, outside redis-py's command layers.

Every API request runs one small script (``archangel.auth``: the token cache's generation and
the throttle's count). Through ``Script.__call__`` that round trip went through the client's
``evalsha``, ``execute_command``, its retry wrapper and a lambda on the way out, and through its
response callbacks on the way back: a quarter of the call's CPU (docs/benchmarks.md, "Tail
latency", item 7). Here the common case takes a connection from the client's pool, sends
``EVALSHA`` and reads the answer.

Anything else goes through ``Script.__call__`` as before, so nothing about failures changes: a
script the server does not know (restarted, ``SCRIPT FLUSH``) is loaded and run again, and a
broken pooled connection is dropped and the call retried by the client's own retry policy.
"""

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError


def run_script(script, keys: list, args: list):
    """``script(keys=keys, args=args)`` (a ``redis.commands.core.Script``), one round trip on
    the common path."""
    pool = script.registered_client.connection_pool
    connection = pool.get_connection()
    try:
        connection.send_command("EVALSHA", script.sha, len(keys), *keys, *args)
        return connection.read_response()
    except NoScriptError:
        pass  # its answer was read: the connection is clean, and the client's path loads the script
    except (RedisConnectionError, RedisTimeoutError, OSError):
        # The connection may be half-used (a request sent, no answer read): never reuse it.
        connection.disconnect()
    finally:
        pool.release(connection)
    return script(keys=keys, args=args)
