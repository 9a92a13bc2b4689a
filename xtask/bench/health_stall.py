"""How long `/health` waits while two clients send 3.9 MB chat prompts (issue 17, point 5):
tokenizing them is host work done for the chat plugin. Usage, against a running server:

    python xtask/bench/health_stall.py http://127.0.0.1:8080
"""

import httpx, threading, time, sys
url = sys.argv[1]
text = ("lorem ipsum dolor sit amet " * 150000)[:3_900_000]
body = {"model": "smollm2-135m-instruct", "messages": [{"role": "user", "content": text}], "max_tokens": 1}
def big():
    r = httpx.post(url + "/v1/chat/completions", json=body, timeout=300)
    print("big", r.status_code, r.json().get("error", {}).get("code"), flush=True)
ts = [threading.Thread(target=big) for _ in range(2)]
for t in ts: t.start()
time.sleep(0.3)
worst = 0
while any(t.is_alive() for t in ts):
    s = time.monotonic(); httpx.get(url + "/health", timeout=60); worst = max(worst, time.monotonic() - s); time.sleep(0.05)
print("worst /health latency during two 3.9 MB prompts: %.3f s" % worst)
