"""Two Cinder processes on one PostgreSQL (a throwaway cluster of Debian's server, run as an
unprivileged user) and one blob folder: what one stores, the other lists, serves and deletes;
a batch created on one is seen and finished on either; an assistant's run on a thread made on
the other replica is answered and seen by both."""

import contextlib
import json
import glob
import os
import shutil
import socket
import subprocess
import tempfile

import openai
import pytest

from conftest import DEFAULT_STORAGE, start_server, write_config


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def postgres():
    """A PostgreSQL cluster in a temp folder; yields its URL. As root, it runs as the
    `postgres` user the Debian package made (the server refuses root)."""
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not bins:
        pytest.fail("no PostgreSQL server: `cargo xtask test` installs Debian's postgresql", pytrace=False)
    bindir = os.path.dirname(bins[-1])
    root = tempfile.mkdtemp(prefix="cinder-pg-")
    run_as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if run_as:
        shutil.chown(root, "postgres", "postgres")
    data, port = os.path.join(root, "data"), _free_port()
    subprocess.run(run_as + [f"{bindir}/initdb", "-D", data, "-A", "trust", "-U", "cinder", "-E", "UTF8", "--no-sync"],
                   check=True, capture_output=True)
    opts = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run(run_as + [f"{bindir}/pg_ctl", "-D", data, "-l", os.path.join(root, "log"), "-w", "-o", opts, "start"],
                   check=True, capture_output=True)
    try:
        subprocess.run(run_as + [f"{bindir}/createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "cinder", "cinder"],
                       check=True, capture_output=True)
        yield f"postgres://cinder@127.0.0.1:{port}/cinder"
    finally:
        subprocess.run(run_as + [f"{bindir}/pg_ctl", "-D", data, "-m", "immediate", "-w", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


# The SDK marks the Assistants API deprecated; apps using it are what this serves.
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_two_replicas_share_files():
    with postgres() as url:
        root = tempfile.mkdtemp(prefix="cinder-replicas-")
        config = write_config(root, {DEFAULT_STORAGE: f'dir = "{root}/state"\nurl = "{url}"'})
        a = start_server(config=config)
        b = start_server(config=config)
        try:
            ca = openai.OpenAI(base_url=f"{a.url}/v1", api_key="x", max_retries=0)
            cb = openai.OpenAI(base_url=f"{b.url}/v1", api_key="x", max_retries=0)
            made = ca.files.create(file=("shared.txt", b"one store"), purpose="user_data")
            assert [f.id for f in cb.files.list().data] == [made.id]
            assert cb.files.content(made.id).read() == b"one store"
            assert cb.files.delete(made.id).deleted
            with pytest.raises(openai.NotFoundError):
                ca.files.retrieve(made.id)
            # Stored completions live in the same database.
            r = ca.chat.completions.create(model="smollm2-135m-instruct", messages=[{"role": "user", "content": "hi"}],
                                           max_tokens=2, store=True)
            assert cb.chat.completions.retrieve(r.id).id == r.id
            assert "backend=Postgres" in a.log() or "Postgres" in a.log()
            # A batch created on one replica is visible on the other and run by one of them.
            lines = [json.dumps({"custom_id": f"r{i}", "method": "POST", "url": "/v1/embeddings",
                                 "body": {"model": "all-minilm-l6-v2", "input": f"text {i}"}}) for i in range(6)]
            f = ca.files.create(file=("b.jsonl", ("\n".join(lines) + "\n").encode()), purpose="batch")
            batch = ca.batches.create(input_file_id=f.id, endpoint="/v1/embeddings", completion_window="24h")
            assert cb.batches.retrieve(batch.id).id == batch.id
            import time
            deadline = time.time() + 120
            while (done := cb.batches.retrieve(batch.id)).status != "completed":
                assert done.status in ("validating", "in_progress", "finalizing"), done
                assert time.time() < deadline, done
                time.sleep(0.2)
            out = [json.loads(x) for x in cb.files.content(done.output_file_id).text.splitlines()]
            assert [o["custom_id"] for o in out] == [f"r{i}" for i in range(6)]
            assert ca.batches.list().data[0].id == batch.id
            # A response stored through one replica is continued and read through the other.
            first = ca.responses.create(model="smollm2-135m-instruct", input="My name is Ada.", max_output_tokens=16)
            second = cb.responses.create(model="smollm2-135m-instruct", previous_response_id=first.id,
                                         input="What is my name?", max_output_tokens=16)
            assert second.usage.input_tokens > first.usage.input_tokens
            assert ca.responses.retrieve(second.id).previous_response_id == first.id
            conv = cb.conversations.create(items=[{"role": "user", "content": "hello"}])
            assert [i.type for i in ca.conversations.items.list(conv.id).data] == ["message"]
            # An assistant made on one replica runs in a thread made on the other; either
            # replica's job runner may answer, and both see the run end and its message.
            asst = ca.beta.assistants.create(model="smollm2-135m-instruct", instructions="Be brief.")
            thread = cb.beta.threads.create(messages=[{"role": "user", "content": "Say hi."}])
            run = ca.beta.threads.runs.create(thread_id=thread.id, assistant_id=asst.id, max_completion_tokens=4)
            ended = cb.beta.threads.runs.poll(run.id, thread_id=thread.id, poll_interval_ms=100)
            assert ended.status in ("completed", "incomplete"), ended
            assert [m.role for m in ca.beta.threads.messages.list(thread.id, order="asc").data] == ["user", "assistant"]
            # A streamed run follows its events through the store, whichever replica's job
            # writes them.
            for c in (ca, cb):
                with c.beta.threads.create_and_run_stream(
                        assistant_id=asst.id, max_completion_tokens=4,
                        thread={"messages": [{"role": "user", "content": "Say hi."}]}) as s:
                    s.until_done()
                assert s.get_final_run().status in ("completed", "incomplete")
                assert s.get_final_messages()[0].role == "assistant"
        finally:
            a.stop()
            b.stop()
            shutil.rmtree(root, ignore_errors=True)
