"""Stored chat completions (`store: true`) through the official SDK: retrieve, list with a
metadata filter, messages, update, delete; streamed ones too; and they survive a restart."""

import json
import os
import shutil
import tempfile
import uuid

import openai
import pytest

from conftest import start_server, write_config

MODEL = "smollm2-135m-instruct"
HI = [{"role": "user", "content": "hi"}]


def test_the_stored_completions_api(client):
    tag = uuid.uuid4().hex
    r = client.chat.completions.create(model=MODEL, messages=HI, max_tokens=3, temperature=0, store=True, metadata={"run": tag})
    got = client.chat.completions.retrieve(r.id)
    assert got.id == r.id
    assert got.choices[0].message.content == r.choices[0].message.content
    assert got.to_dict()["metadata"] == {"run": tag}

    listed = client.chat.completions.list(metadata={"run": tag}, limit=5)
    assert [c.id for c in listed.data] == [r.id]
    assert client.chat.completions.list(metadata={"run": tag + "-other"}).data == []

    msgs = client.chat.completions.messages.list(r.id)
    assert [(m.role, m.content) for m in msgs.data] == [("user", "hi")]

    updated = client.chat.completions.update(r.id, metadata={"run": tag, "reviewed": "yes"})
    assert updated.to_dict()["metadata"]["reviewed"] == "yes"

    deleted = client.chat.completions.delete(r.id)
    assert deleted.deleted and deleted.id == r.id
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.retrieve(r.id)


def test_a_streamed_completion_is_stored_whole(client):
    tag = uuid.uuid4().hex
    chunks = list(client.chat.completions.create(
        model=MODEL, messages=HI, max_tokens=4, temperature=0, stream=True, store=True, metadata={"run": tag}
    ))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    got = client.chat.completions.retrieve(chunks[0].id)
    assert got.choices[0].message.content == text
    assert got.choices[0].finish_reason in ("stop", "length")
    client.chat.completions.delete(chunks[0].id)


def test_stored_completions_survive_a_restart():
    root = tempfile.mkdtemp(prefix="cinder-storage-")
    config = write_config(root)
    srv = start_server(config=config)
    try:
        c = openai.OpenAI(base_url=f"{srv.url}/v1", api_key="x", max_retries=0)
        r = c.chat.completions.create(model=MODEL, messages=HI, max_tokens=2, store=True)
    finally:
        srv.stop()
    srv = start_server(config=config)
    try:
        c = openai.OpenAI(base_url=f"{srv.url}/v1", api_key="x", max_retries=0)
        assert c.chat.completions.retrieve(r.id).choices[0].message.content == r.choices[0].message.content
    finally:
        srv.stop()
        shutil.rmtree(root, ignore_errors=True)



def _legacy_value(id, content, metadata):
    """A stored completion as the chat plugin kept it in its document log before the store."""
    completion = {"id": id, "object": "chat.completion", "created": 1764900000, "model": MODEL,
                  "choices": [{"index": 0, "message": {"role": "assistant", "content": content, "refusal": None},
                               "logprobs": None, "finish_reason": "stop"}],
                  "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
                  "system_fingerprint": None, "service_tier": "default"}
    return json.dumps({"completion": completion, "metadata": metadata,
                       "messages": [{"role": "user", "content": "hi"}]})


def test_document_logs_from_before_the_store_are_moved_into_it_once():
    root = tempfile.mkdtemp(prefix="cinder-storage-")
    logs = os.path.join(root, "documents", "chat")
    os.makedirs(logs)
    # The log format the pre-store document host wrote: one line per put or delete, synced.
    lines = [
        {"op": "put", "key": "chatcmpl-legacy1", "value": _legacy_value("chatcmpl-legacy1", "one", {"run": "old"}), "owner": "local"},
        {"op": "put", "key": "chatcmpl-legacy2", "value": _legacy_value("chatcmpl-legacy2", "two", {}), "owner": "local"},
        {"op": "put", "key": "chatcmpl-legacy3", "value": _legacy_value("chatcmpl-legacy3", "three", {"run": "old"}), "owner": "local"},
        {"op": "del", "key": "chatcmpl-legacy2"},
    ]
    with open(os.path.join(logs, "chat_completions.jsonl"), "w") as f:
        f.write("".join(json.dumps(l) + "\n" for l in lines))
    config = write_config(root)
    try:
        for _ in range(2):  # the second start finds nothing left to move and loses nothing
            srv = start_server(config=config)
            try:
                c = openai.OpenAI(base_url=f"{srv.url}/v1", api_key="x", max_retries=0)
                listed = c.chat.completions.list(metadata={"run": "old"}, order="asc")
                assert [x.id for x in listed.data] == ["chatcmpl-legacy1", "chatcmpl-legacy3"]
                assert c.chat.completions.retrieve("chatcmpl-legacy3").choices[0].message.content == "three"
                with pytest.raises(openai.NotFoundError):
                    c.chat.completions.retrieve("chatcmpl-legacy2")
                msgs = c.chat.completions.messages.list("chatcmpl-legacy1")
                assert [(m.role, m.content) for m in msgs.data] == [("user", "hi")]
            finally:
                srv.stop()
            assert sorted(os.listdir(logs)) == ["chat_completions.jsonl.migrated"]
    finally:
        shutil.rmtree(root, ignore_errors=True)


WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string", "maxLength": 20}}, "required": ["city"], "additionalProperties": False}}}
ASK_WEATHER = [{"role": "user", "content": "What is the weather in Paris?"}]
SHAPES = {
    "tool-calls": dict(messages=ASK_WEATHER, tools=[WEATHER], tool_choice="required"),
    "legacy-functions": dict(messages=ASK_WEATHER, functions=[WEATHER["function"]], function_call={"name": "get_weather"}),
    "text-with-logprobs": dict(messages=HI, logprobs=True, top_logprobs=2),
}


def stored_choice(client, stream, shape):
    r = client.chat.completions.create(model=MODEL, temperature=0, max_tokens=40, store=True, stream=stream, **SHAPES[shape])
    id = [c.id for c in r][0] if stream else r.id
    got = client.chat.completions.retrieve(id).to_dict()
    client.chat.completions.delete(id)
    choice = got["choices"][0]
    # Call ids carry the completion's id; everything else must match.
    for call in choice["message"].get("tool_calls") or []:
        call.pop("id")
    return choice, got["usage"]["completion_tokens"]


@pytest.mark.parametrize("shape", SHAPES)
def test_a_streamed_answer_is_stored_as_the_same_completion(client, shape):
    # Streaming and not are one pipeline: what is stored is the same `chat.completion`
    # either way (calls as `tool_calls` or `function_call`, never as text; logprobs; the
    # finish reason and usage).
    whole, streamed = stored_choice(client, False, shape), stored_choice(client, True, shape)
    assert streamed == whole
    message = whole[0]["message"]
    if shape == "tool-calls":
        assert message.get("content") is None and message["tool_calls"], whole
    if shape == "legacy-functions":
        assert message.get("content") is None and message["function_call"]["name"] == "get_weather", whole
    if shape == "text-with-logprobs":
        assert message["content"] and len(whole[0]["logprobs"]["content"]) > 0, whole
