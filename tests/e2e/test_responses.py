"""The Responses API through the official `openai` SDK: plain, streamed (the `stream` helper and
raw events), `parse` with a pydantic model, a function-tool round trip carried by
previous_response_id, a cut answer, stored responses, and refusals by name."""

import json

import openai
import pydantic
import pytest

CHAT = "smollm2-135m-instruct"


def test_a_plain_response_has_openais_shape_and_is_stored(client):
    r = client.responses.create(model=CHAT, input="Say hello in one short sentence.",
                                instructions="You are terse.", max_output_tokens=32, temperature=0)
    assert r.id.startswith("resp_") and r.object == "response"
    assert r.status in ("completed", "incomplete")
    assert r.output[0].type == "message" and r.output[0].role == "assistant"
    assert r.output_text.strip()
    assert r.usage.input_tokens > 0 and 0 < r.usage.output_tokens <= 32
    assert r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens
    again = client.responses.retrieve(r.id)
    assert again.output_text == r.output_text and again.status == r.status
    items = client.responses.input_items.list(r.id)
    assert [i.type for i in items.data] == ["message"]
    assert items.data[0].content[0].text == "Say hello in one short sentence."
    deleted = client.responses.delete(r.id)
    assert deleted is None or getattr(deleted, "deleted", True)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(r.id)


def test_max_output_tokens_cuts_the_answer_as_incomplete(client):
    r = client.responses.create(model=CHAT, input="Write a long story about a dragon.",
                                max_output_tokens=16, temperature=0)
    assert r.status == "incomplete"
    assert r.incomplete_details.reason == "max_output_tokens"
    assert r.usage.output_tokens == 16
    assert r.output[0].status == "incomplete"


def test_the_stream_helper_and_raw_events_say_the_same_answer(client):
    with client.responses.stream(model=CHAT, input="Name three colours.", max_output_tokens=256,
                                 temperature=0) as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == final.output_text and final.output_text
    events = list(client.responses.create(model=CHAT, input="Name three colours.", max_output_tokens=256,
                                          temperature=0, stream=True))
    kinds = [e.type for e in events]
    assert kinds[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added"]
    assert kinds[-1] in ("response.completed", "response.incomplete")
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert events[-1].response.output_text == final.output_text


class City(pydantic.BaseModel):
    name: str
    country: str


def test_parse_fills_a_pydantic_model_from_constrained_output(client):
    r = client.responses.parse(model=CHAT, input="Name a famous city and its country.",
                               text_format=City, max_output_tokens=64, temperature=0)
    assert isinstance(r.output_parsed, City)
    assert r.output_parsed.name


WEATHER = [{"type": "function", "name": "get_weather", "description": "Current weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                           "required": ["city"], "additionalProperties": False}, "strict": True}]


def test_a_function_call_round_trip_with_previous_response_id(client):
    first = client.responses.create(model=CHAT, input="What is the weather in Paris?", tools=WEATHER,
                                    tool_choice="required", max_output_tokens=64, temperature=0)
    calls = [o for o in first.output if o.type == "function_call"]
    assert calls and calls[0].name == "get_weather"
    assert "city" in json.loads(calls[0].arguments)
    second = client.responses.create(
        model=CHAT, previous_response_id=first.id, tools=WEATHER, max_output_tokens=48, temperature=0,
        input=[{"type": "function_call_output", "call_id": calls[0].call_id, "output": '{"sky": "sunny", "celsius": 21}'}])
    assert second.previous_response_id == first.id
    assert second.status in ("completed", "incomplete")
    assert second.output and second.usage.input_tokens > first.usage.input_tokens


def test_refusals_are_400s_naming_the_parameter(client):
    cases = [
        ({"extra_body": {"frobnicate": 1}}, "frobnicate"),
        ({"background": "soon"}, "background"),
        ({"previous_response_id": "resp_nope"}, "previous_response_id"),
        ({"tools": [{"type": "web_search"}]}, "tools[0].type"),
        ({"max_output_tokens": 3}, "max_output_tokens"),
    ]
    for extra, param in cases:
        with pytest.raises(openai.BadRequestError) as e:
            client.responses.create(model=CHAT, input="hi", **extra)
        assert e.value.body["param"] == param, (extra, e.value.body)
    with pytest.raises(openai.BadRequestError) as e:
        client.responses.create(model=CHAT, input=[{"role": "user", "content": [
            {"type": "input_image", "image_url": "https://example.com/a.png"}]}])
    assert e.value.body["param"] == "input[0].content[0].type"
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="no-such-model", input="hi")


def test_a_conversation_carries_three_turns(client):
    conv = client.conversations.create(metadata={"topic": "pets"},
                                       items=[{"type": "message", "role": "system", "content": "Answer briefly."}])
    assert conv.id.startswith("conv_") and conv.metadata == {"topic": "pets"}
    turns = ["My cat is called Miso.", "What colour could a cat be?", "What is my cat called?"]
    answers = []
    for text in turns:
        r = client.responses.create(model=CHAT, conversation=conv.id, input=text, max_output_tokens=32, temperature=0)
        assert r.conversation.id == conv.id
        answers.append(r)
    # Each turn read the ones before it.
    assert answers[2].usage.input_tokens > answers[1].usage.input_tokens > answers[0].usage.input_tokens
    items = client.conversations.items.list(conv.id, order="asc", limit=100)
    texts = [i.content[0].text for i in items.data if i.type == "message"]
    assert texts[0] == "Answer briefly." and texts[1] == turns[0] and texts[3] == turns[1]
    assert len(items.data) == 7
    newest = client.conversations.items.list(conv.id, limit=1)
    assert newest.has_more and newest.data[0].id == items.data[-1].id
    item = client.conversations.items.retrieve(items.data[1].id, conversation_id=conv.id)
    assert item.id == items.data[1].id
    assert client.conversations.update(conv.id, metadata={"topic": "cats"}).metadata == {"topic": "cats"}
    client.conversations.items.delete(items.data[1].id, conversation_id=conv.id)
    assert len(client.conversations.items.list(conv.id, limit=100).data) == 6
    assert client.conversations.delete(conv.id).deleted
    with pytest.raises(openai.NotFoundError):
        client.conversations.retrieve(conv.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model=CHAT, conversation=conv.id, input="hi")
    with pytest.raises(openai.BadRequestError) as e:
        client.responses.create(model=CHAT, conversation="conv_x", previous_response_id="resp_y", input="hi")
    assert e.value.body["param"] == "previous_response_id"


def test_previous_response_id_outlives_a_restart():
    import shutil
    import tempfile
    from conftest import start_server, write_config
    root = tempfile.mkdtemp(prefix="cinder-responses-")
    config = write_config(root)
    srv = start_server(config=config)
    try:
        c = openai.OpenAI(base_url=f"{srv.url}/v1", api_key="x", max_retries=0)
        first = c.responses.create(model=CHAT, input="My name is Ada.", max_output_tokens=16)
        srv.stop()
        srv = start_server(config=config)
        c = openai.OpenAI(base_url=f"{srv.url}/v1", api_key="x", max_retries=0)
        second = c.responses.create(model=CHAT, previous_response_id=first.id, input="What is my name?",
                                    max_output_tokens=16)
        assert second.usage.input_tokens > first.usage.input_tokens
        assert c.responses.retrieve(first.id).output_text == first.output_text
    finally:
        srv.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_an_uploaded_file_is_read_as_input(client):
    f = client.files.create(file=("note.txt", b"The secret word is lantern."), purpose="user_data")
    r = client.responses.create(model=CHAT, max_output_tokens=32, temperature=0, input=[{"role": "user", "content": [
        {"type": "input_text", "text": "What is the secret word in the file?"},
        {"type": "input_file", "file_id": f.id}]}])
    plain = client.responses.create(model=CHAT, max_output_tokens=32, temperature=0,
                                    input="What is the secret word in the file?")
    assert r.usage.input_tokens > plain.usage.input_tokens + 5
    part = client.responses.input_items.list(r.id).data[0].content[1]
    assert part.type == "input_file" and part.file_id == f.id
    with pytest.raises(openai.BadRequestError) as e:
        client.responses.create(model=CHAT, input=[{"role": "user", "content": [
            {"type": "input_file", "file_id": "file-missing"}]}])
    assert e.value.body["param"] == "input[0].content[0].file_id"
