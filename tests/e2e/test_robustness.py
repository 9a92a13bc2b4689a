"""Hostile requests that once took the whole server down (issue 17) answer a 400 in OpenAI's
envelope, and the server keeps serving. Each runs against the shared server: if one still
crashed it, every later test would fail too, and `server` reports the exit."""

import json

import pytest

MODEL = "smollm2-135m-instruct"
BASE = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


def ref_chain(n):
    defs = {f"d{i}": {"$ref": f"#/$defs/d{i + 1}"} for i in range(n)}
    defs[f"d{n}"] = {"type": "string"}
    return {"$defs": defs, "$ref": "#/$defs/d0"}


def wide(n):
    return {
        "type": "object",
        "properties": {f"p{i}": {"type": "integer"} for i in range(n)},
        "required": [f"p{i}" for i in range(n)],
    }


CYCLE = {"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"}
# Found by tests/all/fuzz_schemas.rs: llguidance recursed without end on this integer range.
LOW_RANGE = {"type": "object", "properties": {"n": {"type": "integer", "minimum": -1e30, "maximum": -1e30}}, "required": ["n"]}
KILLERS = {"1000-hop $ref": ref_chain(1000), "3000-hop $ref": ref_chain(3000), "8000 properties": wide(8000), "$ref cycle": CYCLE,
           "i64::MIN range": LOW_RANGE}


def still_serving(http):
    r = http.post("/v1/chat/completions", json=BASE)
    assert r.status_code == 200, r.text
    assert http.get("/health").json()["status"] == "ok"


@pytest.mark.parametrize("name", list(KILLERS))
def test_killer_schemas_are_a_400_and_the_server_lives(http, name):
    schema = KILLERS[name]
    fmt = {"type": "json_schema", "json_schema": {"name": "k", "schema": schema}}
    r = http.post("/v1/chat/completions", json={**BASE, "response_format": fmt})
    assert r.status_code == 400, r.text[:300]
    err = r.json()["error"]
    assert err["param"] == "response_format" and err["type"] == "invalid_request_error"
    # The same schema as a forced tool's parameters.
    params = schema if schema.get("type") == "object" else {"type": "object", "properties": {"x": {"$ref": "#/$defs/d0" if "d0" in schema["$defs"] else "#/$defs/a"}}, "required": ["x"], "$defs": schema["$defs"]}
    tool = {"type": "function", "function": {"name": "f", "parameters": params}}
    r = http.post("/v1/chat/completions", json={**BASE, "tools": [tool], "tool_choice": "required"})
    assert r.status_code == 400, r.text[:300]
    # The tool is described in the prompt too: a huge one overflows the context first.
    assert r.json()["error"]["param"] in ("tools", "messages"), r.text[:300]
    still_serving(http)


# Safe defaults against web pages (the default config: no keys, loopback origins) ----------------


def test_a_rebound_host_name_is_refused(http):
    # DNS rebinding: the page's own name resolves to 127.0.0.1 and the browser sends it as Host.
    r = http.get("/v1/models", headers={"Host": "rebind.evil.example:8080"})
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "host_not_allowed"
    assert http.get("/v1/models", headers={"Host": "localhost:8080"}).status_code == 200


def test_a_page_from_another_origin_changes_nothing(http):
    made = http.post("/v1/chat/completions", json={**BASE, "store": True}).json()
    evil = {"Origin": "http://evil.example"}
    r = http.delete(f"/v1/chat/completions/{made['id']}", headers=evil)
    assert r.status_code == 403 and r.json()["error"]["code"] == "origin_not_allowed"
    assert "access-control-allow-origin" not in r.headers
    r = http.post("/v1/chat/completions", json=BASE, headers=evil)
    assert r.status_code == 403
    # Reads get no CORS headers, so the page cannot see them.
    r = http.get(f"/v1/chat/completions/{made['id']}", headers=evil)
    assert "access-control-allow-origin" not in r.headers
    # The completion is still there, and a local page may use the API.
    local = {"Origin": "http://localhost:3000"}
    r = http.get(f"/v1/chat/completions/{made['id']}", headers=local)
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "http://localhost:3000"
    assert http.delete(f"/v1/chat/completions/{made['id']}", headers=local).status_code == 200


def test_a_plain_text_body_is_415(http):
    # What a page can send without a preflight.
    r = http.post("/v1/chat/completions", content=json.dumps(BASE), headers={"content-type": "text/plain"})
    assert r.status_code == 415
    assert r.json()["error"]["code"] == "unsupported_media_type"
    r = http.post("/v1/chat/completions", content=json.dumps(BASE).encode())
    assert r.status_code == 415


def test_fan_out_is_bounded_per_request(http):
    # 512 one-token prompts (a 3.2 KB body) once kept both cores busy for minutes.
    body = {"model": MODEL, "prompt": [f"p{i}" for i in range(512)], "max_tokens": 48}
    r = http.post("/v1/completions", json=body)
    assert r.status_code == 400, r.text[:300]
    assert r.json()["error"]["param"] == "prompt"
    r = http.post("/v1/completions", json={"model": MODEL, "prompt": ["a"] * 10, "best_of": 20, "max_tokens": 1})
    assert r.status_code == 400 and r.json()["error"]["param"] == "prompt"
    tools = [{"type": "function", "function": {"name": f"f{i}", "parameters": {"type": "object"}}} for i in range(129)]
    r = http.post("/v1/chat/completions", json={**BASE, "tools": tools})
    assert r.status_code == 400 and r.json()["error"]["param"] == "tools"
    r = http.post("/v1/chat/completions", json={**BASE, "stop": ["x" * 5000]})
    assert r.status_code == 400 and r.json()["error"]["param"] == "stop"
    still_serving(http)
