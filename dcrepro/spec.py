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
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import UnknownNameError, choice_error
from .paths import project_root

BUDGETS = ("quick", "reduced", "full")
DEFAULT_METRICS = ("acc", "nmi")
"""Metrics a claim or figure uses when it names none."""
__all__ = ["BUDGETS", "project_root", "load_spec", "list_papers", "Spec", "RunConfig", "resolve", "RowRef",
           "choice_error", "UnknownNameError", "Claim", "Figure", "check_default_readings"]




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
    reading: str = "default"
    """Label of the reading variant this config runs (``default``, ``pu_branch=clip``); not in the identity:
    a reading acts through the parameters it sets, so default runs keep their hashes."""

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


_TOP_KEYS = ("paper", "budgets", "jobs", "inputs", "tables", "claims", "figures", "readings", "reading_grids")
_JOB_KEYS = ("method", "datasets", "outputs", "params", "deviations", "assumptions", "budget", "dataset", "subset",
             "subset_seed", "n_clusters", "select_by_labels", "health")
CLAIM_KINDS = ("paired", "threshold", "sweep_argmax", "sweep_pair", "sweep_flat")


@dataclass(frozen=True)
class Claim:
    """A relative claim of the paper (``[[claims]]``); every default lives here."""

    id: str
    kind: str = "paired"
    table: str | None = None
    figure: str | None = None
    better: Any = None
    """paired: the better row; sweep_pair: the better grid value."""
    worse: Any = None
    relation: str = ">"
    """'>' strictly better; '>=' not worse by more than ``margin`` (a non-inferiority test)."""
    margin: float = 1.0
    """Non-inferiority margin in points (for '>=')."""
    metrics: tuple[str, ...] | None = None
    """Metrics tested (None: the table's ``acc`` and ``nmi``; sweeps: every metric the figure plots)."""
    datasets: tuple[str, ...] | None = None
    test: str = "paired_t"
    alpha: float = 0.05
    min_n: int = 5
    """Fewest non-degenerate paired seeds a test needs once degenerate seeds are dropped."""
    testable_at: tuple[str, ...] = BUDGETS
    testable_reason: str = ""
    # threshold claims
    row: str | None = None
    metric: str | None = None
    op: str = "<"
    value: float | None = None
    # sweep claims
    expected: float | None = None
    start: float | None = None
    """sweep_flat: the grid value from which the curve is flat (spec key ``from``)."""
    tolerance: float = 1.5

    @property
    def where(self) -> str:
        return self.table or self.figure or ""


@dataclass(frozen=True)
class Figure:
    """A parameter sweep (``[figures.<id>]``)."""

    id: str
    job: str
    param: Any
    values: tuple
    datasets: tuple[str, ...]
    caption: str = ""
    outputs: tuple[str, ...] | None = None
    metrics: tuple[str, ...] = DEFAULT_METRICS
    seeds: int = 3
    params: dict = field(default_factory=dict)
    budget: str | None = None
    xlabel: str | None = None
    xscale: str | None = None


def _typed(cls, raw: dict, ctx: str, rename: dict | None = None, **extra):
    """Build dataclass ``cls`` from a spec table: an unknown key is an error naming the valid ones."""
    import dataclasses

    rename = rename or {}
    names = [f.name for f in dataclasses.fields(cls)]
    valid = [next((k for k, v in rename.items() if v == n), n) for n in names if n not in extra]
    kw = dict(extra)
    for k, v in raw.items():
        k2 = rename.get(k, k)
        if k2 not in names or k2 in extra:
            raise ValueError(f"{ctx}: unknown key {k!r}; valid keys: {', '.join(valid)}")
        kw[k2] = tuple(v) if isinstance(v, list) else v
    try:
        return cls(**kw)
    except TypeError as e:
        raise ValueError(f"{ctx}: {e}") from None


class Spec:
    """A parsed, validated ``benchmarks/<paper>.toml``. Every error is one line naming the file and section."""

    def __init__(self, paper: str, raw: dict, path: Path):
        from .health import parse_rule
        from .readings import parse_readings

        self.paper, self.raw, self.path = paper, raw, path
        where = path.name
        extra = sorted(set(raw) - set(_TOP_KEYS))
        if extra:
            raise ValueError(f"{where}: unknown section {extra[0]!r}; valid sections: {', '.join(_TOP_KEYS)}")
        self.meta: dict = raw.get("paper", {})
        self.jobs: dict[str, dict] = raw.get("jobs", {})
        self.tables: dict[str, dict] = raw.get("tables", {})
        self.budgets: dict[str, dict] = raw.get("budgets", {})
        bad = [b for b in self.budgets if b not in BUDGETS]
        if bad:
            raise ValueError(f"{where}: [budgets.{bad[0]}]: unknown budget; valid budgets: {', '.join(BUDGETS)}")
        self.figures: dict[str, Figure] = {
            fid: _typed(Figure, f, f"{where}: [figures.{fid}]", id=fid) for fid, f in raw.get("figures", {}).items()}
        self.claims: list[Claim] = [
            _typed(Claim, c, f"{where}: [[claims]] {c.get('id', i + 1)!r}", rename={"from": "start"})
            for i, c in enumerate(raw.get("claims", []))]
        self.readings, self.reading_grids = parse_readings(raw.get("readings", []), raw.get("reading_grids", []),
                                                           self.jobs, where)
        self.health = {}
        for name, job in self.jobs.items():
            try:
                self.health[name] = tuple(parse_rule(r) for r in job.get("health", {}).get("degenerate_if", []))
            except ValueError as e:
                raise ValueError(f"{where}: [jobs.{name}.health]: {e}") from None
        self._validate()
        check_default_readings(self)
        self._check_params()

    # -- validation -------------------------------------------------------------------------------
    def _validate(self) -> None:
        where = f"{self.path.name}"
        for name, job in self.jobs.items():
            extra = sorted(set(job) - set(_JOB_KEYS))
            if extra:
                raise ValueError(f"{where}: [jobs.{name}]: unknown key {extra[0]!r}; valid keys: {', '.join(_JOB_KEYS)}")
            if "method" not in job:
                raise ValueError(f"{where}: [jobs.{name}] has no 'method'")
            for b in job.get("budget", {}):
                if b not in BUDGETS:
                    raise ValueError(f"{where}: [jobs.{name}.budget.{b}]: unknown budget; valid budgets: {', '.join(BUDGETS)}")
            for ds, block in job.get("dataset", {}).items():
                if ds not in job.get("datasets", []):
                    raise ValueError(f"{where}: [jobs.{name}.dataset.{ds}]: not a data set of the job; valid data sets: "
                                     f"{', '.join(job.get('datasets', []))}")
                for b in block.get("budget", {}):
                    if b not in BUDGETS:
                        raise ValueError(f"{where}: [jobs.{name}.dataset.{ds}.budget.{b}]: unknown budget; valid "
                                         f"budgets: {', '.join(BUDGETS)}")
        for tid, table in self.tables.items():
            for row, ref in table.get("rows", {}).items():
                r = RowRef.parse(ref)
                if r.job not in self.jobs:
                    raise ValueError(f"{where}: [tables.{tid}] row {row!r} -> unknown job {r.job!r}; "
                                     f"valid jobs: {', '.join(self.jobs)}")
                outs = self.job_outputs(r.job)
                if r.output not in outs:
                    raise ValueError(f"{where}: [tables.{tid}] row {row!r} -> unknown output {r.output!r} of "
                                     f"job {r.job!r}; valid outputs: {', '.join(outs)}")
        for fid, fig in self.figures.items():
            if fig.job not in self.jobs:
                raise ValueError(f"{where}: [figures.{fid}] -> unknown job {fig.job!r}; valid jobs: {', '.join(self.jobs)}")
        for c in self.claims:
            ctx = f"{where}: [[claims]] {c.id!r}"
            if c.kind not in CLAIM_KINDS:
                raise ValueError(f"{ctx}: unknown kind {c.kind!r}; valid kinds: {', '.join(CLAIM_KINDS)}")
            if c.relation not in (">", ">="):
                raise ValueError(f"{ctx}: unknown relation {c.relation!r}; valid relations: >, >=")
            if c.test not in ("paired_t", "wilcoxon"):
                raise ValueError(f"{ctx}: unknown test {c.test!r}; valid tests: paired_t, wilcoxon")
            bad = [b for b in c.testable_at if b not in BUDGETS]
            if bad:
                raise ValueError(f"{ctx}: testable_at {bad[0]!r}; valid budgets: {', '.join(BUDGETS)}")
            if set(c.testable_at) != set(BUDGETS) and not c.testable_reason:
                raise ValueError(f"{ctx}: testable_at needs a testable_reason")
            if c.kind.startswith("sweep_"):
                if c.figure not in self.figures:
                    raise ValueError(f"{ctx}: unknown figure {c.figure!r}; valid figures: {', '.join(self.figures)}")
                continue
            if c.table not in self.tables:
                raise ValueError(f"{ctx}: unknown table {c.table!r}; valid tables: {', '.join(self.tables)}")
            rows = list(self.tables[c.table].get("rows", {}))
            for r in ([c.row] if c.kind == "threshold" else [c.better, c.worse]):
                if r not in rows:
                    raise ValueError(f"{ctx}: unknown row {r!r} of {c.table}; valid rows: {', '.join(rows)}")

    def _check_params(self) -> None:
        """Every parameter a job, a reading option or a figure sets must be one its method accepts (the
        ``params`` class the method registered); an unknown method is an error here too."""
        import dataclasses

        from .methods import get_method, method_params

        where = self.path.name
        for name, job in self.jobs.items():
            try:
                get_method(job["method"])
            except KeyError as e:
                raise ValueError(f"{where}: [jobs.{name}]: {e}") from None
            cls = method_params(job["method"])
            if cls is None:
                continue
            valid = {f.name for f in dataclasses.fields(cls)}
            sources = [(f"[jobs.{name}]", _resolve_once(self, name, ds, b, None).params)
                       for ds in self.job_datasets(name) for b in BUDGETS]
            sources += [(f"[[readings]] {r.id!r} option {o!r}", p) for r in self.readings.values() if name in r.jobs
                        for o, p in r.options.items()]
            sources += [(f"[figures.{f.id}]", dict(f.params) | {n: None for n in
                         (f.param if isinstance(f.param, tuple) else (f.param,))})
                        for f in self.figures.values() if f.job == name]
            for ctx, params in sources:
                bad = sorted(set(params) - valid - {"n_clusters"})
                if bad:
                    raise ValueError(f"{where}: {ctx}: unknown parameter {bad[0]!r} of method {job['method']!r} "
                                     f"({cls.__name__}); valid parameters: {', '.join(sorted(valid))}")

    def variants(self, selectors: list[str] | None = None):
        """Reading variants named by ``selectors`` (see :func:`dcrepro.readings.select_variants`)."""
        from .readings import select_variants

        return select_variants(self.readings, self.reading_grids, selectors)

    def table_jobs(self, tid: str) -> list[str]:
        return list(dict.fromkeys(r.job for r in self.table_rows(tid).values()))

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

    def figure(self, fid: str) -> Figure:
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

    def job_outputs(self, name: str) -> tuple[str, ...]:
        """The outputs (table rows) a run of job ``name`` yields: its ``outputs``, else the job's own name."""
        return tuple(self.job(name).get("outputs", [name]))

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
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{path}: TOML syntax error: {e}") from None
    return Spec(paper, raw, path)


def load_spec(paper: str) -> Spec:
    return _load(paper, str(project_root()))


def _merge(dst: dict, src: dict) -> dict:
    out = copy.deepcopy(dst)
    for k, v in src.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def _layers(spec: "Spec", job: dict, dataset: str, budget: str) -> list[dict]:
    """Override layers in order: job base, the spec's ``[inputs.<data set>]`` (what every job on that input
    shares, e.g. the SimCLR-feature deviations) and its budget, job budget, job data-set base, job data-set
    budget."""
    ds = job.get("dataset", {}).get(dataset, {})
    shared = spec.raw.get("inputs", {}).get(dataset, {})
    return [job, shared, shared.get("budget", {}).get(budget, {}), job.get("budget", {}).get(budget, {}), ds,
            ds.get("budget", {}).get(budget, {})]


def _resolve_once(spec: Spec, job_name: str, dataset: str, budget: str, overrides: dict | None,
                  reading: dict | None = None) -> RunConfig:
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
    if reading:
        params = _merge(params, reading)
    if overrides:
        overrides = dict(overrides)
        n_clusters = overrides.pop("n_clusters", n_clusters)
        params = _merge(params, overrides)
    if select:
        devs.append("model selection uses ground-truth labels (official-code checkpointing)")
    return RunConfig(spec.paper, job_name, job["method"], dataset, budget, params, subset,
                     int(job.get("subset_seed", 0)), n_clusters, bool(select), devs, assume)


def resolve(spec: Spec, job_name: str, dataset: str, budget: str, overrides: dict | None = None,
            variant=None) -> RunConfig:
    """Resolve the run config of ``job_name`` on ``dataset`` at ``budget`` under reading ``variant`` (a
    :class:`dcrepro.readings.ReadingVariant`; None: the default reading), plus sweep ``overrides``."""
    if budget not in BUDGETS:
        raise choice_error("budget", budget, BUDGETS)
    if dataset not in spec.job_datasets(job_name):
        raise choice_error("dataset", dataset, spec.job_datasets(job_name))
    reading = variant.overrides(spec.readings, job_name) if variant is not None else {}
    cfg = _resolve_once(spec, job_name, dataset, budget, overrides, reading)
    full = _resolve_once(spec, job_name, dataset, "full", overrides, reading)
    if reading:
        cfg.reading = variant.label
    cfg.effective_budget = "full" if cfg.config_hash == full.config_hash else budget
    if cfg.effective_budget == "full":
        # the same computation as the full budget: only data-set level deviations remain
        cfg.deviations = full.deviations
    elif budget in ("quick", "reduced"):
        cfg.deviations.insert(0, f"{budget} budget")
    return cfg


def check_default_readings(spec: Spec) -> None:
    """Each reading's default option must be what its jobs run at the full budget (the paper's schedule), so
    that default runs keep their config hashes and the default names what runs: a parameter the job sets must
    have the default option's value (one it does not set runs at the method's own default, which the option
    names). A reduced or quick budget may set another value of the same parameter: that is a declared budget
    deviation, and a non-default option overrides it too. ValueError naming the file, reading and job."""
    for r in spec.readings.values():
        for job in r.jobs:
            for ds in spec.job_datasets(job):
                params = _resolve_once(spec, job, ds, "full", None).params
                diff = {k: (params[k], v) for k, v in r.options[r.default].items() if k in params and params[k] != v}
                if diff:
                    raise ValueError(f"{spec.path.name}: [[readings]] {r.id!r}: default {r.default!r} differs "
                                     f"from what job {job!r} runs on {ds} at the full budget: "
                                     + ", ".join(f"{k} = {a!r} in the job, {v!r} in the option" for k, (a, v) in diff.items()))


def tables_using(name: str) -> list[str]:
    """'paper/table' ids whose columns (or the inputs behind them) use data set ``name``, read from the specs."""
    out = []
    for paper in list_papers():
        spec = load_spec(paper)
        for tid in spec.tables:
            inputs = {ds for _, ds in spec.runs_for_table(tid)} | set(spec.table_datasets(tid))
            if name in inputs or name in {ds.partition("@")[0] for ds in inputs}:
                out.append(f"{paper}/{tid}")
    return out


def feature_sets_used() -> list[str]:
    """Every backbone feature set (``<image set>@<space>``) a job of some spec runs on."""
    return sorted({ds for paper in list_papers() for job in load_spec(paper).jobs.values()
                   for ds in job.get("datasets", []) if "@" in ds})
