"""Drives the Files API of a running Cinder (`cargo xtask bench --files`): upload and download of
one large file (MB/s, and the server's resident memory while each runs: both stream, so it must
not grow with the file), then list latency with many files stored."""

import argparse
import concurrent.futures
import json
import os
import statistics
import tempfile
import threading
import time

import openai


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class Peak:
    """The server's peak RSS while a phase runs, sampled every 20 ms."""

    def __init__(self, pid):
        self.pid, self.peak, self.stop = pid, 0.0, threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        while not self.stop.is_set():
            self.peak = max(self.peak, rss_mib(self.pid))
            time.sleep(0.02)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--size-mb", type=int, default=200)
    ap.add_argument("--files", type=int, default=10_000)
    ap.add_argument("--json")
    a = ap.parse_args()
    c = openai.OpenAI(base_url=f"{a.url}/v1", api_key="x", max_retries=0, timeout=600)
    out = {"size_mb": a.size_mb, "files": a.files}
    out["rss_idle_mib"] = round(rss_mib(a.pid), 1)

    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "big.bin")
        block = os.urandom(1 << 20)
        with open(src, "wb") as f:
            for _ in range(a.size_mb):
                f.write(block)
        size = os.path.getsize(src)
        with Peak(a.pid) as peak, open(src, "rb") as f:
            t = time.perf_counter()
            made = c.files.create(file=("big.bin", f), purpose="user_data")
            up = time.perf_counter() - t
        assert made.bytes == size, made
        out["upload_mb_s"] = round(size / up / 1e6, 1)
        out["rss_peak_upload_mib"] = round(peak.peak, 1)
        dst = os.path.join(tmp, "back.bin")
        with Peak(a.pid) as peak:
            t = time.perf_counter()
            with c.files.with_streaming_response.content(made.id) as r, open(dst, "wb") as f:
                for chunk in r.iter_bytes(1 << 20):
                    f.write(chunk)
            down = time.perf_counter() - t
        assert os.path.getsize(dst) == size
        out["download_mb_s"] = round(size / down / 1e6, 1)
        out["rss_peak_download_mib"] = round(peak.peak, 1)
        c.files.delete(made.id)

    # Many small files, made eight at a time.
    def make(i):
        return c.files.create(file=(f"f{i}.txt", b"x" * 10), purpose="user_data").id

    t = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(make, range(a.files)))
    out["create_per_s"] = round(a.files / (time.perf_counter() - t), 1)

    def timed(n, **kw):
        times = []
        for _ in range(n):
            t = time.perf_counter()
            page = c.files.list(**kw)
            times.append(time.perf_counter() - t)
        return round(statistics.median(times) * 1000, 1), len(page.data)

    out["list_100_ms"], _ = timed(20, limit=100)
    out["list_100_after_ms"], _ = timed(20, limit=100, after=ids[len(ids) // 2])
    out["list_100_purpose_ms"], _ = timed(20, limit=100, purpose="user_data")
    out["list_all_ms"], got = timed(3, limit=10_000)
    out["list_all_count"] = got
    out["rss_end_mib"] = round(rss_mib(a.pid), 1)
    for k, v in out.items():
        print(f"{k:24} {v}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
