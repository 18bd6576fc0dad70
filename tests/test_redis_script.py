"""archangel.redis_script.run_script: one EVALSHA on a pooled connection, and the client's own path
(script loading, retries) whenever that does not simply work. On the real Redis."""

import uuid

import pytest
import redis
from django.conf import settings

from archangel.redis_script import run_script

pytestmark = pytest.mark.redis

SCRIPT = "return {redis.call('INCR', KEYS[1]), ARGV[1]}"


@pytest.fixture
def client():
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.delete("test:redis_script:n")
    yield client
    client.delete("test:redis_script:n")
    client.close()


def test_a_known_script_is_one_evalsha_on_a_pooled_connection(client, redis_commands):
    script = client.register_script(SCRIPT)
    assert run_script(script, ["test:redis_script:n"], ["x"]) == [1, b"x"]  # loaded here if need be
    redis_commands.clear()  # counted from here: the script is known now
    assert run_script(script, ["test:redis_script:n"], ["y"]) == [2, b"y"]
    assert redis_commands == ["EVALSHA"]
    # The connection went back to the pool: the next call takes it again, opens no other.
    assert len(client.connection_pool._available_connections) == 1
    assert run_script(script, ["test:redis_script:n"], ["z"]) == [3, b"z"]
    assert client.connection_pool._created_connections == 1


def test_a_script_the_server_does_not_know_is_loaded_on_the_same_connection(client, redis_commands):
    # A body no server has seen (as after a restart of Redis, without a SCRIPT FLUSH that would
    # take every other test's and process's scripts with it).
    script = client.register_script(f"-- {uuid.uuid4().hex}\n" + SCRIPT)
    assert run_script(script, ["test:redis_script:n"], ["a"]) == [1, b"a"]
    assert redis_commands == ["EVALSHA", "EVALSHA", "SCRIPT LOAD", "EVALSHA"]  # ours, then the client's own path
    assert client.connection_pool._created_connections == 1
    redis_commands.clear()
    assert run_script(script, ["test:redis_script:n"], ["b"]) == [2, b"b"]
    assert redis_commands == ["EVALSHA"]


def test_a_connection_the_server_closed_is_dropped_and_the_call_retried(client):
    script = client.register_script(SCRIPT)
    run_script(script, ["test:redis_script:n"], ["a"])
    pool = client.connection_pool
    pooled = pool.get_connection()
    pooled.send_command("CLIENT", "ID")
    pooled_id = pooled.read_response()
    pool.release(pooled)
    # The server drops the pooled connection (a restart, an idle timeout): the next call must
    # still succeed, and run the script once.
    with redis.Redis.from_url(settings.REDIS_URL) as admin:
        assert admin.client_kill_filter(_id=pooled_id) == 1
    assert run_script(script, ["test:redis_script:n"], ["b"]) == [2, b"b"]


def test_an_error_raised_by_the_script_reaches_the_caller_and_keeps_the_connection(client):
    script = client.register_script("return redis.error_reply('nope')")
    with pytest.raises(redis.ResponseError, match="nope"):
        run_script(script, [], [])
    ok = client.register_script("return 1")
    assert run_script(ok, [], []) == 1
    assert client.connection_pool._created_connections == 1
