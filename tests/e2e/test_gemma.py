"""Gemma 3 270M Q4_K_M (issue 21), served beside SmolLM2 on a server of its own through the
official SDK: greedy chat equal to llama.cpp's continuation (tests/fixtures/gemma3/
llama_cpp.json), streaming, tools and json_schema on Gemma's built-in turn format, and two
chat models generating at once without one holding up the other's stream; a configured model
that cannot load is left out with its reason while the others serve."""

import json
import os
import threading
import time
from pathlib import Path

import openai
import pytest

from conftest import own_server

GEMMA = "gemma-3-270m"
SMOL = "smollm2-135m-instruct"
FIXTURE = json.loads((Path(__file__).parent.parent / "fixtures/gemma3/llama_cpp.json").read_text())
# Gemma's end of turn.
END_OF_TURN = 106


def gemma_block():
    models = os.environ.get("CINDER_MODELS", os.path.expanduser("~/.cache/cinder/models"))
    return (
        "[[models]]\n"
        f'id = "{GEMMA}"\n'
        f'path = "{models}/gemma3/gemma-3-270m-q4_k_m.gguf"\n'
        'backend = "cpu"\n\n'
        # Not a GGUF: it fails to load, and the others serve.
        "[[models]]\n"
        'id = "broken"\n'
        f'path = "{__file__}"\n\n'
        "[[models]]\n"
        'id = "all-minilm-l6-v2"'
    )


@pytest.fixture(scope="module")
def client():
    with own_server("cinder-gemma-", {'[[models]]\nid = "all-minilm-l6-v2"': gemma_block()}) as srv:
        yield openai.OpenAI(base_url=f"{srv.url}/v1", api_key="x", max_retries=0, timeout=300)


def reference(name):
    return next(g for g in FIXTURE["generations"] if g["name"] == name)


def test_gemma_is_listed_beside_smollm(client):
    ids = {m.id for m in client.models.list().data}
    assert {GEMMA, SMOL} <= ids


def test_a_model_that_did_not_load_says_why(client):
    assert "broken" not in {m.id for m in client.models.list().data}
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="broken", messages=[{"role": "user", "content": "Hi"}])
    assert e.value.body["param"] == "model"
    assert "did not load" in e.value.body["message"] and "test_gemma.py" in e.value.body["message"]


def test_a_raw_prompt_starts_with_bos_where_the_tokenizer_adds_one(client):
    """Gemma's tokenizer adds BOS (`add_bos_token`): a legacy completion's text prompt gets it,
    as in llama.cpp's server; SmolLM2's adds none."""
    case = next(c for c in FIXTURE["tokenize"] if c["name"] == "ascii_simple")
    r = client.completions.create(model=GEMMA, prompt=case["text"], max_tokens=2, temperature=0)
    assert r.usage.prompt_tokens == len(case["ids"]) + 1
    smollm = json.loads((Path(os.environ["CINDER_REFERENCE"]) / "smollm2/tokenize.json").read_text())
    ids = smollm["llama_cpp"]["results"]["ascii_simple"]["ids"]
    r = client.completions.create(model=SMOL, prompt=case["text"], max_tokens=2, temperature=0)
    assert r.usage.prompt_tokens == len(ids)


def test_greedy_chat_equals_llama_cpp(client):
    for name, messages in [
        ("capital", [{"role": "user", "content": "What is the capital of France?"}]),
        (
            "system",
            [
                {"role": "system", "content": "Answer in one word."},
                {"role": "user", "content": "Name a primary colour."},
            ],
        ),
    ]:
        ref = reference(name)
        r = client.chat.completions.create(
            model=GEMMA, messages=messages, temperature=0, max_tokens=len(ref["greedy"]), logprobs=True
        )
        choice = r.choices[0]
        assert r.usage.prompt_tokens == len(ref["ids"]), name
        assert len(choice.logprobs.content) == ref["answer_tokens"], name
        assert choice.message.content == ref["answer"], name
        ended = ref["answer_tokens"] < len(ref["greedy"])
        assert choice.finish_reason == ("stop" if ended else "length"), name


def test_streamed_chat_is_the_same_text(client):
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    whole = client.chat.completions.create(model=GEMMA, messages=messages, temperature=0, max_tokens=16)
    stream = client.chat.completions.create(
        model=GEMMA, messages=messages, temperature=0, max_tokens=16, stream=True
    )
    parts = [c.choices[0].delta.content or "" for c in stream if c.choices]
    assert "".join(parts) == whole.choices[0].message.content
    assert len([p for p in parts if p]) >= 2


def test_a_required_tool_call_has_valid_arguments(client):
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "The weather in a city",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                },
            },
        }
    ]
    messages = [{"role": "user", "content": "What is the weather in Paris?"}]
    r = client.chat.completions.create(
        model=GEMMA, messages=messages, tools=tools, tool_choice="required", temperature=0, max_tokens=60
    )
    call = r.choices[0].message.tool_calls[0]
    assert r.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather"
    assert isinstance(json.loads(call.function.arguments)["city"], str)
    follow = messages + [
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "Sunny, 21 C"},
    ]
    r = client.chat.completions.create(model=GEMMA, messages=follow, temperature=0, max_tokens=30)
    assert r.choices[0].message.content


def test_json_schema_output_parses_and_fits(client):
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "country": {"type": "string"}},
        "required": ["city", "country"],
        "additionalProperties": False,
    }
    r = client.chat.completions.create(
        model=GEMMA,
        messages=[{"role": "user", "content": "Name a city and its country."}],
        response_format={"type": "json_schema", "json_schema": {"name": "place", "schema": schema, "strict": True}},
        temperature=0,
        max_tokens=60,
    )
    value = json.loads(r.choices[0].message.content)
    assert set(value) == {"city", "country"} and all(isinstance(v, str) for v in value.values())


def test_two_models_stream_at_once(client):
    """A long Gemma stream and a short SmolLM2 one started while it runs: each model has its
    own engine, so SmolLM2's stream ends while Gemma's is still going."""
    times = {}
    no_end = {str(END_OF_TURN): -100, "1": -100}
    streaming = threading.Event()

    def run(model, max_tokens, bias, key, started=None):
        stream = client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": "Tell me a long story about a dragon."}],
            max_tokens=max_tokens,
            logit_bias=bias,
            stream=True,
        )
        stamps = []
        for c in stream:
            if c.choices and c.choices[0].delta.content:
                stamps.append(time.monotonic())
                if started is not None and len(stamps) == 5:
                    started.set()
        times[key] = stamps

    gemma = threading.Thread(target=run, args=(GEMMA, 160, no_end, "gemma", streaming))
    gemma.start()
    # SmolLM2's request goes in once Gemma's stream is under way (on a fast machine a fixed
    # wait could outlast Gemma's whole answer).
    assert streaming.wait(120), "Gemma's stream did not start"
    run(SMOL, 12, {"2": -100, "0": -100}, "smol")
    gemma.join(300)
    assert len(times["gemma"]) >= 150 and len(times["smol"]) >= 10
    assert times["smol"][-1] < times["gemma"][-1], "SmolLM2's stream waited for Gemma's"
    assert times["smol"][0] > times["gemma"][0]
