"""Legacy `POST /v1/completions` with the official SDK's `client.completions` against the real
model: prompt forms, n, echo, legacy logprobs, best_of, stop, streaming, and the refusals."""

import openai
import pytest

MODEL = "smollm2-135m-instruct"
PROMPT = "The capital of France is"
# The same prompt as SmolLM2 token ids ("The", " capital", " of", " France", " is"; see
# ../shared/reference/smollm2/greedy.json).
PROMPT_IDS = [504, 3575, 282, 4649, 314]


def greedy(client, **kw):
    kw.setdefault("prompt", PROMPT)
    kw.setdefault("max_tokens", 8)
    return client.completions.create(model=MODEL, temperature=0, **kw)


def test_a_text_prompt_completes(client):
    r = greedy(client)
    assert r.object == "text_completion"
    assert r.id.startswith("cmpl-")
    assert r.system_fingerprint
    c = r.choices[0]
    assert c.index == 0 and c.text and c.finish_reason in ("stop", "length")
    assert r.usage.prompt_tokens == len(PROMPT_IDS)
    assert 0 < r.usage.completion_tokens <= 8


def test_token_ids_and_text_give_the_same_greedy_text(client):
    assert greedy(client, prompt=PROMPT_IDS).choices[0].text == greedy(client).choices[0].text


def test_several_prompts_with_n_and_echo(client):
    r = greedy(client, prompt=[PROMPT, "One, two,"], n=2, echo=True, max_tokens=3)
    assert [c.index for c in r.choices] == [0, 1, 2, 3]
    assert r.choices[0].text.startswith(PROMPT) and r.choices[1].text == r.choices[0].text
    assert r.choices[2].text.startswith("One, two,")
    # Each prompt is counted once, whatever n is.
    assert len(PROMPT_IDS) < r.usage.prompt_tokens < 2 * len(PROMPT_IDS) + 4


def test_legacy_logprobs_shape(client):
    r = greedy(client, logprobs=3, max_tokens=5)
    lp = r.choices[0].logprobs
    n = len(lp.tokens)
    assert n > 0
    assert len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset) == n
    assert "".join(lp.tokens) == r.choices[0].text
    assert lp.text_offset == sorted(lp.text_offset) and lp.text_offset[0] == 0
    for token, logprob, top in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs):
        assert logprob <= 0
        assert 1 <= len(top) <= 3
        # Greedy: the sampled token is the most likely one.
        assert abs(max(top.values()) - logprob) < 1e-4


def test_best_of_returns_n_of_more_candidates(client):
    r = client.completions.create(
        model=MODEL, prompt=PROMPT, max_tokens=4, temperature=1.0, seed=3, best_of=3, n=1
    )
    assert len(r.choices) == 1
    # Every candidate's tokens count, as OpenAI bills them: three candidates, one token each
    # at the very least.
    assert r.usage.completion_tokens >= 3


def test_stop_strings_cut_the_text(client):
    full = greedy(client, max_tokens=12).choices[0].text
    word = full.split()[1] if len(full.split()) > 1 else full.split()[0]
    r = greedy(client, max_tokens=12, stop=[word])
    assert word not in r.choices[0].text
    assert full.startswith(r.choices[0].text)
    assert r.choices[0].finish_reason == "stop"


def test_streaming_matches_the_whole_response(client):
    whole = greedy(client).choices[0].text
    chunks = list(greedy(client, stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == whole
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["length"] or finishes == ["stop"]


@pytest.mark.parametrize(
    "param,extra",
    [
        ("suffix", {"suffix": " and that is all."}),
        ("best_of", {"best_of": 2, "stream": True}),
        ("logprobs", {"logprobs": 6}),
        ("prompt", {"prompt": ""}),
    ],
)
def test_refusals_name_the_param(client, param, extra):
    kw = {"prompt": PROMPT, "max_tokens": 2}
    kw.update(extra)
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model=MODEL, **kw)
    assert e.value.body["param"] == param


def test_echo_logprobs_score_the_prompt_like_generation_does(client):
    """lm-eval style scoring: `echo` + `logprobs` + `max_tokens: 0` returns the prompt's token
    logprobs; scoring prompt + greedy answer reproduces the logprobs generation reported."""
    # Two tokens (" Paris", "."): text that tokenizes back to the same tokens, which longer
    # output need not ("\n", "\n" generated, "\n\n" when re-tokenized).
    gen = greedy(client, max_tokens=2, logprobs=1)
    answer = gen.choices[0].text
    scored = greedy(client, prompt=PROMPT + answer, echo=True, logprobs=1, max_tokens=0)
    c = scored.choices[0]
    assert c.text == PROMPT + answer
    assert c.finish_reason == "length"
    assert scored.usage.completion_tokens == 0
    lp = c.logprobs
    assert lp.token_logprobs[0] is None and lp.top_logprobs[0] is None
    assert "".join(lp.tokens) == PROMPT + answer
    assert lp.text_offset[0] == 0 and lp.text_offset == sorted(lp.text_offset)
    # The answer's tokens, scored in context, have the logprobs generation gave them.
    n = len(gen.choices[0].logprobs.tokens)
    assert lp.tokens[-n:] == gen.choices[0].logprobs.tokens
    for a, b in zip(lp.token_logprobs[-n:], gen.choices[0].logprobs.token_logprobs):
        assert abs(a - b) < 2e-3, (a, b)


@pytest.mark.parametrize("prompt", ["hello " * 9000, [PROMPT_IDS[0]] * 9000], ids=["text", "token-ids"])
def test_an_overlong_legacy_prompt_names_prompt(client, prompt):
    # The core says the prompt passes the context; only the plugin knows it came from
    # `prompt` here (and from `messages` in chat).
    with pytest.raises(openai.BadRequestError) as e:
        greedy(client, prompt=prompt, max_tokens=1)
    assert e.value.body["param"] == "prompt"
    assert e.value.body["code"] == "context_length_exceeded"
    assert "maximum context length" in e.value.body["message"]


def test_an_overlong_chat_prompt_names_messages(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hello " * 9000}], max_tokens=1)
    assert e.value.body["param"] == "messages"
    assert e.value.body["code"] == "context_length_exceeded"
