"""Time one reduced-budget DAC, DAC+DCGLU, DeepDPM and DeepDPM+DCGLU run on real SNIPS (or DBPedia).

Prints, per run: wall seconds, the seconds spent in the PU term and its share of the run, ACC / NMI
(arithmetic and geometric) / ARI, and for DeepDPM the number of clusters it ends with. DAC runs go on
through DAC-KM and DAC-DEC (``variant='dac_dec'``), so their rows are printed too. The parameters are the ``reduced`` budget of
``benchmarks/dcglu.toml``, changed only by ``--set``; run it rarely (the CPU is shared).

Usage::

    python perf/dcglu_reduced_timing.py [--dataset snips] [--seed 0] [--runs dac,dac_pu,dpm,dpm_pu]
                                        [--set dac:lr=1e-3 --set dpm:max_epochs=100 ...]

Data: :func:`dcrepro.data.load_dataset` (root ``$DCREPRO_DATA``, default the shared data folder next to
the repository). The frozen MiniLM embeddings come from the embedding cache (computed on first use).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("DCREPRO_DATA", str(REPO.parent / "shared" / "data"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from dcrepro.data import load_dataset  # noqa: E402
from dcrepro.metrics import evaluate  # noqa: E402
from dcrepro.methods import RunContext, get_method  # noqa: E402
from dcrepro.spec import load_spec, resolve  # noqa: E402
import dcrepro.methods.dac  # noqa: E402,F401  (register directly: get_method would import every method module)
import dcrepro.methods.deepdpm  # noqa: E402,F401

RUNS = {"dac": "dac", "dac_pu": "dac_pu", "dpm": "deepdpm", "dpm_pu": "deepdpm_pu"}  # -> job of benchmarks/dcglu.toml


def _parse_sets(items: list[str]) -> dict[str, dict]:
    """``dac:lr=1e-3`` -> {'dac': {'lr': 0.001}} (values parsed as JSON when possible)."""
    out: dict[str, dict] = {"dac": {}, "dpm": {}}
    for item in items:
        target, _, kv = item.partition(":")
        key, _, value = kv.partition("=")
        if target not in out or not key or not value:
            raise SystemExit(f"--set must look like dac:key=value or dpm:key=value, got {item!r}")
        try:
            out[target][key] = json.loads(value)
        except json.JSONDecodeError:
            out[target][key] = value
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="snips", choices=["snips", "dbpedia"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--runs", default=",".join(RUNS), help=f"comma-separated subset of {list(RUNS)}")
    ap.add_argument("--set", action="append", default=[], help="override, e.g. dac:lr=1e-3 or dpm:max_epochs=100")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    overrides = _parse_sets(args.set)
    runs = [r.strip() for r in args.runs.split(",") if r.strip()]
    spec = load_spec("dcglu")
    bad = sorted(set(runs) - set(RUNS))
    if bad:
        raise SystemExit(f"unknown run(s) {bad}; valid: {list(RUNS)}")

    t0 = time.perf_counter()
    data = load_dataset(args.dataset)
    from dcrepro.data.embed import embed_texts

    embed_texts(data.X, "all-MiniLM-L6-v2", dataset=data.name, view="original", progress=False)  # warm the cache
    print(f"{data!r}\nload + embeddings: {time.perf_counter() - t0:.1f} s (torch threads {args.threads})")
    for name in runs:
        cfg = resolve(spec, RUNS[name], args.dataset, "reduced")
        method = cfg.method
        params = dict(cfg.params, **overrides["dac" if method == "dac" else "dpm"])
        ctx = RunContext(seed=args.seed, n_clusters=data.n_classes, log=lambda m: print("   ", m))
        t = time.perf_counter()
        outs = get_method(method)(data, params, ctx)
        wall = time.perf_counter() - t
        print(f"\n{name}: {method} {params}\n  wall {wall:.1f} s")
        for row, o in outs.items():
            m = evaluate(data.y[o.eval_index], o.labels)
            pu, tot = o.metrics["pu_time_s"], o.metrics["time_s"]
            extra = ""
            if "k_found" in o.metrics:
                extra = f"  K found {int(o.metrics['k_found'])} (model K {o.info['final_k']})"
            print(f"  {row:8s} time {tot:6.1f} s  PU {pu:5.2f} s ({100 * pu / tot:4.1f} %)  "
                  f"ACC {m['acc']:.4f}  NMI {m['nmi']:.4f} (geo {m['nmi_geo']:.4f})  ARI {m['ari']:.4f}{extra}")
        if "k_history" in next(iter(outs.values())).info:
            info = next(iter(outs.values())).info
            accepted = [(e["epoch"], e["op"], e["k"]) for e in info["events"] if any(t[-1] for t in e["tests"])]
            print(f"  K per epoch (every 10th): {info['k_history'][::10]}; accepted splits/merges: {accepted}")
    print(f"\ntotal {time.perf_counter() - t0:.1f} s; numpy {np.__version__}, torch {torch.__version__}")


if __name__ == "__main__":
    main()
