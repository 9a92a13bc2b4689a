"""What one client can hold (issue 17): slow clients are cut off, connections are capped, and
with API keys each key sees only the stored objects it created. On a server of its own with
short timeouts, a small connection cap and two keys.
"""

import socket
import time

import httpx
import openai
import pytest

from conftest import own_server

MODEL = "smollm2-135m-instruct"
KEYS = ("sk-alice", "sk-bob")
HEADER_TIMEOUT_S = 2
BODY_TIMEOUT_S = 2
MAX_CONNECTIONS = 3


@pytest.fixture(scope="module")
def srv():
    edits = {
        "api_keys = []": f"api_keys = {list(KEYS)!r}".replace("'", '"'),
        "header_read_timeout_secs = 30": f"header_read_timeout_secs = {HEADER_TIMEOUT_S}",
        "body_read_timeout_secs = 60": f"body_read_timeout_secs = {BODY_TIMEOUT_S}",
        "max_connections = 1024": f"max_connections = {MAX_CONNECTIONS}",
    }
    with own_server("cinder-connections-", edits) as s:
        yield s


def sdk(srv, key):
    return openai.OpenAI(base_url=f"{srv.url}/v1", api_key=key, max_retries=0, timeout=120)


def raw(srv):
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
    return s


def read_all(s, within):
    """Everything the server sends until it closes the connection, or `None` if it is still
    open after `within` seconds."""
    s.settimeout(within)
    data = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return data
            data += chunk
    except socket.timeout:
        return None


def test_each_key_sees_only_its_own_stored_completions(srv):
    alice, bob = sdk(srv, KEYS[0]), sdk(srv, KEYS[1])
    made = alice.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=2, store=True, metadata={"who": "alice"}
    )
    assert made.id in [c.id for c in alice.chat.completions.list()]
    assert alice.chat.completions.retrieve(made.id).id == made.id

    assert made.id not in [c.id for c in bob.chat.completions.list()]
    with pytest.raises(openai.NotFoundError):
        bob.chat.completions.retrieve(made.id)
    with pytest.raises(openai.NotFoundError):
        bob.chat.completions.messages.list(made.id)
    with pytest.raises(openai.NotFoundError):
        bob.chat.completions.update(made.id, metadata={"who": "bob"})
    with pytest.raises(openai.NotFoundError):
        bob.chat.completions.delete(made.id)

    # Bob's own completion is his; Alice's is untouched by all of the above.
    mine = bob.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "yo"}], max_tokens=2, store=True
    )
    assert [c.id for c in bob.chat.completions.list()] == [mine.id]
    assert alice.chat.completions.retrieve(made.id).metadata == {"who": "alice"}
    assert alice.chat.completions.delete(made.id).deleted


def test_a_body_that_dribbles_in_gets_a_408(srv):
    s = raw(srv)
    s.sendall(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        + f"Authorization: Bearer {KEYS[0]}\r\n".encode()
        + b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
    )
    started = time.monotonic()
    reply = b""
    s.settimeout(0.5)
    # One byte every half second: never idle long, never done.
    while time.monotonic() - started < BODY_TIMEOUT_S + 20:
        try:
            s.sendall(b" ")
        except OSError:
            break
        try:
            chunk = s.recv(65536)
            if not chunk:
                break
            reply += chunk
            if b"\r\n\r\n" in reply and b"}" in reply:
                break
        except socket.timeout:
            pass
    s.close()
    assert reply.startswith(b"HTTP/1.1 408"), reply[:200]
    assert b'"request_timeout"' in reply, reply


def test_headers_that_dribble_in_close_the_connection(srv):
    s = raw(srv)
    s.sendall(b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    closed = None
    started = time.monotonic()
    while time.monotonic() - started < HEADER_TIMEOUT_S + 20:
        try:
            s.sendall(b"X-Slow: a\r\n")
        except OSError:
            closed = b""
            break
        closed = read_all(s, 0.5)
        if closed is not None:
            break
    s.close()
    # Closed (hyper may say 408 first), and never answered as a request.
    assert closed is not None, "the connection was still open"
    assert b"200 OK" not in closed


def test_connections_beyond_the_cap_wait_until_one_closes(srv):
    held = [raw(srv) for _ in range(MAX_CONNECTIONS)]
    # Let the server accept them all.
    time.sleep(0.3)
    with pytest.raises(httpx.TimeoutException):
        httpx.get(f"{srv.url}/health", timeout=HEADER_TIMEOUT_S / 4)
    # Silent connections are closed after the header timeout; then new clients get in.
    for s in held:
        assert read_all(s, HEADER_TIMEOUT_S + 20) is not None, "an idle connection stayed open"
        s.close()
    assert httpx.get(f"{srv.url}/health", timeout=30).status_code == 200
    # A key is still needed beyond /health.
    assert httpx.get(f"{srv.url}/v1/models", timeout=30).status_code == 401
