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

from .metrics import get_metric
from .reference import (band_for, load_reference, our_metric_name, reference_layout, to_reference_scale,
                        verdict)
from .spec import RunConfig, load_spec, resolve
from .store import Record, Store

__all__ = ["RowRuns", "collect", "table_cells", "seed_values"]


@dataclass
class RowRuns:
    """The stored runs behind one (row, data set) of a table."""

    row: str
    dataset: str
    output: str
    cfg: RunConfig
    ok: list[Record] = field(default_factory=list)
    failed: list[Record] = field(default_factory=list)

    def values(self, metric: str) -> dict[int, float]:
        """{seed: value} of ``metric`` (fractions as stored)."""
        return {r.seed: r.outputs[self.output][metric] for r in self.ok
                if metric in r.outputs.get(self.output, {})}


def collect(paper: str, table: str, budget: str, store: Store) -> dict[tuple[str, str], RowRuns]:
    spec = load_spec(paper)
    out: dict[tuple[str, str], RowRuns] = {}
    for row, ref in spec.table_rows(table).items():
        for col in spec.table_datasets(table):
            if ref.datasets is not None and col not in ref.datasets:
                continue
            ds = spec.job_input(table, ref.job, col)
            if ds is None:
                continue
            cfg = resolve(spec, ref.job, ds, budget)
            rr = RowRuns(row, col, ref.output, cfg)
            for rec in store.records(paper, ref.job, ds, cfg.config_hash):
                if rec.status == "ok" and ref.output in rec.outputs:
                    rr.ok.append(rec)
                elif rec.status == "failed":
                    rr.failed.append(rec)
            out[(row, col)] = rr
    return out


def seed_values(runs: dict[tuple[str, str], RowRuns], row: str, dataset: str, metric: str) -> dict[int, float]:
    rr = runs.get((row, dataset))
    return rr.values(metric) if rr else {}


def _ordered(values, order) -> list:
    order = list(order or [])
    return [v for v in order if v in values] + [v for v in values if v not in order]


def table_cells(paper: str, table: str, budget: str, store: Store, mode: str = "paper") -> pd.DataFrame:
    """One line per cell: ours (mean, std, n), the paper's value, band and verdict.

    ``mode='paper'`` compares with the paper; ``mode='accepted'`` with our accepted baseline.
    """
    from .data import is_available

    spec = load_spec(paper)
    ref = load_reference(paper, table)
    layout = reference_layout(paper, table)
    runs = collect(paper, table, budget, store)
    rows = _ordered(list(dict.fromkeys(list(ref["row"]) + list(spec.table_rows(table)))), layout.get("rows"))
    ref_cols = list(dict.fromkeys(zip(ref["dataset"], ref["metric"])))
    spec_metrics = spec.table(table).get("metrics", sorted({m for _, m in ref_cols}))
    extra_cols = [(d, m) for d in spec.table_datasets(table) for m in spec_metrics if (d, m) not in ref_cols]
    cols = ref_cols + extra_cols
    refidx = {(r.row, r.dataset, r.metric): r for r in ref.itertuples(index=False)}
    default_scale = spec.meta.get("scale", "percent")
    lines = []
    for row in rows:
        for ds, metric in cols:
            rc = refidx.get((row, ds, metric))
            scale = rc.scale if rc is not None and rc.scale else default_scale
            nmi_var = (rc.nmi_variant if rc is not None and rc.nmi_variant else spec.nmi_variant)
            ours_metric = our_metric_name(metric, nmi_var)
            line = dict(row=row, dataset=ds, metric=metric, ours_metric=ours_metric, scale=scale,
                        paper=float(rc.value) if rc is not None and rc.status == "ok" else math.nan,
                        paper_std=float(rc.std) if rc is not None and not pd.isna(rc.std) else math.nan,
                        paper_n=float(rc.n_runs) if rc is not None and not pd.isna(rc.n_runs) else math.nan,
                        paper_status=rc.status if rc is not None else "absent",
                        cited=bool(rc.cited) if rc is not None else False,
                        ours=math.nan, ours_std=math.nan, n=0, n_failed=0, lo=math.nan, hi=math.nan,
                        budget="", comparable=False, deviations="", config_hash="", verdict="")
            rr = runs.get((row, ds))
            if rr is not None:
                rescale = get_metric(ours_metric).scale in ("fraction", "ratio")
                vals = [to_reference_scale(v, scale) if rescale else v for v in rr.values(ours_metric).values()]
                line.update(n=len(vals), n_failed=len(rr.failed), budget=rr.cfg.effective_budget,
                            comparable=rr.cfg.comparable, deviations="; ".join(rr.cfg.deviations),
                            config_hash=rr.cfg.config_hash)
                if vals:
                    line["ours"] = float(np.mean(vals))
                    line["ours_std"] = float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0
            line["verdict"] = _verdict(line, rr, rc, paper, table, mode, store, is_available)
            lines.append(line)
    return pd.DataFrame(lines)


def _verdict(line: dict, rr: RowRuns | None, rc, paper: str, table: str, mode: str, store: Store,
             is_available) -> str:
    if rr is None:  # a row/column the suite does not run
        if line["paper_status"] in ("na", "missing_in_source"):
            return {"na": "na_in_paper", "missing_in_source": "missing_in_source"}[line["paper_status"]]
        return "not_in_suite"
    if line["n"] == 0:
        if rr.failed:
            return "failed"
        return "missing" if is_available(rr.cfg.dataset) else "data_unavailable"
    if mode == "accepted":
        return _regression_verdict(line, rr, store)
    if line["paper_status"] == "na":
        return "na_in_paper"
    if line["paper_status"] == "missing_in_source":
        return "missing_in_source"
    if line["paper_status"] == "absent":
        return "no_reference"
    if get_metric(line["ours_metric"]).scale == "seconds":
        return "seconds_not_compared"
    if not line["comparable"]:
        return "not_comparable"
    tol = float(rc.tolerance) if rc is not None and not pd.isna(rc.tolerance) else None
    band = band_for(paper, table, line["ours_metric"], line["scale"], line["paper"],
                    None if math.isnan(line["paper_std"]) else line["paper_std"],
                    None if math.isnan(line["paper_n"]) else line["paper_n"], line["ours_std"], line["n"], tol)
    line["lo"], line["hi"] = band.lo, band.hi
    return verdict(line["ours"], band)


def _regression_verdict(line: dict, rr: RowRuns, store: Store) -> str:
    acc = store.accepted(rr.cfg.paper, rr.cfg.job, rr.dataset, rr.cfg.config_hash)
    base = [to_reference_scale(m[line["ours_metric"]], line["scale"]) for (s, o), m in acc.items()
            if o == rr.output and line["ours_metric"] in m]
    if not base:
        return "missing"
    b_mean = float(np.mean(base))
    b_std = float(np.std(base, ddof=1)) if len(base) > 1 else 0.0
    band = band_for("", "", line["ours_metric"], line["scale"], b_mean, b_std, len(base), line["ours_std"],
                    line["n"], mode="regression")
    line["paper"], line["lo"], line["hi"] = b_mean, band.lo, band.hi
    return verdict(line["ours"], band)
