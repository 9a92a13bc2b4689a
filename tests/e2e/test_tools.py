"""Tool calling with the real model: every `tool_choice` mode, arguments valid against the
function's schema by construction, parallel calls off, and the conversation going on after a
tool result. Chat asks the tools plugin (a component of its own) through the host; see
test_tools_plugin.py for swapping it."""

import json

import jsonschema
import openai
import pytest

MODEL = "smollm2-135m-instruct"
WEATHER_PARAMS = {
    "type": "object",
    "properties": {"city": {"type": "string", "maxLength": 30}, "unit": {"enum": ["c", "f"]}},
    "required": ["city", "unit"],
    "additionalProperties": False,
}
TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "Current weather in a city", "parameters": WEATHER_PARAMS}},
    {"type": "function", "function": {"name": "get_time", "description": "Local time in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 30}}, "required": ["city"], "additionalProperties": False}}},
]
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


def ask(client, **kw):
    kw.setdefault("max_tokens", 120)
    return client.chat.completions.create(model=MODEL, messages=ASK, tools=TOOLS, temperature=0, **kw)


def check_calls(message):
    assert message.content is None
    assert message.tool_calls
    for call in message.tool_calls:
        assert call.id.startswith("call_") and call.type == "function"
        spec = next(t["function"] for t in TOOLS if t["function"]["name"] == call.function.name)
        jsonschema.validate(json.loads(call.function.arguments), spec["parameters"])


def test_required_makes_valid_calls(client):
    r = ask(client, tool_choice="required")
    assert r.choices[0].finish_reason == "tool_calls"
    check_calls(r.choices[0].message)


def test_a_named_function_is_exactly_that_call(client):
    r = ask(client, tool_choice={"type": "function", "function": {"name": "get_time"}})
    check_calls(r.choices[0].message)
    assert [c.function.name for c in r.choices[0].message.tool_calls] == ["get_time"]


def test_parallel_off_means_one_call_at_most(client):
    r = ask(client, tool_choice="required", parallel_tool_calls=False)
    assert len(r.choices[0].message.tool_calls) == 1


def test_none_never_calls(client):
    r = ask(client, tool_choice="none")
    assert r.choices[0].message.tool_calls is None
    assert isinstance(r.choices[0].message.content, str)


def test_auto_answers_or_calls_validly(client):
    m = ask(client).choices[0].message
    if m.tool_calls:
        check_calls(m)
    else:
        assert isinstance(m.content, str)


def test_the_conversation_goes_on_after_a_tool_result(client):
    first = ask(client, tool_choice="required").choices[0].message
    call = first.tool_calls[0]
    messages = ASK + [
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "Sunny, 21 C"},
    ]
    r = client.chat.completions.create(model=MODEL, messages=messages, tools=TOOLS, tool_choice="none", temperature=0, max_tokens=20)
    assert isinstance(r.choices[0].message.content, str) and r.choices[0].message.content


def test_bad_tool_requests_name_their_param(client):
    with pytest.raises(openai.BadRequestError) as e:
        ask(client, tool_choice={"type": "function", "function": {"name": "nope"}})
    assert e.value.body["param"] == "tool_choice"
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=MODEL, messages=ASK, max_tokens=5,
            tools=[{"type": "function", "function": {"name": "bad name"}}])
    assert e.value.body["param"] == "tools[0].function.name"


def test_streamed_calls_rebuild_in_the_sdk_accumulator(client):
    with client.chat.completions.stream(
        model=MODEL, messages=ASK, tools=TOOLS, tool_choice="required", temperature=0, max_tokens=120
    ) as stream:
        final = stream.get_final_completion()
    assert final.choices[0].finish_reason == "tool_calls"
    check_calls(final.choices[0].message)


def test_streamed_call_deltas_carry_an_index(client):
    chunks = list(ask(client, tool_choice="required", stream=True))
    deltas = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert deltas
    assert all(isinstance(d.index, int) for d in deltas)
    first = deltas[0]
    assert first.id.startswith("call_") and first.type == "function" and first.function.name
    assert first.function.arguments == ""


def test_deprecated_functions_answer_with_function_call(client):
    functions = [t["function"] for t in TOOLS]
    r = client.chat.completions.create(
        model=MODEL, messages=ASK, functions=functions, function_call={"name": "get_weather"},
        temperature=0, max_tokens=120,
    )
    m = r.choices[0].message
    assert r.choices[0].finish_reason == "function_call"
    assert m.content is None and m.tool_calls is None
    assert m.function_call.name == "get_weather"
    jsonschema.validate(json.loads(m.function_call.arguments), WEATHER_PARAMS)
    # The function's result goes back with the old `function` role.
    follow = ASK + [
        {"role": "assistant", "content": None, "function_call": {"name": "get_weather", "arguments": m.function_call.arguments}},
        {"role": "function", "name": "get_weather", "content": "Sunny, 21 C"},
    ]
    r = client.chat.completions.create(model=MODEL, messages=follow, functions=functions, function_call="none", max_tokens=10)
    assert isinstance(r.choices[0].message.content, str)


def test_a_tool_schema_the_engine_cannot_support_is_a_400_naming_tools(client):
    bad = [{"type": "function", "function": {"name": "f", "parameters": {"type": 5}}}]
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=MODEL, messages=ASK, max_tokens=5, tools=bad, tool_choice="required")
    assert e.value.body["param"] == "tools"


def test_legacy_function_call_history_goes_on(client):
    """A conversation from the `functions` era: the assistant's `function_call` and the
    `function` role's result render into the prompt, and the model answers in text."""
    r = client.chat.completions.create(
        model=MODEL,
        temperature=0,
        max_tokens=30,
        functions=[TOOLS[0]["function"]],
        messages=ASK + [
            {"role": "assistant", "content": None,
             "function_call": {"name": "get_weather", "arguments": '{"city": "Paris", "unit": "c"}'}},
            {"role": "function", "name": "get_weather", "content": "21 C and sunny"},
        ],
        function_call="none",
    )
    assert r.choices[0].finish_reason in ("stop", "length")
    assert r.choices[0].message.content
    assert r.usage.prompt_tokens > 60
