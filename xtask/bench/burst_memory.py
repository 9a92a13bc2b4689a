"""Resident memory before, during and after a burst (issue 17, point 2): 16 concurrent chat
requests with n=4 and ~430-token prompts, then the server idle. Usage, against a running
server whose process id you pass:

    python xtask/bench/burst_memory.py http://127.0.0.1:8080 <pid> [max_tokens]
"""

import sys
import threading
import time

import httpx

url, pid = sys.argv[1], int(sys.argv[2])
max_tokens = int(sys.argv[3]) if len(sys.argv) > 3 else 32
MODEL = "smollm2-135m-instruct"
STORY = "Tell me about the history of the world. " * 40


def rss():
    with open(f"/proc/{pid}/status") as f:
        return next(int(l.split()[1]) // 1024 for l in f if l.startswith("VmRSS"))


def one(i):
    body = {"model": MODEL, "messages": [{"role": "user", "content": f"{i} {STORY}"}], "n": 4,
            "max_tokens": max_tokens, "logit_bias": {"2": -100}}
    httpx.post(url + "/v1/chat/completions", json=body, timeout=600)


httpx.post(url + "/v1/chat/completions", json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}, timeout=60)
time.sleep(1)
print("idle after one small request: %d MiB" % rss())
threads = [threading.Thread(target=one, args=(i,)) for i in range(16)]
started, peak = time.time(), 0
for t in threads:
    t.start()
while any(t.is_alive() for t in threads):
    peak = max(peak, rss())
    time.sleep(0.2)
print("burst: %.1f s, peak %d MiB" % (time.time() - started, peak))
for wait in (0.5, 2, 5):
    time.sleep(wait)
    print("idle %.1f s later: %d MiB" % (wait, rss()))
