"""Message forms: roles, content as text parts, names, tool results, and the limits on
length (`max_completion_tokens`) — with the official SDK against the real model."""

import openai
import pytest

MODEL = "smollm2-135m-instruct"
QUESTION = "What is the capital of France?"


def answer(client, messages, **kw):
    kw.setdefault("max_tokens", 8)
    return client.chat.completions.create(model=MODEL, messages=messages, temperature=0, **kw)


def text(r):
    return r.choices[0].message.content


def test_developer_is_system_for_the_template(client):
    system = answer(client, [{"role": "system", "content": "Answer in one word."}, {"role": "user", "content": QUESTION}])
    developer = answer(client, [{"role": "developer", "content": "Answer in one word."}, {"role": "user", "content": QUESTION}])
    assert text(developer) == text(system)


def test_text_parts_are_the_same_as_a_string(client):
    plain = answer(client, [{"role": "user", "content": QUESTION}])
    parts = answer(
        client,
        [{"role": "user", "content": [{"type": "text", "text": "What is the capital "}, {"type": "text", "text": "of France?"}]}],
    )
    assert text(parts) == text(plain)


def test_an_image_part_is_refused_by_name(client):
    with pytest.raises(openai.BadRequestError) as e:
        answer(
            client,
            [{"role": "user", "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
            ]}],
        )
    assert e.value.body["param"] == "messages[0].content"


def test_names_reach_the_model_and_bad_names_are_refused(client):
    r = answer(client, [{"role": "user", "name": "ada", "content": QUESTION}])
    assert r.choices[0].finish_reason in ("stop", "length")
    with pytest.raises(openai.BadRequestError) as e:
        answer(client, [{"role": "user", "name": "not a name!", "content": QUESTION}])
    assert e.value.body["param"] == "messages[0].name"


def test_a_tool_result_message_is_part_of_the_conversation(client):
    r = answer(
        client,
        [
            {"role": "user", "content": "What is the weather in Paris?"},
            {"role": "assistant", "content": "Let me check."},
            {"role": "tool", "tool_call_id": "call_1", "content": "Sunny, 21 C"},
        ],
    )
    assert r.choices[0].message.role == "assistant"


def test_max_completion_tokens_is_max_tokens(client):
    a = answer(client, [{"role": "user", "content": QUESTION}], max_tokens=None, max_completion_tokens=3)
    b = answer(client, [{"role": "user", "content": QUESTION}], max_tokens=3)
    assert a.usage.completion_tokens == b.usage.completion_tokens <= 3
    assert text(a) == text(b)
