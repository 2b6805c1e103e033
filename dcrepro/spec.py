"""Reproduction specs: read ``benchmarks/<paper>.toml`` and resolve runs.

A spec holds no code. It declares, per paper: the budgets, the jobs (a job = one method run that may
yield several table rows), the tables (which row is which ``job:output``), the claims and the
figures (parameter sweeps). :func:`resolve` turns (paper, job, data set, budget) into a
:class:`RunConfig`, whose hash is the run's identity together with the seed: the same identity
always does the same thing, and a config at a reduced budget that equals the full one *is* a full run
(its cells are comparable with the paper).
"""
from __future__ import annotations

import copy
import functools
import hashlib
import json
import os
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

BUDGETS = ("quick", "reduced", "full")
__all__ = ["BUDGETS", "project_root", "load_spec", "list_papers", "Spec", "RunConfig", "resolve", "RowRef",
           "choice_error"]


def choice_error(kind: str, name: Any, valid) -> KeyError:
    """The one way dcrepro says 'no such thing': names the valid choices."""
    return KeyError(f"unknown {kind} {name!r}; valid {kind}s: {', '.join(map(str, valid))}")


def project_root() -> Path:
    """Folder holding ``benchmarks/`` and ``reference_results/``: $DCREPRO_HOME, else the current
    directory if it has ``benchmarks/``, else the source checkout this package lives in."""
    if os.environ.get("DCREPRO_HOME"):
        return Path(os.environ["DCREPRO_HOME"])
    if (Path.cwd() / "benchmarks").is_dir():
        return Path.cwd()
    return Path(__file__).resolve().parents[1]


def list_papers() -> list[str]:
    return sorted(p.stem for p in (project_root() / "benchmarks").glob("*.toml"))


@dataclass(frozen=True)
class RowRef:
    """A table row's source: ``"job:output"``, or ``{ ref = "job:output", datasets = [...] }`` for a row
    that belongs to some columns only (DCGLU Table 4: "DAC-Snips" is the SNIPS run)."""

    job: str
    output: str
    datasets: tuple[str, ...] | None = None

    @classmethod
    def parse(cls, s) -> "RowRef":
        ds = None
        if isinstance(s, dict):
            ds = tuple(s["datasets"]) if "datasets" in s else None
            s = s["ref"]
        job, _, out = s.partition(":")
        return cls(job, out or job, ds)


@dataclass
class RunConfig:
    """Everything that determines what a run does, except its seed."""

    paper: str
    job: str
    method: str
    dataset: str
    budget: str  # requested budget
    params: dict[str, Any]
    subset: int | None = None
    subset_seed: int = 0
    n_clusters: int | None = None
    select_by_labels: bool = False
    deviations: list[str] = field(default_factory=list)
    """Declared departures from the paper's protocol: any one makes the cells 'not comparable'."""
    assumptions: list[str] = field(default_factory=list)
    """Choices for details the paper does not state (shown with the tables; cells stay comparable)."""
    effective_budget: str = ""  # 'full' when this config equals the full-budget one

    def identity(self) -> dict:
        """The fields that define the computation (budget names and prose excluded)."""
        return {"paper": self.paper, "job": self.job, "method": self.method, "dataset": self.dataset,
                "params": self.params, "subset": self.subset, "subset_seed": self.subset_seed,
                "n_clusters": self.n_clusters, "select_by_labels": self.select_by_labels}

    @property
    def config_hash(self) -> str:
        blob = json.dumps(self.identity(), sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @property
    def comparable(self) -> bool:
        """Comparable with the paper: the full schedule and no declared deviation."""
        return self.effective_budget == "full" and not self.deviations

    def to_json(self) -> dict:
        return asdict(self) | {"config_hash": self.config_hash}


class Spec:
    """A parsed ``benchmarks/<paper>.toml``."""

    def __init__(self, paper: str, raw: dict, path: Path):
        self.paper, self.raw, self.path = paper, raw, path
        self.meta: dict = raw.get("paper", {})
        self.jobs: dict[str, dict] = raw.get("jobs", {})
        self.tables: dict[str, dict] = raw.get("tables", {})
        self.claims: list[dict] = raw.get("claims", [])
        self.figures: dict[str, dict] = raw.get("figures", {})
        self.budgets: dict[str, dict] = raw.get("budgets", {})
        self._validate()

    # -- validation -------------------------------------------------------------------------------
    def _validate(self) -> None:
        where = f"{self.path.name}"
        for name, job in self.jobs.items():
            if "method" not in job:
                raise ValueError(f"{where}: job {name!r} has no 'method'")
            for b in job.get("budget", {}):
                if b not in BUDGETS:
                    raise ValueError(f"{where}: job {name!r} budget {b!r}; valid budgets: {', '.join(BUDGETS)}")
        for tid, table in self.tables.items():
            for row, ref in table.get("rows", {}).items():
                r = RowRef.parse(ref)
                if r.job not in self.jobs:
                    raise ValueError(f"{where}: table {tid} row {row!r} -> unknown job {r.job!r}; "
                                     f"valid jobs: {', '.join(self.jobs)}")
                outs = self.jobs[r.job].get("outputs", [r.job])
                if r.output not in outs:
                    raise ValueError(f"{where}: table {tid} row {row!r} -> unknown output {r.output!r} of "
                                     f"job {r.job!r}; valid outputs: {', '.join(outs)}")

    # -- lookups ----------------------------------------------------------------------------------
    @property
    def nmi_variant(self) -> str:
        return self.meta.get("nmi", "arithmetic")

    @property
    def n_seeds(self) -> int:
        return int(self.meta.get("seeds", 10))

    def table(self, tid: str) -> dict:
        if tid not in self.tables:
            raise choice_error("table", tid, list(self.tables))
        return self.tables[tid]

    def figure(self, fid: str) -> dict:
        if fid not in self.figures:
            raise choice_error("figure", fid, list(self.figures))
        return self.figures[fid]

    def job(self, name: str) -> dict:
        if name not in self.jobs:
            raise choice_error("job", name, list(self.jobs))
        return self.jobs[name]

    def table_rows(self, tid: str) -> dict[str, RowRef]:
        return {row: RowRef.parse(ref) for row, ref in self.table(tid).get("rows", {}).items()}

    def table_datasets(self, tid: str) -> list[str]:
        return list(self.table(tid).get("datasets", []))

    def job_datasets(self, name: str) -> list[str]:
        return list(self.job(name).get("datasets", []))

    def job_input(self, tid: str, job: str, column: str) -> str | None:
        """The data set ``job`` runs on for table column ``column``: the column itself, or the table's
        ``column_inputs`` entry (e.g. DCSS Table 1's CIFAR-10 column -> ``cifar10@simclr_h`` features for the
        AE-based rows, while k-means runs on the raw images); None when the job does not run there."""
        ds = self.job_datasets(job)
        if column in ds:
            return column
        alt = self.table(tid).get("column_inputs", {}).get(column)
        return alt if alt in ds else None

    def runs_for_table(self, tid: str, rows=None, datasets=None) -> list[tuple[str, str]]:
        """(job, dataset) pairs needed to fill table ``tid`` (restricted to ``rows``/``datasets``)."""
        trows = self.table_rows(tid)
        if rows:
            bad = [r for r in rows if r not in trows]
            if bad:
                raise choice_error("row", bad[0], list(trows))
            trows = {r: trows[r] for r in rows}
        tds = self.table_datasets(tid)
        if datasets:
            bad = [d for d in datasets if d not in tds]
            if bad:
                raise choice_error("dataset", bad[0], tds)
            tds = [d for d in tds if d in datasets]
        pairs: list[tuple[str, str]] = []
        for ref in trows.values():
            for col in tds:
                if ref.datasets is not None and col not in ref.datasets:
                    continue
                ds = self.job_input(tid, ref.job, col)
                if ds is not None and (ref.job, ds) not in pairs:
                    pairs.append((ref.job, ds))
        return pairs


@functools.lru_cache(maxsize=None)
def _load(paper: str, root: str) -> Spec:
    path = Path(root) / "benchmarks" / f"{paper}.toml"
    if not path.exists():
        raise choice_error("paper", paper, list_papers())
    with open(path, "rb") as f:
        return Spec(paper, tomllib.load(f), path)


def load_spec(paper: str) -> Spec:
    return _load(paper, str(project_root()))


def _merge(dst: dict, src: dict) -> dict:
    out = copy.deepcopy(dst)
    for k, v in src.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def _layers(spec: "Spec", job: dict, dataset: str, budget: str) -> list[dict]:
    """Override layers in order: job base, the spec's ``[inputs.<data set>]`` (what every job on that input
    shares, e.g. the SimCLR-feature deviations), job budget, job data-set base, job data-set budget."""
    ds = job.get("dataset", {}).get(dataset, {})
    shared = spec.raw.get("inputs", {}).get(dataset, {})
    return [job, shared, job.get("budget", {}).get(budget, {}), ds, ds.get("budget", {}).get(budget, {})]


def _resolve_once(spec: Spec, job_name: str, dataset: str, budget: str, overrides: dict | None) -> RunConfig:
    job = spec.job(job_name)
    params: dict = {}
    subset, n_clusters, select, devs, assume = None, None, False, [], []
    for layer in _layers(spec, job, dataset, budget):
        params = _merge(params, layer.get("params", {}))
        subset = layer.get("subset", subset)
        n_clusters = layer.get("n_clusters", n_clusters)
        select = layer.get("select_by_labels", select)
        devs += [d for d in layer.get("deviations", []) if d not in devs]
        assume += [a for a in layer.get("assumptions", []) if a not in assume]
    if overrides:
        overrides = dict(overrides)
        n_clusters = overrides.pop("n_clusters", n_clusters)
        params = _merge(params, overrides)
    if select:
        devs.append("model selection uses ground-truth labels (official-code checkpointing)")
    return RunConfig(spec.paper, job_name, job["method"], dataset, budget, params, subset,
                     int(job.get("subset_seed", 0)), n_clusters, bool(select), devs, assume)


def resolve(spec: Spec, job_name: str, dataset: str, budget: str, overrides: dict | None = None) -> RunConfig:
    """Resolve the run config of ``job_name`` on ``dataset`` at ``budget`` (plus sweep ``overrides``)."""
    if budget not in BUDGETS:
        raise choice_error("budget", budget, BUDGETS)
    if dataset not in spec.job_datasets(job_name):
        raise choice_error("dataset", dataset, spec.job_datasets(job_name))
    cfg = _resolve_once(spec, job_name, dataset, budget, overrides)
    full = _resolve_once(spec, job_name, dataset, "full", overrides)
    cfg.effective_budget = "full" if cfg.config_hash == full.config_hash else budget
    if cfg.effective_budget == "full":
        # the same computation as the full budget: only data-set level deviations remain
        cfg.deviations = full.deviations
    elif budget in ("quick", "reduced"):
        cfg.deviations.insert(0, f"{budget} budget")
    return cfg
