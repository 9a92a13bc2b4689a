"""Vector stores through the official SDK's `client.vector_stores`, on the real default
embedder (all-MiniLM-L6-v2): files uploaded and ingested (`upload_and_poll`,
`create_and_poll`), searched (the document that answers a question ranks first), filtered by
attributes, listed and paged, their content read back, a PDF read, other formats failing
with OpenAI's codes, bad input refused by name, and deletion taking the chunks along; an
assistant's run with file_search over the store (its step's results rank the answering file
first, the answer cites it)."""

import io

import openai
import pytest

# The SDK marks the Assistants API (the file_search run) deprecated.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

DOCS = {
    "volcanoes.txt": "Volcanoes form where magma rises through the crust. Basaltic lava flows far "
                     "and fast; rhyolitic magma is sticky and erupts explosively. Mauna Loa in "
                     "Hawaii is the largest active volcano on Earth.",
    "bread.md": "# Baking bread\n\nMix flour, water, salt and yeast. Knead the dough until it is "
                "smooth, let it rise for two hours, shape the loaf and bake it at 230 degrees "
                "until the crust is brown and it sounds hollow.",
    "chess.html": "<html><body><h1>Chess openings</h1><p>The Sicilian Defence answers 1.e4 with "
                  "1...c5. The Queen's Gambit offers a pawn on c4 for control of the centre.</p>"
                  "<script>ignored()</script></body></html>",
}


def upload(client, name, text):
    return client.files.create(file=(name, io.BytesIO(text.encode())), purpose="assistants")


@pytest.fixture(scope="module")
def store(client):
    vs = client.vector_stores.create(name="notes", metadata={"suite": "e2e"})
    files = [(n, io.BytesIO(t.encode())) for n, t in DOCS.items()]
    batch = client.vector_stores.file_batches.upload_and_poll(vs.id, files=files, poll_interval_ms=100)
    assert batch.status == "completed" and batch.file_counts.completed == 3, batch
    yield client.vector_stores.retrieve(vs.id)
    client.vector_stores.delete(vs.id)


def test_a_question_finds_the_document_that_answers_it(client, store):
    assert store.status == "completed" and store.file_counts.total == 3 and store.usage_bytes > 0
    names = {f.id: client.files.retrieve(f.id).filename for f in client.vector_stores.files.list(store.id)}
    for question, want in [("How do I bake a loaf?", "bread.md"),
                           ("Which volcano is the largest?", "volcanoes.txt"),
                           ("What is a good reply to 1.e4?", "chess.html")]:
        page = client.vector_stores.search(store.id, query=question, max_num_results=3)
        results = list(page)
        assert results[0].filename == want, [(r.filename, r.score) for r in results]
        assert names[results[0].file_id] == want
        assert results[0].score > results[-1].score
        assert results[0].content[0].type == "text" and results[0].content[0].text
    # The HTML file was read without its markup or script.
    chess = next(f for f, n in names.items() if n == "chess.html")
    text = "".join(c.text for c in client.vector_stores.files.content(chess, vector_store_id=store.id))
    assert "Sicilian" in text and "<p>" not in text and "ignored()" not in text


def test_attributes_filter_the_search(client, store):
    files = list(client.vector_stores.files.list(store.id))
    for f in files:
        name = client.files.retrieve(f.id).filename
        client.vector_stores.files.update(f.id, vector_store_id=store.id,
                                          attributes={"kind": "food" if name == "bread.md" else "other"})
    page = client.vector_stores.search(store.id, query="How do I bake a loaf?",
                                       filters={"type": "eq", "key": "kind", "value": "other"})
    assert page.data and all(r.attributes == {"kind": "other"} for r in page.data)
    page = client.vector_stores.search(store.id, query="volcano", ranking_options={"score_threshold": 0.99})
    assert page.data == []


def test_files_list_by_status_and_page(client, store):
    first = client.vector_stores.files.list(store.id, limit=2, order="asc")
    assert len(first.data) == 2 and first.has_more
    rest = client.vector_stores.files.list(store.id, limit=2, order="asc", after=first.data[-1].id)
    assert len(rest.data) == 1 and not rest.has_more
    assert client.vector_stores.files.list(store.id, filter="failed").data == []


def tiny_pdf(text):
    """A one-page PDF showing `text` in Helvetica, its cross-reference table exact."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 /MediaBox [0 0 612 792] >>",
        b"<< /Type /Page /Parent 2 0 R /Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
    ]
    out, offsets = b"%PDF-1.4\n", []
    for i, o in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + o + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % off for off in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return out


def test_pdfs_are_read_other_formats_fail_with_openais_codes_and_removal_takes_the_chunks(client):
    vs = client.vector_stores.create()
    pdf = client.files.create(file=("owls.pdf", io.BytesIO(tiny_pdf("Owls hunt at night and sleep by day."))),
                              purpose="assistants")
    done = client.vector_stores.files.create_and_poll(file_id=pdf.id, vector_store_id=vs.id, poll_interval_ms=100)
    assert done.status == "completed", done
    text = "".join(c.text for c in client.vector_stores.files.content(pdf.id, vector_store_id=vs.id))
    assert "Owls hunt at night" in text
    assert client.vector_stores.search(vs.id, query="When do owls hunt?").data[0].file_id == pdf.id
    slides = upload(client, "deck.pptx", "PK not really")
    done = client.vector_stores.files.create_and_poll(file_id=slides.id, vector_store_id=vs.id, poll_interval_ms=100)
    assert done.status == "failed" and done.last_error.code == "unsupported_file", done
    assert ".pptx" in done.last_error.message
    broken = upload(client, "broken.pdf", "%PDF-1.7 not really")
    done = client.vector_stores.files.create_and_poll(file_id=broken.id, vector_store_id=vs.id, poll_interval_ms=100)
    assert done.status == "failed" and done.last_error.code == "invalid_file", done
    client.vector_stores.files.delete(pdf.id, vector_store_id=vs.id)
    assert client.vector_stores.search(vs.id, query="owls").data == []
    assert client.files.retrieve(pdf.id).id == pdf.id, "the file itself stays"
    assert client.vector_stores.delete(vs.id).deleted
    with pytest.raises(openai.NotFoundError):
        client.vector_stores.retrieve(vs.id)


@pytest.mark.parametrize("kwargs, param", [
    ({"file_ids": ["file-missing"]}, "file_ids"),
    ({"expires_after": {"anchor": "created_at", "days": 1}}, "expires_after"),
    ({"chunking_strategy": {"type": "static", "static": {"max_chunk_size_tokens": 800, "chunk_overlap_tokens": 400}},
      "file_ids": ["FILE"]}, "chunking_strategy.static.max_chunk_size_tokens"),
])
def test_bad_stores_are_refused_by_name(client, kwargs, param):
    if kwargs.get("file_ids") == ["FILE"]:
        kwargs["file_ids"] = [upload(client, "x.txt", "some words").id]
    with pytest.raises((openai.BadRequestError, openai.NotFoundError)) as e:
        client.vector_stores.create(**kwargs)
    assert e.value.param == param, e.value.body


def test_bad_searches_are_refused_by_name(client, store):
    for kwargs, param in [({"query": ""}, "query"), ({"query": "a", "max_num_results": 51}, "max_num_results"),
                          ({"query": "a", "rewrite_query": True}, "rewrite_query"),
                          ({"query": "a", "filters": {"type": "like", "key": "k", "value": 1}}, "filters")]:
        with pytest.raises(openai.BadRequestError) as e:
            client.vector_stores.search(store.id, **kwargs)
        assert e.value.param == param, e.value.body


def test_a_file_search_run_ranks_and_cites_the_file_that_answers(client, store):
    asst = client.beta.assistants.create(
        model="smollm2-135m-instruct", instructions="Answer briefly.", tools=[{"type": "file_search"}],
        tool_resources={"file_search": {"vector_store_ids": [store.id]}})
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "How long should bread dough rise?"}])
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=asst.id, poll_interval_ms=100,
                                                   max_completion_tokens=32, temperature=0)
    assert run.status in ("completed", "incomplete"), run
    steps = client.beta.threads.runs.steps.list(
        run.id, thread_id=thread.id, order="asc",
        include=["step_details.tool_calls[*].file_search.results[*].content"]).data
    assert [s.type for s in steps] == ["tool_calls", "message_creation"]
    results = steps[0].step_details.tool_calls[0].file_search.results
    assert results[0].file_name == "bread.md", [(r.file_name, r.score) for r in results]
    assert "rise" in results[0].content[0].text
    message = client.beta.threads.messages.list(thread.id).data[0]
    notes = message.content[0].text.annotations
    assert notes and notes[0].type == "file_citation"
    assert notes[0].file_citation.file_id == results[0].file_id
    value = message.content[0].text.value
    assert value[notes[0].start_index:notes[0].end_index] == notes[0].text


def test_attachments_and_an_inline_store_are_stored_then_searched(client):
    bread = upload(client, "bread.md", DOCS["bread.md"])
    volcano = upload(client, "volcanoes.txt", DOCS["volcanoes.txt"])
    asst = client.beta.assistants.create(model="smollm2-135m-instruct", tools=[{"type": "file_search"}])
    question = "How long should bread dough rise?"
    thread = client.beta.threads.create(messages=[{
        "role": "user", "content": question,
        "attachments": [{"file_id": bread.id, "tools": [{"type": "file_search"}]},
                        {"file_id": volcano.id, "tools": [{"type": "file_search"}]}]}])
    message = client.beta.threads.messages.list(thread.id).data[0]
    assert [a.file_id for a in message.attachments] == [bread.id, volcano.id]
    # The run waits until the thread's store is made and its files are ingested.
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=asst.id, poll_interval_ms=100,
                                                   max_completion_tokens=16, temperature=0)
    assert run.status in ("completed", "incomplete"), run
    store_ids = client.beta.threads.retrieve(thread.id).tool_resources.file_search.vector_store_ids
    assert len(store_ids) == 1
    made = client.vector_stores.retrieve(store_ids[0])
    assert made.file_counts.completed == 2 and made.expires_after.days == 7
    steps = client.beta.threads.runs.steps.list(run.id, thread_id=thread.id, order="asc").data
    assert steps[0].step_details.tool_calls[0].file_search.results[0].file_name == "bread.md"

    # An assistant made with its own store inline.
    inline = client.beta.assistants.create(
        model="smollm2-135m-instruct", tools=[{"type": "file_search"}],
        tool_resources={"file_search": {"vector_stores": [{"file_ids": [volcano.id], "metadata": {"k": "v"}}]}})
    run = client.beta.threads.create_and_run_poll(
        assistant_id=inline.id, thread={"messages": [{"role": "user", "content": "Which volcano is the largest?"}]},
        poll_interval_ms=100, max_completion_tokens=16, temperature=0)
    assert run.status in ("completed", "incomplete"), run
    ids = client.beta.assistants.retrieve(inline.id).tool_resources.file_search.vector_store_ids
    assert len(ids) == 1 and client.vector_stores.retrieve(ids[0]).metadata == {"k": "v"}
    steps = client.beta.threads.runs.steps.list(run.id, thread_id=run.thread_id, order="asc").data
    assert steps[0].step_details.tool_calls[0].file_search.results[0].file_name == "volcanoes.txt"
    with pytest.raises(openai.BadRequestError) as e:
        client.beta.threads.messages.create(thread.id, role="user", content="x", attachments=[
            {"file_id": bread.id, "tools": [{"type": "code_interpreter"}]}])
    assert e.value.param == "attachments[0].tools[0].type"
