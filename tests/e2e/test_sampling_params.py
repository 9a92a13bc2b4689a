"""Parameters the chat plugin already honours beyond the basics: stop, logprobs, logit_bias.

At temperature 0 the float32 reference answers the France question with the token ids
[504 "The", 3575, 282, 4649, 314, 7042 " Paris", 30, 2] (../shared/reference/smollm2/greedy.json).
"""

import openai
import pytest

MODEL = "smollm2-135m-instruct"
FRANCE = [{"role": "user", "content": "What is the capital of France?"}]


def greedy(client, **params):
    params.setdefault("max_tokens", 24)
    return client.chat.completions.create(model=MODEL, messages=FRANCE, temperature=0, **params)


def test_stop_string_is_cut_and_not_emitted(client):
    r = greedy(client, stop=[" Paris", "never"])
    assert r.choices[0].message.content == "The capital of France is"
    assert r.choices[0].finish_reason == "stop"


def test_stop_across_tokens_when_streaming(client):
    # "tal of" spans the tokens " capital", " of": it can only match across a token boundary.
    chunks = list(
        client.chat.completions.create(model=MODEL, messages=FRANCE, temperature=0, max_tokens=24, stop="tal of", stream=True)
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "The capi"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]


def test_logprobs_shape_and_values(client):
    r = greedy(client, max_tokens=3, logprobs=True, top_logprobs=2)
    content = r.choices[0].logprobs.content
    assert [t.token for t in content] == ["The", " capital", " of"]
    for t in content:
        assert t.logprob <= 0
        assert bytes(t.bytes).decode() == t.token
        assert len(t.top_logprobs) == 2
        # Greedy: the sampled token is the most likely one.
        assert t.top_logprobs[0].token == t.token
        assert t.top_logprobs[0].logprob >= t.top_logprobs[1].logprob


def test_logit_bias_bans_a_token(client):
    r = greedy(client, max_tokens=4, logit_bias={"504": -100})
    assert not r.choices[0].message.content.startswith("The")


@pytest.mark.parametrize(
    "param,extra",
    [
        ("temperature", {"temperature": 2.5}),
        ("top_p", {"top_p": 1.5}),
        ("presence_penalty", {"presence_penalty": -3}),
        ("frequency_penalty", {"frequency_penalty": 2.1}),
        ("top_logprobs", {"logprobs": True, "top_logprobs": 21}),
        ("stop", {"stop": ["a", "b", "c", "d", "e"]}),
        ("logit_bias", {"logit_bias": {"5": 101}}),
    ],
)
def test_out_of_range_parameters_get_a_400_naming_them(client, param, extra):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(
            model="smollm2-135m-instruct",
            messages=[{"role": "user", "content": "hi"}],
            max_tokens=1,
            **extra,
        )
    assert e.value.status_code == 400
    assert e.value.body["param"] == param


@pytest.mark.parametrize("stop", ["", [""], ["", "never"]], ids=["string", "list", "with-another"])
def test_an_empty_stop_string_stops_nothing_on_every_path(client, stop):
    # An empty stop string would match before every token: every path ignores it alike
    # (chat and legacy completions, whole and streamed), the same answer as no stop at all.
    want_chat = greedy(client, max_tokens=8).choices[0].message.content
    assert greedy(client, max_tokens=8, stop=stop).choices[0].message.content == want_chat
    chunks = client.chat.completions.create(model=MODEL, messages=FRANCE, temperature=0, max_tokens=8, stop=stop, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == want_chat

    legacy = dict(model=MODEL, prompt="The capital of France is", temperature=0, max_tokens=8)
    want_text = client.completions.create(**legacy).choices[0].text
    assert client.completions.create(**legacy, stop=stop).choices[0].text == want_text
    chunks = client.completions.create(**legacy, stop=stop, stream=True)
    assert "".join(c.choices[0].text for c in chunks if c.choices) == want_text
