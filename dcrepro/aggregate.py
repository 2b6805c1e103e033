"""From stored runs to table cells: per-seed values, mean ± std, band and verdict per cell.

:func:`collect` gathers, for every (row, data set) a table needs, the stored records of the config
that the requested budget resolves to; :func:`table_cells` joins them with the reference numbers
into one long frame (one line per printed cell), which :mod:`dcrepro.tables` renders and
``dcrepro check`` tests. Only records whose config hash equals the current spec's are used, so a
changed spec never mixes with stale numbers.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .health import Rule, check_health, n_clusters_of, params_of
from .metrics import get_metric
from .reference import (band_for, load_reference, our_metric_name, reference_layout, to_reference_scale,
                        verdict)
from .spec import RunConfig, load_spec, resolve
from .store import Record, Store

__all__ = ["Cell", "PaperReference", "AcceptedReference", "cell_verdict", "RowRuns", "RecordIndex", "index_records", "variants_run", "collect", "table_cells", "seed_values"]


class RecordIndex:
    """A paper's stored records, read once and looked up in memory (same ``records`` call as the store)."""

    def __init__(self, records: list[Record], store: Store | None = None):
        self.store = store
        self._by: dict[tuple, list[Record]] = {}
        for r in records:
            self._by.setdefault((r.paper, r.job, r.dataset, r.config_hash), []).append(r)

    def records(self, paper=None, job=None, dataset=None, config_hash=None, status=None) -> list[Record]:
        if None in (paper, job, dataset, config_hash):
            return [r for k, rs in self._by.items() for r in rs
                    if all(v is None or v == kv for v, kv in zip((paper, job, dataset, config_hash), k))
                    and (status is None or r.status == status)]
        return [r for r in self._by.get((paper, job, dataset, config_hash), []) if status is None or r.status == status]


def index_records(store, paper: str) -> RecordIndex:
    """One read of ``paper``'s records from ``store`` (a Store, or already an index)."""
    if isinstance(store, RecordIndex):
        return store
    return RecordIndex(store.records(paper=paper), store)


@dataclass
class RowRuns:
    """The stored runs behind one (row, data set) of a table."""

    row: str
    dataset: str
    output: str
    cfg: RunConfig
    ok: list[Record] = field(default_factory=list)
    failed: list[Record] = field(default_factory=list)
    rules: tuple[Rule, ...] = ()
    """The job's degeneracy rules (``[jobs.<job>.health]``)."""

    def values(self, metric: str) -> dict[int, float]:
        """{seed: value} of ``metric`` (fractions as stored)."""
        return {r.seed: r.outputs[self.output][metric] for r in self.ok
                if metric in r.outputs.get(self.output, {})}

    def health(self) -> dict[int, tuple[str, list[str]]]:
        """{seed: ('ok' | 'degenerate' | 'unknown', rules that held)} of this row's output."""
        k, params = n_clusters_of(self.cfg), params_of(self.cfg)
        return {r.seed: check_health(self.rules, r.outputs.get(self.output, {}), k, params) for r in self.ok}

    def degenerate(self) -> dict[int, list[str]]:
        """{seed: rules that held} for the degenerate seeds."""
        return {s: rules for s, (state, rules) in self.health().items() if state == "degenerate"}


def collect(paper: str, table: str, budget: str, store, variant=None) -> dict[tuple[str, str], RowRuns]:
    """The stored runs behind every (row, column) of ``table`` under reading ``variant`` (None: default)."""
    spec = load_spec(paper)
    store = index_records(store, paper)
    out: dict[tuple[str, str], RowRuns] = {}
    for row, ref in spec.table_rows(table).items():
        for col in spec.table_datasets(table):
            if ref.datasets is not None and col not in ref.datasets:
                continue
            ds = spec.job_input(table, ref.job, col)
            if ds is None:
                continue
            cfg = resolve(spec, ref.job, ds, budget, variant=variant)
            rr = RowRuns(row, col, ref.output, cfg, rules=spec.health.get(ref.job, ()))
            for rec in store.records(paper, ref.job, ds, cfg.config_hash):
                if rec.status == "ok" and ref.output in rec.outputs:
                    rr.ok.append(rec)
                elif rec.status == "failed":
                    rr.failed.append(rec)
            out[(row, col)] = rr
    return out


def variants_run(paper: str, budget: str, store, jobs=None) -> list:
    """The reading variants (default first) with at least one stored ok run of a job they change (among
    ``jobs`` when given) at ``budget``, in tables or figures."""
    from .sweeps import sweep_configs

    spec = load_spec(paper)
    index = index_records(store, paper)
    out = []
    for v in spec.variants(["all"]):
        if not v.choices:
            out.append(v)
            continue
        changed = {j for rid, _ in v.choices for j in spec.readings[rid].jobs if jobs is None or j in jobs}
        hit = any(index.records(paper, j, ds, resolve(spec, j, ds, budget, variant=v).config_hash, "ok")
                  for j in changed for ds in spec.job_datasets(j))
        hit = hit or any(index.records(paper, spec.figure(fid).job, ds, cfg.config_hash, "ok")
                         for fid in spec.figures if spec.figure(fid).job in changed
                         for ds, _, cfg in sweep_configs(paper, fid, budget, v))
        if hit:
            out.append(v)
    return out


def seed_values(runs: dict[tuple[str, str], RowRuns], row: str, dataset: str, metric: str) -> dict[int, float]:
    rr = runs.get((row, dataset))
    return rr.values(metric) if rr else {}


def _ordered(values, order) -> list:
    order = list(order or [])
    return [v for v in order if v in values] + [v for v in values if v not in order]


@dataclass
class Cell:
    """One printed cell: the paper's number, ours over seeds, and where the two stand."""

    row: str
    dataset: str
    metric: str
    ours_metric: str
    scale: str
    paper: float = math.nan
    """The paper's value (NaN where it prints none)."""
    paper_std: float = math.nan
    paper_n: float = math.nan
    paper_status: str = "absent"
    cited: bool = False
    ours: float = math.nan
    ours_std: float = math.nan
    n: int = 0
    n_failed: int = 0
    degenerate: int = 0
    """Seeds on which a health rule of the row's job held."""
    lo: float = math.nan
    hi: float = math.nan
    budget: str = ""
    comparable: bool = False
    deviations: str = ""
    config_hash: str = ""
    verdict: str = ""
    reading: str = "default"
    reference: float = math.nan
    """The value the band is centred on: the paper's (mode 'paper') or our accepted runs' mean ('accepted')."""
    reference_kind: str = "paper"


class PaperReference:
    """Bands around the paper's printed numbers (``reference_results``, ``bands.toml``)."""

    kind = "paper"

    def __init__(self, paper: str, table: str):
        self.paper, self.table = paper, table

    def band(self, cell: Cell, rr: RowRuns, ref_row) -> tuple[str | None, object]:
        """(verdict that needs no band, None) or (None, Band)."""
        if cell.paper_status in ("na", "missing_in_source", "absent"):
            return {"na": "na_in_paper", "missing_in_source": "missing_in_source", "absent": "no_reference"}[
                cell.paper_status], None
        if get_metric(cell.ours_metric).scale == "seconds":
            return "seconds_not_compared", None
        if not cell.comparable:
            return "not_comparable", None
        tol = float(ref_row.tolerance) if ref_row is not None and not pd.isna(ref_row.tolerance) else None
        cell.reference = cell.paper
        return None, band_for(self.paper, self.table, cell.ours_metric, cell.scale, cell.paper,
                              None if math.isnan(cell.paper_std) else cell.paper_std,
                              None if math.isnan(cell.paper_n) else cell.paper_n, cell.ours_std, cell.n, tol)


class AcceptedReference:
    """Bands around our accepted runs' mean (``dcrepro accept``): today's code against our last accepted runs."""

    kind = "accepted"

    def __init__(self, store: Store):
        self.store = store

    def band(self, cell: Cell, rr: RowRuns, ref_row) -> tuple[str | None, object]:
        if get_metric(cell.ours_metric).scale == "seconds" or "time" in cell.ours_metric:
            return "seconds_not_compared", None  # timings and time shares follow the machine's load: never gated
        acc = self.store.accepted(rr.cfg.paper, rr.cfg.job, rr.cfg.dataset, rr.cfg.config_hash)
        base = [to_reference_scale(m[cell.ours_metric], cell.scale) for (s, o), m in acc.items()
                if o == rr.output and cell.ours_metric in m]
        if not base:
            return "missing", None
        cell.reference = float(np.mean(base))
        b_std = float(np.std(base, ddof=1)) if len(base) > 1 else 0.0
        return None, band_for("", "", cell.ours_metric, cell.scale, cell.reference, b_std, len(base), cell.ours_std,
                              cell.n, mode="regression")


def cell_verdict(cell: Cell, band) -> str:
    """The verdict of a cell with numbers against its band (pure: :func:`dcrepro.reference.verdict`)."""
    return verdict(cell.ours, band)


def table_cells(paper: str, table: str, budget: str, store, mode: str = "paper", variant=None) -> pd.DataFrame:
    """One line per cell (the fields of :class:`Cell`): ours over seeds, the paper's value, the reference the
    band is centred on, band and verdict, under reading ``variant`` (None: the default).

    ``mode='paper'`` compares with the paper; ``mode='accepted'`` with our accepted baseline (its mean in
    ``reference``; ``paper`` keeps the paper's number).
    """
    from dataclasses import asdict

    from .data import is_available

    spec = load_spec(paper)
    ref = load_reference(paper, table)
    layout = reference_layout(paper, table)
    index = index_records(store, paper)
    reference = AcceptedReference(index.store or store) if mode == "accepted" else PaperReference(paper, table)
    runs = collect(paper, table, budget, index, variant)
    rows = _ordered(list(dict.fromkeys(list(ref["row"]) + list(spec.table_rows(table)))), layout.get("rows"))
    ref_cols = list(dict.fromkeys(zip(ref["dataset"], ref["metric"])))
    spec_metrics = spec.table(table).get("metrics", sorted({m for _, m in ref_cols}))
    extra_cols = [(d, m) for d in spec.table_datasets(table) for m in spec_metrics if (d, m) not in ref_cols]
    refidx = {(r.row, r.dataset, r.metric): r for r in ref.itertuples(index=False)}
    default_scale = spec.meta.get("scale", "percent")
    cells = []
    for row in rows:
        for ds, metric in ref_cols + extra_cols:
            rc = refidx.get((row, ds, metric))
            scale = rc.scale if rc is not None and rc.scale else default_scale
            nmi_var = (rc.nmi_variant if rc is not None and rc.nmi_variant else spec.nmi_variant)
            cell = Cell(row, ds, metric, our_metric_name(metric, nmi_var), scale,
                        reading=variant.label if variant is not None else "default", reference_kind=reference.kind)
            if rc is not None:
                cell.paper = float(rc.value) if rc.status == "ok" else math.nan
                cell.paper_std = float(rc.std) if not pd.isna(rc.std) else math.nan
                cell.paper_n = float(rc.n_runs) if not pd.isna(rc.n_runs) else math.nan
                cell.paper_status, cell.cited = rc.status, bool(rc.cited)
            rr = runs.get((row, ds))
            if rr is not None:
                rescale = get_metric(cell.ours_metric).scale in ("fraction", "ratio")
                vals = [to_reference_scale(v, scale) if rescale else v for v in rr.values(cell.ours_metric).values()]
                cell.n, cell.n_failed, cell.degenerate = len(vals), len(rr.failed), len(rr.degenerate())
                cell.budget, cell.comparable = rr.cfg.effective_budget, rr.cfg.comparable
                cell.deviations, cell.config_hash = "; ".join(rr.cfg.deviations), rr.cfg.config_hash
                if vals:
                    cell.ours = float(np.mean(vals))
                    cell.ours_std = float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0
            cell.verdict = _verdict(cell, rr, rc, reference, is_available)
            cells.append(asdict(cell))
    return pd.DataFrame(cells)


def _verdict(cell: Cell, rr: RowRuns | None, rc, reference, is_available) -> str:
    if rr is None:  # a row/column the suite does not run
        return {"na": "na_in_paper", "missing_in_source": "missing_in_source"}.get(cell.paper_status, "not_in_suite")
    if cell.n == 0:
        if rr.failed:
            return "failed"
        return "missing" if is_available(rr.cfg.dataset) else "data_unavailable"
    status, band = reference.band(cell, rr, rc)
    if status is not None:
        return status
    cell.lo, cell.hi = band.lo, band.hi
    return cell_verdict(cell, band)
