"""Streaming runs through the official SDK's helpers: `runs.stream` with an event handler,
`create_and_run_stream`, and `submit_tool_outputs_stream` after a function call, which
dispatch on each SSE event's name; the raw stream's framing (`event:` lines, `event: done`)
byte for byte; a streamed run cancelled from another connection."""

import json

import openai
import pytest
from openai import AssistantEventHandler

MODEL = "smollm2-135m-instruct"

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


class Recorder(AssistantEventHandler):
    """Keeps every event's name and the text deltas, as an app's handler would see them."""

    def __init__(self):
        super().__init__()
        self.names = []
        self.deltas = []

    def on_event(self, event):
        self.names.append(event.event)

    def on_text_delta(self, delta, snapshot):
        self.deltas.append(delta.value)


def test_runs_stream_with_an_event_handler(client):
    asst = client.beta.assistants.create(model=MODEL, instructions="Answer briefly.")
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "Name a colour."}])
    handler = Recorder()
    with client.beta.threads.runs.stream(thread_id=thread.id, assistant_id=asst.id, event_handler=handler,
                                         max_completion_tokens=24, temperature=0) as stream:
        stream.until_done()
        run = stream.get_final_run()
        messages = stream.get_final_messages()
    assert handler.names[:3] == ["thread.run.created", "thread.run.queued", "thread.run.in_progress"]
    assert handler.names[-1] in ("thread.run.completed", "thread.run.incomplete"), handler.names
    assert handler.names.count("thread.message.delta") == len(handler.deltas) >= 1
    assert run.status in ("completed", "incomplete") and run.usage.completion_tokens >= 1
    said = "".join(handler.deltas)
    assert messages[0].content[0].text.value == said
    # What streamed is what the thread keeps.
    stored = client.beta.threads.messages.list(thread.id).data[0]
    assert (stored.id, stored.content[0].text.value, stored.run_id) == (messages[0].id, said, run.id)
    steps = client.beta.threads.runs.steps.list(run.id, thread_id=thread.id).data
    assert [s.type for s in steps] == ["message_creation"] and steps[0].status == "completed"


def test_create_and_run_stream_starts_with_the_thread(client):
    asst = client.beta.assistants.create(model=MODEL)
    handler = Recorder()
    with client.beta.threads.create_and_run_stream(
            assistant_id=asst.id, event_handler=handler, max_completion_tokens=3, temperature=0,
            thread={"messages": [{"role": "user", "content": "Count to ten."}]}) as stream:
        stream.until_done()
    assert handler.names[0] == "thread.created"
    run = stream.get_final_run()
    # Three tokens cannot count to ten: cut at max_completion_tokens, the message incomplete
    # (greedy: a sampled answer may end within three tokens).
    assert run.status == "incomplete" and run.incomplete_details.reason == "max_completion_tokens"
    assert "thread.message.incomplete" in handler.names
    assert client.beta.threads.retrieve(run.thread_id).id == run.thread_id


def test_raw_framing_names_every_event_and_ends_with_done(http):
    asst = http.post("/v1/assistants", json={"model": MODEL}).json()
    thread = http.post("/v1/threads", json={"messages": [{"role": "user", "content": "Hi"}]}).json()
    with http.stream("POST", f"/v1/threads/{thread['id']}/runs", headers={"OpenAI-Beta": "assistants=v2"},
                     json={"assistant_id": asst["id"], "stream": True, "max_completion_tokens": 4}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        body = "".join(r.iter_text())
    events = [e for e in body.split("\n\n") if e.strip() and not e.startswith(":")]
    for e in events[:-1]:
        name, data = e.split("\n", 1)
        assert name.startswith("event: thread."), e
        json.loads(data.removeprefix("data: "))
    assert events[-1] == "event: done\ndata: [DONE]"


def test_a_function_call_streams_to_requires_action_and_outputs_stream_the_rest(client):
    weather = {"type": "function", "function": {"name": "get_weather", "description": "The weather in a city",
               "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
    asst = client.beta.assistants.create(model=MODEL, tools=[weather])
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "What is the weather in Oslo?"}])
    handler = Recorder()
    with client.beta.threads.runs.stream(
            thread_id=thread.id, assistant_id=asst.id, event_handler=handler, temperature=0,
            max_completion_tokens=64, tool_choice={"type": "function", "function": {"name": "get_weather"}}) as s:
        s.until_done()
    run = s.current_run
    assert run.status == "requires_action", handler.names
    assert handler.names[-1] == "thread.run.requires_action"
    calls = run.required_action.submit_tool_outputs.tool_calls
    assert calls[0].function.name == "get_weather" and isinstance(json.loads(calls[0].function.arguments), dict)
    # The SDK's snapshot of the tool_calls step, built from its delta, names the same call.
    assert s.current_run_step_snapshot.step_details.tool_calls[0].id == calls[0].id
    after = Recorder()
    with client.beta.threads.runs.submit_tool_outputs_stream(
            run_id=run.id, thread_id=thread.id, event_handler=after,
            tool_outputs=[{"tool_call_id": c.id, "output": "sunny, 21 C"} for c in calls]) as s:
        s.until_done()
    assert after.names[:2] == ["thread.run.step.completed", "thread.run.queued"], after.names
    final = s.get_final_run()
    assert final.status in ("completed", "incomplete"), after.names
    assert "".join(after.deltas) == client.beta.threads.messages.list(thread.id).data[0].content[0].text.value


def test_a_streamed_run_cancelled_from_elsewhere_ends_cancelled(client):
    asst = client.beta.assistants.create(model=MODEL)

    class CancelOnFirstDelta(Recorder):
        def __init__(self, thread):
            super().__init__()
            self.thread, self.cancelled = thread, None

        def on_text_delta(self, delta, snapshot):
            super().on_text_delta(delta, snapshot)
            if self.cancelled is None:
                try:
                    self.cancelled = client.beta.threads.runs.cancel(self.current_run.id, thread_id=self.thread)
                except openai.BadRequestError:
                    self.cancelled = False  # the answer was over already: a short one

    # The tiny model sometimes ends its answer before the cancel lands: try a few threads.
    for _ in range(4):
        thread = client.beta.threads.create(messages=[{"role": "user", "content": "Count to one thousand."}])
        handler = CancelOnFirstDelta(thread.id)
        with client.beta.threads.runs.stream(thread_id=thread.id, assistant_id=asst.id, event_handler=handler,
                                             max_completion_tokens=2000) as s:
            s.until_done()
        if handler.cancelled:
            break
    assert handler.cancelled and handler.names[-1] == "thread.run.cancelled", handler.names[-5:]
    assert "thread.message.incomplete" in handler.names
    message = client.beta.threads.messages.list(thread.id).data[0]
    assert message.status == "incomplete" and message.incomplete_details.reason == "run_cancelled"
    # It keeps what was said, at least all that streamed before the cancel took.
    assert message.content[0].text.value.startswith("".join(handler.deltas))
