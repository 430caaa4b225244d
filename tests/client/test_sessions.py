"""Sessions through the official `inferencesh` client against `infsh serve
--replicas 2` (docs/sessions.md): `"session": "new"` leases one worker of
tests/counter (a count kept in the worker's memory), `client.session(...)`
and `SessionHandle.call`, `client.sessions.get|list|keepalive|end`, and the
410s of an expired, ended or dead session."""

import os
import signal
import threading
import time

import pytest
from inferencesh import APIError, Inference

from conftest import serve
from support import API_KEY

APP = "tests/counter"


@pytest.fixture(scope="module")
def counter_server(tmp_path_factory, store_flags):
    yield from serve(tmp_path_factory, store_flags, ["counter", "multi-fn"], ["--replicas", "2"])


@pytest.fixture()
def client(counter_server):
    return Inference(api_key=API_KEY, base_url=counter_server.url)


def open_session(client, timeout=None):
    """A session opened by a run: (session id, the first call's output)."""
    params = {"app": APP, "input": {}, "session": "new"}
    if timeout is not None:
        params["session_timeout"] = timeout
    result = client.run(params)
    assert result["status"] == 10, result
    return result["session_id"], result["output"]


def call(client, session_id, add=1):
    return client.run({"app": APP, "input": {"add": add}, "session": session_id})["output"]


def refused(client, session_id):
    """The APIError a call in this session gets."""
    with pytest.raises(APIError) as e:
        call(client, session_id)
    return e.value


def until(what, check, limit=30.0):
    deadline = time.monotonic() + limit
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.05)


def test_a_session_keeps_its_state_over_20_calls_while_another_caller_uses_the_other_replica(client):
    with client.session(APP) as session:
        session_id = session.session_id
        assert session_id.startswith("sess_")
        info = session.info()
        assert info["status"] == "active" and info["app_id"] == APP and info["call_count"] == 1
        # The first call (made by client.session) counted 1 on a fresh worker.
        leased_pid = None
        others = []

        def other_caller():
            plain = Inference(api_key=API_KEY, base_url=client._base_url)
            for _ in range(10):
                others.append(plain.run({"app": APP, "input": {}})["output"]["pid"])

        thread = threading.Thread(target=other_caller)
        thread.start()
        for n in range(2, 22):
            output = session.call("run", {"add": 1})["output"]
            assert output["count"] == n, output
            leased_pid = leased_pid or output["pid"]
            assert output["pid"] == leased_pid
        thread.join(60)
        assert len(others) == 10
        assert leased_pid not in others, "a run outside the session used the leased worker"
        assert session.info()["call_count"] == 21
        listed = [s["id"] for s in client.sessions.list()]
        assert session_id in listed
    # The context manager ended it.
    assert client.sessions.get(session_id)["status"] == "ended"
    assert session_id not in [s["id"] for s in client.sessions.list()]
    err = refused(client, session_id)
    assert (err.status_code, err.code) == (410, "SESSION_ENDED")


def test_an_idle_session_expires_and_its_calls_get_410(client):
    session_id, _ = open_session(client, timeout=1)
    until("expired", lambda: client.sessions.get(session_id)["status"] == "expired")
    err = refused(client, session_id)
    assert (err.status_code, err.code) == (410, "SESSION_EXPIRED")
    assert f'session "{session_id}" expired: idle for more than its timeout of 1s' in err.message
    with pytest.raises(APIError) as e:
        client.sessions.keepalive(session_id)
    assert (e.value.status_code, e.value.code) == (410, "SESSION_EXPIRED")


def test_keepalive_extends_an_idle_session(client):
    session_id, opened = open_session(client, timeout=3)
    first = client.sessions.get(session_id)["expires_at"]
    # Three times its 3 s of idle timeout, kept alive each second (2 s of
    # slack for a loaded machine).
    for _ in range(9):
        time.sleep(1)
        kept = client.sessions.keepalive(session_id)
        assert kept["status"] == "active"
    assert kept["expires_at"] > first
    assert call(client, session_id)["count"] == opened["count"] + 1
    client.sessions.end(session_id)


def test_end_answers_204_then_calls_get_410(client, counter_server):
    session_id, _ = open_session(client)
    assert client.sessions.end(session_id) is None  # 204: no body
    err = refused(client, session_id)
    assert (err.status_code, err.code) == (410, "SESSION_ENDED")
    assert "ended by DELETE /sessions/{id}" in err.message
    ended = client.sessions.get(session_id)
    assert ended["status"] == "ended" and ended["ended_at"]
    with pytest.raises(APIError) as e:
        client.sessions.get("sess_unknown")
    assert (e.value.status_code, e.value.code) == (404, "SESSION_NOT_FOUND")


def test_the_leased_worker_killed_ends_the_session_with_the_reason(client):
    session_id, output = open_session(client, timeout=600)
    assert call(client, session_id)["count"] == output["count"] + 1
    os.kill(output["pid"], signal.SIGKILL)
    ended = until(
        "the session ended",
        lambda: (lambda s: s if s["status"] == "ended" else None)(client.sessions.get(session_id)),
    )
    assert ended["reason"].startswith("its worker died: the worker exited (signal 9"), ended
    err = refused(client, session_id)
    assert (err.status_code, err.code) == (410, "SESSION_ENDED")
    assert "its worker died" in err.message
    # The app serves on with a new worker.
    fresh = client.run({"app": APP, "input": {}})
    assert fresh["status"] == 10


def test_another_app_or_a_bad_timeout_is_400(client):
    for params, detail in [
        ({"session": "new", "session_timeout": 0}, "`session_timeout` must be from 1 to 3600 seconds, got 0"),
        ({"session_timeout": 5}, '`session_timeout` is only valid with `"session": "new"`'),
    ]:
        with pytest.raises(APIError) as e:
            client.run({"app": APP, "input": {}, **params})
        assert e.value.status_code == 400
        assert detail in e.value.message


def test_a_session_of_another_app_is_400_app_mismatch(client):
    session_id, _ = open_session(client)
    with pytest.raises(APIError) as e:
        client.run({"app": "tests/multi-fn", "input": {"text": "x"}, "session": session_id})
    assert (e.value.status_code, e.value.code) == (400, "APP_MISMATCH")
    assert f'belongs to app "{APP}", not "tests/multi-fn"' in e.value.message
    client.sessions.end(session_id)
