"""The third-party example plugins (examples/plugins), built outside the workspace by
`cargo xtask test`, served by a server of their own: `chat-redact` replaces the first-party
chat plugin, `summarize` adds an endpoint, `shout` is docs/plugins.md's five-minute plugin.
"""

import os
import re
import shutil
import tempfile

import httpx
import openai
import pytest

from conftest import _required_env, start_server

# The WIT the examples are built against: the package version in wit/v0.1/worlds.wit.
WIT = re.search(r"package cinder:plugin@([0-9.]+);",
                open(os.path.join(os.path.dirname(__file__), "../../wit/v0.1/worlds.wit")).read()).group(1)

MODEL = "smollm2-135m-instruct"
# SmolLM2's token for "7" (shared/reference/smollm2/hf_tokenizer_from_gguf.json).
SEVEN = "39"


@pytest.fixture(scope="module")
def ex_server():
    examples = _required_env("CINDER_EXAMPLES")
    root = tempfile.mkdtemp(prefix="cinder-examples-")
    for name in ("chat-redact", "summarize", "shout"):
        shutil.copytree(os.path.join(examples, name), os.path.join(root, name))
    srv = start_server(plugins=root)
    yield srv
    srv.stop()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def ex_client(ex_server):
    c = openai.OpenAI(base_url=f"{ex_server.url}/v1", api_key="sk-x", max_retries=0, timeout=300)
    yield c
    c.close()


def sevens(c, **kw):
    return c.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Pick a number."}],
        max_tokens=5,
        temperature=0,
        logit_bias={SEVEN: 100},
        **kw,
    )


def test_health_lists_the_examples(ex_server):
    health = httpx.get(f"{ex_server.url}/health").json()
    ids = {p["id"]: p for p in health["plugins"]}
    assert set(ids) == {"chat-redact", "summarize", "shout"}, health
    assert ids["summarize"]["wit"] == WIT
    assert health["plugin_failures"] == []


def test_chat_redact_replaces_first_party_chat(client, ex_client):
    # First-party chat: the forced token shows.
    plain = sevens(client).choices[0].message.content
    assert "7" in plain, plain
    # The replacement: same request, same pipeline, digits masked.
    redacted = sevens(ex_client)
    text = redacted.choices[0].message.content
    assert text == plain.replace("7", "#"), (plain, text)
    assert redacted.usage.completion_tokens > 0

    chunks = list(sevens(ex_client, stream=True))
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == text
    assert chunks[-1].choices[0].finish_reason == "length"


def test_chat_redact_keeps_first_party_validation(ex_client):
    with pytest.raises(openai.BadRequestError) as e:
        ex_client.chat.completions.create(model=MODEL, messages=[], max_tokens=1)
    assert e.value.body["param"] == "messages"


def test_the_five_minute_plugin_runs(ex_server):
    r = httpx.post(f"{ex_server.url}/v1/shout", json={"model": MODEL, "text": "hello there"}, timeout=300)
    assert r.status_code == 200, r.text
    shout = r.json()["shout"]
    assert shout and shout == shout.upper(), shout
    assert r.headers["x-cinder-plugin"] == "shout@0.1.0"
    health = httpx.get(f"{ex_server.url}/health").json()
    shout_info = next(p for p in health["plugins"] if p["id"] == "shout")
    # Built with the SDK: it exports only its world's interface.
    assert shout_info["exports"] == [f"cinder:plugin/handler@{WIT}"], shout_info
    r = httpx.post(f"{ex_server.url}/v1/shout", json={"model": MODEL})
    assert r.status_code == 400 and r.json()["error"]["param"] == "text"


def test_summarize_is_a_new_endpoint(ex_server):
    text = (
        "The city council met on Tuesday and voted to build a new library downtown. "
        "Construction starts next spring and should take two years."
    )
    r = httpx.post(f"{ex_server.url}/v1/summarize", json={"model": MODEL, "text": text, "max_tokens": 24}, timeout=300)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "summary"
    assert isinstance(body["summary"], str) and body["summary"]
    assert body["finish_reason"] in ("stop", "length")
    assert body["usage"]["prompt_tokens"] > len(text.split()) // 2
    assert 0 < body["usage"]["completion_tokens"] <= 24
    assert r.headers["x-cinder-plugin"] == "summarize@0.1.0"


def test_summarize_errors_name_the_param(ex_server):
    r = httpx.post(f"{ex_server.url}/v1/summarize", json={"model": MODEL, "text": "  "})
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "text"
    r = httpx.post(f"{ex_server.url}/v1/summarize", json={"model": "nope", "text": "hello"})
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "model_not_found"
    r = httpx.get(f"{ex_server.url}/v1/summarize")
    assert r.status_code == 405
