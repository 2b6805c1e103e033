"""DCSS seconds per seed and phase: the one-seed path (S = 1) against ``run_dcss_batched`` with S seeds.

Runs ``run_dcss`` for seed 0 and ``run_dcss_batched`` for seeds 0..S-1 (fresh AE caches, so both pre-train),
and prints per seed: pre-training, AE + k-means, phase 1 (DCSSu), phase 2 (MNet) and the total, the batched
times being the batch's time / S, with the speed-up. The parameters are the ``dcss`` job's at ``--budget`` on
``--dataset`` (``benchmarks/dcss.toml``), changed by ``--set``; the subset is ``--n-samples`` stratified
samples (seed 0). ``--float64`` runs both in float64 and checks that seed 0's labels are identical (float32
training is chaotic at the level of float reassociation, so float32 labels agree in distribution only; the
script then prints the ARI between the two seed-0 label sets instead).

Usage::

    python perf/dcss_batched_speed.py [--device cpu|cuda] [--seeds 4] [--n-samples 2000]
                                      [--budget quick|reduced] [--set phase1_epochs=1 ...] [--float64]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("DCREPRO_DATA", str(REPO.parent / "shared" / "data"))

from dcrepro.data import load_dataset, stratified_subset  # noqa: E402
from dcrepro.methods import RunContext, get_batched, get_method  # noqa: E402
from dcrepro.seeding import seed_everything  # noqa: E402
from dcrepro.spec import load_spec, resolve  # noqa: E402

PHASES = ("pretrain", "kmeans", "phase1", "mnet", "total")


def _value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def phase_times(out: dict) -> dict[str, float]:
    """Seconds per phase of one seed's outputs (``run_dcss``'s metrics)."""
    ae = out["ae_kmeans"].metrics
    t = {"pretrain": ae["time_pretrain_s"], "kmeans": ae["time_s"] - ae["time_pretrain_s"],
         "phase1": out["dcssu"].metrics["time_phase1_s"] if "dcssu" in out else 0.0,
         "mnet": out["dcss"].metrics["time_phase2_s"] if "dcss" in out else 0.0}
    t["total"] = sum(t.values())
    return t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seeds", type=int, default=4, help="S, seeds trained at once by the batched path")
    ap.add_argument("--n-samples", type=int, default=2000, help="stratified subset size (0 = all)")
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--budget", default="reduced", choices=["quick", "reduced", "full"])
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a parameter (JSON)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--float64", action="store_true", help="run in float64 and check seed 0's labels are identical")
    ap.add_argument("--skip-one-seed", action="store_true", help="time the batched path only")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    if args.float64:
        torch.set_default_dtype(torch.float64)
    cfg = resolve(load_spec("dcss"), "dcss", args.dataset, args.budget)
    params = dict(cfg.params)
    params.update({k: _value(v) for k, v in (s.split("=", 1) for s in args.set)})
    data = load_dataset(args.dataset)
    if args.n_samples and args.n_samples < len(data):
        data = data.subset(stratified_subset(data.y, args.n_samples, seed=0))
    k = cfg.n_clusters or data.n_classes
    print(f"dcss {args.dataset} n={len(data)} budget={args.budget} device={args.device} S={args.seeds} "
          f"dtype={torch.get_default_dtype()} threads={args.threads}\nparams={params}", flush=True)

    def ctx(seed: int, cache: str) -> RunContext:
        return RunContext(seed=seed, n_clusters=k, device=args.device, cache_dir=Path(cache), log=lambda m: None)

    # first-call costs (CUDA context, kernel selection, lazy imports) before anything is timed
    tiny = data.subset(np.arange(min(256, len(data))))
    small = dict(params, pretrain_epochs=1, phase1_epochs=1, mnet_epochs=1)
    with tempfile.TemporaryDirectory() as tmp:
        get_method("dcss")(tiny, small, ctx(0, tmp))
        get_batched("dcss")(tiny, small, [ctx(s, tmp + "/b") for s in range(args.seeds)])

    rows = {}
    one = None
    if not args.skip_one_seed:
        with tempfile.TemporaryDirectory() as tmp:
            seed_everything(0)
            t0 = time.perf_counter()
            one = get_method("dcss")(data, params, ctx(0, tmp))
            rows["one-seed (S=1)"] = phase_times(one)
            print(f"one-seed wall {time.perf_counter() - t0:.1f} s", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        seed_everything(0)
        t0 = time.perf_counter()
        batched = get_batched("dcss")(data, params, [ctx(s, tmp) for s in range(args.seeds)])
        rows[f"batched (S={args.seeds}), per seed"] = phase_times(batched[0])
        print(f"batched wall {time.perf_counter() - t0:.1f} s for {args.seeds} seeds", flush=True)

    print(f"\n{'seconds per seed':34s}" + "".join(f"{p:>10s}" for p in PHASES))
    for name, t in rows.items():
        print(f"{name:34s}" + "".join(f"{t[p]:10.2f}" for p in PHASES))
    if one is not None:
        a, b = rows["one-seed (S=1)"], rows[f"batched (S={args.seeds}), per seed"]
        print(f"{'speed-up (one-seed / batched)':34s}" + "".join(
            f"{a[p] / b[p]:10.2f}" if b[p] > 0 else f"{'-':>10s}" for p in PHASES))
        from sklearn.metrics import adjusted_rand_score

        for row in one:
            same = np.array_equal(one[row].labels, batched[0][row].labels)
            ari = adjusted_rand_score(one[row].labels, batched[0][row].labels)
            print(f"seed 0 {row}: labels identical {same}, ARI {ari:.4f}")
            if args.float64 and not same:
                raise SystemExit(f"float64: seed 0's {row} labels differ between the one-seed and batched paths")


if __name__ == "__main__":
    main()
