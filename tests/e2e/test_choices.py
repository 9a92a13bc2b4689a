"""`n` > 1: independent choices with their own indices, non-streamed and streamed."""

MODEL = "smollm2-135m-instruct"
STORY = [{"role": "user", "content": "Write a short story about a robot who learns to paint."}]


def test_n_choices_non_streamed(client):
    r = client.chat.completions.create(model=MODEL, messages=STORY, n=3, temperature=1.0, seed=7, max_tokens=8)
    assert [c.index for c in r.choices] == [0, 1, 2]
    texts = [c.message.content for c in r.choices]
    assert all(texts)
    # Choice i is seeded with seed + i: different choices, reproducible as a whole.
    assert len(set(texts)) > 1
    again = client.chat.completions.create(model=MODEL, messages=STORY, n=3, temperature=1.0, seed=7, max_tokens=8)
    assert [c.message.content for c in again.choices] == texts
    # The prompt is counted once; completions add up.
    single = client.chat.completions.create(model=MODEL, messages=STORY, max_tokens=1)
    assert r.usage.prompt_tokens == single.usage.prompt_tokens
    assert r.usage.completion_tokens == 3 * 8


def test_n_choices_streamed_equal_non_streamed(client):
    params = dict(model=MODEL, messages=STORY, n=2, temperature=0.8, seed=11, max_tokens=8)
    whole = client.chat.completions.create(**params)
    chunks = list(client.chat.completions.create(stream=True, stream_options={"include_usage": True}, **params))
    texts = {0: "", 1: ""}
    finishes = {}
    for c in chunks:
        for choice in c.choices:
            texts[choice.index] += choice.delta.content or ""
            if choice.finish_reason:
                finishes[choice.index] = choice.finish_reason
    assert texts == {c.index: c.message.content for c in whole.choices}
    assert finishes == {c.index: c.finish_reason for c in whole.choices}
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


def test_n_out_of_range_is_400(client):
    import openai
    import pytest

    for n in (0, 129):
        with pytest.raises(openai.BadRequestError) as e:
            client.chat.completions.create(model=MODEL, messages=STORY, n=n, max_tokens=2)
        assert e.value.body["param"] == "n"
