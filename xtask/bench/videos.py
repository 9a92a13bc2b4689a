"""Video jobs on the default image model, served: seconds of compute per second of video at
each size (the model's keyframes and the plugin's frames and encoding apart, from the
plugin's per-second log lines), the MP4 put together, the server's peak RSS, and live chat
time to first token idle and while a video job runs.

    python xtask/bench/videos.py [--sizes 32x32,64x64,...] [--seconds 4] [--samples 30]
    (after `cargo xtask plugins` and a release build; CARGO_TARGET_DIR picks the build,
    default ~/.cache/cinder/target)

Prints one JSON object.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import openai

sys.path.insert(0, os.path.dirname(__file__))
import batch  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
T = os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/cinder/target"))
SECOND = re.compile(r"video (\S+) second \d+/\d+: keyframes ([\d.]+) s, frames and encoding ([\d.]+) s")
MUXED = re.compile(r"video (\S+): MP4 \((\d+) bytes\) and spritesheet in ([\d.]+) s")


class Server:
    def __init__(self):
        self.root = tempfile.mkdtemp(prefix="cinder-video-bench-")
        text = open(os.path.join(ROOT, "cinder.example.toml")).read()
        text = re.sub(r"^dir = .*$", f'dir = "{self.root}/documents"', text, count=1, flags=re.M)
        text = text.replace('path = "models/', f'path = "{ROOT}/models/')
        config = os.path.join(self.root, "cinder.toml")
        open(config, "w").write(text)
        self.proc = subprocess.Popen(
            [f"{T}/release/cinder", "--config", config, "--plugins", f"{T}/cinder-plugins", "--port", "0"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines = []
        port = None
        for line in self.proc.stdout:
            self.lines.append(line)
            m = re.search(r"listening on http://\S+?:(\d+)", line)
            if m:
                port = int(m.group(1))
                break
        # Keep reading: a full pipe would stall the server's logging.
        threading.Thread(target=self._drain, daemon=True).start()
        self.client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0, timeout=600)

    def _drain(self):
        for line in self.proc.stdout:
            self.lines.append(line)

    def peak_rss_mib(self):
        for line in open(f"/proc/{self.proc.pid}/status"):
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)

    def stop(self):
        self.proc.terminate()
        self.proc.wait()
        shutil.rmtree(self.root, ignore_errors=True)


def make(c, size, seconds, seed=1):
    t = time.perf_counter()
    v = c.videos.create(prompt="a rocket", size=size, seconds=str(seconds), extra_body={"seed": seed})
    while True:
        v = c.videos.retrieve(v.id)
        if v.status in ("completed", "failed"):
            break
        time.sleep(0.05)
    assert v.status == "completed", v.error
    return v.id, time.perf_counter() - t


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--sizes", default="32x32,64x64,128x128,256x256,512x512")
    p.add_argument("--seconds", type=int, default=4)
    p.add_argument("--samples", type=int, default=30)
    a = p.parse_args()
    srv = Server()
    out = {"cpu": open("/proc/cpuinfo").read().split("model name")[1].split("\n")[0].strip(": ")}
    try:
        c = srv.client
        make(c, "32x32", 4)  # warm-up: the model's first run and the plugin's first instance
        out["rss_mib_after_warm_up"] = srv.peak_rss_mib()
        rows = []
        for size in a.sizes.split(","):
            vid, wall = make(c, size, a.seconds)
            time.sleep(0.2)
            steps = [m for m in map(SECOND.search, srv.lines) if m and m.group(1) == vid]
            muxed = next(m for m in map(MUXED.search, srv.lines) if m and m.group(1) == vid)
            model = sum(float(m.group(2)) for m in steps)
            encode = sum(float(m.group(3)) for m in steps)
            rows.append({"size": size, "seconds": a.seconds, "wall_s": round(wall, 2),
                         "compute_s_per_video_s": round(wall / a.seconds, 3),
                         "model_s_per_video_s": round(model / a.seconds, 3),
                         "frames_and_encoding_s_per_video_s": round(encode / a.seconds, 3),
                         "mux_s": float(muxed.group(3)), "mp4_bytes": int(muxed.group(2))})
            print(json.dumps(rows[-1]), file=sys.stderr)
        out["sizes"] = rows
        out["peak_rss_mib"] = srv.peak_rss_mib()
        # Live chat beside a video job: 12 s of 256x256, another queued when it ends.
        idle = batch.spaced_ttft(c, a.samples)
        running = {"stop": False, "videos": 0}

        def videos():
            while not running["stop"]:
                make(c, "256x256", 12, seed=running["videos"])
                running["videos"] += 1

        worker = threading.Thread(target=videos, daemon=True)
        worker.start()
        time.sleep(2.0)
        busy = batch.spaced_ttft(c, a.samples)
        running["stop"] = True
        worker.join()
        ms = lambda xs, q: round(sorted(xs)[min(len(xs) - 1, int(q * len(xs)))] * 1000, 1)
        out["ttft"] = {"samples": a.samples, "idle_ms_p50": ms(idle, 0.5), "idle_ms_p90": ms(idle, 0.9),
                       "during_video_ms_p50": ms(busy, 0.5), "during_video_ms_p90": ms(busy, 0.9),
                       "videos_made_while_measuring": running["videos"] + 1}
        out["peak_rss_mib_end"] = srv.peak_rss_mib()
    finally:
        srv.stop()
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
