"""Time one reduced-budget run of SCCL and of DEC-CRL on StackOverflow (real data), with the cache state.

Usage::

    DCREPRO_DATA=../shared/data python perf/deccrl_reduced_timing.py [--dataset stackoverflow] [--seed 0]
        [--methods sccl deccrl]

Prints, per method: wall seconds (and the init / train / predict split), ACC and NMI in % (NMI with
arithmetic normalisation, the SCCL code's sklearn default, and geometric, Strehl & Ghosh), and whether
the sentence embeddings of the texts and of the two word-deletion views came from the on-disk cache
(the first run on a machine encodes them once; every later run and seed reuses them) and whether the
word2vec vectors did. The reduced parameters are read from ``benchmarks/deccrl.toml``.
"""
from __future__ import annotations

import argparse
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
from dcrepro.spec import load_spec, resolve  # noqa: E402


def reduced_params(job: str, dataset: str) -> dict:
    """The reduced-budget params of ``job`` on ``dataset``, from benchmarks/deccrl.toml."""
    return resolve(load_spec("deccrl"), job, dataset, "reduced").params


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="stackoverflow")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--methods", nargs="+", default=["sccl", "deccrl"], choices=["sccl", "deccrl"])
    ap.add_argument("--cache-dir", default=str(ROOT / "results" / "cache"))
    args = ap.parse_args()
    torch.set_num_threads(1)

    data = load_dataset(args.dataset)
    print(f"{data!r}")
    for name in args.methods:
        params = reduced_params(name, args.dataset)
        print(f"\n== {name} (reduced, params from benchmarks/deccrl.toml): {params}")
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
