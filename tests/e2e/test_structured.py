"""Structured output with `response_format`: JSON that is valid by construction, even from a
135M model (grammar-constrained decoding in the core). The issue's tools half is not built yet."""

import json

import jsonschema
import openai
import pydantic
import pytest

MODEL = "smollm2-135m-instruct"

SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 24},
        "population_millions": {"type": "integer", "minimum": 0, "maximum": 40},
        "kind": {"enum": ["capital", "town"]},
        "landmarks": {
            "type": "array",
            "items": {"type": "object", "properties": {"name": {"type": "string", "maxLength": 24}},
                      "required": ["name"], "additionalProperties": False},
            "maxItems": 2,
        },
    },
    "required": ["city", "population_millions", "kind", "landmarks"],
    "additionalProperties": False,
}
FORMAT = {"type": "json_schema", "json_schema": {"name": "city", "schema": SCHEMA, "strict": True}}
ASK = [{"role": "user", "content": "Describe Paris as JSON."}]


def test_json_object_is_an_object(client):
    r = client.chat.completions.create(
        model=MODEL, messages=ASK, temperature=0, max_tokens=200, response_format={"type": "json_object"}
    )
    if r.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(r.choices[0].message.content), dict)
    else:
        # Cut by max_tokens: still a prefix of an object.
        assert r.choices[0].message.content.lstrip().startswith("{")


def test_json_schema_output_validates(client):
    r = client.chat.completions.create(model=MODEL, messages=ASK, temperature=0, max_tokens=300, response_format=FORMAT)
    assert r.choices[0].finish_reason == "stop", r.choices[0].message.content
    jsonschema.validate(json.loads(r.choices[0].message.content), SCHEMA)


def test_json_schema_also_when_sampling_and_streaming(client):
    chunks = list(client.chat.completions.create(
        model=MODEL, messages=ASK, temperature=1.0, seed=7, max_tokens=300, response_format=FORMAT, stream=True
    ))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    jsonschema.validate(json.loads(text), SCHEMA)


class Landmark(pydantic.BaseModel):
    name: str = pydantic.Field(max_length=24)


class City(pydantic.BaseModel):
    city: str = pydantic.Field(max_length=24)
    population_millions: int = pydantic.Field(ge=0, le=40)
    landmarks: list[Landmark] = pydantic.Field(max_length=2)


def test_the_sdk_parse_helper_gets_a_pydantic_object(client):
    r = client.chat.completions.parse(model=MODEL, messages=ASK, temperature=0, max_tokens=300, response_format=City)
    city = r.choices[0].message.parsed
    assert isinstance(city, City)
    assert len(city.city) <= 24


def test_an_unsupported_schema_is_a_400_naming_response_format(client):
    bad = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": 5}}}
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=MODEL, messages=ASK, max_tokens=5, response_format=bad)
    assert e.value.body["param"] == "response_format"
