"""Single-stream speed of a running Cinder (or any OpenAI-compatible server).

Streams the same chat request several times at temperature 0 and reports medians of time to
first token (TTFT) and decode speed (tokens after the first, per second). Uses the official
`openai` SDK and the server's own usage counts.

    python examples/bench_single_stream.py --base-url http://127.0.0.1:8080/v1 --runs 5
"""

import argparse
import statistics
import time

from openai import OpenAI


def one_run(client, model, max_tokens):
    start = time.perf_counter()
    first = None
    usage = None
    stream = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Write a short story about a robot who learns to paint."}],
        temperature=0,
        max_tokens=max_tokens,
        stream=True,
        stream_options={"include_usage": True},
    )
    for chunk in stream:
        if first is None and chunk.choices and chunk.choices[0].delta.content:
            first = time.perf_counter()
        if chunk.usage is not None:
            usage = chunk.usage
    end = time.perf_counter()
    decoded = usage.completion_tokens - 1
    return first - start, decoded / (end - first), usage


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--base-url", default="http://127.0.0.1:8080/v1")
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--max-tokens", type=int, default=128)
    a = p.parse_args()
    client = OpenAI(base_url=a.base_url, api_key="bench", max_retries=0)
    one_run(client, a.model, 8)  # warm-up
    results = [one_run(client, a.model, a.max_tokens) for _ in range(a.runs)]
    ttft = statistics.median(r[0] for r in results)
    tps = statistics.median(r[1] for r in results)
    u = results[0][2]
    print(f"prompt {u.prompt_tokens} tokens, {u.completion_tokens} generated; {a.runs} runs")
    print(f"TTFT median {ttft * 1000:.1f} ms; decode median {tps:.1f} tokens/s")


if __name__ == "__main__":
    main()
