"""Acceptance test for plugin hot reload under load.

A server of its own serves from a temporary plugin folder holding a copy of the chat plugin.
While client threads keep streaming chat completions, the test lands new builds in the chat
plugin's folder: the first-party plugin with a different build stamp (a custom section, so the
bytes and the content hash differ and the host must compile and swap), the `chat-redact`
example (a different plugin that masks digits: a visible change of behaviour), the first-party
plugin again, a broken build, then the original. Every request must succeed with a complete
stream; requests that start two seconds after a file lands must be served by that build (the
host names it in the `x-cinder-plugin` header) and behave like it: every request forces the
digit "7" with logit_bias, which first-party chat shows and chat-redact masks as "#".
"""

import json
import os
import shutil
import tempfile
import threading
import time

import httpx
import pytest

from conftest import _required_env, start_server

CLIENTS = 3
SWITCH_WITHIN_S = 2.0
MODEL = "smollm2-135m-instruct"
# SmolLM2's token for "7" (shared/reference/smollm2/hf_tokenizer_from_gguf.json).
SEVEN = "39"


def leb128(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def stamped(wasm, stamp):
    """The component with a custom section appended: valid, same behaviour, new bytes."""
    name = b"cinder-test-build"
    payload = leb128(len(name)) + name + stamp.encode()
    return wasm + b"\x00" + leb128(len(payload)) + payload


@pytest.fixture(scope="module")
def swap_server():
    source = os.path.join(_required_env("CINDER_PLUGINS"), "chat")
    root = tempfile.mkdtemp(prefix="cinder-swap-")
    plugins = os.path.join(root, "plugins")
    chat = os.path.join(plugins, "chat")
    os.makedirs(chat)
    for f in ("plugin.toml", "plugin.wasm"):
        shutil.copy(os.path.join(source, f), os.path.join(chat, f))
    srv = start_server(plugins=plugins)
    srv.chat_dir = chat
    srv.staging = os.path.join(root, "staging")
    os.makedirs(srv.staging)
    yield srv
    srv.stop()
    shutil.rmtree(root, ignore_errors=True)


def manifest(text, plugin_id, version):
    out = []
    for line in text.splitlines():
        if line.startswith("version"):
            line = f'version = "{version}"'
        elif line.startswith("id"):
            line = f'id = "{plugin_id}"'
        out.append(line)
    return "\n".join(out) + "\n"


def land(srv, toml_text, wasm):
    """Writes a build next to the plugin folder, then renames it in: what a deploy does."""
    staged_wasm = os.path.join(srv.staging, "plugin.wasm")
    staged_toml = os.path.join(srv.staging, "plugin.toml")
    with open(staged_wasm, "wb") as f:
        f.write(wasm)
    with open(staged_toml, "w") as f:
        f.write(toml_text)
    os.replace(staged_wasm, os.path.join(srv.chat_dir, "plugin.wasm"))
    os.replace(staged_toml, os.path.join(srv.chat_dir, "plugin.toml"))
    return time.monotonic()


def one_stream(http):
    """One streamed chat completion; returns (started, served_by, text, problem or None)."""
    started = time.monotonic()
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Say hello."}],
        "max_tokens": 4,
        "temperature": 0,
        "logit_bias": {SEVEN: 100},
        "stream": True,
    }
    try:
        with http.stream("POST", "/v1/chat/completions", json=body) as r:
            served_by = r.headers.get("x-cinder-plugin")
            if r.status_code != 200:
                return started, served_by, "", f"status {r.status_code}: {r.read()!r}"
            events = [line[len("data: "):] for line in r.iter_lines() if line.startswith("data: ")]
    except httpx.HTTPError as e:
        return started, None, "", f"transport: {e!r}"
    if not events or events[-1] != "[DONE]":
        return started, served_by, "", f"stream did not end with [DONE]: {events[-3:]}"
    chunks = [json.loads(e) for e in events[:-1]]
    if any("error" in c for c in chunks):
        return started, served_by, "", f"error event: {chunks}"
    finishes = [c["choices"][0].get("finish_reason") for c in chunks if c.get("choices")]
    if finishes[-1] not in ("stop", "length"):
        return started, served_by, "", f"no finish_reason: {finishes}"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c.get("choices"))
    return started, served_by, text, None


def test_chat_plugin_swaps_under_streaming_load(swap_server):
    srv = swap_server
    url = f"http://127.0.0.1:{srv.port}"
    original = open(os.path.join(srv.chat_dir, "plugin.wasm"), "rb").read()
    results = []
    stop = threading.Event()

    def client():
        with httpx.Client(base_url=url, timeout=120) as http:
            while not stop.is_set():
                results.append(one_stream(http))

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for t in threads:
        t.start()
    first_party = open(os.path.join(srv.chat_dir, "plugin.toml")).read()
    redact_dir = os.path.join(_required_env("CINDER_EXAMPLES"), "chat-redact")
    redact_wasm = open(os.path.join(redact_dir, "plugin.wasm"), "rb").read()
    redact_toml = open(os.path.join(redact_dir, "plugin.toml")).read()
    landings = []  # (build expected afterwards, landed at)
    try:
        time.sleep(2)
        steps = [
            ("chat@0.1.1", manifest(first_party, "chat", "0.1.1"), stamped(original, "build 1")),
            ("chat-redact@0.2.0", manifest(redact_toml, "chat-redact", "0.2.0"), redact_wasm),
            ("chat@0.1.3", manifest(first_party, "chat", "0.1.3"), stamped(original, "build 3")),
        ]
        for build, toml_text, wasm in steps:
            landings.append((build, land(srv, toml_text, wasm)))
            time.sleep(SWITCH_WITHIN_S + 2)
        # A broken build: refused, the previous one keeps serving.
        broken = manifest(first_party, "chat", "0.1.99")
        landings.append(("chat@0.1.3", land(srv, broken, b"\0asm\x0d\0\x01\0 garbage")))
        time.sleep(SWITCH_WITHIN_S + 2)
        with httpx.Client(base_url=url, timeout=30) as http:
            health = http.get("/health").json()
        assert any(f["path"].endswith("chat") for f in health["plugin_failures"]), health
        landings.append(("chat@0.1.0", land(srv, first_party, original)))
        time.sleep(SWITCH_WITHIN_S + 2)
    finally:
        stop.set()
        for t in threads:
            t.join(120)

    failures = [r for r in results if r[3] is not None]
    assert not failures, f"{len(failures)} of {len(results)} requests failed: {failures[:3]}\n{srv.log()}"
    assert len(results) >= 10, f"too little load to mean anything: {len(results)} requests"
    for started, who, text, _ in results:
        if who.startswith("chat-redact@"):
            assert "#" in text and not any(c.isdigit() for c in text), (who, text)
        else:
            assert "7" in text, (who, text)
    for n, (build, landed) in enumerate(landings):
        until = landings[n + 1][1] if n + 1 < len(landings) else float("inf")
        settled = [who for s, who, _, _ in results if landed + SWITCH_WITHIN_S <= s < until]
        assert settled, f"no request started between {build}'s landing + {SWITCH_WITHIN_S} s and the next"
        wrong = [who for who in settled if who != build]
        assert not wrong, f"after landing {build}, requests were still served by {set(wrong)}"
