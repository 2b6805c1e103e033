"""Cost of a full-budget (encoder fine-tuned) SCCL / DEC-CRL run, measured on a few steps and projected.

A full run is k-means initialisation (the transformer embeds all N texts, k-means with n_init 10),
``max_iter`` training steps (batch 200, the transformer on the texts and two word-deletion views,
forward and backward), and prediction (all N texts embedded again, k-means). This script runs the real
method with the spec's full-budget parameters but ``--steps`` training steps, reads the run's own
init / train / predict split, and projects the whole run as init + predict + max_iter x (train / steps).
It also times tokenising a step's 3 x 200 texts, the per-step cost that the backbone's up-front
tokenisation removes from the training loop, and ACC / NMI (arithmetic) of the cut run, which are not
full-budget numbers.

Not a test; run it by hand on an otherwise idle machine:

    DCREPRO_DATA=../shared/data python perf/deccrl_full_step.py [--method deccrl] [--dataset stackoverflow]
        [--steps 10] [--threads 2] [--device cpu|cuda] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--method", default="deccrl", choices=["sccl", "deccrl"])
    ap.add_argument("--dataset", default="stackoverflow", choices=["agnews", "stackoverflow", "biomedical"])
    ap.add_argument("--steps", type=int, default=10, help="training steps to time (full budget: max_iter)")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--device", default=None, help="cpu / cuda (default: cuda when available)")
    ap.add_argument("--json", default=None, help="also write the numbers to this file")
    args = ap.parse_args()

    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    from dcrepro.data import load_dataset
    from dcrepro.methods import RunContext, get_method
    from dcrepro.metrics import acc, nmi
    from dcrepro.methods.sccl import _load_sentence_transformer
    from dcrepro.seeding import seed_everything
    from dcrepro.spec import load_spec, resolve

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    cfg = resolve(load_spec("deccrl"), args.method, args.dataset, "full")
    max_iter = int(cfg.params.get("max_iter", 3000))
    data = load_dataset(args.dataset)

    # the per-step tokenisation that up-front tokenisation removed: 3 views x batch texts
    st = _load_sentence_transformer(cfg.params.get("encoder", "all-MiniLM-L6-v2"), "cpu")
    texts = np.asarray(data.X, dtype=object)
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    for _ in range(10):
        for _view in range(3):
            st.tokenizer([str(t) for t in texts[rng.integers(0, len(texts), 200)]], max_length=32, padding=True,
                         truncation=True, return_tensors="pt")
    tokenize_step_ms = (time.perf_counter() - t0) / 10 * 1000
    del st

    seed_everything(0)
    ctx = RunContext(seed=0, n_clusters=data.n_classes, device=device, budget="full",
                     cache_dir=ROOT / "results" / "cache", log=lambda s: None)  # the runner's word2vec cache
    t0 = time.perf_counter()
    out = get_method(cfg.method)(data, {**cfg.params, "max_iter": args.steps, "log_every": 0}, ctx)
    wall = time.perf_counter() - t0
    info = out[args.method].info
    scores = {f"{k} {m} (after {args.steps} steps)": round(100 * f(data.y, out[k].labels), 2)
              for k in (args.method, f"{args.method}_km") for m, f in (("ACC", acc), ("NMI", nmi))}
    step_s = info["train_s"] / args.steps
    projected = info["init_s"] + info["predict_s"] + max_iter * step_s + info.get("word2vec_s", 0.0)
    res = {
        "method": args.method, "dataset": args.dataset, "n_texts": len(texts), "device": device,
        "gpu": torch.cuda.get_device_name() if device == "cuda" else None,
        "cpu": platform.processor() or platform.machine(), "torch_threads": torch.get_num_threads(),
        "steps_timed": args.steps, "wall_s": round(wall, 1), "init_s (embed all + k-means)": round(info["init_s"], 1),
        "predict_s (embed all + k-means)": round(info["predict_s"], 1),
        "word2vec_s": round(info.get("word2vec_s", 0.0), 1), "s_per_step": round(step_s, 3),
        "tokenize_per_step_ms (removed)": round(tokenize_step_ms, 1), "full_max_iter": max_iter,
        "projected_full_run_min": round(projected / 60, 1), **scores,
    }
    width = max(map(len, res))
    for k, v in res.items():
        print(f"{k:<{width}}  {v}")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
