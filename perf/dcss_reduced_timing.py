"""Time one reduced-budget DCSS run per phase on real MNIST (1 torch thread), then the DEC family.

Prints seconds per phase (pre-training, AE + k-means, phase 1 = DCSSu, phase 2 = DCSS) and ACC / NMI of
every row, then one run of each of DEC, IDEC, DCN and DKM (+ MNet) that reuses the cached pre-trained AE.
The parameters are the ``reduced`` budget of ``benchmarks/dcss.toml`` (its MNIST values), changed only by
``--set``; run it rarely (the CPU is shared).

Usage::

    python perf/dcss_reduced_timing.py [--n 10000] [--dataset mnist] [--methods dcss,dec,idec,dcn,dkm]
                                       [--set pretrain_epochs=20 --set phase1_epochs=4 ...]

Data: ``dcrepro.data.load_dataset`` (root ``$DCREPRO_DATA``, default the shared data folder next to the
repository) and a stratified subset of ``--n`` samples (seed 0).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # sklearn's k-means threads too: one core per run

import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("DCREPRO_DATA", str(REPO.parent / "shared" / "data"))

from dcrepro.data import load_dataset, stratified_subset  # noqa: E402
from dcrepro.methods import RunContext, get_method  # noqa: E402
from dcrepro.metrics import acc, nmi  # noqa: E402
from dcrepro.spec import load_spec, resolve  # noqa: E402
from dcrepro.seeding import seed_everything  # noqa: E402

def _value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--n", type=int, default=10000, help="stratified subset size (0 = all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--methods", default="dcss,dec,idec,dcn,dkm")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a parameter of every method (JSON value)")
    ap.add_argument("--cache-dir", default=None, help="AE cache (default: a fresh temporary folder)")
    args = ap.parse_args()

    torch.set_num_threads(1)
    data = load_dataset(args.dataset)
    if args.n:
        data = data.subset(stratified_subset(data.y, args.n, seed=0))
    overrides = {k: _value(v) for k, v in (s.split("=", 1) for s in args.set)}
    spec = load_spec("dcss")
    cache = Path(args.cache_dir or tempfile.mkdtemp(prefix="dcss_timing_"))
    print(f"data {data.name}: n={len(data)}, K={data.n_classes}; torch threads {torch.get_num_threads()}; "
          f"cache {cache}; load average {os.getloadavg()[0]:.2f}")
    for method in args.methods.split(","):
        params = {**resolve(spec, method, "mnist", "reduced").params, **overrides}  # the job is named as its method
        seed_everything(args.seed)
        ctx = RunContext(seed=args.seed, n_clusters=data.n_classes, device="cpu", budget="reduced",
                         cache_dir=cache, log=lambda s: None)
        t0, c0 = time.perf_counter(), time.process_time()
        out = get_method(method)(data, params, ctx)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        share = cpu / wall  # < 1 when other processes compete for the cores
        print(f"\n== {method}  params {params}\n   wall {wall:.1f} s, process CPU {cpu:.1f} s "
              f"(CPU/wall {share:.2f}; 'cpu~' = wall × CPU/wall, the uncontended estimate)")
        for row, r in out.items():
            times = {k: f"{v:.1f} (cpu~{v * share:.1f})" for k, v in r.metrics.items()}
            print(f"  {row:10s} ACC {acc(data.y, r.labels):.4f}  NMI {nmi(data.y, r.labels):.4f}  {times}")
        first = next(iter(out.values()))
        print(f"  pretrain cache hit: {first.info.get('pretrain_cache_hit')}")
    print(f"\nload average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
