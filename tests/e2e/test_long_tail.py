"""The long tail of the chat surface: fields accepted and honoured or refused by name, the
context limit, CORS for browsers, and 429 with Retry-After when the server is saturated."""

import threading

import httpx
import openai
import pytest

from conftest import own_server

MODEL = "smollm2-135m-instruct"
HI = [{"role": "user", "content": "hi"}]


def test_service_tier_is_echoed_as_the_tier_served(client):
    r = client.chat.completions.create(model=MODEL, messages=HI, max_tokens=1, service_tier="auto")
    assert r.service_tier == "default"
    plain = client.chat.completions.create(model=MODEL, messages=HI, max_tokens=1)
    assert plain.service_tier is None
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=MODEL, messages=HI, max_tokens=1, extra_body={"service_tier": "gold"})
    assert e.value.body["param"] == "service_tier"


def test_metadata_user_and_parallel_tool_calls_are_accepted(client):
    r = client.chat.completions.create(
        model=MODEL,
        messages=HI,
        max_tokens=1,
        metadata={"team": "search", "run": "42"},
        user="user-1234",
        parallel_tool_calls=False,
        extra_body={"a_field_from_the_future": {"x": 1}},
    )
    assert r.choices[0].finish_reason in ("stop", "length")
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(
            model=MODEL, messages=HI, max_tokens=1, metadata={f"k{i}": "v" for i in range(17)}
        )
    assert e.value.body["param"] == "metadata"


def test_a_prompt_over_the_context_is_a_400_naming_messages(client):
    long = [{"role": "user", "content": "hello " * 9000}]
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=MODEL, messages=long, max_tokens=1)
    assert e.value.body["code"] == "context_length_exceeded"
    assert e.value.body["param"] == "messages"
    assert "8192" in e.value.body["message"]


def test_cors_preflight_and_headers_on_streams(http):
    pre = http.options(
        "/v1/chat/completions",
        headers={
            "Origin": "http://localhost:5173",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type, x-stainless-os, openai-beta",
        },
    )
    assert pre.status_code == 204
    assert pre.headers["access-control-allow-origin"] == "http://localhost:5173"
    allowed = {h.strip() for h in pre.headers["access-control-allow-headers"].split(",")}
    assert allowed == {"authorization", "content-type", "x-stainless-os", "openai-beta"}
    assert "POST" in pre.headers["access-control-allow-methods"]

    body = {"model": MODEL, "messages": HI, "max_tokens": 2, "stream": True}
    with http.stream("POST", "/v1/chat/completions", json=body, headers={"Origin": "http://localhost:5173"}) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        assert r.headers["access-control-allow-origin"] == "http://localhost:5173"
        assert list(r.iter_lines())


@pytest.fixture(scope="module")
def saturated():
    """A server with one instance and no queue: a second concurrent request is refused."""
    edits = {"max_concurrent_requests = 64": "max_concurrent_requests = 1", "max_queued_requests = 256": "max_queued_requests = 0"}
    with own_server("cinder-busy-", edits) as srv:
        yield srv


def test_saturation_is_a_429_with_retry_after(saturated):
    url = saturated.url
    started = threading.Event()

    def long_stream():
        body = {"model": MODEL, "messages": HI, "max_tokens": 200, "stream": True,
                "logit_bias": {"2": -100, "0": -100, "4": -100}}
        with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=300) as r:
            for _ in r.iter_lines():
                started.set()

    t = threading.Thread(target=long_stream)
    t.start()
    assert started.wait(60)
    r = httpx.post(f"{url}/v1/chat/completions", json={"model": MODEL, "messages": HI, "max_tokens": 1}, timeout=60)
    assert r.status_code == 429
    assert r.headers["retry-after"] == "1"
    assert r.json()["error"]["type"] == "rate_limit_error"
    sdk = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
    with pytest.raises(openai.RateLimitError):
        sdk.chat.completions.create(model=MODEL, messages=HI, max_tokens=1)
    t.join(300)
    # Free again once the stream is done.
    assert sdk.chat.completions.create(model=MODEL, messages=HI, max_tokens=1).choices


def test_aliases_are_listed_retrievable_and_served(client):
    ids = [m.id for m in client.models.list().data]
    assert ids[0] == MODEL
    assert {"gpt-4o-mini", "gpt-3.5-turbo"} <= set(ids)
    assert client.models.retrieve("gpt-4o-mini").id == "gpt-4o-mini"
    r = client.chat.completions.create(model="gpt-3.5-turbo", messages=HI, max_tokens=1)
    assert r.model == "gpt-3.5-turbo"
    assert r.choices[0].finish_reason in ("stop", "length")
