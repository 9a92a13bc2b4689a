"""Drives the vector stores of a running Cinder (`cargo xtask bench --vector-stores`):
ingestion of one generated text file of about `--mb` MB into a store (chunks per second: the
chunk count read from the server's own database, which is fresh for the bench), then search
latency through the SDK with the store at that size, and the server's peak RSS while each
runs."""

import argparse
import io
import json
import random
import sqlite3
import os
import statistics
import sys
import time

import openai

sys.path.insert(0, os.path.dirname(__file__))
from files import Peak  # noqa: E402 (the server's peak RSS while a phase runs)

WORDS = ("river stone lamp orbit copper violin harbor meadow glacier engine lantern pepper "
         "thunder velvet compass falcon orchard marble canyon ribbon saddle beacon quartz "
         "walnut tundra monsoon cobalt ember prism harvest signal anchor mosaic summit").split()


def document(mb, rng):
    """Sentences of random words, about `mb` megabytes."""
    out, size = [], 0
    while size < mb * 1_000_000:
        s = " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 16))).capitalize() + ". "
        out.append(s)
        size += len(s)
    return "".join(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--db", required=True, help="the server's SQLite file (fresh for the bench)")
    ap.add_argument("--mb", type=float, default=2.0)
    ap.add_argument("--queries", type=int, default=50)
    ap.add_argument("--json", required=True)
    a = ap.parse_args()
    client = openai.OpenAI(base_url=a.url + "/v1", api_key="bench", max_retries=0, timeout=3600)
    rng = random.Random(7)
    text = document(a.mb, rng)
    f = client.files.create(file=("bench.txt", io.BytesIO(text.encode())), purpose="assistants")
    with Peak(a.pid) as ingest_peak:
        started = time.perf_counter()
        vs = client.vector_stores.create(name="bench", file_ids=[f.id])
        while True:
            vs = client.vector_stores.retrieve(vs.id)
            if vs.status != "in_progress":
                break
            time.sleep(0.2)
        ingest_s = time.perf_counter() - started
    assert vs.file_counts.completed == 1, vs
    chunks = sqlite3.connect(a.db).execute("SELECT COUNT(*) FROM vectors").fetchone()[0]
    latencies = []
    with Peak(a.pid) as search_peak:
        for _ in range(a.queries):
            q = " ".join(rng.choice(WORDS) for _ in range(8))
            t = time.perf_counter()
            page = client.vector_stores.search(vs.id, query=q, max_num_results=10)
            latencies.append((time.perf_counter() - t) * 1000)
            assert len(page.data) == 10
    latencies.sort()
    result = {
        "bytes": len(text),
        "chunks": chunks,
        "ingest_s": round(ingest_s, 2),
        "chunks_per_s": round(chunks / ingest_s, 1),
        "mb_per_s": round(len(text) / 1e6 / ingest_s, 3),
        "ingest_peak_rss_mib": round(ingest_peak.peak),
        "search_ms_p50": round(statistics.median(latencies), 1),
        "search_ms_p95": round(latencies[int(len(latencies) * 0.95) - 1], 1),
        "search_peak_rss_mib": round(search_peak.peak),
    }
    print(json.dumps(result, indent=2))
    with open(a.json, "w") as out:
        json.dump(result, out, indent=2)


if __name__ == "__main__":
    main()
