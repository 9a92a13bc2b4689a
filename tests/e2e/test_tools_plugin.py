"""The tools plugin is a component of its own: chat calls it through the host, and swapping it
changes tool calling without touching chat.

A server of its own serves a temporary plugin folder holding copies of the first-party chat
and tools plugins. The test lands, in the tools plugin's folder only: a restamped build with a
new version (the next tool requests name it in `x-cinder-uses` while `x-cinder-plugin` still
names the same chat build), then the `tools-terse` example (a visible change: it describes the
tools in fewer prompt tokens, and its calls still validate), then removes the folder (tool
requests get an honest 503; plain chat goes on), then restores the original.
"""

import json
import os
import shutil
import tempfile
import time

import httpx
import jsonschema
import pytest

from conftest import _required_env, start_server
from test_hot_swap import manifest, stamped

MODEL = "smollm2-135m-instruct"
# A new build is live for requests that start this long after it lands (see test_hot_swap).
SWITCH_WITHIN_S = 2.0
PARAMS = {
    "type": "object",
    "properties": {"city": {"type": "string", "maxLength": 20}, "unit": {"enum": ["c", "f"]}},
    "required": ["city", "unit"],
    "additionalProperties": False,
}
TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city", "parameters": PARAMS}}]


@pytest.fixture(scope="module")
def tools_server():
    built = _required_env("CINDER_PLUGINS")
    root = tempfile.mkdtemp(prefix="cinder-tools-")
    plugins = os.path.join(root, "plugins")
    for name in ("chat", "tools"):
        shutil.copytree(os.path.join(built, name), os.path.join(plugins, name))
    srv = start_server(plugins=plugins)
    srv.tools_dir = os.path.join(plugins, "tools")
    srv.staging = os.path.join(root, "staging")
    os.makedirs(srv.staging)
    yield srv
    srv.stop()
    shutil.rmtree(root, ignore_errors=True)


def land(srv, toml_text, wasm):
    """Writes a build next to the tools folder, then renames it in: what a deploy does."""
    os.makedirs(srv.tools_dir, exist_ok=True)
    for name, data, mode in (("plugin.wasm", wasm, "wb"), ("plugin.toml", toml_text, "w")):
        staged = os.path.join(srv.staging, name)
        with open(staged, mode) as f:
            f.write(data)
        os.replace(staged, os.path.join(srv.tools_dir, name))
    time.sleep(SWITCH_WITHIN_S)


def named_call(http):
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "What is the weather in Oslo?"}],
        "tools": TOOLS,
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "temperature": 0,
        "max_tokens": 60,
    }
    return http.post("/v1/chat/completions", json=body)


def check_call(r):
    assert r.status_code == 200, r.text
    choice = r.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    call = choice["message"]["tool_calls"][0]
    assert call["function"]["name"] == "get_weather" and call["id"].startswith("call_")
    jsonschema.validate(json.loads(call["function"]["arguments"]), PARAMS)
    return r.json()["usage"]["prompt_tokens"]


def plain(http):
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 3}
    return http.post("/v1/chat/completions", json=body)


def test_tools_plugin_swaps_without_touching_chat(tools_server):
    srv = tools_server
    toml_path = os.path.join(srv.tools_dir, "plugin.toml")
    original_toml = open(toml_path).read()
    original = open(os.path.join(srv.tools_dir, "plugin.wasm"), "rb").read()
    with httpx.Client(base_url=srv.url, timeout=300) as http:
        health = http.get("/health").json()
        tools = next(p for p in health["plugins"] if p["id"] == "tools")
        assert tools["world"] == "tools-plugin" and tools["routes"] == []

        r = named_call(http)
        tokens = check_call(r)
        assert r.headers["x-cinder-plugin"] == "chat@0.1.0"
        assert r.headers["x-cinder-uses"] == "tools@0.1.0"
        # Chat without tools does not reach the tools plugin.
        r = plain(http)
        assert r.status_code == 200 and "x-cinder-uses" not in r.headers

        # A new build of tools: chat is the same build, the tools build is the new one.
        land(srv, manifest(original_toml, "tools", "0.1.1"), stamped(original, "tools build 1"))
        r = named_call(http)
        assert check_call(r) == tokens
        assert r.headers["x-cinder-plugin"] == "chat@0.1.0"
        assert r.headers["x-cinder-uses"] == "tools@0.1.1"

        # A different tools plugin: shorter tool descriptions, calls still valid.
        terse = os.path.join(_required_env("CINDER_EXAMPLES"), "tools-terse")
        land(srv, open(os.path.join(terse, "plugin.toml")).read(),
             open(os.path.join(terse, "plugin.wasm"), "rb").read())
        r = named_call(http)
        assert check_call(r) < tokens
        assert r.headers["x-cinder-plugin"] == "chat@0.1.0"
        assert r.headers["x-cinder-uses"] == "tools-terse@0.1.0"

        # No tools plugin: tool calls are unavailable, said plainly; chat goes on.
        shutil.rmtree(srv.tools_dir)
        time.sleep(SWITCH_WITHIN_S)
        r = named_call(http)
        assert r.status_code == 503, r.text
        assert "tools plugin" in r.json()["error"]["message"]
        assert plain(http).status_code == 200

        land(srv, original_toml, original)
        r = named_call(http)
        check_call(r)
        assert r.headers["x-cinder-uses"] == "tools@0.1.0"
