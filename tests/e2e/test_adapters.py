"""LoRA adapters from the config (`[[adapters]]`, a PEFT folder) served as models of their own
through the official SDK: listed and retrievable, chat and streaming on the base model's
engine with the adapter's deltas (answers differ from the base's), the base still itself, an
adapter that does not load left out while the rest serve."""

import os

import openai

from conftest import own_server

FIXTURES = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "fixtures"))
ANCHOR = "# More chat models run beside the first"


def adapters_config(adapter_path):
    block = (
        f'[[models]]\nid = "tiny-llama3"\npath = "{FIXTURES}/hf/llama3"\nbackend = "cpu"\nthreads = 1\n\n'
    )
    tail = (
        f'\n[[adapters]]\nid = "tiny-llama3-lora"\nbase = "tiny-llama3"\npath = "{adapter_path}"\n'
        f'\n[[adapters]]\nid = "missing-lora"\nbase = "tiny-llama3"\npath = "{FIXTURES}/lora/no-such-folder"\n'
    )
    return {ANCHOR: block + ANCHOR, 'aliases = ["text-embedding-3-small", "text-embedding-ada-002"]':
            'aliases = ["text-embedding-3-small", "text-embedding-ada-002"]' + tail}


def greedy(c, model, text, stream=False):
    args = dict(model=model, messages=[{"role": "user", "content": text}], max_tokens=8, temperature=0)
    if stream:
        return "".join(ch.choices[0].delta.content or "" for ch in c.chat.completions.create(stream=True, **args)
                       if ch.choices)
    r = c.chat.completions.create(**args)
    assert r.model == model
    return r.choices[0].message.content


def test_a_peft_adapter_serves_as_its_own_model():
    with own_server("cinder-adapters-", adapters_config(f"{FIXTURES}/lora/peft-adapter")) as srv:
        c = openai.OpenAI(base_url=f"{srv.url}/v1", api_key="x", max_retries=0)
        ids = [m.id for m in c.models.list().data]
        assert "tiny-llama3-lora" in ids and "tiny-llama3" in ids
        assert "missing-lora" not in ids, "an adapter that did not load is left out"
        m = c.models.retrieve("tiny-llama3-lora")
        assert (m.id, m.object) == ("tiny-llama3-lora", "model")
        prompts = ["Hello world", "the cat sat", "one two three"]
        base = [greedy(c, "tiny-llama3", p) for p in prompts]
        adapted = [greedy(c, "tiny-llama3-lora", p) for p in prompts]
        assert base != adapted, "the adapter changes what the model says"
        # Deterministic, streamed or not, and the base model unchanged beside it.
        assert adapted == [greedy(c, "tiny-llama3-lora", p, stream=True) for p in prompts]
        assert base == [greedy(c, "tiny-llama3", p) for p in prompts]
        with_logprobs = c.completions.create(model="tiny-llama3-lora", prompt="Hello", max_tokens=2,
                                             temperature=0)
        assert with_logprobs.model == "tiny-llama3-lora"
