"""The Assistants API (v2) through the official SDK's `client.beta.assistants` and
`client.beta.threads`: assistants, threads and messages created, retrieved, updated, listed
with their cursors and deleted, bad input in OpenAI's envelope naming the parameter, tenants,
runs answered by their jobs (create_and_poll, create_and_run_poll, cancel, steps)."""

import json

import httpx
import openai
import pytest

from conftest import own_server

MODEL = "smollm2-135m-instruct"

# The SDK marks the Assistants API deprecated (OpenAI moves apps to Responses); apps using it
# are what this serves.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def test_the_assistants_api_through_the_sdk(client):
    made = client.beta.assistants.create(
        model=MODEL,
        name="Helper",
        instructions="Answer briefly.",
        tools=[{"type": "function", "function": {"name": "get_weather", "parameters": {
            "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}},
            {"type": "file_search"}],
        metadata={"team": "e2e"},
        temperature=0.3,
        response_format={"type": "json_object"},
    )
    assert made.id.startswith("asst_") and made.object == "assistant"
    assert (made.model, made.name, made.instructions, made.temperature) == (MODEL, "Helper", "Answer briefly.", 0.3)
    assert [t.type for t in made.tools] == ["function", "file_search"]
    assert made.tools[0].function.name == "get_weather"
    assert made.metadata == {"team": "e2e"} and made.top_p == 1.0
    assert client.beta.assistants.retrieve(made.id) == made
    # An alias of the model is a served model too.
    changed = client.beta.assistants.update(made.id, name="Helper 2", model="gpt-4o-mini", metadata={"team": "b"})
    assert (changed.name, changed.model, changed.metadata) == ("Helper 2", "gpt-4o-mini", {"team": "b"})
    assert changed.instructions == "Answer briefly." and changed.created_at == made.created_at
    gone = client.beta.assistants.delete(made.id)
    assert gone.deleted and gone.id == made.id and gone.object == "assistant.deleted"
    with pytest.raises(openai.NotFoundError):
        client.beta.assistants.retrieve(made.id)


def test_listing_walks_every_page_newest_first(client):
    ids = [client.beta.assistants.create(model=MODEL, name=f"list-{i}").id for i in range(3)]
    page = client.beta.assistants.list(limit=2)
    assert [a.id for a in page.data] == ids[::-1][:2] and page.has_more
    # The SDK's auto-paging follows `after` through every page.
    seen = [a.id for a in client.beta.assistants.list(limit=1)]
    assert seen[:3] == ids[::-1]
    asc = client.beta.assistants.list(order="asc", after=ids[0], limit=100)
    assert [a.id for a in asc.data][:2] == ids[1:]
    for i in ids:
        client.beta.assistants.delete(i)


@pytest.mark.parametrize("extra, param", [
    ({"model": "no-such-model"}, "model"),
    ({"tools": [{"type": "code_interpreter"}]}, "tools[0].type"),
    ({"tool_resources": {"file_search": {"vector_store_ids": ["vs_x", "vs_y"]}}},
     "tool_resources.file_search.vector_store_ids"),
    ({"temperature": 3}, "temperature"),
    ({"name": "x" * 257}, "name"),
    ({"metadata": {"k" * 65: "v"}}, "metadata"),
])
def test_bad_settings_are_a_400_naming_the_parameter(client, extra, param):
    body = {"model": MODEL, **extra}
    with pytest.raises(openai.BadRequestError) as e:
        client.beta.assistants.create(**body)
    assert e.value.status_code == 400 and e.value.param == param, e.value.body


def test_raw_http_shapes(http):
    r = http.post("/v1/assistants", json={"model": MODEL}, headers={"OpenAI-Beta": "assistants=v2"})
    assert r.status_code == 200, r.text
    a = r.json()
    assert set(a) >= {"id", "object", "created_at", "name", "description", "model", "instructions",
                      "tools", "tool_resources", "metadata", "top_p", "temperature", "response_format"}
    assert http.delete(f"/v1/assistants/{a['id']}").status_code == 200
    r = http.post("/v1/assistants", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"


def test_tenants_see_only_their_own_assistants():
    keys = 'api_keys = ["sk-alice", "sk-bob"]'
    with own_server("cinder-asst-tenants-", {"api_keys = []": keys}) as srv:
        alice = openai.OpenAI(base_url=f"{srv.url}/v1", api_key="sk-alice", max_retries=0)
        bob = openai.OpenAI(base_url=f"{srv.url}/v1", api_key="sk-bob", max_retries=0)
        mine = alice.beta.assistants.create(model=MODEL, name="alice's")
        with pytest.raises(openai.NotFoundError):
            bob.beta.assistants.retrieve(mine.id)
        with pytest.raises(openai.NotFoundError):
            bob.beta.assistants.delete(mine.id)
        assert mine.id not in [a.id for a in bob.beta.assistants.list()]
        assert alice.beta.assistants.retrieve(mine.id).name == "alice's"


def test_threads_and_messages_through_the_sdk(client):
    thread = client.beta.threads.create(
        messages=[{"role": "user", "content": "Hello"},
                  {"role": "assistant", "content": [{"type": "text", "text": "Hi there"}]}],
        metadata={"user": "u1"},
    )
    assert thread.id.startswith("thread_") and thread.object == "thread" and thread.metadata == {"user": "u1"}
    assert client.beta.threads.retrieve(thread.id) == thread
    msg = client.beta.threads.messages.create(thread.id, role="user", content="What is 2+2?")
    assert msg.id.startswith("msg_") and msg.thread_id == thread.id and msg.role == "user"
    assert msg.content[0].type == "text" and msg.content[0].text.value == "What is 2+2?"
    listed = client.beta.threads.messages.list(thread.id, order="asc")
    assert [m.content[0].text.value for m in listed.data] == ["Hello", "Hi there", "What is 2+2?"]
    newest = client.beta.threads.messages.list(thread.id, limit=1)
    assert newest.data[0].id == msg.id and newest.has_more
    assert client.beta.threads.messages.retrieve(msg.id, thread_id=thread.id) == msg
    changed = client.beta.threads.messages.update(msg.id, thread_id=thread.id, metadata={"seen": "yes"})
    assert changed.metadata == {"seen": "yes"} and changed.content == msg.content
    gone = client.beta.threads.messages.delete(msg.id, thread_id=thread.id)
    assert gone.deleted and gone.id == msg.id
    updated = client.beta.threads.update(thread.id, metadata={"user": "u2"})
    assert updated.metadata == {"user": "u2"}
    assert client.beta.threads.delete(thread.id).deleted
    with pytest.raises(openai.NotFoundError):
        client.beta.threads.messages.list(thread.id)


@pytest.mark.parametrize("messages, param", [
    ([{"role": "system", "content": "x"}], "messages[0].role"),
    ([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x"}}]}],
     "messages[0].content[0].type"),
    ([{"role": "user", "content": "x", "attachments": [{"file_id": "file-x", "tools": [{"type": "file_search"}]}]}],
     "messages[0].attachments[0].file_id"),
    ([{"role": "user", "content": "x"}] * 33, "messages"),
])
def test_bad_thread_messages_are_a_400_naming_the_parameter(client, messages, param):
    with pytest.raises(openai.BadRequestError) as e:
        client.beta.threads.create(messages=messages)
    assert e.value.param == param, e.value.body


def test_a_run_answers_in_the_thread_through_create_and_poll(client):
    asst = client.beta.assistants.create(model=MODEL, instructions="Answer in one short sentence.")
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "What colour is the sky?"}])
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=asst.id,
                                                   max_completion_tokens=24, poll_interval_ms=100)
    assert run.status in ("completed", "incomplete"), run
    assert run.usage.completion_tokens > 0 and run.usage.prompt_tokens > 0
    if run.status == "incomplete":
        assert run.incomplete_details.reason == "max_completion_tokens"
    msgs = client.beta.threads.messages.list(thread.id)
    answer = msgs.data[0]
    assert answer.role == "assistant" and answer.run_id == run.id and answer.assistant_id == asst.id
    assert answer.content[0].text.value.strip()
    assert [m.id for m in client.beta.threads.messages.list(thread.id, run_id=run.id).data] == [answer.id]
    steps = client.beta.threads.runs.steps.list(run.id, thread_id=thread.id)
    assert steps.data[0].type == "message_creation"
    assert steps.data[0].step_details.message_creation.message_id == answer.id
    one = client.beta.threads.runs.steps.retrieve(steps.data[0].id, thread_id=thread.id, run_id=run.id)
    assert one.id == steps.data[0].id and one.type == "message_creation"
    assert client.beta.threads.runs.retrieve(run.id, thread_id=thread.id).status == run.status
    # The thread's history carries into the next run: a second question, a second answer.
    client.beta.threads.messages.create(thread.id, role="user", content="And at night?")
    again = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=asst.id,
                                                     max_completion_tokens=8, poll_interval_ms=100)
    assert again.status in ("completed", "incomplete")
    roles = [m.role for m in client.beta.threads.messages.list(thread.id, order="asc").data]
    assert roles == ["user", "assistant", "user", "assistant"]
    assert [r.id for r in client.beta.threads.runs.list(thread.id).data] == [again.id, run.id]
    client.beta.threads.delete(thread.id)
    client.beta.assistants.delete(asst.id)


def test_create_and_run_poll_and_cancel(client):
    asst = client.beta.assistants.create(model=MODEL)
    run = client.beta.threads.create_and_run_poll(
        assistant_id=asst.id, thread={"messages": [{"role": "user", "content": "Say hi."}]},
        max_completion_tokens=4, poll_interval_ms=100)
    assert run.status in ("completed", "incomplete") and run.thread_id.startswith("thread_")
    # A long run cancelled at once ends cancelled, and a finished one cannot be cancelled.
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "Count to one thousand."}])
    long = client.beta.threads.runs.create(thread_id=thread.id, assistant_id=asst.id, max_completion_tokens=2000)
    cancelled = client.beta.threads.runs.cancel(long.id, thread_id=thread.id)
    assert cancelled.status in ("cancelling", "cancelled")
    ended = client.beta.threads.runs.poll(long.id, thread_id=thread.id, poll_interval_ms=100)
    assert ended.status == "cancelled", ended
    with pytest.raises(openai.BadRequestError):
        client.beta.threads.runs.cancel(run.id, thread_id=run.thread_id)


def test_runs_refuse_what_is_not_built_by_name(client):
    with_fn = client.beta.assistants.create(model=MODEL, tools=[{"type": "function", "function": {"name": "f"}}])
    plain = client.beta.assistants.create(model=MODEL)
    thread = client.beta.threads.create()
    for kwargs, param in [({"assistant_id": with_fn.id, "tool_choice": {"type": "function", "function": {"name": "g"}}},
                           "tool_choice"),
                          ({"assistant_id": with_fn.id, "response_format": {"type": "json_object"}}, "response_format")]:
        with pytest.raises(openai.BadRequestError) as e:
            client.beta.threads.runs.create(thread_id=thread.id, **kwargs)
        assert e.value.param == param, e.value.body
    with pytest.raises(openai.NotFoundError):
        client.beta.threads.runs.create(thread_id=thread.id, assistant_id="asst_missing")


def test_a_function_call_round_trip_with_the_polling_helpers(client):
    weather = {"type": "function", "function": {"name": "get_weather", "description": "The weather in a city",
               "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
    asst = client.beta.assistants.create(model=MODEL, tools=[weather])
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "What is the weather in Oslo?"}])
    # A named tool_choice makes the tiny model call it: grammar-constrained, like chat. Greedy, so
    # the arguments cannot wander past the token budget (sampled at 1.0 they once did: incomplete).
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=asst.id, poll_interval_ms=100, max_completion_tokens=64, temperature=0,
        tool_choice={"type": "function", "function": {"name": "get_weather"}})
    assert run.status == "requires_action", run
    calls = run.required_action.submit_tool_outputs.tool_calls
    assert calls and calls[0].function.name == "get_weather"
    assert isinstance(json.loads(calls[0].function.arguments), dict)
    done = client.beta.threads.runs.submit_tool_outputs_and_poll(
        run_id=run.id, thread_id=thread.id, poll_interval_ms=100,
        tool_outputs=[{"tool_call_id": c.id, "output": '{"sky": "sunny", "celsius": 21}'} for c in calls])
    assert done.status in ("completed", "incomplete"), done
    steps = client.beta.threads.runs.steps.list(run.id, thread_id=thread.id, order="asc").data
    assert [s.type for s in steps] == ["tool_calls", "message_creation"]
    assert steps[0].step_details.tool_calls[0].function.output == '{"sky": "sunny", "celsius": 21}'
    answer = client.beta.threads.messages.list(thread.id).data[0]
    assert answer.role == "assistant" and answer.run_id == run.id
    with pytest.raises(openai.BadRequestError) as e:
        client.beta.threads.runs.submit_tool_outputs(run_id=run.id, thread_id=thread.id,
                                                     tool_outputs=[{"tool_call_id": "call_x", "output": "1"}])
    assert e.value.param == "run_id"


def test_a_run_with_a_json_schema_answers_valid_json(client):
    schema = {"type": "object", "properties": {"sky": {"enum": ["blue", "grey"]}}, "required": ["sky"]}
    asst = client.beta.assistants.create(model=MODEL, response_format={
        "type": "json_schema", "json_schema": {"name": "sky", "schema": schema}})
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "What colour is the sky?"}])
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=asst.id, temperature=0,
                                                   max_completion_tokens=32, poll_interval_ms=100)
    assert run.status == "completed", run
    answer = client.beta.threads.messages.list(thread.id).data[0].content[0].text.value
    assert json.loads(answer)["sky"] in ("blue", "grey"), answer
