"""Seconds per image from the default image model, served: starts `cinder` with
cinder.example.toml (the committed cinder-emoji model), then times `images.generate` five
times per size and quality through the official SDK.

    python xtask/bench/image_latency.py   (after `cargo xtask plugins` and a release build;
    CARGO_TARGET_DIR picks the build, default ~/.cache/cinder/target)
"""

import os
import re
import statistics
import subprocess
import time

import openai

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
T = os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/cinder/target"))

server = subprocess.Popen(
    [f"{T}/release/cinder", "--config", f"{ROOT}/cinder.example.toml", "--plugins", f"{T}/cinder-plugins",
     "--port", "0"],
    stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
try:
    for line in server.stdout:
        m = re.search(rb"listening on http://\S+?:(\d+)", line)
        if m:
            port = int(m.group(1))
            break
    c = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", timeout=600)
    c.images.generate(prompt="warm up", size="32x32", quality="low")
    for size in ("256x256", "1024x1024"):
        for quality in ("high", "low"):
            times = []
            for i in range(5):
                t = time.perf_counter()
                c.images.generate(prompt="grinning face", size=size, quality=quality, extra_body={"seed": i})
                times.append(time.perf_counter() - t)
            print(f"{size} {quality}: median {statistics.median(times):.3f} s, min {min(times):.3f} s")
finally:
    server.terminate()
