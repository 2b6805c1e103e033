"""Plans and runs: expand (paper × table × row × data set × seed) into runs and execute them.

``build_plan`` resolves every (job, data set) a table needs at a budget into :class:`RunItem` s (one per
seed); ``execute`` runs them in order, or in ``workers`` processes, with a progress bar. Each run is
claimed in the store first (so two runners never do the same run), skipped when an ok record exists
(resume) unless ``force``, and stored atomically when it finishes. A run that raises is stored as a
failed record with its traceback and the plan goes on. A data set that is absent is skipped with
'data not available' (the tables say so); nothing is stored for it. A data set whose files fail their
size or checksum check stops the plan before anything runs (:func:`check_data`).
"""
from __future__ import annotations

import functools
import hashlib
import os
import socket
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from . import envinfo
from .health import cluster_health
from .metrics import evaluate
from .seeding import seed_everything
from .spec import RunConfig, load_spec, resolve
from .paths import cache_root
from .store import Store, run_key

__all__ = ["RunItem", "build_plan", "plan_figure", "execute", "run_one", "run_group", "compute", "compute_group",
           "group_by_config", "check_data"]


@dataclass
class RunItem:
    cfg: RunConfig
    seed: int
    outputs: tuple[str, ...] = ()
    """Outputs the run must yield: the job's ``outputs`` for a table run, the plotted ones for a figure's."""

    @property
    def key(self) -> str:
        return run_key(self.cfg.paper, self.cfg.job, self.cfg.dataset, self.seed, self.cfg.config_hash)

    def label(self) -> str:
        reading = "" if self.cfg.reading == "default" else f"[{self.cfg.reading}]"
        return f"{self.cfg.paper}/{self.cfg.job}{reading}/{self.cfg.dataset}/seed{self.seed}"


def build_plan(paper: str, tables: list[str] | None = None, rows: list[str] | None = None,
               datasets: list[str] | None = None, seeds: int | None = None, budget: str = "reduced",
               seed_offset: int = 0, readings: list[str] | None = None) -> list[RunItem]:
    """Runs that fill ``tables`` of ``paper`` (all its tables when None) at ``budget`` under the reading
    variants named by ``readings`` (None: the default reading; see :meth:`dcrepro.spec.Spec.variants`).
    A variant adds runs only for the jobs it changes; the other jobs' default runs serve every reading."""
    spec = load_spec(paper)
    n = seeds if seeds is not None else spec.n_seeds
    plan, seen = [], set()
    for variant in spec.variants(readings):
        for tid in tables or list(spec.tables):
            for job, ds in spec.runs_for_table(tid, rows, datasets):
                cfg = resolve(spec, job, ds, budget, variant=variant)
                if cfg.config_hash in seen:
                    continue
                seen.add(cfg.config_hash)
                outs = spec.job_outputs(job)
                plan += [RunItem(cfg, s, outs) for s in range(seed_offset, seed_offset + n)]
    return plan


def plan_figure(paper: str, figure: str, budget: str = "reduced", seeds: int | None = None,
                readings: list[str] | None = None) -> list[RunItem]:
    """Runs of a parameter sweep declared under ``[figures.<id>]``: one config per grid value (and reading)."""
    from .sweeps import figure_outputs, sweep_configs

    spec = load_spec(paper)
    fig = spec.figure(figure)
    n = seeds if seeds is not None else fig.seeds
    plan, seen = [], set()
    for variant in spec.variants(readings):
        for _, _, cfg in sweep_configs(paper, figure, budget, variant):
            if cfg.config_hash not in seen:
                seen.add(cfg.config_hash)
                plan += [RunItem(cfg, s, figure_outputs(paper, fig)) for s in range(n)]
    return plan


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
    """Run one item; returns 'ok', 'failed', 'skipped' (already done), 'busy' or 'unavailable'.
    KeyboardInterrupt etc. free the claim and store nothing half-written."""
    return run_group([item], store, device, force, cache_dir)[0]


def _base(item: RunItem, device: str) -> dict:
    """The fields of a run record that say how it was made (everything but the outcome)."""
    cfg = item.cfg
    return dict(key=item.key, paper=cfg.paper, job=cfg.job, method=cfg.method, dataset=cfg.dataset,
                seed=item.seed, budget=cfg.budget, effective_budget=cfg.effective_budget,
                config_hash=cfg.config_hash, config_json=cfg.to_json(), deviations_json=cfg.deviations,
                device=envinfo.device_name(device), versions_json=envinfo.versions(),
                git_rev=envinfo.git_revision(), host=socket.gethostname())


def _context(item: RunItem, data, device: str, cache_dir: Path | None):
    from .methods import RunContext

    cfg = item.cfg
    return RunContext(seed=item.seed, n_clusters=cfg.n_clusters or data.n_classes, device=device,
                      budget=cfg.budget, cache_dir=Path(cache_dir or cache_root()),
                      labels_for_selection=data.y if cfg.select_by_labels else None, log=lambda msg: None)


def _outputs(item: RunItem, data, outs: dict, extra_info: dict | None = None) -> dict:
    """Evaluate a method's :class:`RowOutput` s into what the store keeps (metrics, info, labels hash)."""
    expected = set(item.outputs)
    if not expected <= set(outs):
        raise RuntimeError(f"method {item.cfg.method!r} returned outputs {sorted(outs)}, spec expects {sorted(expected)}")
    stored = {}
    for name, o in outs.items():
        metrics = dict(o.metrics)
        sha = None
        if o.labels is not None:
            y = data.y if o.eval_index is None else data.y[o.eval_index]
            metrics = evaluate(y, o.labels) | cluster_health(o.labels) | metrics
            sha = _labels_sha(o.labels)
        info = o.info | ({"data_source": data.meta["data_source"]} if "data_source" in data.meta else {})
        stored[name] = {"metrics": metrics, "info": info | (extra_info or {}), "labels_sha": sha}
    return stored


def _failed(base: dict, t0: float) -> dict:
    return base | dict(status="failed", error=traceback.format_exc(), wall_s=time.time() - t0, started=t0,
                       finished=time.time())


def compute(item: RunItem, device: str = "cpu", cache_dir: Path | None = None) -> tuple[dict, dict | None]:
    """Run one item without touching a store: (run record, outputs) for :meth:`Store.put`. A run that
    raises gives a 'failed' record with its traceback (outputs None). Used in-process by :func:`run_one`
    and on cluster nodes, whose records the driver stores (see :mod:`dcrepro.slurm`)."""
    from .methods import get_method

    cfg, base, t0 = item.cfg, _base(item, device), time.time()
    try:
        data = _dataset(cfg.dataset, cfg.subset, cfg.subset_seed)
        seed_everything(item.seed)
        outs = get_method(cfg.method)(data, dict(cfg.params), _context(item, data, device, cache_dir))
        stored = _outputs(item, data, outs)
        return base | dict(status="ok", wall_s=time.time() - t0, started=t0, finished=time.time(),
                           n_samples=len(data)), stored
    except Exception:  # recorded, shown as 'failed' in the tables; the plan goes on
        return _failed(base, t0), None


def compute_group(items: list[RunItem], device: str = "cpu",
                  cache_dir: Path | None = None) -> list[tuple[dict, dict | None]]:
    """Run items that differ only in their seed in one call of the method's seeds-batched implementation
    (:func:`dcrepro.methods.register_batched`); one (record, outputs) per item, as :func:`compute` gives.
    Falls back to one :func:`compute` per item when there is one item or no batched implementation. A batch
    that raises marks every item failed (same traceback). Each record's ``wall_s`` is the batch's wall time
    divided by its seeds; each output's info says ``seeds_per_process``."""
    from .methods import get_batched

    cfg = items[0].cfg
    if any(it.cfg.config_hash != cfg.config_hash for it in items):
        raise ValueError("compute_group: items must share one config (they may differ only in the seed)")
    fn = get_batched(cfg.method) if len(items) > 1 else None
    if fn is None:
        return [compute(it, device, cache_dir) for it in items]
    bases, t0 = [_base(it, device) for it in items], time.time()
    try:
        data = _dataset(cfg.dataset, cfg.subset, cfg.subset_seed)
        seed_everything(items[0].seed)
        outs = fn(data, dict(cfg.params), [_context(it, data, device, cache_dir) for it in items])
        if len(outs) != len(items):
            raise RuntimeError(f"batched {cfg.method!r} returned {len(outs)} results for {len(items)} seeds")
        extra = {"seeds_per_process": len(items)}
        stored = [_outputs(it, data, o, extra) for it, o in zip(items, outs)]
    except Exception:
        return [(_failed(b, t0), None) for b in bases]
    t1 = time.time()
    share = (t1 - t0) / len(items)
    return [(b | dict(status="ok", wall_s=share, started=t0, finished=t1, n_samples=len(data)), s)
            for b, s in zip(bases, stored)]


def run_group(items: list[RunItem], store: Store, device: str = "cpu", force: bool = False,
              cache_dir: Path | None = None) -> list[str]:
    """Claim, run (batched when the method has it) and store ``items`` (one config, several seeds); one
    outcome per item as :func:`run_one` gives. Items already done or claimed elsewhere are left out."""
    from .data import is_available

    if not is_available(items[0].cfg.dataset):
        return ["unavailable"] * len(items)
    outcome: dict[str, str] = {}
    mine = []
    for it in items:
        state = store.claim(it.key, force=force)
        if state == "claimed":
            mine.append(it)
        else:
            outcome[it.key] = {"done": "skipped", "busy": "busy"}[state]
    try:
        results = compute_group(mine, device, cache_dir or cache_root(store.path)) if mine else []
    except BaseException:
        for it in mine:
            store.release(it.key)
        raise
    for it, (run, outs) in zip(mine, results):
        store.put(run, outs)
        outcome[it.key] = run["status"]
    return [outcome[it.key] for it in items]


def group_by_config(items: list[RunItem], size: int) -> list[list[RunItem]]:
    """Chunks of at most ``size`` items sharing a config hash (plan order kept within a config)."""
    by: dict[str, list[RunItem]] = {}
    for it in items:
        by.setdefault(it.cfg.config_hash, []).append(it)
    return [g[i:i + size] for g in by.values() for i in range(0, len(g), max(1, size))]


def _term_as_interrupt() -> None:
    """SIGTERM (what a scheduler or `kill` sends; background jobs ignore SIGINT) ends the run in flight
    like Ctrl-C: its claim is released and nothing half-written is stored."""
    import signal
    import threading

    def _raise(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise)


def _worker_init(threads: int, gpu_slots=None) -> None:
    if gpu_slots is not None:  # before torch touches CUDA: this worker sees one GPU, as cuda:0
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu_slots.get()
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(threads)
    threadpool_limits(threads)  # BLAS/OpenMP pools of numpy/scikit-learn: oversubscription is costly here


def _worker(items: list[RunItem], store_path: str, device: str, force: bool) -> tuple[str, list[str]]:
    with Store(store_path) as store:
        return _group_label(items), run_group(items, store, device, force)


def _group_label(items: list[RunItem]) -> str:
    return items[0].label() if len(items) == 1 else f"{items[0].label()}..{items[-1].seed} ({len(items)} seeds)"


def check_data(plan: list[RunItem]) -> None:
    """Check the files of every data set the plan reads against their sizes and checksums, once per
    process, before anything runs: a corrupt or truncated file raises one ``ChecksumMismatch`` naming the
    data set and the file (nothing is stored), instead of one failed run per seed."""
    from .data import ChecksumMismatch, integrity_error

    for name in sorted({it.cfg.dataset for it in plan}):
        if err := integrity_error(name):
            raise ChecksumMismatch(err)


def execute(plan: list[RunItem], store_path: str | Path | None = None, device: str = "auto",
            workers: int = 1, force: bool = False, progress: bool = True, threads: int | None = None,
            workers_per_gpu: int = 0, seeds_per_process: int = 1) -> dict[str, int]:
    """Run ``plan``; returns counts per outcome. Failures never stop the plan.

    ``threads`` caps torch's and the BLAS/OpenMP thread pools of a sequential run (default: the libraries'
    own choice); with ``workers > 1`` each worker gets ``cpu_count // workers`` threads. On ``cuda``,
    ``workers_per_gpu > 0`` runs that many workers on each visible GPU (``CUDA_VISIBLE_DEVICES`` set per
    worker; more than 1 where a run uses a fraction of a GPU); otherwise a cuda plan runs sequentially.
    ``seeds_per_process > 1`` runs up to that many seeds of one config in one call of the method's batched
    implementation where it has one (:func:`compute_group`); one record per seed either way."""
    from tqdm import tqdm

    device = envinfo.resolve_device(device)
    _term_as_interrupt()
    if threads and workers <= 1:
        _worker_init(threads)
    counts: dict[str, int] = {}
    check_data(plan)
    store = Store(store_path)
    done = set() if force else store.keys("ok")  # one query, not one per plan item
    todo = [it for it in plan if it.key not in done]
    counts["skipped"] = len(plan) - len(todo)
    bar = tqdm(total=len(todo), disable=not progress, unit="run", dynamic_ncols=True)
    slots = gpu_slots(workers_per_gpu) if device == "cuda" and workers_per_gpu > 0 else []
    workers = len(slots) or workers
    groups = group_by_config(todo, seeds_per_process)

    def tally(label: str, outcomes: list[str]) -> None:
        for o in outcomes:
            counts[o] = counts.get(o, 0) + 1
        bar.set_description(label)
        bar.update(len(outcomes))

    try:
        if workers <= 1 or (device == "cuda" and not slots):
            for g in groups:
                bar.set_description(_group_label(g))
                tally(_group_label(g), run_group(g, store, device, force))
        else:
            ncpu = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
            threads = max(1, ncpu // workers)
            for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):  # inherited at spawn
                os.environ[var] = str(threads)
            ctx = get_context("spawn")
            queue = None
            if slots:
                queue = ctx.Queue()
                for gpu in slots:
                    queue.put(gpu)
            with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init,
                                     initargs=(threads, queue)) as pool:
                futs = [pool.submit(_worker, g, str(store.path), device, force) for g in groups]
                for f in as_completed(futs):
                    tally(*f.result())
    finally:
        bar.close()
        store.close()
    return counts


def gpu_slots(per_gpu: int, visible: str | None = None) -> list[str]:
    """One entry per local worker: the GPU it is pinned to, ``per_gpu`` workers on each GPU visible
    (``CUDA_VISIBLE_DEVICES`` if set, else every GPU torch counts)."""
    if per_gpu < 1:
        raise ValueError(f"workers per GPU must be >= 1, got {per_gpu}")
    visible = os.environ.get("CUDA_VISIBLE_DEVICES") if visible is None else visible
    if visible:
        gpus = [g.strip() for g in visible.split(",") if g.strip()]
    else:
        import torch

        gpus = [str(i) for i in range(torch.cuda.device_count())]
    return [g for g in gpus for _ in range(per_gpu)]
