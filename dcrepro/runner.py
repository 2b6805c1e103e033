"""Plans and runs: expand (paper × table × row × data set × seed) into runs and execute them.

``build_plan`` resolves every (job, data set) a table needs at a budget into :class:`RunItem` s (one per
seed); ``execute`` runs them in order, or in ``workers`` processes, with a progress bar. Each run is
claimed in the store first (so two runners never do the same run), skipped when an ok record exists
(resume) unless ``force``, and stored atomically when it finishes. A run that raises is stored as a
failed record with its traceback and the plan goes on. A data set that is absent is skipped with
'data not available' (the tables say so); nothing is stored for it.
"""
from __future__ import annotations

import functools
import hashlib
import os
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from . import envinfo
from .metrics import evaluate
from .seeding import seed_everything
from .spec import RunConfig, load_spec, resolve
from .store import Store, run_key

__all__ = ["RunItem", "build_plan", "plan_figure", "execute", "run_one"]


@dataclass
class RunItem:
    cfg: RunConfig
    seed: int
    outputs: tuple[str, ...] | None = None
    """Outputs the run must yield; None: the job's ``outputs`` (a figure needs only those it plots)."""

    @property
    def key(self) -> str:
        return run_key(self.cfg.paper, self.cfg.job, self.cfg.dataset, self.seed, self.cfg.config_hash)

    def label(self) -> str:
        return f"{self.cfg.paper}/{self.cfg.job}/{self.cfg.dataset}/seed{self.seed}"


def build_plan(paper: str, tables: list[str] | None = None, rows: list[str] | None = None,
               datasets: list[str] | None = None, seeds: int | None = None, budget: str = "reduced",
               seed_offset: int = 0) -> list[RunItem]:
    """Runs that fill ``tables`` of ``paper`` (all its tables when None) at ``budget``."""
    spec = load_spec(paper)
    n = seeds if seeds is not None else spec.n_seeds
    plan, seen = [], set()
    for tid in tables or list(spec.tables):
        for job, ds in spec.runs_for_table(tid, rows, datasets):
            if (job, ds) in seen:
                continue
            seen.add((job, ds))
            cfg = resolve(spec, job, ds, budget)
            plan += [RunItem(cfg, s) for s in range(seed_offset, seed_offset + n)]
    return plan


def plan_figure(paper: str, figure: str, budget: str = "reduced", seeds: int | None = None) -> list[RunItem]:
    """Runs of a parameter sweep declared under ``[figures.<id>]``: one config per grid value."""
    spec = load_spec(paper)
    fig = spec.figure(figure)
    n = seeds if seeds is not None else int(fig.get("seeds", 3))
    plan = []
    for ds in fig["datasets"]:
        for v in fig["values"]:
            cfg = resolve(spec, fig["job"], ds, fig.get("budget", budget), sweep_overrides(fig, v))
            plan += [RunItem(cfg, s, tuple(fig.get("outputs", ()))) for s in range(n)]
    return plan


def sweep_overrides(fig: dict, value) -> dict:
    """Parameter overrides of one grid point: the figure's fixed ``params`` plus ``param = value``; a list
    ``param = ["zeta", "gamma"]`` takes list values (one per name), e.g. ζ and γ swept together."""
    names = fig["param"] if isinstance(fig["param"], list) else [fig["param"]]
    values = value if isinstance(fig["param"], list) else [value]
    return dict(fig.get("params", {})) | dict(zip(names, values))


@functools.lru_cache(maxsize=4)
def _dataset(name: str, subset: int | None, subset_seed: int):
    from .data import load_dataset, stratified_subset

    data = load_dataset(name)
    if subset is not None and subset < len(data):
        data = data.subset(stratified_subset(data.y, subset, seed=subset_seed))
    return data


def _labels_sha(labels: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(labels, dtype=np.int64).tobytes()).hexdigest()[:16]


def run_one(item: RunItem, store: Store, device: str = "cpu", force: bool = False,
            cache_dir: Path | None = None) -> str:
    """Run one item; returns 'ok', 'failed', 'skipped' (already done), 'busy' or 'unavailable'."""
    from .data import is_available
    from .methods import RowOutput, RunContext, get_method

    cfg = item.cfg
    if not is_available(cfg.dataset):
        return "unavailable"
    state = store.claim(item.key, force=force)
    if state != "claimed":
        return {"done": "skipped", "busy": "busy"}[state]
    base = dict(key=item.key, paper=cfg.paper, job=cfg.job, method=cfg.method, dataset=cfg.dataset,
                seed=item.seed, budget=cfg.budget, effective_budget=cfg.effective_budget,
                config_hash=cfg.config_hash, config_json=cfg.to_json(), deviations_json=cfg.deviations,
                device=envinfo.device_name(device), versions_json=envinfo.versions(),
                git_rev=envinfo.git_revision())
    t0 = time.time()
    try:
        data = _dataset(cfg.dataset, cfg.subset, cfg.subset_seed)
        seed_everything(item.seed)
        ctx = RunContext(seed=item.seed, n_clusters=cfg.n_clusters or data.n_classes, device=device,
                         budget=cfg.budget, cache_dir=Path(cache_dir or store.path.parent / "cache"),
                         labels_for_selection=data.y if cfg.select_by_labels else None,
                         log=lambda msg: None)
        outs: dict[str, RowOutput] = get_method(cfg.method)(data, dict(cfg.params), ctx)
        expected = set(item.outputs or load_spec(cfg.paper).job(cfg.job).get("outputs", [cfg.job]))
        if not expected <= set(outs):
            raise RuntimeError(f"method {cfg.method!r} returned outputs {sorted(outs)}, spec expects {sorted(expected)}")
        stored = {}
        for name, o in outs.items():
            metrics = dict(o.metrics)
            sha = None
            if o.labels is not None:
                y = data.y if o.eval_index is None else data.y[o.eval_index]
                metrics = evaluate(y, o.labels) | metrics
                sha = _labels_sha(o.labels)
            stored[name] = {"metrics": metrics, "info": o.info, "labels_sha": sha}
        store.put(base | dict(status="ok", wall_s=time.time() - t0, started=t0, finished=time.time(),
                              n_samples=len(data)), stored)
        return "ok"
    except Exception:  # recorded, shown as 'failed' in the tables; the plan goes on
        store.put(base | dict(status="failed", error=traceback.format_exc(), wall_s=time.time() - t0,
                              started=t0, finished=time.time()))
        return "failed"
    except BaseException:  # KeyboardInterrupt etc.: leave nothing half-written, free the claim
        store.release(item.key)
        raise


def _term_as_interrupt() -> None:
    """SIGTERM (what a scheduler or `kill` sends; background jobs ignore SIGINT) ends the run in flight
    like Ctrl-C: its claim is released and nothing half-written is stored."""
    import signal
    import threading

    def _raise(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise)


def _worker_init(threads: int) -> None:
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(threads)
    threadpool_limits(threads)  # BLAS/OpenMP pools of numpy/scikit-learn: oversubscription is costly here


def _worker(item: RunItem, store_path: str, device: str, force: bool) -> tuple[str, str, float]:
    t0 = time.time()
    with Store(store_path) as store:
        return item.label(), run_one(item, store, device, force), time.time() - t0


def execute(plan: list[RunItem], store_path: str | Path | None = None, device: str = "auto",
            workers: int = 1, force: bool = False, progress: bool = True, threads: int | None = None) -> dict[str, int]:
    """Run ``plan``; returns counts per outcome. Failures never stop the plan.

    ``threads`` caps torch's and the BLAS/OpenMP thread pools of a sequential run (default: the libraries'
    own choice); with ``workers > 1`` each worker gets ``cpu_count // workers`` threads."""
    from tqdm import tqdm

    device = envinfo.resolve_device(device)
    _term_as_interrupt()
    if threads and workers <= 1:
        _worker_init(threads)
    counts: dict[str, int] = {}
    store = Store(store_path)
    done = set() if force else store.keys("ok")  # one query, not one per plan item
    todo = [it for it in plan if it.key not in done]
    counts["skipped"] = len(plan) - len(todo)
    bar = tqdm(total=len(todo), disable=not progress, unit="run", dynamic_ncols=True)
    try:
        if workers <= 1 or device == "cuda":
            for it in todo:
                bar.set_description(it.label())
                outcome = run_one(it, store, device, force)
                counts[outcome] = counts.get(outcome, 0) + 1
                bar.update()
        else:
            ncpu = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
            threads = max(1, ncpu // workers)
            for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):  # inherited at spawn
                os.environ[var] = str(threads)
            with ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_worker_init,
                                     initargs=(threads,)) as pool:
                futs = [pool.submit(_worker, it, str(store.path), device, force) for it in todo]
                for f in as_completed(futs):
                    label, outcome, _ = f.result()
                    counts[outcome] = counts.get(outcome, 0) + 1
                    bar.set_description(label)
                    bar.update()
    finally:
        bar.close()
        store.close()
    return counts
