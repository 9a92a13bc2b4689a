"""The Files and Uploads APIs through the official SDK (and raw HTTP for what the SDK cannot
send): shapes, paging, content, chunked uploads, bad input in OpenAI's envelope, the size
limit, tenants, and nothing left on disk by a refused upload."""

import hashlib
import os

import httpx
import openai
import pytest

from conftest import own_server

BATCH = b'{"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": {}}\n' * 3


def test_the_files_api_through_the_sdk(client):
    made = client.files.create(file=("in.jsonl", BATCH), purpose="batch")
    assert made.id.startswith("file-") and made.object == "file"
    assert (made.bytes, made.filename, made.purpose, made.status) == (len(BATCH), "in.jsonl", "batch", "processed")
    assert client.files.retrieve(made.id) == made
    assert client.files.content(made.id).read() == BATCH
    listed = client.files.list(purpose="batch", limit=100)
    assert made.id in [f.id for f in listed.data]
    assert all(f.purpose == "batch" for f in listed.data)
    deleted = client.files.delete(made.id)
    assert deleted.deleted and deleted.id == made.id
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(made.id)
    with pytest.raises(openai.NotFoundError):
        client.files.content(made.id)


def test_paging_newest_first_with_cursors(client):
    ids = [client.files.create(file=(f"p{i}.txt", b"x" * (i + 1)), purpose="user_data").id for i in range(3)]
    page = client.files.list(purpose="user_data", limit=2, order="asc", after=ids[0])
    assert [f.id for f in page.data] == ids[1:]
    newest = client.files.list(purpose="user_data", limit=1)
    assert newest.data[0].id == ids[-1] and newest.has_more
    # The SDK's auto-paging walks every page.
    seen = [f.id for f in client.files.list(purpose="user_data", limit=1)]
    assert seen[:3] == ids[::-1]
    for i in ids:
        client.files.delete(i)


def test_expires_after_sets_the_expiry(client):
    made = client.files.create(file=("e.txt", b"hi"), purpose="user_data",
                               expires_after={"anchor": "created_at", "seconds": 3600})
    assert made.expires_at is not None and 3590 <= made.expires_at - made.created_at <= 3610
    client.files.delete(made.id)


def _post_form(http, files=None, data=None, content=None, headers=None):
    return http.post("/v1/files", files=files, data=data, content=content, headers=headers)


@pytest.mark.parametrize("files, data, param", [
    ({"file": ("a.txt", b"hi")}, {}, "purpose"),
    ({}, {"purpose": "assistants"}, "file"),
    ({"file": ("a.txt", b"hi")}, {"purpose": "nonsense"}, "purpose"),
    ({"file": ("a.jsonl", b'{"ok": 1}\nnot json\n')}, {"purpose": "batch"}, "file"),
    ({"file": ("a.txt", b"")}, {"purpose": "user_data"}, "file"),
])
def test_bad_uploads_are_400s_naming_the_parameter(http, files, data, param):
    r = _post_form(http, files=files or {"unused": ("u", b"")}, data=data)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert (err["type"], err["param"]) == ("invalid_request_error", param), err


def test_a_bad_jsonl_line_is_named(http):
    r = _post_form(http, files={"file": ("a.jsonl", b'{}\n{}\n{"a": tru\n')}, data={"purpose": "fine-tune"})
    assert r.status_code == 400 and "line 3" in r.json()["error"]["message"], r.text


def test_malformed_multipart_and_wrong_shapes(http):
    r = _post_form(http, content=b"--x\r\nnot a part", headers={"content-type": "multipart/form-data; boundary=x"})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error", r.text
    r = _post_form(http, content=b"{}", headers={"content-type": "multipart/form-data"})
    assert r.status_code == 400, r.text
    r = http.post("/v1/files", json={"purpose": "batch"})
    assert r.status_code == 400, r.text
    r = http.put("/v1/files")
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"
    for path in ["/v1/files/..%2F..%2Fetc%2Fpasswd", "/v1/files/file-nope", "/v1/files/file-nope/content"]:
        r = http.get(path)
        assert r.status_code == 404 and r.json()["error"]["type"] == "invalid_request_error", (path, r.text)


def test_chunked_uploads_through_the_sdk(client, tmp_path):
    path = tmp_path / "big.bin"
    content = os.urandom(250_000)
    path.write_bytes(content)
    done = client.uploads.upload_file_chunked(file=path, mime_type="application/octet-stream", purpose="user_data",
                                               part_size=100_000, md5=hashlib.md5(content).hexdigest())
    assert done.status == "completed" and done.file is not None
    assert (done.file.bytes, done.file.filename) == (len(content), "big.bin")
    assert client.files.content(done.file.id).read() == content
    client.files.delete(done.file.id)
    # A wrong checksum is refused by name; the upload stays pending and can be cancelled.
    up = client.uploads.create(bytes=3, filename="a.txt", mime_type="text/plain", purpose="user_data")
    part = client.uploads.parts.create(upload_id=up.id, data=b"abc")
    with pytest.raises(openai.BadRequestError) as e:
        client.uploads.complete(upload_id=up.id, part_ids=[part.id], md5="0" * 32)
    assert e.value.body["param"] == "md5"
    assert client.uploads.cancel(upload_id=up.id).status == "cancelled"


def _blob_files(root):
    blobs = os.path.join(root, "documents", "blobs")
    return [n for n in os.listdir(blobs) if n != "tmp"] + os.listdir(os.path.join(blobs, "tmp"))


def test_an_oversized_file_is_a_413_and_leaves_nothing():
    with own_server("cinder-files-", {"max_file_bytes = 536870912": "max_file_bytes = 1000"}) as srv:
        root = os.path.dirname(srv.argv[srv.argv.index("--config") + 1])
        with httpx.Client(base_url=srv.url, timeout=60) as http:
            r = _post_form(http, files={"file": ("big.txt", b"x" * 5000)}, data={"purpose": "user_data"})
            assert r.status_code == 413, r.text
            assert r.json()["error"]["type"] == "invalid_request_error"
            assert _post_form(http, files={"file": ("ok.txt", b"x" * 10)}, data={"purpose": "user_data"}).status_code == 200
            assert len(http.get("/v1/files").json()["data"]) == 1
        assert len(_blob_files(root)) == 1


def test_tenants_see_only_their_own_files():
    keys = 'api_keys = ["sk-alice", "sk-bob"]'
    with own_server("cinder-tenants-", {"api_keys = []": keys}) as srv:
        alice = openai.OpenAI(base_url=f"{srv.url}/v1", api_key="sk-alice", max_retries=0)
        bob = openai.OpenAI(base_url=f"{srv.url}/v1", api_key="sk-bob", max_retries=0)
        made = alice.files.create(file=("a.txt", b"alice's"), purpose="user_data")
        assert [f.id for f in alice.files.list().data] == [made.id]
        assert bob.files.list().data == []
        for call in (bob.files.retrieve, bob.files.content, bob.files.delete):
            with pytest.raises(openai.NotFoundError):
                call(made.id)
        assert alice.files.content(made.id).read() == b"alice's"


def _raw_upload_start(url, total):
    """Opens a multipart upload of `total` bytes and sends its first half: the server is now
    writing a file it has not acknowledged."""
    import socket
    from urllib.parse import urlparse
    u = urlparse(url)
    boundary = "cinderkill"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nuser_data\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"half.bin\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    length = len(head) + total + len(tail)
    s = socket.create_connection((u.hostname, u.port))
    s.sendall((f"POST /v1/files HTTP/1.1\r\nHost: {u.hostname}:{u.port}\r\n"
               f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {length}\r\n\r\n").encode())
    s.sendall(head + b"y" * (total // 2))
    return s


def test_kill_9_keeps_acknowledged_files_and_drops_the_interrupted_one():
    import shutil
    import signal
    import tempfile
    import time
    from conftest import start_server, write_config
    root = tempfile.mkdtemp(prefix="cinder-kill-")
    config = write_config(root)
    srv = start_server(config=config)
    try:
        c = openai.OpenAI(base_url=f"{srv.url}/v1", api_key="x", max_retries=0)
        kept = os.urandom(3_000_000)
        acked = c.files.create(file=("kept.bin", kept), purpose="user_data")
        sock = _raw_upload_start(srv.url, 20_000_000)
        time.sleep(0.5)
        srv.proc.send_signal(signal.SIGKILL)
        srv.proc.wait()
        sock.close()
        srv = start_server(config=config)
        c = openai.OpenAI(base_url=f"{srv.url}/v1", api_key="x", max_retries=0)
        assert [f.id for f in c.files.list().data] == [acked.id]
        assert c.files.content(acked.id).read() == kept
        # The half-written upload left at most a temporary: never listed, never served.
        assert len([n for n in _blob_files(root) if n.startswith("blob-")]) == 1
    finally:
        srv.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_a_slow_upload_outlives_the_request_timeout_while_it_makes_progress():
    """The wall-clock limit (here 2 s) counts from the end of a multipart body: a large upload
    on a slow link is not cut off while its bytes keep coming."""
    import socket
    import time
    from urllib.parse import urlparse
    with own_server("cinder-slow-", {"request_timeout_secs = 600": "request_timeout_secs = 2"}) as srv:
        u = urlparse(srv.url)
        boundary = "cinderslow"
        head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nuser_data\r\n"
                f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"slow.bin\"\r\n\r\n").encode()
        chunks = [b"z" * 1000] * 8
        tail = f"\r\n--{boundary}--\r\n".encode()
        length = len(head) + sum(map(len, chunks)) + len(tail)
        with socket.create_connection((u.hostname, u.port)) as s:
            s.sendall((f"POST /v1/files HTTP/1.1\r\nHost: {u.hostname}:{u.port}\r\nConnection: close\r\n"
                       f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {length}\r\n\r\n").encode() + head)
            for c in chunks:  # 4 s in all, twice the request timeout
                time.sleep(0.5)
                s.sendall(c)
            s.sendall(tail)
            reply = b""
            while chunk := s.recv(65536):
                reply += chunk
        status = reply.split(b"\r\n", 1)[0]
        assert status.endswith(b"200 OK"), reply[:500]
        assert b'"bytes":8000' in reply, reply[-500:]


def test_recorded_blobs_are_kept_and_a_dead_requests_blob_is_swept_at_start():
    """A blob finished by a request stays pending until the request records an object naming
    it; one whose request died first (kill -9 between the blob and its File) is removed at the
    next start, once the request time limit is long past."""
    import shutil
    import sqlite3
    import tempfile
    import time
    from conftest import start_server, write_config
    root = tempfile.mkdtemp(prefix="cinder-sweep-")
    config = write_config(root)
    db = os.path.join(root, "documents", "cinder.db")
    srv = start_server(config=config)
    try:
        c = openai.OpenAI(base_url=f"{srv.url}/v1", api_key="x", max_retries=0)
        plain = c.files.create(file=("a.txt", b"plain"), purpose="user_data")
        path = os.path.join(root, "big.bin")
        with open(path, "wb") as f:
            f.write(os.urandom(3_000_000))
        chunked = c.uploads.upload_file_chunked(file=path, mime_type="application/octet-stream",
                                                purpose="user_data", part_size=1_000_000)
        with sqlite3.connect(db) as con:
            assert con.execute("SELECT COUNT(*) FROM blobs WHERE job IS NOT NULL").fetchone()[0] == 0
        srv.stop()
        # What a crash between a finished blob and its File leaves: a pending row and its file.
        orphan = "blob-deadrequest0000000000000000"
        with open(os.path.join(root, "documents", "blobs", orphan), "wb") as f:
            f.write(b"never recorded")
        with sqlite3.connect(db) as con:
            con.execute("INSERT INTO blobs (id, owner, bytes, md5, created_at, job, job_holder) "
                        "VALUES (?, 'default', 14, '', 1000, 'request:req_dead', 'req_dead')", (orphan,))
        srv = start_server(config=config)
        c = openai.OpenAI(base_url=f"{srv.url}/v1", api_key="x", max_retries=0)
        deadline = time.time() + 30
        while orphan in _blob_files(root) and time.time() < deadline:
            time.sleep(0.1)
        assert orphan not in _blob_files(root)
        with sqlite3.connect(db) as con:
            assert con.execute("SELECT COUNT(*) FROM blobs WHERE id = ?", (orphan,)).fetchone()[0] == 0
        assert c.files.content(plain.id).read() == b"plain"
        assert len(c.files.content(chunked.file.id).read()) == 3_000_000
    finally:
        srv.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_expired_files_and_abandoned_uploads_leave_the_disk_when_due():
    """A file with `expires_after`, and an upload, queue a job due at their expiry (a durable
    row, kept across a restart); when due it removes the file with its content, and the parts
    of an upload never completed, without anyone reading them. The clock is moved on in the
    database: the shortest expiry OpenAI allows is an hour."""
    import shutil
    import sqlite3
    import tempfile
    import time
    from conftest import start_server, write_config
    root = tempfile.mkdtemp(prefix="cinder-expiry-")
    config = write_config(root)
    db = os.path.join(root, "documents", "cinder.db")
    srv = start_server(config=config)
    try:
        c = openai.OpenAI(base_url=f"{srv.url}/v1", api_key="x", max_retries=0)
        made = c.files.create(file=("e.txt", b"expiring"), purpose="user_data",
                              expires_after={"anchor": "created_at", "seconds": 3600})
        kept = c.files.create(file=("k.txt", b"kept"), purpose="user_data")
        up = c.uploads.create(bytes=6, filename="a.txt", mime_type="text/plain", purpose="user_data")
        c.uploads.parts.create(upload_id=up.id, data=b"abc")
        with sqlite3.connect(db) as con:
            due = dict(con.execute("SELECT id, not_before FROM jobs WHERE kind = 'files/expire' AND state = 'queued'"))
        assert due == {f"expire-{made.id}": made.expires_at, f"expire-{up.id}": up.expires_at}
        assert len([n for n in _blob_files(root) if n.startswith("blob-")]) == 3
        srv.stop()
        # An hour and more later, the server having been down meanwhile.
        with sqlite3.connect(db) as con:
            con.execute("UPDATE jobs SET not_before = 1 WHERE kind = 'files/expire'")
            con.execute("UPDATE objects SET body = json_set(body, '$.expires_at', 1) WHERE id IN (?, ?)",
                        (made.id, up.id))
        srv = start_server(config=config)
        deadline = time.time() + 30
        while len([n for n in _blob_files(root) if n.startswith("blob-")]) > 1 and time.time() < deadline:
            time.sleep(0.2)
        with sqlite3.connect(db) as con:
            assert con.execute("SELECT COUNT(*) FROM objects WHERE id = ?", (made.id,)).fetchone()[0] == 0
            assert con.execute("SELECT status FROM objects WHERE id = ?", (up.id,)).fetchone()[0] == "expired"
            assert con.execute("SELECT COUNT(*) FROM objects WHERE collection = 'upload_parts'").fetchone()[0] == 0
            states = {s for (s,) in con.execute("SELECT state FROM jobs WHERE kind = 'files/expire'")}
        assert states == {"succeeded"}
        assert len(_blob_files(root)) == 1
        c = openai.OpenAI(base_url=f"{srv.url}/v1", api_key="x", max_retries=0)
        assert c.files.content(kept.id).read() == b"kept"
        with pytest.raises(openai.NotFoundError):
            c.files.retrieve(made.id)
    finally:
        srv.stop()
        shutil.rmtree(root, ignore_errors=True)
