"""`/v1/models`, `/health`, and how bad requests are answered: always OpenAI's error envelope
with the right status, never a 500. No test here should make the model generate anything."""

import openai
import pytest

MODEL = "smollm2-135m-instruct"
CHAT = "/v1/chat/completions"
HELLO = [{"role": "user", "content": "Hello"}]


def error_of(response, status):
    """Asserts `response` is an error with `status` in OpenAI's envelope; returns the inner error.

    Works with httpx responses and with the `response` of an SDK exception."""
    assert response.status_code == status, f"expected {status}, got {response.status_code}: {response.text}"
    assert response.headers.get("content-type", "").startswith("application/json"), response.headers
    body = response.json()
    assert isinstance(body, dict) and set(body) == {"error"}, body
    error = body["error"]
    missing = {"message", "type", "param", "code"} - set(error)
    assert not missing, f"the error lacks {missing}: {body}"
    assert isinstance(error["message"], str) and error["message"], body
    assert isinstance(error["type"], str) and error["type"], body
    assert error["param"] is None or isinstance(error["param"], str), body
    assert error["code"] is None or isinstance(error["code"], str), body
    return error


# ---- /v1/models -------------------------------------------------------------------------


def test_models_list(client, http):
    models = {m.id: m for m in client.models.list().data}
    assert MODEL in models, f"{MODEL} missing from {sorted(models)}"
    m = models[MODEL]
    assert m.object == "model"
    assert isinstance(m.owned_by, str)
    # Check the wire types too: the SDK does not validate them.
    raw = http.get("/v1/models")
    assert raw.status_code == 200
    body = raw.json()
    assert body["object"] == "list"
    entry = next(e for e in body["data"] if e["id"] == MODEL)
    assert entry["object"] == "model"
    assert isinstance(entry["owned_by"], str)
    assert type(entry["created"]) is int and entry["created"] > 0


def test_models_retrieve(client):
    m = client.models.retrieve(MODEL)
    assert m.id == MODEL
    assert m.object == "model"
    assert isinstance(m.owned_by, str)
    assert isinstance(m.created, int)


def test_models_retrieve_unknown(client, http):
    with pytest.raises(openai.NotFoundError) as exc:
        client.models.retrieve("no-such-model")
    assert exc.value.status_code == 404
    error = error_of(http.get("/v1/models/no-such-model"), 404)
    assert error["code"] == "model_not_found"


# ---- parameter ranges --------------------------------------------------------------------


@pytest.mark.parametrize(
    "param, value",
    [("temperature", 3), ("top_p", 0), ("top_p", 1.5)],
    ids=["temperature=3", "top_p=0", "top_p=1.5"],
)
def test_out_of_range_sampling_parameter(client, param, value):
    # max_tokens=1 keeps a server that wrongly accepts the value from generating for long.
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=1, **{param: value})
    assert exc.value.status_code == 400
    error = error_of(exc.value.response, 400)
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param, error


# ---- malformed requests ------------------------------------------------------------------

# (id, JSON body or raw bytes, expected `param`, or ANY_PARAM when it is not pinned down)
ANY_PARAM = object()
BAD_BODIES = [
    ("malformed_json", b'{"model": ', ANY_PARAM),
    ("missing_messages", {"model": MODEL}, "messages"),
    ("messages_not_a_list", {"model": MODEL, "messages": "Hello"}, ANY_PARAM),
    ("empty_messages", {"model": MODEL, "messages": []}, ANY_PARAM),
    ("unknown_role", {"model": MODEL, "messages": [{"role": "wizard", "content": "Hello"}]}, ANY_PARAM),
]


def post_chat(http, body):
    if isinstance(body, bytes):
        return http.post(CHAT, content=body, headers={"content-type": "application/json"})
    return http.post(CHAT, json=body)


@pytest.mark.parametrize("body, param", [b[1:] for b in BAD_BODIES], ids=[b[0] for b in BAD_BODIES])
def test_bad_request_body(http, body, param):
    error = error_of(post_chat(http, body), 400)
    assert error["type"] == "invalid_request_error"
    if param is not ANY_PARAM:
        assert error["param"] == param, error


def test_chat_unknown_model(client, http):
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="no-such-model", messages=HELLO, max_tokens=1)
    error = error_of(post_chat(http, {"model": "no-such-model", "messages": HELLO, "max_tokens": 1}), 404)
    assert error["code"] == "model_not_found"


# ---- routes ------------------------------------------------------------------------------


def test_unknown_route(http):
    error_of(http.get("/v1/nope"), 404)


def test_health(http):
    response = http.get("/health")
    assert response.status_code == 200, response.text
