"""Time one reduced-budget run of SCCL and of DEC-CRL on StackOverflow (real data), with the cache state.

Usage::

    DCREPRO_DATA=/work/shared/data python perf/deccrl_reduced_timing.py [--dataset stackoverflow] [--seed 0]
        [--methods sccl deccrl]

Prints, per method: wall seconds (and the init / train / predict split), ACC and NMI in % (NMI with
arithmetic normalisation, the SCCL code's sklearn default, and geometric, Strehl & Ghosh), and whether
the sentence embeddings of the texts and of the two word-deletion views came from the on-disk cache
(the first run on a machine encodes them once; every later run and seed reuses them) and whether the
word2vec vectors did. The reduced parameters are read from ``benchmarks/deccrl.toml`` when that spec
exists, else the built-in copy below is used.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dcrepro.data import load_dataset  # noqa: E402
from dcrepro.methods import RunContext  # noqa: E402
from dcrepro.methods.deccrl import deccrl  # noqa: E402
from dcrepro.methods.sccl import sccl  # noqa: E402
from dcrepro.metrics import acc, nmi  # noqa: E402
from dcrepro.seeding import seed_everything  # noqa: E402

# Built-in copy of the reduced budget (kept in sync with the proposed benchmarks/deccrl.toml).
REDUCED_COMMON = {"finetune_encoder": False, "adapter": "linear", "max_iter": 1000, "kmeans_n_init": 3}
REDUCED = {
    "sccl": dict(REDUCED_COMMON),
    "deccrl": {**REDUCED_COMMON, "bow_max_features": 2000, "etm_hidden": 100},
}
PER_DATASET = {"stackoverflow": {"alpha": 1.0}, "agnews": {"alpha": 1.0}, "biomedical": {"alpha": 10.0}}
PER_DATASET_CRL = {"stackoverflow": {"n_topics": 5}, "agnews": {"n_topics": 5}, "biomedical": {"n_topics": 20}}


def reduced_params(job: str, dataset: str) -> tuple[dict, str]:
    """The reduced params of ``job`` on ``dataset``: from the spec when it has the job, else built in."""
    try:
        from dcrepro.spec import load_spec, resolve

        spec = load_spec("deccrl")
        return resolve(spec, job, dataset, "reduced").params, "benchmarks/deccrl.toml"
    except Exception as e:  # no spec yet, or no such job in it
        extra = PER_DATASET_CRL.get(dataset, {}) if job == "deccrl" else {}
        return {**REDUCED[job], **PER_DATASET.get(dataset, {}), **extra}, f"built-in copy ({type(e).__name__})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="stackoverflow")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--methods", nargs="+", default=["sccl", "deccrl"], choices=["sccl", "deccrl"])
    ap.add_argument("--cache-dir", default=str(ROOT / "results" / "cache"))
    args = ap.parse_args()
    os.environ.setdefault("DCREPRO_DATA", "/work/shared/data")
    torch.set_num_threads(1)

    data = load_dataset(args.dataset)
    print(f"{data!r}")
    for name in args.methods:
        params, source = reduced_params(name, args.dataset)
        print(f"\n== {name} (reduced, params from {source}): {params}")
        seed_everything(args.seed)
        ctx = RunContext(seed=args.seed, n_clusters=data.n_classes, device="cpu", budget="reduced",
                         cache_dir=Path(args.cache_dir), log=lambda s: print(f"  [log] {s}"))
        t0 = time.perf_counter()
        out = {"sccl": sccl, "deccrl": deccrl}[name](data, params, ctx)
        wall = time.perf_counter() - t0
        info = out[name].info
        split = ", ".join(f"{k} {info[k]:.1f}" for k in ("init_s", "train_s", "predict_s") if k in info)
        print(f"  wall {wall:.1f} s ({split}; word2vec {info.get('word2vec_s', 0.0):.1f} s)")
        print(f"  embedding cache hits: {info.get('embedding_cache_hits')}")
        for key, row in out.items():
            y = data.y
            print(f"  {key:10s} ACC {100 * acc(y, row.labels):5.1f}  NMI(arith) {100 * nmi(y, row.labels):5.1f}"
                  f"  NMI(geom) {100 * nmi(y, row.labels, 'geometric'):5.1f}")
        last = info["history"][-1] if info["history"] else {}
        print(f"  last losses: { {k: round(v, 4) for k, v in last.items()} }")


if __name__ == "__main__":
    main()
