"""The load `cargo xtask bench` drives against one or more running OpenAI-compatible servers.

For each concurrency level, N client threads each stream R chat completions (temperature 0,
end-of-generation tokens banned with logit_bias so every request decodes `max_tokens`), each
with its own prompt so no server can answer from a cache. Per request: time to first token
(first content delta) and decode speed (tokens after the first, per second); per level:
aggregate tokens/s (completion tokens / wall time) and errors. A prefill figure: a ~512-token
prompt, one generated token, prompt tokens / latency. Resident memory from /proc.

With several servers the levels alternate between them (A at 1, B at 1, A at 4, ...), so a
change in the machine's load hits both alike. Prints a table and writes JSON.

    python xtask/bench/drive.py --server cinder=http://127.0.0.1:8080,PID \
        [--server llama-server=http://127.0.0.1:8081,PID] --streams 1,4,16 --json out.json
"""

import argparse
import json
import statistics
import threading
import time

import httpx

# SmolLM2's end-of-generation ids (llama.cpp's EOG set for this vocabulary); `--eog` sets
# another model's (`cinder models inspect FILE` lists them as "stops at").
EOG_IDS = [0, 2, 4]
TOPICS = [
    "a lighthouse keeper", "a robot who paints", "a river in winter", "two chess players",
    "a city under the sea", "a lost kite", "the first day of school", "an old clockmaker",
    "a desert caravan", "a talking cat", "a mountain rescue", "a library at night",
    "a bakery at dawn", "a comet", "a garden on Mars", "a violin maker", "a snowstorm",
    "a ship in a bottle", "a forgotten island", "a street musician",
]


def percentile(xs, q):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = min(len(xs) - 1, max(0, round(q * (len(xs) - 1))))
    return xs[k]


def rss_mib(pid, field):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def stream_one(http, model, prompt, max_tokens):
    """One streamed completion: (ttft s, decode tok/s, completion tokens, error or None)."""
    body = {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "temperature": 0,
        "max_tokens": max_tokens,
        "stream": True,
        "stream_options": {"include_usage": True},
        "logit_bias": {str(t): -100 for t in EOG_IDS},
    }
    start = time.perf_counter()
    first = None
    tokens = None
    try:
        with http.stream("POST", "/v1/chat/completions", json=body) as r:
            if r.status_code != 200:
                return None, None, 0, f"status {r.status_code}"
            for line in r.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                if "error" in chunk:
                    return None, None, 0, f"error event: {chunk['error']}"
                choices = chunk.get("choices") or []
                if first is None and choices and (choices[0].get("delta") or {}).get("content"):
                    first = time.perf_counter()
                if chunk.get("usage"):
                    tokens = chunk["usage"]["completion_tokens"]
    except httpx.HTTPError as e:
        return None, None, 0, f"transport: {e!r}"
    end = time.perf_counter()
    if first is None or tokens is None:
        return None, None, 0, "no content or no usage"
    decode = (tokens - 1) / (end - first) if end > first and tokens > 1 else float("nan")
    return first - start, decode, tokens, None


def run_level(url, model, streams, per_stream, max_tokens, salt):
    results = []
    lock = threading.Lock()

    def client(i):
        for k in range(per_stream):
            topic = TOPICS[(i * per_stream + k) % len(TOPICS)]
            prompt = f"[{salt}-{i}-{k}] Write a long story about {topic}."
            # A connection per request: llama-server closes idle keep-alive connections,
            # and a request on a closed one would count as an error that is the client's.
            with httpx.Client(base_url=url, timeout=600) as http:
                r = stream_one(http, model, prompt, max_tokens)
            with lock:
                results.append(r)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(streams)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    ok = [r for r in results if r[3] is None]
    ttft = [r[0] for r in ok]
    decode = [r[1] for r in ok if r[1] == r[1]]
    return {
        "streams": streams,
        "requests": len(results),
        "errors": len(results) - len(ok),
        "error_samples": [r[3] for r in results if r[3] is not None][:3],
        "ttft_p50_s": percentile(ttft, 0.5),
        "ttft_p95_s": percentile(ttft, 0.95),
        "decode_per_stream_tok_s": statistics.median(decode) if decode else float("nan"),
        "aggregate_tok_s": sum(r[2] for r in ok) / wall,
        "wall_s": wall,
    }


def prefill(url, model, runs, salt):
    """Prompt tokens per second on a prompt of about 500 tokens (one token generated): what
    fits one of llama-server's slots (`-c 8192 -np 16` gives each 512)."""
    words = " ".join(TOPICS * 6 + TOPICS[:6])
    rates = []
    for k in range(runs):
        with httpx.Client(base_url=url, timeout=600) as http:
            body = {
                "model": model,
                "messages": [{"role": "user", "content": f"[{salt}-{k}] Summarize: {words}"}],
                "temperature": 0,
                "max_tokens": 1,
            }
            start = time.perf_counter()
            r = http.post("/v1/chat/completions", json=body)
            took = time.perf_counter() - start
        if r.status_code == 200:
            rates.append((r.json()["usage"]["prompt_tokens"], took))
    if not rates:
        return {"prompt_tokens": 0, "prefill_tok_s": float("nan")}
    n = statistics.median(t for t, _ in rates)
    return {"prompt_tokens": n, "prefill_tok_s": statistics.median(t / s for t, s in rates)}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--server", action="append", required=True, help="name=URL,PID")
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--streams", default="1,4,16")
    p.add_argument("--per-stream", type=int, default=3)
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--prefill-runs", type=int, default=3)
    p.add_argument("--json")
    p.add_argument("--eog", help="comma-separated end-of-generation ids to ban")
    a = p.parse_args()
    if a.eog:
        EOG_IDS[:] = [int(t) for t in a.eog.split(",")]
    servers = []
    for spec in a.server:
        name, rest = spec.split("=", 1)
        url, pid = rest.rsplit(",", 1)
        servers.append({"name": name, "url": url, "pid": int(pid), "levels": []})
    levels = [int(s) for s in a.streams.split(",")]

    for s in servers:  # warm-up: weights paged in, kernels compiled, pools started
        stream_one(httpx.Client(base_url=s["url"], timeout=600), a.model, "Hello", 8)
    for n in levels:
        for s in servers:
            s["levels"].append(run_level(s["url"], a.model, n, a.per_stream, a.max_tokens, s["name"]))
    for s in servers:
        s["prefill"] = prefill(s["url"], a.model, a.prefill_runs, s["name"])
        s["rss_mib"] = rss_mib(s["pid"], "VmRSS")
        s["peak_rss_mib"] = rss_mib(s["pid"], "VmHWM")

    print(f"max_tokens {a.max_tokens}, {a.per_stream} requests per stream, medians unless noted")
    print(f"{'server':14} {'streams':>7} {'TTFT p50':>9} {'TTFT p95':>9} {'tok/s/stream':>12} "
          f"{'aggregate':>10} {'errors':>6}")
    for n_i, n in enumerate(levels):
        for s in servers:
            l = s["levels"][n_i]
            print(f"{s['name']:14} {n:7d} {l['ttft_p50_s']:8.3f}s {l['ttft_p95_s']:8.3f}s "
                  f"{l['decode_per_stream_tok_s']:12.1f} {l['aggregate_tok_s']:10.1f} {l['errors']:6d}")
    for s in servers:
        pf = s["prefill"]
        print(f"{s['name']:14} prefill {pf['prefill_tok_s']:.0f} tok/s ({pf['prompt_tokens']:.0f}-token prompt); "
              f"RSS {s['rss_mib']:.0f} MiB (peak {s['peak_rss_mib']:.0f} MiB)")
    if len(servers) == 2:
        a_, b_ = servers
        for n_i, n in enumerate(levels):
            la, lb = a_["levels"][n_i], b_["levels"][n_i]
            print(f"ratio {a_['name']}/{b_['name']} at {n:2d} streams: aggregate "
                  f"{la['aggregate_tok_s'] / lb['aggregate_tok_s']:.2f}x, TTFT p50 "
                  f"{la['ttft_p50_s'] / lb['ttft_p50_s']:.2f}x")
        print(f"ratio prefill {a_['prefill']['prefill_tok_s'] / b_['prefill']['prefill_tok_s']:.2f}x, "
              f"RSS {a_['rss_mib'] / b_['rss_mib']:.2f}x")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"max_tokens": a.max_tokens, "per_stream": a.per_stream, "servers": servers}, f, indent=2)


if __name__ == "__main__":
    main()
