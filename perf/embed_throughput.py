"""Sentence-embedding throughput of dcrepro.data.embed on this machine (sentences per second).

Embeds the 20,000 StackOverflow titles (STC2) with the default encoder twice: once into an empty
temporary cache (first run: model load + encoding) and once more (cached re-run: one .npy read).
Not a test; run it by hand on an otherwise idle machine:

    DCREPRO_DATA=../shared/data python perf/embed_throughput.py [--threads 1] [--batch-size 64] [--n 20000]
"""
from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="stackoverflow")
    ap.add_argument("--encoder", default="all-MiniLM-L6-v2")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (the shared 2-core box: 1)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--n", type=int, default=None, help="first n texts only (default: all)")
    ap.add_argument("--device", default=None, help="cpu / cuda (default: cuda when available)")
    ap.add_argument("--json", default=None, help="also write the numbers to this file")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from dcrepro.data import load_dataset
    from dcrepro.data import embed as E

    texts = load_dataset(args.dataset).X[: args.n]
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    with tempfile.TemporaryDirectory() as cache:
        t0 = time.perf_counter()
        E._get_encoder(E.canonical_encoder(args.encoder), device, True)      # model load, timed apart
        load_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        X = E.embed_texts(texts, args.encoder, dataset=args.dataset, device=device, batch_size=args.batch_size,
                          cache_dir=cache, progress=False)
        first_s = time.perf_counter() - t1
        t2 = time.perf_counter()
        Y = E.embed_texts(texts, args.encoder, dataset=args.dataset, device=device, batch_size=args.batch_size,
                          cache_dir=cache, progress=False)
        cached_s = time.perf_counter() - t2
    assert (X == Y).all()
    n = len(texts)
    out = {"dataset": args.dataset, "n": n, "encoder": args.encoder, "dim": int(X.shape[1]), "device": device,
           "torch_threads": torch.get_num_threads(), "batch_size": args.batch_size, "cpu": platform.processor()
           or platform.machine(), "model_load_s": round(load_s, 2), "first_run_s": round(first_s, 2),
           "first_run_sentences_per_s": round(n / first_s, 1), "cached_rerun_s": round(cached_s, 4),
           "cached_rerun_sentences_per_s": round(n / cached_s, 1)}
    width = max(map(len, out))
    for k, v in out.items():
        print(f"{k:<{width}}  {v}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
