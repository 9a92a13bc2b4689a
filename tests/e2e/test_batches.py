"""The Batch API through the official SDK: a batch file uploaded with `files.create`, run in the
background through the same plugins as live requests (chat and embeddings), its output and
error files in OpenAI's JSONL shapes; refused files and requests; cancel; tenants; and a
server killed with -9 in the middle of a batch, which finishes after the restart with every
request in its output exactly once."""

import json
import os
import shutil
import signal
import tempfile
import time

import openai
import pytest

from conftest import own_server, start_server, write_config

CHAT = "smollm2-135m-instruct"
EMBED = "all-minilm-l6-v2"


def _line(custom_id, url, body):
    return json.dumps({"custom_id": custom_id, "method": "POST", "url": url, "body": body})


def _upload(client, lines):
    return client.files.create(file=("batch.jsonl", ("\n".join(lines) + "\n").encode()), purpose="batch")


def _wait(client, batch_id, until=("completed", "failed", "cancelled", "expired"), timeout=240):
    deadline = time.time() + timeout
    while True:
        batch = client.batches.retrieve(batch_id)
        if batch.status in until:
            return batch
        assert time.time() < deadline, f"batch still {batch.status}: {batch}"
        time.sleep(0.2)


def _jsonl(client, file_id):
    return [json.loads(line) for line in client.files.content(file_id).text.splitlines()]


def test_a_chat_batch_runs_every_request_and_splits_outputs_from_errors(client):
    lines = [_line(f"q{i}", "/v1/chat/completions",
                   {"model": CHAT, "messages": [{"role": "user", "content": f"Say {i}"}], "max_tokens": 4})
             for i in range(4)]
    lines.append(_line("unknown-model", "/v1/chat/completions",
                       {"model": "no-such-model", "messages": [{"role": "user", "content": "x"}]}))
    lines.append(_line("bad-param", "/v1/chat/completions",
                       {"model": CHAT, "messages": [{"role": "user", "content": "x"}], "temperature": 9}))
    batch = client.batches.create(input_file_id=_upload(client, lines).id, endpoint="/v1/chat/completions",
                                  completion_window="24h", metadata={"job": "nightly"})
    assert batch.object == "batch" and batch.id.startswith("batch_")
    assert batch.status == "validating" and batch.metadata == {"job": "nightly"}
    assert batch.expires_at - batch.created_at == 86400
    done = _wait(client, batch.id)
    assert done.status == "completed", done
    assert (done.request_counts.total, done.request_counts.completed, done.request_counts.failed) == (6, 4, 2)
    assert done.in_progress_at and done.finalizing_at and done.completed_at
    assert done.usage.input_tokens > 0 and done.usage.output_tokens > 0
    out = _jsonl(client, done.output_file_id)
    assert [o["custom_id"] for o in out] == ["q0", "q1", "q2", "q3"]
    for o in out:
        assert o["error"] is None and o["id"].startswith("batch_req_")
        assert o["response"]["status_code"] == 200
        body = o["response"]["body"]
        assert body["object"] == "chat.completion" and body["model"] == CHAT
        assert body["usage"]["completion_tokens"] <= 4
    errors = {e["custom_id"]: e for e in _jsonl(client, done.error_file_id)}
    assert errors["unknown-model"]["response"]["status_code"] == 404
    assert errors["bad-param"]["response"]["status_code"] == 400
    assert errors["bad-param"]["response"]["body"]["error"]["param"] == "temperature"
    # The output files are files of the caller's, listed and retrievable.
    meta = client.files.retrieve(done.output_file_id)
    assert meta.purpose == "batch_output" and meta.filename == f"{batch.id}_output.jsonl"
    assert done.output_file_id in [f.id for f in client.files.list(purpose="batch_output").data]
    assert batch.id in [b.id for b in client.batches.list(limit=100).data]


def test_an_embeddings_batch_matches_the_same_requests_sent_live(client):
    texts = ["the cat sat", "a dog barked", "rain on the roof", "quantum tunnelling"]
    lines = [_line(f"e{i}", "/v1/embeddings", {"model": EMBED, "input": t}) for i, t in enumerate(texts)]
    batch = client.batches.create(input_file_id=_upload(client, lines).id, endpoint="/v1/embeddings",
                                  completion_window="24h")
    done = _wait(client, batch.id)
    assert done.status == "completed" and done.request_counts.completed == 4, done
    out = _jsonl(client, done.output_file_id)
    live = client.embeddings.create(model=EMBED, input=texts).data
    for o, want in zip(out, live):
        got = o["response"]["body"]["data"][0]["embedding"]
        assert len(got) == 384
        assert max(abs(a - b) for a, b in zip(got, want.embedding)) < 1e-5


def test_large_answers_stream_into_the_output_instead_of_filling_the_plugin(client):
    """Four lines of 2,048 inputs each: every answer is megabytes of vectors, and a step holds
    several; the output goes to its file as it comes (the plugin has 64 MiB)."""
    texts = [f"line {i} word {i % 97}" for i in range(2048)]
    lines = [_line(f"big{k}", "/v1/embeddings", {"model": EMBED, "input": texts}) for k in range(4)]
    batch = client.batches.create(input_file_id=_upload(client, lines).id, endpoint="/v1/embeddings",
                                  completion_window="24h")
    done = _wait(client, batch.id)
    assert done.status == "completed" and done.request_counts.completed == 4, done
    out = _jsonl(client, done.output_file_id)
    assert [o["custom_id"] for o in out] == ["big0", "big1", "big2", "big3"]
    assert all(len(o["response"]["body"]["data"]) == 2048 for o in out)
    assert done.usage.input_tokens == 4 * out[0]["response"]["body"]["usage"]["prompt_tokens"]


def test_a_refused_input_file_fails_the_batch_naming_the_lines(client):
    lines = [
        _line("a", "/v1/embeddings", {"model": EMBED, "input": "x"}),
        '{"x": 1}',  # a JSON object (the upload checks that), but not a request
        _line("a", "/v1/embeddings", {"model": EMBED, "input": "y"}),
        _line("c", "/v1/chat/completions", {"model": CHAT}),
    ]
    batch = client.batches.create(input_file_id=_upload(client, lines).id, endpoint="/v1/embeddings",
                                  completion_window="24h")
    failed = _wait(client, batch.id)
    assert failed.status == "failed" and failed.failed_at
    got = [(e.code, e.line) for e in failed.errors.data]
    assert got == [("missing_required_parameter", 2), ("duplicate_custom_id", 3), ("mismatched_endpoint", 4)]
    assert failed.output_file_id is None


@pytest.mark.parametrize("change, status, param", [
    ({"endpoint": "/v1/images/generations"}, 400, "endpoint"),
    ({"completion_window": "1h"}, 400, "completion_window"),
    ({"input_file_id": "file-doesnotexist"}, 404, "input_file_id"),
    ({"input_file_id": "../../etc/passwd"}, 404, "input_file_id"),
    ({"metadata": {"k": 5}}, 400, "metadata"),
])
def test_bad_batch_requests_are_4xx_naming_the_parameter(client, http, change, status, param):
    good = _upload(client, [_line("a", "/v1/embeddings", {"model": EMBED, "input": "x"})]).id
    body = {"input_file_id": good, "endpoint": "/v1/embeddings", "completion_window": "24h", **change}
    r = http.post("/v1/batches", json=body)
    assert r.status_code == status, r.text
    assert r.json()["error"]["param"] == param


def test_a_file_of_another_purpose_and_unknown_batches_are_refused(client, http):
    other = client.files.create(file=("x.txt", b"hello"), purpose="user_data")
    with pytest.raises(openai.BadRequestError) as e:
        client.batches.create(input_file_id=other.id, endpoint="/v1/embeddings", completion_window="24h")
    assert e.value.body["param"] == "input_file_id"
    with pytest.raises(openai.NotFoundError):
        client.batches.retrieve("batch_nope")
    with pytest.raises(openai.NotFoundError):
        client.batches.cancel("batch_nope")
    assert http.delete("/v1/batches/batch_nope").status_code == 405


def test_cancel_stops_a_batch_and_keeps_what_it_did(client):
    lines = [_line(f"c{i}", "/v1/chat/completions",
                   {"model": CHAT, "messages": [{"role": "user", "content": "Tell a long story"}], "max_tokens": 48})
             for i in range(40)]
    batch = client.batches.create(input_file_id=_upload(client, lines).id, endpoint="/v1/chat/completions",
                                  completion_window="24h")
    cancelling = client.batches.cancel(batch.id)
    assert cancelling.status == "cancelling" and cancelling.cancelling_at
    done = _wait(client, batch.id)
    assert done.status == "cancelled" and done.cancelled_at, done
    assert done.request_counts.completed < 40
    if done.request_counts.completed:
        assert len(_jsonl(client, done.output_file_id)) == done.request_counts.completed
    with pytest.raises(openai.BadRequestError):
        client.batches.cancel(batch.id)


def test_tenants_see_only_their_own_batches():
    keys = 'api_keys = ["sk-alice", "sk-bob"]'
    with own_server("cinder-batch-tenants-", {"api_keys = []": keys}) as srv:
        alice = openai.OpenAI(base_url=f"{srv.url}/v1", api_key="sk-alice", max_retries=0)
        bob = openai.OpenAI(base_url=f"{srv.url}/v1", api_key="sk-bob", max_retries=0)
        lines = [_line("a", "/v1/embeddings", {"model": EMBED, "input": "alice"})]
        made = alice.batches.create(input_file_id=_upload(alice, lines).id, endpoint="/v1/embeddings",
                                    completion_window="24h")
        assert bob.batches.list().data == []
        with pytest.raises(openai.NotFoundError):
            bob.batches.retrieve(made.id)
        # Bob cannot start a batch on Alice's file either.
        with pytest.raises(openai.NotFoundError):
            bob.batches.create(input_file_id=made.input_file_id, endpoint="/v1/embeddings", completion_window="24h")
        done = _wait(alice, made.id)
        assert done.status == "completed"
        with pytest.raises(openai.NotFoundError):
            bob.files.content(done.output_file_id)


def test_kill_9_mid_batch_finishes_after_restart_with_each_request_once():
    root = tempfile.mkdtemp(prefix="cinder-batch-kill-")
    config = write_config(root, {"lease_secs = 30": "lease_secs = 2", "requests_per_step = 16": "requests_per_step = 2"})
    srv = start_server(config=config)
    try:
        c = openai.OpenAI(base_url=f"{srv.url}/v1", api_key="x", max_retries=0)
        n = 24
        lines = [_line(f"k{i}", "/v1/chat/completions",
                       {"model": CHAT, "messages": [{"role": "user", "content": f"Count to {i}"}], "max_tokens": 12})
                 for i in range(n)]
        batch = c.batches.create(input_file_id=_upload(c, lines).id, endpoint="/v1/chat/completions",
                                 completion_window="24h")
        deadline = time.time() + 120
        while c.batches.retrieve(batch.id).request_counts.completed < 4:
            assert time.time() < deadline
            time.sleep(0.05)
        srv.proc.send_signal(signal.SIGKILL)
        srv.proc.wait()
        srv = start_server(config=config)
        c = openai.OpenAI(base_url=f"{srv.url}/v1", api_key="x", max_retries=0)
        assert c.batches.retrieve(batch.id).status == "in_progress"
        done = _wait(c, batch.id)
        assert done.status == "completed", done
        assert (done.request_counts.total, done.request_counts.completed) == (n, n)
        ids = [o["custom_id"] for o in _jsonl(c, done.output_file_id)]
        assert ids == [f"k{i}" for i in range(n)]
        assert done.error_file_id is None
        # No blob is left behind: the input and the output file only (the segments were joined
        # and removed; what the killed step wrote was removed when the job was taken up).
        blobs = os.path.join(root, "documents", "blobs")
        assert len([b for b in os.listdir(blobs) if b.startswith("blob-")]) == 2
    finally:
        srv.stop()
        shutil.rmtree(root, ignore_errors=True)
