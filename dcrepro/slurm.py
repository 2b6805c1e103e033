"""Run a plan on a SLURM cluster through submitit: nodes compute, only the driver writes the store.

``execute_slurm`` (``dcrepro run --executor slurm``) claims the plan's runs in the store, submits them as
submitit job arrays (``bundle`` runs per array task), then polls: each finished run arrives as a record
file that the driver puts into the store (sqlite is never written by the nodes, so the store file needs
no shared-FS locking). The job folder (default ``<store>.jobs/`` beside the store; it must be on a file
system the nodes share) holds::

    book.jsonl          what was submitted ({"submit": job, "keys": [...]}) and settled ({"settle": job, ...})
    results/<key>.pkl   (record, outputs) of a finished run, written atomically by the node
    submitit/           submitit's pickles and the logs <job>_0_log.{out,err}

A run that raises is a 'failed' record with its traceback and the path of its log; an array task that
dies (time limit, out of memory, scancel, node failure) gets 'failed' records for the runs it had not
finished, with the tail of its stderr. No job's failure cancels another, and a driver that is
interrupted or killed leaves the jobs running: the same command again collects what finished, waits
for what is still queued or running, and submits only what is missing (failed runs are retried, as a
local re-run does). ``plan_status`` (``dcrepro status``) counts done / failed / queued / running per plan.

Site defaults come from a TOML file (``--slurm-config``, else ``$DCREPRO_SLURM_CONFIG``): the keys of
:class:`SlurmOptions` under ``[slurm]``; see ``slurm.example.toml`` in the checkout.
"""
from __future__ import annotations

import getpass
import json
import os
import pickle
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Callable

from .runner import RunItem, check_data, compute
from .store import Store

__all__ = ["SlurmOptions", "load_options", "execute_slurm", "plan_status", "job_folder", "run_bundle"]

_LIVE = {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED", "REQUEUE_HOLD",
         "REQUEUE_FED", "RESIZING", "SIGNALING", "STAGE_OUT", "STOPPED", "RESV_DEL_HOLD"}
_QUEUED = {"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD"}
_MAX_ARRAY = 1000  # SLURM's default MaxArraySize is 1001


@dataclass
class SlurmOptions:
    """Resources of one array task and how the driver submits (config keys and ``--slurm-*`` flags)."""

    partition: str | None = None
    time: int = 60
    """Minutes per array task (a bundle of runs)."""
    gpus: int = 0
    """GPUs per array task."""
    cpus: int = 2
    mem: float | None = None
    """GB per array task (None: the partition's default)."""
    bundle: int = 1
    """Runs per array task (more amortises start-up and queue wait for short runs)."""
    parallelism: int = 256
    """Array tasks running at once."""
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    setup: list[str] = field(default_factory=list)
    """Shell lines run before python on the node, e.g. ``module load cuda``, ``source venv/bin/activate``."""
    additional: dict = field(default_factory=dict)
    """Any other sbatch option, e.g. ``{exclude = "node07"}``."""
    folder: str | None = None
    """Job folder on a shared file system (default: ``<store>.jobs/`` beside the store)."""
    poll: float = 15.0
    """Seconds between two looks at the queue."""

    def validate(self) -> "SlurmOptions":
        for name, lo in (("time", 1), ("cpus", 1), ("bundle", 1), ("parallelism", 1), ("gpus", 0)):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < lo:
                raise ValueError(f"slurm {name} must be an integer >= {lo}, got {v!r}")
        if self.mem is not None and not (isinstance(self.mem, (int, float)) and self.mem > 0):
            raise ValueError(f"slurm mem must be a number of GB > 0, got {self.mem!r}")
        if self.poll <= 0:
            raise ValueError(f"slurm poll must be > 0 seconds, got {self.poll!r}")
        return self


def load_options(config: str | Path | None = None, **flags) -> SlurmOptions:
    """Options from the site config file (``[slurm]`` table; ``$DCREPRO_SLURM_CONFIG`` when ``config`` is
    None), overridden by the ``flags`` that are not None. Unknown keys raise naming the valid ones."""
    import tomllib

    valid = [f.name for f in fields(SlurmOptions)]
    values: dict = {}
    path = config or os.environ.get("DCREPRO_SLURM_CONFIG")
    if path:
        if not Path(path).is_file():
            raise ValueError(f"slurm config file {str(path)!r} not found")
        raw = tomllib.loads(Path(path).read_text())
        values = raw.get("slurm", raw)
    values |= {k: v for k, v in flags.items() if v is not None}
    for k in values:
        if k not in valid:
            raise ValueError(f"unknown slurm option {k!r}; valid slurm options: {', '.join(valid)}")
    return SlurmOptions(**values).validate()


def job_folder(store_path: str | Path, options: SlurmOptions) -> Path:
    p = Path(store_path)
    return Path(options.folder) if options.folder else p.with_name(p.stem + ".jobs")


# -- on the node ------------------------------------------------------------------------------------
def run_bundle(items: list[RunItem], device: str, cache_dir: str, results_dir: str,
               setup: Callable[[], None] | None = None) -> list[str]:
    """One array task: compute each run and leave its record in ``results_dir`` (never the store)."""
    import submitit

    from . import envinfo
    from .runner import _worker_init

    if setup is not None:
        setup()
    if os.environ.get("SLURM_CPUS_PER_TASK"):
        _worker_init(int(os.environ["SLURM_CPUS_PER_TASK"]))  # torch/BLAS threads = the CPUs granted
    device = envinfo.resolve_device(device)
    env = submitit.JobEnvironment()
    statuses = []
    for it in items:
        run, outputs = compute(it, device, Path(cache_dir))
        if run["status"] == "failed":
            run["error"] += f"\nslurm job {env.job_id}, log: {env.paths.stderr}"
        _dump(Path(results_dir) / f"{it.key}.pkl", (run, outputs))
        statuses.append(run["status"])
    return statuses


def _dump(path: Path, obj) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        pickle.dump(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)  # the driver never sees half a record


# -- the driver's book of submissions ---------------------------------------------------------------
class _Book:
    """Append-only JSONL of submissions and settlements; read again on every poll (several drivers may
    share a job folder)."""

    def __init__(self, folder: Path):
        self.path = folder / "book.jsonl"
        self.when: dict[str, float] = {}
        """Submission time of each job id seen by the last :meth:`pending`."""

    def pending(self) -> dict[str, str]:
        """{key: job id} of submitted runs not yet settled (last submission wins)."""
        out: dict[str, str] = {}
        if not self.path.exists():
            return out
        for line in self.path.read_text().splitlines():
            try:
                e = json.loads(line)
            except json.JSONDecodeError:  # a line cut by a kill mid-write
                continue
            if "submit" in e:
                out |= dict.fromkeys(e["keys"], e["submit"])
                self.when[e["submit"]] = e["at"]
            else:
                for k in e.get("keys", []):
                    if out.get(k) == e["settle"]:
                        del out[k]
        return out

    def _append(self, entry: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(entry) + "\n")

    def submitted(self, job: str, keys: list[str]) -> None:
        self._append({"submit": job, "keys": keys, "at": time.time()})

    def settled(self, job: str, keys: list[str], how: str) -> None:
        self._append({"settle": job, "keys": keys, "how": how, "at": time.time()})


def queue_states() -> tuple[dict[str, str] | None, float]:
    """({job id: state} of this user's jobs that squeue knows (array tasks one per line, recently ended
    ones too), when it was asked); None when squeue fails (nothing is then judged lost)."""
    t = time.time()
    try:
        out = subprocess.run(["squeue", "-h", "-r", "-t", "all", "-u", getpass.getuser(), "-o", "%i|%T"],
                             capture_output=True, text=True, timeout=120, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None, t
    return dict(line.split("|", 1) for line in out.split()), t


def _log_tail(folder: Path, job: str, n: int = 40) -> str:
    from submitit.core.utils import JobPaths

    path = JobPaths(folder / "submitit", job_id=job, task_id=0).stderr
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return f"(no log at {path})"
    return f"log {path}, last lines:\n" + "\n".join(lines[-n:])


def _collect(store: Store, folder: Path, book: _Book, queue: tuple[dict[str, str] | None, float]) -> Counter:
    """Store every record the nodes left; then settle, as failed, runs whose array task ended without
    one. ``queue`` (:func:`queue_states`) must be read *before* this call: a task writes its records
    before it ends, and a job submitted after the look (by another driver) is not judged."""
    states, asked = queue
    counts: Counter = Counter()
    pending = book.pending()
    for f in sorted((folder / "results").glob("*.pkl")):
        try:
            with open(f, "rb") as fh:
                run, outputs = pickle.load(fh)
        except FileNotFoundError:  # another driver took it
            continue
        store.put(run, outputs)
        book.settled(pending.get(run["key"], ""), [run["key"]], run["status"])
        f.unlink(missing_ok=True)
        counts[run["status"]] += 1
        pending.pop(run["key"], None)
    if states is None:
        return counts
    lost: dict[str, list[str]] = {}
    for key, job in pending.items():
        if states.get(job) not in _LIVE and book.when.get(job, asked) < asked:
            lost.setdefault(job, []).append(key)
    meta = _submitted_runs(folder) if lost else {}
    for job, keys in lost.items():
        msg = (f"slurm job {job} ended ({states.get(job, 'left the queue')}) without storing this run\n"
               + _log_tail(folder, job))
        for key in keys:
            store.put({"key": key, **meta.get(key, {}), "status": "failed", "error": msg, "finished": time.time()})
            counts["failed"] += 1
        book.settled(job, keys, "lost")
    return counts


def _submitted_runs(folder: Path) -> dict[str, dict]:
    """Identity columns of submitted runs (``runs.jsonl``), so a lost run's failed record names its cell."""
    out = {}
    path = folder / "runs.jsonl"
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            e = json.loads(line)
        except json.JSONDecodeError:
            continue
        out[e.pop("key")] = e
    return out


def _identity(it: RunItem) -> dict:
    c = it.cfg
    return dict(key=it.key, paper=c.paper, job=c.job, method=c.method, dataset=c.dataset, seed=it.seed,
                budget=c.budget, effective_budget=c.effective_budget, config_hash=c.config_hash,
                config_json=c.to_json(), deviations_json=json.dumps(c.deviations))


# -- the driver -------------------------------------------------------------------------------------
def _executor(folder: Path, o: SlurmOptions):
    try:
        import submitit
    except ImportError:
        raise ValueError("--executor slurm needs submitit: pip install -e '.[slurm]'") from None
    ex = submitit.AutoExecutor(folder=folder / "submitit", cluster="slurm")
    params = dict(name="dcrepro", timeout_min=o.time, cpus_per_task=o.cpus, slurm_array_parallelism=o.parallelism,
                  slurm_partition=o.partition, mem_gb=o.mem, slurm_account=o.account, slurm_qos=o.qos,
                  slurm_constraint=o.constraint, slurm_setup=o.setup or None,
                  slurm_additional_parameters=o.additional or None)
    if o.gpus:
        params["gpus_per_node"] = o.gpus
    ex.update_parameters(**{k: v for k, v in params.items() if v is not None})
    return ex


def execute_slurm(plan: list[RunItem], store_path: str | Path | None = None, device: str = "auto",
                  force: bool = False, options: SlurmOptions | None = None, progress: bool = True,
                  setup: Callable[[], None] | None = None) -> dict[str, int]:
    """Run ``plan`` as SLURM job arrays and store what comes back; returns counts per outcome (as
    :func:`dcrepro.runner.execute`, plus 'submitted'). ``device`` is resolved on the node. ``setup`` is
    called on the node before the runs (tests register a toy method with it)."""
    from tqdm import tqdm

    from .data import is_available

    o = (options or SlurmOptions()).validate()
    check_data(plan)
    store = Store(store_path)
    folder = job_folder(store.path, o)
    (folder / "results").mkdir(parents=True, exist_ok=True)
    book = _Book(folder)
    counts: Counter = Counter()
    try:
        counts.update(_collect(store, folder, book, queue_states()))  # what finished while no driver ran
        avail = [it for it in plan if is_available(it.cfg.dataset)]
        counts["unavailable"] = len(plan) - len(avail)
        done = set() if force else store.keys("ok")
        in_flight = book.pending()
        ours = {it.key for it in avail}
        todo = [it for it in avail if it.key not in done and it.key not in in_flight]
        counts["skipped"] = sum(it.key in done and it.key not in in_flight for it in avail)
        claimed = []
        for it in todo:
            state = store.claim(it.key, force=force)
            if state == "claimed":
                claimed.append(it)
            else:
                counts["skipped" if state == "done" else "busy"] += 1
        _submit(claimed, store, folder, book, device, o, setup)
        counts["submitted"] = len(claimed)
        waiting = ours & (in_flight.keys() | {it.key for it in claimed})
        bar = tqdm(total=len(waiting), disable=not progress, unit="run", dynamic_ncols=True, desc="slurm")
        try:
            while True:
                pending = book.pending().keys() & waiting
                bar.n = len(waiting) - len(pending)
                bar.refresh()
                if not pending:
                    break
                time.sleep(o.poll)
                for k, v in _collect(store, folder, book, queue_states()).items():
                    counts[k] += v
        finally:
            bar.close()
    except KeyboardInterrupt:
        print("driver interrupted: submitted jobs keep running; the same command collects them "
              "(scancel --name=dcrepro stops them)")
        raise
    finally:
        store.close()
    return {k: v for k, v in counts.items() if v}


def _submit(items: list[RunItem], store: Store, folder: Path, book: _Book, device: str, o: SlurmOptions,
            setup) -> None:
    if not items:
        return
    with open(folder / "runs.jsonl", "a") as f:
        for it in items:
            f.write(json.dumps(_identity(it)) + "\n")
    ex = _executor(folder, o)
    bundles = [items[i:i + o.bundle] for i in range(0, len(items), o.bundle)]
    cache = str(store.path.parent / "cache")
    results = str(folder / "results")
    from submitit.core.utils import FailedJobError

    for i in range(0, len(bundles), _MAX_ARRAY):
        chunk = bundles[i:i + _MAX_ARRAY]
        n = len(chunk)
        try:
            jobs = ex.map_array(run_bundle, chunk, [device] * n, [cache] * n, [results] * n, [setup] * n)
        except FailedJobError as e:  # sbatch said no (unknown partition, account, ...): nothing of it runs
            for it in items[i * o.bundle:]:
                store.release(it.key)
            lines = [ln for ln in str(e).splitlines() if "error" in ln.lower()] or str(e).splitlines()[-1:]
            raise ValueError(f"sbatch refused the job array: {lines[-1].strip()}") from None
        for job, bundle in zip(jobs, chunk):
            book.submitted(job.job_id, [it.key for it in bundle])


def plan_status(plan: list[RunItem], store: Store, folder: Path | None = None) -> dict[str, Counter]:
    """{paper: counts} of ``plan``'s runs: done, failed, queued, running (a SLURM task, or a local claim),
    collecting (its task ended; the driver has not stored it yet), not started, no data."""
    from .data import is_available

    ok, failed = store.keys("ok"), store.keys("failed")
    claims = {k for (k,) in store._con.execute("SELECT key FROM claims")}
    pending = _Book(folder).pending() if folder and folder.exists() else {}
    states = (queue_states()[0] or {}) if pending else {}
    out: dict[str, Counter] = {}
    for it in plan:
        k = it.key
        if k in pending:
            st = states.get(pending[k])
            what = "queued" if st in _QUEUED else "running" if st in _LIVE else "collecting"
        elif k in ok:
            what = "done"
        elif k in failed:
            what = "failed"
        elif k in claims:
            what = "running"
        elif not is_available(it.cfg.dataset):
            what = "no data"
        else:
            what = "not started"
        out.setdefault(it.cfg.paper, Counter())[what] += 1
    return out
