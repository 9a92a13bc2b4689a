"""The Responses API's `file_search` tool through the official SDK, over a vector store made
and ingested by `client.vector_stores` on the real default embedder: the search is the
response's first output item (`file_search_call`, its results when `include` asks, the file
that answers the question ranked first), the answer cites that file (`file_citation`), the
stream says the search's phases and the citation, a background response searches too, the
output given back as input continues the conversation, and bad or foreign stores are
OpenAI's errors naming the parameter."""

import time

import openai
import pytest

from conftest import own_server
from test_vector_stores import store  # noqa: F401 (the module's vector store fixture)

CHAT = "smollm2-135m-instruct"
QUESTION = "How long should bread dough rise?"


def tool(store_id, **extra):
    return [{"type": "file_search", "vector_store_ids": [store_id], **extra}]


def test_a_response_searches_ranks_and_cites_the_file_that_answers(client, store):  # noqa: F811
    r = client.responses.create(model=CHAT, input=QUESTION, tools=tool(store.id), temperature=0,
                                max_output_tokens=32, include=["file_search_call.results"])
    assert r.status in ("completed", "incomplete"), r
    search, message = r.output[0], r.output[1]
    assert search.type == "file_search_call" and search.status == "completed"
    assert search.queries == [QUESTION]
    assert search.results[0].filename == "bread.md", [(x.filename, x.score) for x in search.results]
    assert "rise" in search.results[0].text and search.results[0].score > search.results[-1].score
    assert message.type == "message"
    notes = message.content[0].annotations
    assert notes and notes[0].type == "file_citation"
    assert notes[0].file_id == search.results[0].file_id and notes[0].filename == "bread.md"
    assert notes[0].index == len(message.content[0].text)
    # Stored as answered; without `include` the results stay out.
    assert client.responses.retrieve(r.id) == r
    plain = client.responses.create(model=CHAT, input=QUESTION, tools=tool(store.id), temperature=0,
                                    max_output_tokens=16)
    assert plain.output[0].type == "file_search_call" and plain.output[0].results is None
    # tool_choice none: no search at all.
    none = client.responses.create(model=CHAT, input=QUESTION, tools=tool(store.id), tool_choice="none",
                                   max_output_tokens=16)
    assert [o.type for o in none.output] == ["message"]


def test_a_streamed_search_says_its_phases_and_the_citation(client, store):  # noqa: F811
    with client.responses.stream(model=CHAT, input=QUESTION, tools=tool(store.id, max_num_results=2),
                                 temperature=0, max_output_tokens=16) as stream:
        events = list(stream)
    types = [e.type for e in events]
    # The last event carries the response (`completed`, or `incomplete` at the token limit;
    # the SDK's get_final_response wants `completed` only).
    final = events[-1].response
    searched = ["response.output_item.added", "response.file_search_call.in_progress",
                "response.file_search_call.searching", "response.file_search_call.completed",
                "response.output_item.done"]
    assert types[2:7] == searched, types
    assert "response.output_text.annotation.added" in types
    assert types.index("response.output_text.annotation.added") < types.index("response.output_text.done")
    assert types[-1] in ("response.completed", "response.incomplete")
    assert final.output[0].type == "file_search_call"
    assert final.output[1].content[0].annotations[0].filename == "bread.md"


def test_a_background_response_searches_and_its_output_continues(client, store):  # noqa: F811
    r = client.responses.create(model=CHAT, input=QUESTION, tools=tool(store.id), background=True,
                                max_output_tokens=16, temperature=0)
    deadline = time.time() + 60
    while r.status in ("queued", "in_progress") and time.time() < deadline:
        time.sleep(0.1)
        r = client.responses.retrieve(r.id)
    assert r.status in ("completed", "incomplete"), r
    assert r.output[0].type == "file_search_call"
    # The output given back as input (the SDK's items as dicts), then a new question.
    history = [{"role": "user", "content": QUESTION}] + [o.model_dump(exclude_none=True) for o in r.output]
    again = client.responses.create(model=CHAT, input=history + [{"role": "user", "content": "And the oven?"}],
                                    tools=tool(store.id), max_output_tokens=16,
                                    include=["file_search_call.results"])
    assert again.output[0].queries == ["And the oven?"]
    chained = client.responses.create(model=CHAT, previous_response_id=r.id, input="Thanks.",
                                      max_output_tokens=16)
    assert chained.output[-1].type == "message"


@pytest.mark.parametrize("tools, param", [
    ([{"type": "file_search"}], "tools[0].vector_store_ids"),
    ([{"type": "file_search", "vector_store_ids": []}], "tools[0].vector_store_ids"),
    ([{"type": "file_search", "vector_store_ids": ["vs_x"], "max_num_results": 0}], "tools[0].max_num_results"),
    ([{"type": "file_search", "vector_store_ids": ["vs_x"], "filters": {"type": "near"}}], "tools[0].filters"),
    ([{"type": "file_search", "vector_store_ids": ["vs_x"], "ranking_options": {"score_threshold": -1}}],
     "tools[0].ranking_options.score_threshold"),
    ([{"type": "web_search"}], "tools[0].type"),
])
def test_bad_file_search_tools_are_refused_by_name(client, tools, param):
    with pytest.raises(openai.BadRequestError) as e:
        client.responses.create(model=CHAT, input="hi", tools=tools)
    assert e.value.body["param"] == param


def test_unknown_and_foreign_stores_are_not_found():
    keys = 'api_keys = ["sk-alice", "sk-bob"]'
    with own_server("cinder-resp-fs-tenants-", {"api_keys = []": keys}) as srv:
        alice = openai.OpenAI(base_url=f"{srv.url}/v1", api_key="sk-alice", max_retries=0)
        bob = openai.OpenAI(base_url=f"{srv.url}/v1", api_key="sk-bob", max_retries=0)
        vs = alice.vector_stores.create(name="alice's")
        for c, store_id in [(bob, vs.id), (alice, "vs_doesnotexist0000000000000")]:
            for extra in ({}, {"stream": True}, {"background": True}):
                with pytest.raises(openai.NotFoundError):
                    c.responses.create(model=CHAT, input="hi", tools=tool(store_id), **extra)
        # Alice's own (empty) store is searched: the call is said, with nothing found.
        r = alice.responses.create(model=CHAT, input="hi", tools=tool(vs.id), max_output_tokens=16,
                                   include=["file_search_call.results"])
        assert r.output[0].type == "file_search_call" and r.output[0].results == []
