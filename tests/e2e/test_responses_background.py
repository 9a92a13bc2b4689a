"""Background responses through the official `openai` SDK: created with `background=True`,
polled with `retrieve` until they end, streamed while they run, cancelled mid-answer (the
output said so far is kept), streamed again from any event with `starting_after`, and ended
`failed` (never left `in_progress`) when the server is killed while it runs."""

import shutil
import signal
import tempfile
import time

import openai
import pytest

from conftest import start_server, write_config

CHAT = "smollm2-135m-instruct"

# A schema whose every answer is long (60 required fields, in order): the answer is still
# being generated when the test cancels it after its first words.
LONG = {
    "type": "json_schema",
    "name": "long",
    "strict": True,
    "schema": {
        "type": "object",
        "properties": {f"field_{i:02}": {"type": "string"} for i in range(60)},
        "required": [f"field_{i:02}" for i in range(60)],
        "additionalProperties": False,
    },
}


def wait_until_over(client, rid, timeout_s=240):
    deadline = time.monotonic() + timeout_s
    while True:
        r = client.responses.retrieve(rid)
        if r.status not in ("queued", "in_progress"):
            return r
        assert time.monotonic() < deadline, f"{rid} still {r.status}"
        time.sleep(0.2)


def test_a_background_response_is_queued_then_polled_to_its_end(client):
    r = client.responses.create(model=CHAT, input="Say hello.", background=True,
                                max_output_tokens=16, temperature=0)
    assert r.background is True and r.status in ("queued", "in_progress")
    assert r.output == []
    done = wait_until_over(client, r.id)
    assert done.status in ("completed", "incomplete"), done
    assert done.output_text and done.usage.output_tokens > 0
    # The same words as the same request answered live.
    live = client.responses.create(model=CHAT, input="Say hello.", max_output_tokens=16, temperature=0)
    assert done.output_text == live.output_text
    # Over: cancelling changes nothing.
    assert client.responses.cancel(r.id).status == done.status
    # It did not stream, so there is no stream to take up again.
    with pytest.raises(openai.BadRequestError) as e:
        next(iter(client.responses.retrieve(r.id, stream=True)))
    assert e.value.body["param"] == "stream"


def test_a_streamed_background_response_is_cancelled_mid_answer_and_streamed_again(client):
    stream = client.responses.create(model=CHAT, input="Fill in the form.", background=True, stream=True,
                                     text={"format": LONG}, max_output_tokens=1500, temperature=0)
    events, cancelled = [], None
    for event in stream:
        events.append(event)
        if event.type == "response.output_text.delta" and cancelled is None:
            cancelled = client.responses.cancel(events[0].response.id)
    types = [e.type for e in events]
    assert types[:3] == ["response.created", "response.queued", "response.in_progress"], types
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert cancelled is not None and cancelled.status == "cancelled"
    assert not {"response.completed", "response.incomplete", "response.failed"} & set(types), types
    rid = events[0].response.id
    stored = client.responses.retrieve(rid)
    assert stored.status == "cancelled"
    said = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert said and stored.output_text == said
    # A cancelled answer is not what the schema asks for: it was cut.
    assert len(said) < 60 * len('"field_00": ""')
    # Again, from after the in_progress event: the same events, to the same end.
    again = list(client.responses.retrieve(rid, stream=True, starting_after=2))
    assert [(e.type, e.sequence_number) for e in again] == [(e.type, e.sequence_number) for e in events[3:]]
    # A cancelled response is cancelled for good.
    assert client.responses.cancel(rid).status == "cancelled"


def test_background_refusals_name_their_parameter(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.responses.create(model=CHAT, input="hi", background=True, store=False)
    assert e.value.body["param"] == "store"
    live = client.responses.create(model=CHAT, input="hi", max_output_tokens=16)
    with pytest.raises(openai.BadRequestError):
        client.responses.cancel(live.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.cancel("resp_missing")


def test_a_response_running_when_the_server_is_killed_ends_failed_after_restart():
    root = tempfile.mkdtemp(prefix="cinder-response-kill-")
    config = write_config(root, {"lease_secs = 30": "lease_secs = 2"})
    srv = start_server(config=config)
    try:
        c = openai.OpenAI(base_url=f"{srv.url}/v1", api_key="x", max_retries=0)
        stream = c.responses.create(model=CHAT, input="Fill in the form.", background=True, stream=True,
                                    text={"format": LONG}, max_output_tokens=1500, temperature=0)
        before = []
        for event in stream:
            before.append(event)
            if event.type == "response.output_text.delta":
                break
        rid = before[0].response.id
        # What the step said reaches the log at its next look (every 100 ms).
        time.sleep(0.5)
        srv.proc.send_signal(signal.SIGKILL)
        srv.proc.wait()
        srv = start_server(config=config)
        c = openai.OpenAI(base_url=f"{srv.url}/v1", api_key="x", max_retries=0)
        done = wait_until_over(c, rid, timeout_s=60)
        assert done.status == "failed", done
        assert done.error is not None and "stopped" in done.error.message
        # Its stream, taken up after the restart, ends with response.failed, numbered on.
        again = list(c.responses.retrieve(rid, stream=True))
        assert again[-1].type == "response.failed", [e.type for e in again]
        assert [e.sequence_number for e in again] == list(range(len(again)))
        assert [e.type for e in again[:3]] == ["response.created", "response.queued", "response.in_progress"]
    finally:
        srv.stop()
        shutil.rmtree(root, ignore_errors=True)
