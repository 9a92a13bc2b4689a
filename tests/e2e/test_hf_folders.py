"""A Hugging Face model folder as a `[[models]] path`, served through the official SDK like a
GGUF: the tiny Qwen 2 and Gemma 3 folders of tests/fixtures/hf (random weights: what they say
is noise, but its shape, tokens and limits are real), beside the default model."""

import os

import openai
import pytest

from conftest import own_server

HF = os.path.join(os.path.dirname(__file__), "..", "fixtures", "hf")
ANCHOR = "# More chat models run beside the first"


def folders_config():
    blocks = "".join(
        f'[[models]]\nid = "{name}"\npath = "{os.path.abspath(os.path.join(HF, name))}"\nbackend = "cpu"\nthreads = 1\n\n'
        for name in ("qwen2", "gemma3-F16")
    )
    return {ANCHOR: blocks + ANCHOR}


def test_folders_serve_chat_and_streams_through_the_sdk():
    with own_server("cinder-hf-", folders_config()) as srv:
        c = openai.OpenAI(base_url=f"{srv.url}/v1", api_key="x", max_retries=0)
        ids = {m.id for m in c.models.list().data}
        assert {"qwen2", "gemma3-F16", "smollm2-135m-instruct"} <= ids
        for model in ("qwen2", "gemma3-F16"):
            r = c.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hello world"}],
                                          max_tokens=5, temperature=0)
            assert r.model == model and r.choices[0].finish_reason in ("length", "stop")
            assert r.usage.completion_tokens <= 5 and r.usage.prompt_tokens > 3
            chunks = list(c.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hi"}],
                                                    max_tokens=4, temperature=0, stream=True))
            assert chunks[-1].choices[0].finish_reason in ("length", "stop")
        # The tiny Qwen 2's context (config.json's max_position_embeddings) is 128 tokens.
        with pytest.raises(openai.BadRequestError) as e:
            c.chat.completions.create(model="qwen2", messages=[{"role": "user", "content": "the cat " * 200}],
                                      max_tokens=5)
        assert e.value.body["code"] == "context_length_exceeded", e.value.body
