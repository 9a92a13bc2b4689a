"""Live chat time to first token beside a running batch, A/B: each variant (a `cinder` binary,
optionally with one edit of the example config) gets a fresh server and storage folder, in
turn, `--rounds` times; per run, `batch.ttft_under_batch` beside an embeddings batch (2,000
requests of 32 texts) and a chat batch (400 requests of 48 tokens): larger than
`cargo xtask bench --batch`'s, which a fast machine finishes before the samples are taken.
`--spin` instead measures what busy loops alone cost a live request (no batch).

    python3 xtask/bench/ttft_ab.py --variant $T/release/cinder \\
        --variant "$T/release/cinder|idle_class = true=>idle_class = false" --rounds 2
    python3 xtask/bench/ttft_ab.py --spin --variant $T/release/cinder

Environment: CINDER_MODELS (the models folder), CINDER_PLUGINS (compiled plugins).
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import openai

sys.path.insert(0, os.path.dirname(__file__))
import batch  # noqa: E402

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")


def embedding_lines():
    return [{"custom_id": f"e{i}", "method": "POST", "url": "/v1/embeddings",
             "body": {"model": batch.EMBED, "input": [batch.text(i * 32 + k) for k in range(32)]}}
            for i in range(2000)]


def chat_lines():
    return [{"custom_id": f"c{i}", "method": "POST", "url": "/v1/chat/completions",
             "body": {"model": batch.CHAT, "max_tokens": 48,
                      "messages": [{"role": "user", "content": f"Write a story about {batch.text(i)}"}]}}
            for i in range(400)]


def start(variant, port):
    binary, _, edit = variant.partition("|")
    root = tempfile.mkdtemp(prefix="cinder-ttft-")
    text = open(os.path.join(ROOT, "cinder.example.toml")).read()
    if edit:
        old, new = edit.split("=>")
        assert old in text, old
        text = text.replace(old, new)
    text = re.sub(r"^dir = .*$", f'dir = "{root}/documents"', text, count=1, flags=re.M)
    config = os.path.join(root, "cinder.toml")
    open(config, "w").write(text)
    proc = subprocess.Popen([binary, "--config", config, "--plugins", os.environ["CINDER_PLUGINS"],
                             "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0, timeout=600)
    for _ in range(600):
        try:
            client.models.list()
            break
        except Exception:
            time.sleep(0.2)
    batch.ttft(client)  # warm up
    return proc, root, client


def spin(client, samples=40):
    ms = lambda xs, q: round(sorted(xs)[min(len(xs) - 1, int(q * len(xs)))] * 1000, 1)
    out = {}
    for kind, prefix in [("none", None), ("sched_idle", ["chrt", "-i", "0"]), ("nice19", ["nice", "-n", "19"])]:
        loops = [subprocess.Popen(prefix + ["sh", "-c", "while :; do :; done"]) for _ in range(2)] if prefix else []
        time.sleep(0.5)
        xs = []
        for _ in range(samples):
            xs.append(batch.ttft(client))
            time.sleep(0.2)
        for p in loops:
            p.kill()
        out[kind] = {"p50_ms": ms(xs, 0.5), "p90_ms": ms(xs, 0.9)}
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--variant", action="append", required=True,
                   help="BINARY or 'BINARY|OLD=>NEW' (one edit of cinder.example.toml)")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--spin", action="store_true")
    a = p.parse_args()
    port = 18700
    for _ in range(1 if a.spin else a.rounds):
        for v in a.variant:
            proc, root, client = start(v, port)
            port += 1
            try:
                if a.spin:
                    r = {"variant": v, "busy_loops": spin(client)}
                else:
                    r = {"variant": v,
                         "embeddings_batch": batch.ttft_under_batch(client, 40, "/v1/embeddings", embedding_lines()),
                         "chat_batch": batch.ttft_under_batch(client, 30, "/v1/chat/completions", chat_lines())}
                print(json.dumps(r), flush=True)
            finally:
                proc.terminate()
                proc.wait()
                shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
