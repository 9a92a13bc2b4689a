"""`POST /v1/chat/completions` against the real SmolLM2-135M-Instruct model.

Generation is slow (~10 tokens/s on the test machine), so every request asks for few tokens,
and the greedy non-streamed answer that several tests compare with is computed once.
"""

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

MODEL = "smollm2-135m-instruct"
MESSAGES = [{"role": "user", "content": "Name three primary colors."}]
MAX_TOKENS = 16
SEEDED = {"temperature": 0.9, "top_p": 0.95, "seed": 1234, "max_tokens": 16}


def chat(client, messages=MESSAGES, **params):
    return client.chat.completions.create(model=MODEL, messages=messages, **params)


def stream_chunks(client, messages=MESSAGES, **params):
    """All chunks of a streamed completion, read through the SDK."""
    with client.chat.completions.create(model=MODEL, messages=messages, stream=True, **params) as stream:
        return list(stream)


def streamed_text(chunks):
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def check_chunk_sequence(chunks):
    """The invariants of every SDK-read stream; returns its finish_reason."""
    assert chunks, "the stream had no chunks"
    ids = {c.id for c in chunks}
    assert len(ids) == 1, f"chunks carry different ids: {ids}"
    assert chunks[0].id.startswith("chatcmpl-"), chunks[0].id
    for c in chunks:
        assert c.object == "chat.completion.chunk"
        assert c.model == MODEL
    with_choices = [c for c in chunks if c.choices]
    assert with_choices, "no chunk has a choice"
    for c in with_choices:
        assert len(c.choices) == 1
        assert c.choices[0].index == 0
    assert with_choices[0].choices[0].delta.role == "assistant"
    finishing = [i for i, c in enumerate(with_choices) if c.choices[0].finish_reason is not None]
    assert finishing == [len(with_choices) - 1], (
        f"expected exactly one finish_reason, on the last chunk with choices; got it on chunks {finishing} of {len(with_choices)}"
    )
    finish_reason = with_choices[-1].choices[0].finish_reason
    assert finish_reason in ("stop", "length")
    return finish_reason


def raw_stream(http, payload):
    """Streams a completion with plain httpx; returns (response, the payloads of its `data: ` lines)."""
    data = []
    with http.stream("POST", "/v1/chat/completions", json=payload) as response:
        assert response.status_code == 200, response.read().decode("utf-8", "replace")
        for line in response.iter_lines():
            if line == "" or line.startswith(":"):  # event separators and SSE comments (keep-alives)
                continue
            assert line.startswith("data: "), f"an SSE line that is not `data: ...`: {line!r}"
            data.append(line[len("data: "):])
    return response, data


def check_raw_stream(data):
    """Checks the SSE framing; returns the decoded chunks (everything before `[DONE]`)."""
    assert data, "empty event stream"
    assert data[-1] == "[DONE]", f"the stream does not end with `data: [DONE]`: {data[-3:]}"
    assert data.count("[DONE]") == 1
    chunks = [json.loads(d) for d in data[:-1]]
    assert chunks, "no chunk before [DONE]"
    for c in chunks:
        assert c["object"] == "chat.completion.chunk", c
        assert "error" not in c, c
    assert len({c["id"] for c in chunks}) == 1
    with_choices = [c for c in chunks if c["choices"]]
    assert with_choices[0]["choices"][0]["delta"].get("role") == "assistant"
    finishing = [i for i, c in enumerate(with_choices) if c["choices"][0].get("finish_reason") is not None]
    assert finishing == [len(with_choices) - 1], finishing
    assert with_choices[-1]["choices"][0]["finish_reason"] in ("stop", "length")
    return chunks


def raw_text(chunks):
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


@pytest.fixture(scope="module")
def greedy(client):
    """The non-streamed temperature-0 answer to MESSAGES, which the streaming tests must reproduce."""
    return chat(client, temperature=0, max_tokens=MAX_TOKENS)


def test_completion_shape(greedy):
    r = greedy
    assert r.object == "chat.completion"
    assert r.id.startswith("chatcmpl-"), r.id
    assert r.model == MODEL
    assert len(r.choices) == 1
    choice = r.choices[0]
    assert choice.index == 0
    assert choice.message.role == "assistant"
    assert isinstance(choice.message.content, str) and choice.message.content.strip()
    assert choice.finish_reason in ("stop", "length")
    u = r.usage
    assert u.prompt_tokens > 0
    assert u.completion_tokens > 0
    assert u.total_tokens == u.prompt_tokens + u.completion_tokens
    assert u.completion_tokens <= MAX_TOKENS
    if choice.finish_reason == "length":
        assert u.completion_tokens == MAX_TOKENS


def test_max_tokens_cuts_with_length(client):
    # The reference (../shared/reference/smollm2/greedy.json, "story_robot") runs this prompt
    # for 48 tokens without an end token, so 5 tokens can only end by the limit.
    r = chat(
        client,
        messages=[{"role": "user", "content": "Write a short story about a robot who learns to paint."}],
        temperature=0,
        max_tokens=5,
    )
    assert r.choices[0].finish_reason == "length"
    assert r.usage.completion_tokens == 5
    assert r.choices[0].message.content


def test_known_answer_capital_of_france(client):
    # Expected values come from ../shared/reference/smollm2/greedy.json, the transformers
    # float32 greedy reference (prompt "capital_france"): 37 prompt tokens after the chat
    # template (with its default system prompt), and 8 generated tokens — the 7 of the text
    # plus the end-of-turn token. Cinder computes in float32 on dequantized weights, so its
    # greedy answer must match exactly.
    r = chat(client, messages=[{"role": "user", "content": "What is the capital of France?"}], temperature=0, max_tokens=24)
    assert r.choices[0].message.content == "The capital of France is Paris."
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.prompt_tokens == 37
    assert r.usage.completion_tokens == 8
    assert r.usage.total_tokens == 45


def test_stream_matches_non_stream(client, greedy):
    chunks = stream_chunks(client, temperature=0, max_tokens=MAX_TOKENS)
    finish_reason = check_chunk_sequence(chunks)
    assert streamed_text(chunks) == greedy.choices[0].message.content
    assert finish_reason == greedy.choices[0].finish_reason
    assert all(c.usage is None for c in chunks), "a chunk carries usage without stream_options.include_usage"
    assert chunks[0].id != greedy.id, "two requests got the same completion id"


def test_stream_include_usage(client, greedy):
    chunks = stream_chunks(client, temperature=0, max_tokens=MAX_TOKENS, stream_options={"include_usage": True})
    check_chunk_sequence(chunks)
    last = chunks[-1]
    assert last.choices == [], "the usage chunk must come last, with no choices"
    assert last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens, last.usage.total_tokens) == (
        greedy.usage.prompt_tokens,
        greedy.usage.completion_tokens,
        greedy.usage.total_tokens,
    )
    assert all(c.usage is None for c in chunks[:-1])
    assert streamed_text(chunks) == greedy.choices[0].message.content


def test_raw_sse_framing(http, greedy):
    payload = {"model": MODEL, "messages": MESSAGES, "temperature": 0, "max_tokens": MAX_TOKENS, "stream": True}
    response, data = raw_stream(http, payload)
    assert response.headers["content-type"].startswith("text/event-stream")
    chunks = check_raw_stream(data)
    assert all(c.get("usage") is None for c in chunks)
    assert raw_text(chunks) == greedy.choices[0].message.content


def test_seed_reproducible(client):
    first = chat(client, **SEEDED)
    second = chat(client, **SEEDED)
    text = first.choices[0].message.content
    assert text, "empty sampled answer"
    assert second.choices[0].message.content == text
    assert second.usage.completion_tokens == first.usage.completion_tokens
    chunks = stream_chunks(client, **SEEDED)
    check_chunk_sequence(chunks)
    assert streamed_text(chunks) == text


def test_concurrent_streams(root_url):
    max_tokens = 12
    prompts = ["Say hello to a friend.", "Describe the sea in one sentence."]
    barrier = threading.Barrier(len(prompts))

    def run(prompt):
        payload = {
            "model": MODEL,
            "messages": [{"role": "user", "content": prompt}],
            "temperature": 0,
            "max_tokens": max_tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        with httpx.Client(base_url=root_url, timeout=300) as http:
            barrier.wait(30)
            return raw_stream(http, payload)[1]

    with ThreadPoolExecutor(len(prompts)) as pool:
        results = list(pool.map(run, prompts))

    ids = set()
    for data in results:
        chunks = check_raw_stream(data)  # each has one finish_reason and ends with [DONE]
        assert raw_text(chunks).strip(), "a concurrent stream produced no text"
        usage = chunks[-1]["usage"]
        assert chunks[-1]["choices"] == []
        assert 0 < usage["completion_tokens"] <= max_tokens
        ids.add(chunks[0]["id"])
    assert len(ids) == len(prompts), "concurrent requests share a completion id"


def test_usage_reports_prompt_tokens_from_the_prefix_cache(client):
    # A prompt no other test sends, asked twice. The engine shares KV blocks of 16 positions
    # once they are full; the first run filled every position of its prompt and of its answer
    # but the last token. The second run reuses those blocks (a partly matching block is
    # copied), except that the last prompt token always runs, for its logits (kv_blocks.rs).
    messages = [{"role": "user", "content": "Cached-prefix check: list two rivers of Europe."}]
    first = chat(client, messages, max_tokens=2, temperature=0)
    second = chat(client, messages, max_tokens=2, temperature=0)
    p, c = first.usage.prompt_tokens, first.usage.completion_tokens
    assert second.usage.prompt_tokens == p
    expected = min(p - 1, 16 * ((p + c - 1) // 16))
    assert first.usage.prompt_tokens_details.cached_tokens < expected
    assert second.usage.prompt_tokens_details.cached_tokens == expected
    # Streamed, the last chunk's usage says the same.
    chunks = stream_chunks(client, messages, max_tokens=2, temperature=0, stream_options={"include_usage": True})
    assert chunks[-1].usage.prompt_tokens_details.cached_tokens == expected
