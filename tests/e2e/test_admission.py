"""Engine admission (issue 17): a model generates at most `max_running_sequences` at once; the
rest wait without holding cache and still complete, and past `max_waiting_sequences` a request
gets a 429 with Retry-After instead of queueing without end. On a server of its own with two
running sequences and eight waiting, and a small `[limits.grammar]` (the config reaches the
grammar bounds), logging the core at debug level."""

import threading
import time

import httpx
import openai
import pytest

from conftest import own_server

MODEL = "smollm2-135m-instruct"
HI = [{"role": "user", "content": "Tell me a long story about a dragon."}]
# Keeps the story going to max_tokens (no end-of-turn): the run time is predictable.
NO_END = {"2": -100, "0": -100, "4": -100}


@pytest.fixture(scope="module")
def srv():
    edits = {
        "max_running_sequences = 64": "max_running_sequences = 2",
        "max_waiting_sequences = 1024": "max_waiting_sequences = 8",
        "max_properties = 2000": "max_properties = 5",
        'log = "info"': 'log = "info,cinder_core=debug"',
    }
    with own_server("cinder-admission-", edits) as s:
        yield s


def sdk(srv):
    return openai.OpenAI(base_url=f"{srv.url}/v1", api_key="x", max_retries=0, timeout=300)


def test_more_choices_than_running_slots_all_complete(srv):
    r = sdk(srv).chat.completions.create(model=MODEL, messages=HI, n=5, max_tokens=6, logit_bias=NO_END)
    assert sorted(c.index for c in r.choices) == [0, 1, 2, 3, 4]
    assert all(c.finish_reason == "length" and c.message.content for c in r.choices)
    assert r.usage.completion_tokens == 30


def test_streamed_choices_past_the_slots_all_finish(srv):
    stream = sdk(srv).chat.completions.create(
        model=MODEL, messages=HI, n=3, max_tokens=5, logit_bias=NO_END, stream=True
    )
    finished = {}
    for chunk in stream:
        for c in chunk.choices:
            if c.finish_reason:
                finished[c.index] = c.finish_reason
    assert finished == {0: "length", 1: "length", 2: "length"}


def test_legacy_completions_with_several_prompts_past_the_slots(srv):
    r = sdk(srv).completions.create(model=MODEL, prompt=["One", "Two", "Three"], n=2, max_tokens=4)
    assert sorted(c.index for c in r.choices) == list(range(6))


def test_a_full_waiting_room_is_a_429_and_frees_itself(srv):
    started = threading.Event()
    first = {}

    def long_stream():
        body = {"model": MODEL, "messages": HI, "n": 6, "max_tokens": 60, "stream": True, "logit_bias": NO_END}
        done = set()
        with httpx.stream("POST", f"{srv.url}/v1/chat/completions", json=body, timeout=300) as r:
            first["status"] = r.status_code
            for line in r.iter_lines():
                started.set()
                if '"finish_reason":"length"' in line:
                    done.add(line)
        first["finished"] = len(done)

    t = threading.Thread(target=long_stream)
    t.start()
    assert started.wait(120)
    # Two of the first request's choices run and four wait: six more do not fit in eight.
    r = httpx.post(
        f"{srv.url}/v1/chat/completions",
        json={"model": MODEL, "messages": HI, "n": 6, "max_tokens": 2},
        timeout=120,
    )
    assert r.status_code == 429, r.text
    assert r.headers["retry-after"] == "1"
    assert r.json()["error"]["type"] == "rate_limit_error"
    with pytest.raises(openai.RateLimitError):
        sdk(srv).chat.completions.create(model=MODEL, messages=HI, n=6, max_tokens=2)
    t.join(300)
    assert first == {"status": 200, "finished": 6}
    # The refused requests' choices left the queue with them: there is room again.
    r = sdk(srv).chat.completions.create(model=MODEL, messages=HI, n=6, max_tokens=2)
    assert len(r.choices) == 6


def test_the_grammar_bounds_come_from_the_config(srv):
    def schema(n):
        props = {f"p{i}": {"type": "integer"} for i in range(n)}
        return {"type": "json_schema", "json_schema": {"name": "x", "schema": {
            "type": "object", "properties": props, "required": list(props), "additionalProperties": False}}}

    ok = sdk(srv).chat.completions.create(model=MODEL, messages=HI, max_tokens=40, response_format=schema(5))
    assert ok.choices[0].message.content.startswith("{")
    with pytest.raises(openai.BadRequestError) as e:
        sdk(srv).chat.completions.create(model=MODEL, messages=HI, max_tokens=4, response_format=schema(6))
    assert e.value.body["param"] == "response_format"
    assert "5" in e.value.body["message"]


def test_the_engines_log_lines_name_the_request(srv):
    r = sdk(srv).chat.completions.create(model=MODEL, messages=HI, max_tokens=3)
    request_id = r.id.removeprefix("chatcmpl-")
    # The engine logs a sequence's end after it hands over the last token, so the line may
    # land just after the response: wait for it a little.
    deadline = time.monotonic() + 5
    while True:
        lines = [l for l in srv.log().splitlines() if request_id in l]
        finished = any("sequence finished" in l for l in lines)
        if finished or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert any("sequence admitted" in l for l in lines), srv.log()[-3000:]
    assert finished, srv.log()[-3000:]
