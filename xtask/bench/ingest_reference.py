"""The reference for `cargo xtask bench --vector-stores`' ingestion figure: the same generated
document (`vector_stores.py`'s, same seed and size) cut the way Cinder cuts it (all-MiniLM-L6-v2's
tokens, 254 a chunk, 127 overlap, each chunk a slice of the text) and embedded by
sentence-transformers on the CPU, 32 chunks a batch. Run with the sentence-transformers venv:
`~/.cache/cinder/st-venv/bin/python xtask/bench/ingest_reference.py MODEL_DIR [--mb 1]`."""

import argparse
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from vector_stores import document  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--mb", type=float, default=1.0)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(a.threads)
    text = document(a.mb, random.Random(7))
    model = SentenceTransformer(a.model, device="cpu")
    enc = model.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    spans = enc["offset_mapping"]
    size, stride = 254, 127
    chunks, start = [], 0
    while start < len(spans):
        end = min(start + size, len(spans))
        chunks.append(text[spans[start][0]:spans[end - 1][1]])
        if end == len(spans):
            break
        start += stride
    t = time.perf_counter()
    model.encode(chunks, batch_size=32, normalize_embeddings=True)
    s = time.perf_counter() - t
    print(f"{len(chunks)} chunks in {s:.1f} s: {len(chunks) / s:.1f} chunks/s "
          f"(sentence-transformers, torch {torch.__version__}, {a.threads} threads)")


if __name__ == "__main__":
    main()
