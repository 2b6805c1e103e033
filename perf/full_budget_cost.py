"""Projected cost of every full-budget table of the four papers on this device, from cut runs of each method.

For each distinct full-budget run config (``dcrepro.spec.resolve(spec, job, ds, 'full')``, the configs of
``build_plan(paper, budget='full')``) the method itself runs on a cut: ``n`` rows of the data set (a stratified
subset; random data of the same shape when the data set or feature set is absent here) with its schedule scaled
by a factor ``f``. The cut is timed and extrapolated linearly to the full data size and schedule:

* epoch fields (``EPOCHS``: pretraining / training epochs, DeepDPM's milestones) are multiplied by ``f``: their
  cost is taken as proportional to N x epochs;
* iteration fields (``ITERS``: DEC's ``maxiter``, SCCL / DEC-CRL's ``max_iter``) are multiplied by ``f x n / N``,
  so the cut makes the same share ``f`` of its epochs over its n rows; intervals counted in iterations
  (``INTERVALS``: DEC's target refresh, the SCCL / DEC-CRL log interval) by ``n / N``;
* stop tolerances (``NO_EARLY_STOP``) are set to 0: the projection is the schedule's cap, an upper bound for runs
  that stop by tolerance (DEC, DAC-DEC);
* k-means baselines (no schedule): cost proportional to N (iterations to convergence as on the cut).

Quick mode (``--quick``, a smoke run) times ONE cut per method and input kind (grey 28x28, 512-d features,
text, ...): the first config met stands for every config of that method on that kind (their params differ:
e.g. DCSSagg's K-fold phase 1 is costed as DCSS), each projected with its own N. It times S seeds only when
``--seeds-per-process`` is given, not where the batched implementation runs per seed anyway (``NOT_BATCHED``),
and times one cut and projects ``t x (N / n) / f``: costs that do not grow with the schedule
(loading an encoder, k-means inits, embedding texts) are then scaled up too (an upper bound). The default mode
warms the method up once, times two cuts at ``f`` and ``2f`` and splits ``t(f) = a + b f``: the full run costs
``(a + b) x N / n`` (``a``: the per-sample work outside the schedule; a constant part is still scaled by N / n).

RPSC and SPICE-Self are projected with :mod:`perf.rpsc_cost` (RPSC-Self step time x steps of 100 epochs, plus
RPSC-Semi's 2^20 FreeMatch iterations when ``semi`` is on); SPICE-Self is costed as RPSC-Self (same trainer).
Backbone training (SimCLR / MoCo feature sets) is done once per image set, not per seed, and is not included
(RPSC's MoCo backbones: ``perf/rpsc_cost.py``).

Methods with a seeds-batched implementation (:func:`dcrepro.methods.get_batched`) are timed with S = 1 and with
``--seeds-per-process S`` seeds in one call (per-seed seconds = batch seconds / S). DAC's full budget fine-tunes
the encoder, which the batched DAC runs per seed (no gain there); ``--budget reduced`` costs the frozen-embedding
configs, which it batches.

Usage::

    nice -n 10 python perf/full_budget_cost.py --quick --threads 1 --out /tmp/cost.csv          # CPU, ~2 min
    python perf/full_budget_cost.py --device cuda --seeds-per-process 10 --out cost_gpu.csv     # GPU
    python perf/full_budget_cost.py --papers dcglu --budget reduced --quick --out /tmp/dcglu.csv
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "perf"))
os.environ.setdefault("DCREPRO_DATA", str(REPO.parent / "shared" / "data"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

PAPERS = ("dcss", "dcglu", "deccrl", "rpsc")
EPOCHS = {
    "dec": ("pretrain_epochs", "mnet_epochs"),
    "idec": ("pretrain_epochs", "mnet_epochs"),
    "dcn": ("pretrain_epochs", "epochs", "mnet_epochs"),
    "dkm": ("pretrain_epochs", "epochs_per_alpha", "mnet_epochs"),
    "dcss": ("pretrain_epochs", "phase1_epochs", "mnet_epochs"),
    "mnet_on_features": ("mnet_epochs",),
    "deepdpm": ("max_epochs", "start_computing_params", "start_sub_clustering", "start_split_merge",
                "split_merge_every", "freeze_epochs"),
    "dac": ("max_epochs", "dec_max_epochs"),
    "scan": ("scan_epochs", "selflabel_epochs"),
    "deccrl": ("w2v_epochs",),
}
ITERS = {"dec": ("maxiter",), "idec": ("maxiter",), "sccl": ("max_iter",), "deccrl": ("max_iter",)}
INTERVALS = {"dec": ("update_interval",), "idec": ("update_interval",), "sccl": ("log_every",),
             "deccrl": ("log_every",)}
NO_EARLY_STOP = {"dec": {"tol": 0.0}, "idec": {"tol": 0.0}, "dac": {"dec_tol": 0.0}}
MIN_F = {"deepdpm": 0.05}
"""Smallest schedule factor a method accepts (DeepDPM's milestones must keep 2 <= sub-clustering <= split/merge)."""
VIA_RPSC_COST = ("rpsc", "spice_self")
NOT_BATCHED = {"dac": lambda p: p.get("finetune_encoder", True)}
"""Params under which a batched implementation runs the one-seed method per seed (its docstring says so): with
``--quick`` its S-seed time is taken as the one-seed time instead of being measured."""
FEATURE_DIM = {"simclr_h": 512, "simclr_z": 128, "moco": 512}
VIEWS = (4, 8)  # weak, strong views of the cached pool


# ------------------------------------------------------------------------------------------------ inputs
_FULL_DATA: dict = {}


def full_size(ds: str) -> tuple[int, bool]:
    """(rows of the full data set, whether it is here)."""
    from dcrepro.data import get_spec, is_available, load_dataset

    if is_available(ds):
        if ds not in _FULL_DATA:
            _FULL_DATA[ds] = load_dataset(ds)
        return len(_FULL_DATA[ds]), True
    return get_spec(ds.partition("@")[0]).n_samples, False


def cut_data(ds: str, n: int):
    """``n`` rows of ``ds`` (stratified) or, when absent, random data of its shape (features get a view pool)."""
    from dcrepro.data import Dataset, get_spec, stratified_subset

    if ds in _FULL_DATA:
        data = _FULL_DATA[ds]
        return data if n >= len(data) else data.subset(stratified_subset(data.y, n, seed=0))
    base, _, space = ds.partition("@")
    spec, rng = get_spec(base), np.random.default_rng(0)
    k = spec.n_classes
    y = np.arange(n) % k
    splits = {"all": np.arange(n), "train": np.arange(int(0.8 * n)), "test": np.arange(int(0.8 * n), n)}
    meta = {"synthetic": True}
    if space:
        X = rng.standard_normal((n, FEATURE_DIM[space])).astype(np.float32)
        meta["views"] = tuple(X[None] + 0.05 * rng.standard_normal((v, n, X.shape[1])).astype(np.float32) for v in VIEWS)
        return Dataset(ds, "features", X, y, k, splits, meta)
    if spec.modality == "text":
        words = np.array([f"w{i}" for i in range(500)], dtype=object)
        X = np.array([" ".join(rng.choice(words, 12)) for _ in range(n)], dtype=object)
        return Dataset(ds, "text", X, y, k, splits, meta)
    side = spec.image_size or {"usps": 16, "stl10": 96, "tiny_imagenet": 64}.get(base, 32 if spec.modality == "rgb" else 28)
    shape = (side, side, 3 if spec.modality == "rgb" else 1)
    return Dataset(ds, spec.modality, rng.integers(0, 256, (n, *shape), dtype=np.uint8), y, k, splits, meta)


def cut_params(method: str, params: dict, N: int, n: int, f: float) -> tuple[dict, float]:
    """The cut's params and the realised schedule factor (mean over the scaled fields; 1 without a schedule)."""
    from dcrepro.methods import method_params, params_from_dict

    cls = method_params(method)
    full = asdict(params_from_dict(cls, params)) if cls else dict(params)
    f = max(f, MIN_F.get(method, 0.0))
    new, ratios = dict(params), []
    for name in EPOCHS.get(method, ()):
        if full.get(name):
            new[name] = max(1, round(full[name] * f))
            ratios.append(new[name] / full[name])
    for name in ITERS.get(method, ()):
        target = full[name] * n / N
        new[name] = max(1, round(target * f))
        ratios.append(new[name] / target)
    for name in INTERVALS.get(method, ()):
        new[name] = max(1, round(full[name] * n / N))
    new.update(NO_EARLY_STOP.get(method, {}))
    return new, (float(np.mean(ratios)) if ratios else 1.0)


def scaling_note(method: str) -> str:
    if method in VIA_RPSC_COST:
        return "perf/rpsc_cost.py: Self step x steps of 100 epochs (+ Semi 2^20 iterations)"
    parts = [f"x{'/'.join(EPOCHS[method])}" if method in EPOCHS else "",
             f"x{'/'.join(ITERS[method])} (iterations)" if method in ITERS else ""]
    sched = " ".join(p for p in parts if p) or "k-means: no schedule"
    stop = " ; no early stop (cap)" if method in NO_EARLY_STOP else ""
    return f"linear in N; {sched}{stop}"


# ------------------------------------------------------------------------------------------------ timing
def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_method(method: str, data, params: dict, seeds: list[int], device: str, select_by_labels: bool) -> float:
    """Wall seconds of one call: the one-seed method when ``seeds`` has one entry, else the batched one."""
    from dcrepro.methods import RunContext, get_batched, get_method
    from dcrepro.seeding import seed_everything

    ctxs = [RunContext(seed=s, n_clusters=data.n_classes, device=device, budget="full", log=lambda m: None,
                       labels_for_selection=data.y if select_by_labels else None) for s in seeds]
    seed_everything(seeds[0])
    _sync(device)
    t0 = time.perf_counter()
    if len(seeds) == 1:
        get_method(method)(data, dict(params), ctxs[0])
    else:
        get_batched(method)(data, dict(params), ctxs)
    _sync(device)
    return time.perf_counter() - t0


def project(method, data, params, N, n, f, seeds, device, quick, select) -> tuple[float, float, float]:
    """(per-seed seconds of the full run per row of the data set, seconds of the timed cut, realised f): the full
    run's per-seed seconds are this rate x N."""
    S = len(seeds)
    p1, f1 = cut_params(method, params, N, n, f)
    if quick:
        t1 = time_method(method, data, p1, seeds, device, select)
        return t1 / S / n / f1, t1, f1
    time_method(method, data, p1, seeds, device, select)  # warm-up: encoders, kernels, caches
    t1 = time_method(method, data, p1, seeds, device, select)
    p2, f2 = cut_params(method, params, N, n, 2 * f)
    t2 = time_method(method, data, p2, seeds, device, select)
    b = max(t2 - t1, 0.0) / (f2 - f1) if f2 > f1 else 0.0
    a = max(t1 - b * f1, 0.0)
    return (a + b) / S / n, t1, f1


_RPSC_CACHE: dict = {}


def project_rpsc(method: str, params: dict, ds: str, N: int, k: int, device: str, threads: int, self_n: int,
                 semi_iters: int) -> tuple[float, str]:
    """Per-seed seconds of RPSC / SPICE-Self from :mod:`rpsc_cost` (its stage timings on random features)."""
    import rpsc_cost

    from dcrepro.methods import method_params, params_from_dict

    p = params_from_dict(method_params(method), params)
    n = min(self_n, N)
    key = ("self", n, k, p.big_batch)
    if key not in _RPSC_CACHE:
        _RPSC_CACHE[key] = rpsc_cost.time_self(n, k, p.big_batch, device, threads)
    chunks = max(1, round(N / p.big_batch))
    seconds = _RPSC_CACHE[key] * chunks * p.num_repeat * -(-p.big_batch // p.sub_batch) * p.epochs
    if getattr(p, "semi", False):
        skey = ("semi", n, k)
        if skey not in _RPSC_CACHE:
            _RPSC_CACHE[skey] = rpsc_cost.time_semi(n, k, semi_iters)
        seconds += _RPSC_CACHE[skey] * p.semi_iters
    return seconds, f"self {n} feats"


# ------------------------------------------------------------------------------------------------ main
def configs(papers: list[str], budget: str):
    """{config_hash: (cfg, [(paper, table, row job), ...])} of every table of ``papers`` at ``budget``."""
    from dcrepro.spec import load_spec, resolve

    out: dict = {}
    for paper in papers:
        spec = load_spec(paper)
        for tid in spec.tables:
            for job, ds in spec.runs_for_table(tid):
                cfg = resolve(spec, job, ds, budget)
                out.setdefault(cfg.config_hash, (cfg, []))[1].append((paper, tid, job))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--papers", nargs="+", default=list(PAPERS), choices=list(PAPERS))
    ap.add_argument("--budget", default="full", choices=["full", "reduced"],
                    help="budget whose configs are costed (default full: the cells compared with the papers)")
    ap.add_argument("--quick", action="store_true", help="tiny cut, one timed point (< 2 min on the CPU)")
    ap.add_argument("--n", type=int, default=None,
                    help="rows of the cut (default 100 quick, 2000 CPU, 5000 GPU)")
    ap.add_argument("--f", type=float, default=None, help="schedule factor of the cut (default 0.01 quick, 0.05)")
    ap.add_argument("--seeds-per-process", type=int, default=None,
                    help="S for methods with a batched implementation (default 4; quick: not timed unless given)")
    ap.add_argument("--seeds", type=int, default=None, help="seeds per cell (default: the spec's, 10)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--methods", nargs="+", default=None, help="only these methods")
    ap.add_argument("--out", required=True, help="CSV path (one row per table cell config)")
    a = ap.parse_args()

    import torch
    from tabulate import tabulate

    from dcrepro.data import get_spec
    from dcrepro.methods import get_batched
    from dcrepro.spec import load_spec

    torch.set_num_threads(a.threads)
    from threadpoolctl import threadpool_limits

    threadpool_limits(a.threads)  # BLAS / OpenMP pools (k-means): all cores by default, slow on a shared CPU
    gpu = a.device.startswith("cuda")
    n_cut = a.n or (100 if a.quick else 5000 if gpu else 2000)
    f = a.f or (0.01 if a.quick else 0.05)
    S = a.seeds_per_process or (1 if a.quick else 4)
    torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)  # the first optimiser imports torch._dynamo (~3 s)
    t_start = time.perf_counter()
    per_key: dict = {}  # cost key -> measured row
    rows = []
    for h, (cfg, uses) in configs(a.papers, a.budget).items():
        if a.methods and cfg.method not in a.methods:
            continue
        N, here = full_size(cfg.dataset)
        k = get_spec(cfg.dataset.partition("@")[0]).n_classes
        n = min(max(n_cut, 3 * k), N)  # k-means needs more rows than clusters
        data = None if cfg.method in VIA_RPSC_COST else cut_data(cfg.dataset, n)
        shape = "text" if data is None or data.modality == "text" else "x".join(map(str, data.X.shape[1:]))
        kind = shape if data is None or data.modality == "text" else f"{data.modality} {shape}"
        key = ((cfg.method, kind) if a.quick else
               (cfg.method, json.dumps(cfg.params, sort_keys=True), shape if not here else cfg.dataset, N))
        if cfg.method in VIA_RPSC_COST:  # per config: N, K and the big batch set the step count
            key = (cfg.method, h)
        if key not in per_key:
            t0 = time.perf_counter()
            rec = {"rate_1": None, "rate_S": None, "cut_s": None, "f": None, "note": scaling_note(cfg.method)}
            try:
                if cfg.method in VIA_RPSC_COST:
                    seconds, extra = project_rpsc(cfg.method, cfg.params, cfg.dataset, N, k, a.device, a.threads,
                                                  500 if a.quick else 5000, 5 if a.quick else 200)
                    rec["rate_1"] = seconds / N
                    rec["note"] += f" ({extra})"
                else:
                    rec["rate_1"], rec["cut_s"], rec["f"] = project(cfg.method, data, cfg.params, N, n, f, [0],
                                                                    a.device, a.quick, cfg.select_by_labels)
                    if get_batched(cfg.method) is not None and S > 1 and a.quick and \
                            NOT_BATCHED.get(cfg.method, lambda p: False)(cfg.params):
                        rec["rate_S"] = rec["rate_1"]
                        rec["note"] += "; batched path runs per seed (not timed)"
                    elif get_batched(cfg.method) is not None and S > 1:
                        rec["rate_S"] = project(cfg.method, data, cfg.params, N, n, f, list(range(S)), a.device,
                                                a.quick, cfg.select_by_labels)[0]
            except Exception as e:  # noqa: BLE001 -- one method failing on a cut must not stop the projection of the others
                rec["note"] = f"FAILED: {type(e).__name__}: {str(e).splitlines()[0][:120]}"
            rec["wall_s"] = time.perf_counter() - t0
            per_key[key] = rec
            print(f"  {cfg.method:16s} {cfg.dataset:22s} N={N:6d} n={n:5d} "
                  f"{'real' if here else 'synthetic':9s} {rec['wall_s']:6.1f} s", flush=True)
        rec = per_key[key]
        seed_s_1 = None if rec["rate_1"] is None else rec["rate_1"] * N
        seed_s_S = None if rec["rate_S"] is None else rec["rate_S"] * N
        for paper, tid, job in uses:
            rows.append({"paper": paper, "table": tid, "job": job, "method": cfg.method, "dataset": cfg.dataset,
                         "config": h[:8], "N": N, "n_cut": n, "data": "real" if here else "synthetic",
                         "f": rec["f"], "cut_s": rec["cut_s"], "seed_s_1": seed_s_1,
                         "seed_s_S": seed_s_S, "S": S if seed_s_S is not None else 1,
                         "scaling": rec["note"]})

    seeds = {p: a.seeds or load_spec(p).n_seeds for p in a.papers}
    fmt = lambda v, d=1: "-" if v is None else f"{v:.{d}f}"
    method_rows, seen = [], set()
    for r in rows:
        k = (r["method"], r["dataset"], r["config"])
        if k not in seen:
            seen.add(k)
            method_rows.append([r["method"], r["dataset"], r["N"], r["n_cut"], r["data"], fmt(r["f"], 3),
                                fmt(r["cut_s"], 2), fmt(r["seed_s_1"]), fmt(r["seed_s_S"]), r["scaling"]])
    print(f"\nPer-seed seconds of the {a.budget}-budget run, projected from cut runs on {a.device} "
          f"({a.threads} thread(s); S = {S} seeds per process where batched)")
    print(tabulate(sorted(method_rows), headers=["method", "data", "N", "n cut", "data", "f", "cut s", "s/seed S=1",
                                                 f"s/seed S={S}", "scaling"]))

    unit = "GPU" if gpu else "CPU"
    summary, total1, totalS, counted = [], 0.0, 0.0, set()
    for (paper, tid) in dict.fromkeys((r["paper"], r["table"]) for r in rows):
        cells = [r for r in rows if (r["paper"], r["table"]) == (paper, tid)]
        ok = [r for r in cells if r["seed_s_1"] is not None]
        h1 = sum(r["seed_s_1"] for r in ok) * seeds[paper] / 3600
        hS = sum((r["seed_s_S"] or r["seed_s_1"]) for r in ok) * seeds[paper] / 3600
        summary.append([paper, tid, len(cells), len(cells) - len(ok), seeds[paper], f"{h1:.2f}", f"{hS:.2f}"])
        for r in ok:  # the total counts each config once (tables share runs)
            if (r["paper"], r["config"]) not in counted:
                counted.add((r["paper"], r["config"]))
                total1 += r["seed_s_1"] * seeds[paper] / 3600
                totalS += (r["seed_s_S"] or r["seed_s_1"]) * seeds[paper] / 3600
    summary.append(["total", "(distinct configs)", len(counted), "", "", f"{total1:.2f}", f"{totalS:.2f}"])
    print(f"\nProjected {unit}-hours per table (cells x seeds; backbone training not included)")
    print(tabulate(summary, headers=["paper", "table", "configs", "failed", "seeds", f"{unit}-h S=1",
                                     f"{unit}-h S={S}"]))
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    with open(a.out, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]) + ["seeds", "hours_1", "hours_S"])
        w.writeheader()
        for r in rows:
            k = seeds[r["paper"]]
            w.writerow(r | {"seeds": k, "hours_1": None if r["seed_s_1"] is None else r["seed_s_1"] * k / 3600,
                            "hours_S": None if r["seed_s_1"] is None else (r["seed_s_S"] or r["seed_s_1"]) * k / 3600})
    print(f"\n{len(rows)} cells -> {a.out}; {time.perf_counter() - t_start:.0f} s; torch {torch.__version__}, "
          f"n cut {n_cut}, f {f}, {'quick (one point)' if a.quick else 'warm-up + two points'}")


if __name__ == "__main__":
    main()
