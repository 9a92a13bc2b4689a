"""Retrieval quality on the project's question set (`retrieval_set.py`), two ways
(`cargo xtask bench --retrieval` runs both):

- `--reference MODEL_DIR`: sentence-transformers with all-MiniLM-L6-v2 from the folder the
  server loads, every document and question embedded, exact cosine ranking (numpy);
- `--url URL`: Cinder, each document uploaded as a file into one vector store
  (`upload_and_poll`), each question through `vector_stores.search`.

Each writes recall@1, recall@5 and MRR@5 of the documents that answer the questions, and
every question's top 5 (document ids), as JSON."""

import argparse
import io
import json
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from retrieval_set import DOCS, QUESTIONS  # noqa: E402


def metrics(rankings):
    """Recall@1, recall@5 and MRR@5 over (wanted, ranked ids) pairs."""
    r1 = r5 = mrr = 0.0
    for (_, want), ranked in zip(QUESTIONS, rankings):
        if ranked[:1] == [want]:
            r1 += 1
        if want in ranked[:5]:
            r5 += 1
            mrr += 1 / (ranked.index(want) + 1)
    n = len(QUESTIONS)
    return {"questions": n, "documents": len(DOCS), "recall_at_1": round(r1 / n, 3),
            "recall_at_5": round(r5 / n, 3), "mrr_at_5": round(mrr / n, 3)}


def reference(model_dir):
    import numpy as np
    import sentence_transformers
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(model_dir, device="cpu")
    ids = list(DOCS)
    docs = model.encode([DOCS[i] for i in ids], normalize_embeddings=True)
    qs = model.encode([q for q, _ in QUESTIONS], normalize_embeddings=True)
    scores = qs @ docs.T
    rankings = [[ids[j] for j in np.argsort(-row)[:5]] for row in scores]
    out = metrics(rankings)
    out["by"] = f"sentence-transformers {sentence_transformers.__version__}, exact cosine"
    out["rankings"] = rankings
    return out


def cinder(url):
    import openai

    client = openai.OpenAI(base_url=url + "/v1", api_key="bench", max_retries=0, timeout=600)
    vs = client.vector_stores.create(name="retrieval")
    files = [(f"{i}.txt", io.BytesIO(text.encode())) for i, text in DOCS.items()]
    batch = client.vector_stores.file_batches.upload_and_poll(vs.id, files=files, poll_interval_ms=100)
    assert batch.file_counts.completed == len(DOCS), batch
    rankings = []
    for q, _ in QUESTIONS:
        page = client.vector_stores.search(vs.id, query=q, max_num_results=5)
        rankings.append([r.filename.removesuffix(".txt") for r in page.data])
    out = metrics(rankings)
    out["by"] = "Cinder vector store search"
    out["rankings"] = rankings
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reference", help="the sentence-transformers folder of all-MiniLM-L6-v2")
    ap.add_argument("--url")
    ap.add_argument("--json", required=True)
    a = ap.parse_args()
    out = reference(a.reference) if a.reference else cinder(a.url)
    print(json.dumps({k: v for k, v in out.items() if k != "rankings"}, indent=2))
    with open(a.json, "w") as f:
        json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
