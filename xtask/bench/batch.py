"""Drives the Batch API of a running Cinder (`cargo xtask bench --batch`):

1. an embeddings batch of `--count` requests (one short text each), timed from `batches.create`
   to `completed` (upload apart), next to the same requests sent live by as many concurrent
   clients as the server runs batch requests at once (`jobs.dispatch_concurrency`, 4);
2. a live chat request's time to first token (streaming, 16 tokens) when the server is idle,
   and while a chat batch (64 requests of 48 tokens) runs, then while an embeddings batch (400
   requests of 32 texts) runs.
"""

import argparse
import concurrent.futures
import json
import statistics
import time

import openai

EMBED = "all-minilm-l6-v2"
CHAT = "smollm2-135m-instruct"
WORDS = ("river stone lantern copper meadow harbor violet thunder orchard signal canyon ember "
         "glacier pocket willow saddle beacon marble falcon quartz").split()


def text(i):
    return " ".join(WORDS[(i * k) % len(WORDS)] for k in range(1, 9)) + f" #{i}"


def jsonl(lines):
    return ("\n".join(json.dumps(l) for l in lines) + "\n").encode()


def wait(client, batch_id, timeout=3600):
    deadline = time.time() + timeout
    while True:
        b = client.batches.retrieve(batch_id)
        if b.status in ("completed", "failed", "cancelled", "expired"):
            return b
        if time.time() > deadline:
            raise SystemExit(f"batch still {b.status} after {timeout} s")
        time.sleep(0.1)


def embeddings(client, n, workers):
    lines = [{"custom_id": f"e{i}", "method": "POST", "url": "/v1/embeddings",
              "body": {"model": EMBED, "input": text(i)}} for i in range(n)]
    f = client.files.create(file=("emb.jsonl", jsonl(lines)), purpose="batch")
    start = time.perf_counter()
    b = client.batches.create(input_file_id=f.id, endpoint="/v1/embeddings", completion_window="24h")
    b = wait(client, b.id)
    batch_s = time.perf_counter() - start
    assert b.status == "completed" and b.request_counts.completed == n, b

    def one(i):
        client.embeddings.create(model=EMBED, input=text(i))

    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        list(pool.map(one, range(n)))
    live_s = time.perf_counter() - start
    return {"requests": n, "batch_s": round(batch_s, 2), "batch_req_per_s": round(n / batch_s, 1),
            "live_clients": workers, "live_s": round(live_s, 2), "live_req_per_s": round(n / live_s, 1)}


def ttft(client):
    start = time.perf_counter()
    stream = client.chat.completions.create(model=CHAT, messages=[{"role": "user", "content": "Name a colour."}],
                                            max_tokens=16, temperature=0, stream=True)
    first = None
    for chunk in stream:
        if first is None and chunk.choices and chunk.choices[0].delta.content:
            first = time.perf_counter() - start
    return first


def spaced_ttft(client, samples):
    """TTFT samples 0.2 s apart: a request after a pause finds colder caches and sleeping
    threads, which back-to-back samples do not (about 1.3 ms on a 7 ms TTFT), so idle and
    busy samples are taken alike."""
    out = []
    for _ in range(samples):
        out.append(ttft(client))
        time.sleep(0.2)
    return out


def ttft_under_batch(client, samples, endpoint, lines):
    idle = spaced_ttft(client, samples)
    f = client.files.create(file=("work.jsonl", jsonl(lines)), purpose="batch")
    b = client.batches.create(input_file_id=f.id, endpoint=endpoint, completion_window="24h")
    while client.batches.retrieve(b.id).status != "in_progress":
        time.sleep(0.05)
    time.sleep(1.0)
    busy = spaced_ttft(client, samples)
    running = client.batches.retrieve(b.id)
    client.batches.cancel(b.id)
    wait(client, b.id)
    ms = lambda xs, q: round(sorted(xs)[min(len(xs) - 1, int(q * len(xs)))] * 1000, 1)
    return {"samples": samples, "idle_ttft_ms_p50": ms(idle, 0.5), "during_batch_ttft_ms_p50": ms(busy, 0.5),
            "idle_ttft_ms_p90": ms(idle, 0.9), "during_batch_ttft_ms_p90": ms(busy, 0.9),
            "batch_status_while_measuring": running.status,
            "batch_completed_while_measuring": running.request_counts.completed}


def chat_lines():
    return [{"custom_id": f"c{i}", "method": "POST", "url": "/v1/chat/completions",
             "body": {"model": CHAT, "messages": [{"role": "user", "content": f"Write a story about {text(i)}"}],
                      "max_tokens": 48}} for i in range(64)]


def embedding_lines():
    return [{"custom_id": f"e{i}", "method": "POST", "url": "/v1/embeddings",
             "body": {"model": EMBED, "input": [text(i * 32 + k) for k in range(32)]}} for i in range(400)]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--count", type=int, default=1000)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--samples", type=int, default=20)
    p.add_argument("--json")
    a = p.parse_args()
    client = openai.OpenAI(base_url=f"{a.url}/v1", api_key="x", max_retries=0, timeout=600)
    ttft(client)  # warm up
    out = {"embeddings": embeddings(client, a.count, a.workers),
           "chat_ttft_chat_batch": ttft_under_batch(client, a.samples, "/v1/chat/completions", chat_lines()),
           "chat_ttft_embeddings_batch": ttft_under_batch(client, a.samples, "/v1/embeddings", embedding_lines())}
    print(json.dumps(out, indent=2))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
