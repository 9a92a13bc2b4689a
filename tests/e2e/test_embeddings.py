"""`POST /v1/embeddings` with the official SDK: vectors against the sentence-transformers
reference (../shared/reference/minilm/embeddings.json), both encodings, every input shape,
`dimensions`, usage, truncation, and errors."""

import base64
import json
import math
import os
import struct
import threading

import openai
import pytest

from conftest import _required_env, own_server

MODEL = "all-minilm-l6-v2"
DIM = 384
# What the issue asks of the core's golden test, kept over HTTP too.
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def reference():
    path = os.path.join(_required_env("CINDER_REFERENCE"), "minilm", "embeddings.json")
    with open(path) as f:
        ref = json.load(f)
    # OpenAI refuses an empty string (so does Cinder, below); the core's golden test covers it.
    return [s for s in ref["sentences"] if s["text"]]


def cosine(a, b):
    dot = sum(x * y for x, y in zip(a, b))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def assert_close(got, want, what):
    assert len(got) == len(want), what
    worst = max(abs(g - w) for g, w in zip(got, want))
    assert worst <= TOLERANCE, f"{what}: max |Δ| {worst}"
    assert cosine(got, want) >= 0.99999, what


def vectors(client, inputs, **kw):
    r = client.embeddings.create(model=MODEL, input=inputs, encoding_format="float", **kw)
    assert [d.index for d in r.data] == list(range(len(r.data)))
    return [d.embedding for d in r.data], r


def test_every_reference_sentence_in_one_call_by_the_sdk_default(client, reference, http):
    # No encoding_format: the SDK asks for base64 and decodes it itself.
    r = client.embeddings.create(model=MODEL, input=[s["text"] for s in reference])
    assert r.object == "list" and r.model == MODEL
    assert len(r.data) == len(reference)
    for d, s in zip(r.data, reference):
        assert d.object == "embedding"
        assert_close(d.embedding, s["embedding"], s["name"])
    # True counts: the model's own tokens, special ones included, after truncation.
    want = sum(s["n_tokens"] for s in reference)
    assert r.usage.prompt_tokens == want and r.usage.total_tokens == want
    # And on the wire it really was base64 of little-endian float32.
    raw = http.post("/v1/embeddings", json={"model": MODEL, "input": reference[0]["text"], "encoding_format": "base64"})
    assert raw.status_code == 200, raw.text
    encoded = raw.json()["data"][0]["embedding"]
    assert isinstance(encoded, str)
    decoded = struct.unpack(f"<{DIM}f", base64.b64decode(encoded))
    assert_close(decoded, reference[0]["embedding"], "base64 on the wire")


def test_float_and_base64_give_the_same_numbers(client, http, reference):
    text = reference[2]["text"]
    floats = http.post("/v1/embeddings", json={"model": MODEL, "input": text, "encoding_format": "float"}).json()
    encoded = http.post("/v1/embeddings", json={"model": MODEL, "input": text, "encoding_format": "base64"}).json()
    as_f32 = [struct.unpack("<f", struct.pack("<f", x))[0] for x in floats["data"][0]["embedding"]]
    decoded = list(struct.unpack(f"<{DIM}f", base64.b64decode(encoded["data"][0]["embedding"])))
    assert as_f32 == decoded
    # No encoding_format on the wire means float.
    plain = http.post("/v1/embeddings", json={"model": MODEL, "input": text}).json()
    assert plain["data"][0]["embedding"] == floats["data"][0]["embedding"]
    assert plain["usage"] == {"prompt_tokens": reference[2]["n_tokens"], "total_tokens": reference[2]["n_tokens"]}


def test_a_list_equals_each_input_embedded_alone(client, reference):
    texts = [s["text"] for s in reference[:6]]
    together, _ = vectors(client, texts)
    for text, v in zip(texts, together):
        alone, _ = vectors(client, text)
        assert_close(v, alone[0], text)


def test_token_ids_are_the_models_own_and_used_as_given(client, reference):
    s, t = reference[0], reference[4]
    # One list of ids, then a list of lists: the reference's ids ([CLS] ... [SEP]) give the
    # reference's vectors.
    one, r = vectors(client, s["ids"])
    assert_close(one[0], s["embedding"], "ids")
    assert r.usage.prompt_tokens == len(s["ids"])
    both, r = vectors(client, [s["ids"], t["ids"]])
    assert_close(both[0], s["embedding"], "ids 0")
    assert_close(both[1], t["embedding"], "ids 1")
    assert r.usage.prompt_tokens == len(s["ids"]) + len(t["ids"])


def test_an_input_over_the_limit_is_cut_as_sentence_transformers_does(client, reference):
    long = next(s for s in reference if s["truncated"])
    v, r = vectors(client, long["text"])
    assert_close(v[0], long["embedding"], long["name"])
    assert r.usage.prompt_tokens == long["n_tokens"] == 256


def test_dimensions_shorten_and_renormalise(client, reference):
    full, _ = vectors(client, reference[0]["text"])
    short, _ = vectors(client, reference[0]["text"], dimensions=64)
    assert len(short[0]) == 64
    norm = math.sqrt(sum(x * x for x in full[0][:64]))
    assert_close(short[0], [x / norm for x in full[0][:64]], "dimensions=64")
    assert abs(math.sqrt(sum(x * x for x in short[0])) - 1) < 1e-5
    assert len(vectors(client, "x", dimensions=DIM)[0][0]) == DIM


def test_aliases_serve_embeddings_under_the_name_asked_for(client, reference):
    r = client.embeddings.create(model="text-embedding-3-small", input=reference[1]["text"])
    assert r.model == "text-embedding-3-small"
    assert_close(r.data[0].embedding, reference[1]["embedding"], "alias")
    ids = [m.id for m in client.models.list().data]
    assert MODEL in ids and "text-embedding-3-small" in ids
    assert client.models.retrieve(MODEL).id == MODEL


def test_concurrent_requests_get_their_own_vectors(client, reference):
    picks = reference[:8]
    results = [None] * len(picks)

    def run(i):
        results[i] = vectors(client, [picks[i]["text"], picks[-1 - i]["text"]])[0]

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(picks))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for i, got in enumerate(results):
        assert got is not None, f"request {i} did not finish"
        assert_close(got[0], picks[i]["embedding"], f"request {i}, input 0")
        assert_close(got[1], picks[-1 - i]["embedding"], f"request {i}, input 1")


def error_of(response, status, param):
    assert response.status_code == status, f"expected {status}, got {response.status_code}: {response.text}"
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error", error
    assert error["param"] == param, error
    return error


@pytest.mark.parametrize(
    "body, param",
    [
        ({"input": ""}, "input"),
        ({"input": []}, "input"),
        ({"input": ["fine", ""]}, "input"),
        ({"input": [[]]}, "input"),
        ({"input": [[101, 102], []]}, "input"),
        ({"input": [101, -1]}, "input"),
        ({"input": [101, 1.5]}, "input"),
        ({"input": [101, 4294967296]}, "input"),
        ({"input": [101, 999999]}, "input"),
        ({"input": ["text", 101]}, "input"),
        ({"input": [[101], "text"]}, "input"),
        ({"input": 5}, "input"),
        ({"input": {"text": "x"}}, "input"),
        ({"input": [None]}, "input"),
        ({"input": ["x"] * 2049}, "input"),
        ({"input": "x", "dimensions": 0}, "dimensions"),
        ({"input": "x", "dimensions": -3}, "dimensions"),
        ({"input": "x", "dimensions": DIM + 1}, "dimensions"),
        ({"input": "x", "encoding_format": "hex"}, "encoding_format"),
    ],
)
def test_bad_inputs_are_400s_naming_the_parameter(http, body, param):
    error_of(http.post("/v1/embeddings", json={"model": MODEL, **body}), 400, param)


def test_missing_fields_and_bad_json(http):
    error_of(http.post("/v1/embeddings", json={"model": MODEL}), 400, "input")
    error_of(http.post("/v1/embeddings", json={"input": "x"}), 400, "model")
    r = http.post("/v1/embeddings", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text


def test_models_of_the_wrong_kind(client, http):
    error = error_of(http.post("/v1/embeddings", json={"model": "no-such-model", "input": "x"}), 404, "model")
    assert error["code"] == "model_not_found"
    # A chat model that was not declared an embedder.
    error = error_of(http.post("/v1/embeddings", json={"model": "smollm2-135m-instruct", "input": "x"}), 400, "model")
    assert error["code"] == "model_not_supported"
    # An embedding model asked to chat, or to complete text.
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    assert exc.value.body["param"] == "model"
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model=MODEL, prompt="hi")


@pytest.fixture(scope="module")
def alt():
    """A server of its own: `truncate = false`, the chat model declared an embedder
    (`embeddings = true`), and small token budgets per request."""
    edits = {
        "truncate = true": "truncate = false",
        "embeddings = false": "embeddings = true",
        "max_tokens_per_request = 300000": "max_tokens_per_request = 2000",
        "max_prompt_tokens_per_request = 131072": "max_prompt_tokens_per_request = 1000",
    }
    with own_server("cinder-embed-", edits) as srv:
        yield openai.OpenAI(base_url=srv.url + "/v1", api_key="unused", max_retries=0)


def test_the_tokens_of_one_request_are_bounded(alt):
    # all-MiniLM reads up to 256 tokens an input; token-id inputs are used as given.
    assert alt.embeddings.create(model=MODEL, input=[[101] * 250] * 8).usage.prompt_tokens == 2000
    with pytest.raises(openai.BadRequestError) as exc:
        alt.embeddings.create(model=MODEL, input=[[101] * 250] * 9)
    assert exc.value.body["param"] == "input"
    assert exc.value.body["code"] == "max_tokens_per_request"
    assert "2250 tokens" in exc.value.body["message"]
    # The same for generation: all prompts of a legacy request together, and chat's messages.
    with pytest.raises(openai.BadRequestError) as exc:
        alt.completions.create(model="smollm2-135m-instruct", prompt=[[1] * 400] * 3, max_tokens=1)
    assert exc.value.body["param"] == "prompt"
    with pytest.raises(openai.BadRequestError) as exc:
        alt.chat.completions.create(
            model="smollm2-135m-instruct", messages=[{"role": "user", "content": "word " * 1200}], max_tokens=1
        )
    assert exc.value.body["param"] == "messages"
    assert exc.value.body["code"] == "max_tokens_per_request"
    ok = alt.completions.create(model="smollm2-135m-instruct", prompt=[[1] * 400] * 2, max_tokens=1)
    assert len(ok.choices) == 2


def test_long_inputs_are_refused_when_configured(alt, reference):
    long = next(s for s in reference if s["truncated"])
    with pytest.raises(openai.BadRequestError) as exc:
        alt.embeddings.create(model=MODEL, input=["short", long["text"]])
    assert exc.value.body["param"] == "input"
    assert exc.value.body["code"] == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError):
        alt.embeddings.create(model=MODEL, input=[[101] * 257])
    # Everything within the limit is served as before.
    ok = alt.embeddings.create(model=MODEL, input=reference[0]["text"])
    assert_close(ok.data[0].embedding, reference[0]["embedding"], "within the limit")


def test_a_chat_model_declared_an_embedder_serves_both(alt):
    # Against tests/fixtures/smollm2-embeddings (float64 NumPy, llama.cpp's token ids).
    path = os.path.join(os.path.dirname(__file__), "..", "fixtures", "smollm2-embeddings", "embeddings.json")
    with open(path) as f:
        cases = [c for c in json.load(f)["cases"] if c["text"]]
    chat_model = "smollm2-135m-instruct"
    r = alt.embeddings.create(model=chat_model, input=[c["text"] for c in cases])
    assert r.model == chat_model
    for d, c in zip(r.data, cases):
        assert len(d.embedding) == 576
        worst = max(abs(g - w) for g, w in zip(d.embedding, c["embedding"]))
        assert worst <= 2e-5, f"{c['name']}: max |Δ| {worst}"
    # True counts: the model's own tokens (SmolLM2 adds no BOS).
    assert r.usage.prompt_tokens == sum(len(c["ids"]) for c in cases)
    # Its aliases name the same model, and it still chats.
    assert len(alt.embeddings.create(model="gpt-4o-mini", input="hi", dimensions=32).data[0].embedding) == 32
    reply = alt.chat.completions.create(model=chat_model, messages=[{"role": "user", "content": "Hi"}], max_tokens=1)
    assert reply.choices[0].finish_reason in ("stop", "length")
