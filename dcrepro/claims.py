"""The papers' relative claims, tested over paired seeds.

Absolute cells need the paper's budget; relative claims ("DCSS > DCSSu") hold at any budget as long
as both arms share it, which makes reduced-budget runs meaningful. Claims are declared per paper in
``benchmarks/<paper>.toml``::

    [[claims]]
    id = "T1: DCSS > DCSSu"
    table = "table1"
    better = "DCSS"          # row labels of that table
    worse = "DCSSu"
    relation = ">"           # '>' (strictly better) or '>=' (not worse)
    metrics = ["acc", "nmi"]
    test = "paired_t"        # or "wilcoxon"
    alpha = 0.05

    [[claims]]               # a threshold on one row's measured number
    kind = "threshold"
    table = "table4"; row = "DAC*"; metric = "time_ratio"; op = "<"; value = 0.06

Paired claims are tested per (data set, metric) on the seeds both arms have, with a one-sided test
in the claimed direction (scipy ``ttest_rel`` or ``wilcoxon``, ``alternative='greater'``):

* ``>``: supported when the one-sided p < alpha; contradicted when the opposite one-sided p < alpha;
  otherwise inconclusive.
* ``>=``: contradicted when the 'worse' arm is significantly better (p < alpha); supported when the
  mean difference is >= 0 and not contradicted; inconclusive otherwise.

The effect size is the mean paired difference (in points) and Cohen's d_z = mean(d) / sd(d). The p-value
reported is the one-sided test in the claimed direction (for '>='/contradicted: the opposite direction).
"""
from __future__ import annotations

import math
import operator
from dataclasses import dataclass

import numpy as np
from scipy import stats

from .aggregate import collect
from .spec import choice_error, load_spec
from .store import Store

__all__ = ["ClaimResult", "check_claims", "paired_test"]


@dataclass
class ClaimResult:
    claim: str
    dataset: str
    metric: str
    n: int
    mean_diff: float  # points (x100 for fraction metrics)
    d_z: float
    p: float
    outcome: str  # supported | contradicted | inconclusive | no data
    test: str
    alpha: float = math.nan  # the claim's significance level (NaN: no test, e.g. a threshold claim)


def paired_test(a: np.ndarray, b: np.ndarray, test: str = "paired_t") -> tuple[float, float]:
    """One-sided p-values (a > b, b > a) for paired samples."""
    d = np.asarray(a, float) - np.asarray(b, float)
    if len(d) < 2 or np.allclose(d, d[0]):
        # no variance: the sign decides only when every pair agrees and is non-zero
        if len(d) >= 2 and d[0] != 0:
            return (0.0, 1.0) if d[0] > 0 else (1.0, 0.0)
        return (1.0, 1.0)
    if test == "paired_t":
        return (float(stats.ttest_rel(a, b, alternative="greater").pvalue),
                float(stats.ttest_rel(a, b, alternative="less").pvalue))
    if test == "wilcoxon":
        return (float(stats.wilcoxon(a, b, alternative="greater").pvalue),
                float(stats.wilcoxon(a, b, alternative="less").pvalue))
    raise choice_error("test", test, ["paired_t", "wilcoxon"])


_OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}


def _paired(claim: dict, runs, datasets) -> list[ClaimResult]:
    out = []
    test, alpha, rel = claim.get("test", "paired_t"), _alpha(claim), claim.get("relation", ">")
    if rel not in (">", ">="):
        raise choice_error("relation", rel, [">", ">="])
    for ds in datasets:
        for metric in claim.get("metrics", ["acc", "nmi"]):
            a_runs, b_runs = runs.get((claim["better"], ds)), runs.get((claim["worse"], ds))
            if a_runs is None or b_runs is None:
                continue
            va, vb = a_runs.values(metric), b_runs.values(metric)
            if not va and not vb:  # neither arm ran here (e.g. data not available): nothing to say
                continue
            seeds = sorted(set(va) & set(vb))
            if len(seeds) < 2:
                out.append(ClaimResult(claim["id"], ds, metric, len(seeds), math.nan, math.nan, math.nan, "no data", test))
                continue
            a = np.array([va[s] for s in seeds]) * 100
            b = np.array([vb[s] for s in seeds]) * 100
            d = a - b
            sd = d.std(ddof=1)
            p_gt, p_lt = paired_test(a, b, test)
            if rel == ">":
                outcome = "supported" if p_gt < alpha else "contradicted" if p_lt < alpha else "inconclusive"
            else:
                outcome = "contradicted" if p_lt < alpha else "supported" if d.mean() >= 0 else "inconclusive"
            # the p-value shown is the test in the claimed direction, or the opposite one when contradicted
            p = p_lt if outcome == "contradicted" or rel == ">=" else p_gt
            if sd > 0:
                d_z = float(d.mean() / sd)
            else:
                d_z = math.nan if d.mean() == 0 else math.copysign(math.inf, d.mean())
            out.append(ClaimResult(claim["id"], ds, metric, len(seeds), float(d.mean()), d_z, p, outcome, test))
    return out


def _threshold(claim: dict, runs, datasets) -> list[ClaimResult]:
    out = []
    op = _OPS[claim.get("op", "<")]
    for ds in datasets:
        rr = runs.get((claim["row"], ds))
        if rr is None:
            continue
        vals = list(rr.values(claim["metric"]).values())
        if not vals:
            continue
        m = float(np.mean(vals))
        outcome = "supported" if op(m, claim["value"]) else "contradicted"
        from .metrics import get_metric

        k = 100.0 if get_metric(claim["metric"]).scale in ("fraction", "ratio") else 1.0
        unit = "%" if k == 100.0 else ""
        out.append(ClaimResult(claim["id"], ds, claim["metric"], len(vals), (m - claim["value"]) * k, math.nan,
                               math.nan, outcome,
                               f"mean {m * k:.3g}{unit} {claim.get('op', '<')} {claim['value'] * k:g}{unit}"))
    return out


def _sweep(claim: dict, paper: str, budget: str, store: Store) -> list[ClaimResult]:
    """Claims on a figure's sweep (``kind`` = 'sweep_argmax' | 'sweep_pair' | 'sweep_flat'), per data set
    and metric, on per-seed values:

    * ``sweep_argmax`` (``expected``): supported when the best mean is at ``expected``; otherwise contradicted
      when the best value beats ``expected`` significantly (paired, one-sided, alpha), else inconclusive.
    * ``sweep_pair`` (``better``, ``worse``: two grid values): a paired test as for table rows.
    * ``sweep_flat`` (``from``, ``tolerance`` points, default 1.5): supported when the means of the values
      >= ``from`` span at most ``tolerance`` points.
    """
    from .plots import sweep_frame

    kind, alpha, test = claim["kind"], _alpha(claim), claim.get("test", "paired_t")
    df = sweep_frame(paper, claim["figure"], store, budget)
    out = []
    for (ds, metric), g in df.groupby(["dataset", "metric"], sort=False):
        if metric not in claim.get("metrics", [metric]) or ds not in claim.get("datasets", [ds]):
            continue
        per = {v: dict(zip(gg["seed"], gg["y"])) for v, gg in g.groupby("value")}
        needed = {"sweep_argmax": [claim.get("expected")], "sweep_pair": [claim.get("better"), claim.get("worse")]}
        if len(per) < 2 or any(v not in per for v in needed.get(kind, [])):
            # a sweep with fewer than two grid values run (or without the values the claim names) says nothing
            out.append(ClaimResult(claim["id"], ds, metric, 0, math.nan, math.nan, math.nan, "no data", kind))
            continue
        means = {v: float(np.mean(list(d.values()))) for v, d in per.items()}
        n = min(len(d) for d in per.values())

        def paired(a, b):
            seeds = sorted(set(per[a]) & set(per[b]))
            x, y = np.array([per[a][s] for s in seeds]), np.array([per[b][s] for s in seeds])
            return len(seeds), float((x - y).mean()), paired_test(x, y, test)

        if kind == "sweep_argmax":
            best = max(means, key=means.get)
            if np.isclose(best, claim["expected"]):
                outcome, diff, p = "supported", 0.0, math.nan
            else:
                n, diff, (p, _) = paired(best, claim["expected"])
                outcome = "contradicted" if p < alpha else "inconclusive"
            out.append(ClaimResult(claim["id"], ds, metric, n, diff, math.nan, p,
                                   outcome, f"argmax = {best:g} (expected {claim['expected']:g})"))
        elif kind == "sweep_pair":
            n, diff, (p_gt, p_lt) = paired(claim["better"], claim["worse"])
            outcome = "supported" if p_gt < alpha else "contradicted" if p_lt < alpha else "inconclusive"
            out.append(ClaimResult(claim["id"], ds, metric, n, diff, math.nan,
                                   p_lt if outcome == "contradicted" else p_gt, outcome,
                                   f"{claim['better']:g} vs {claim['worse']:g}, {test}"))
        elif kind == "sweep_flat":
            vals = [m for v, m in means.items() if v >= claim["from"]]
            span = max(vals) - min(vals) if vals else math.nan
            tol = float(claim.get("tolerance", 1.5))
            out.append(ClaimResult(claim["id"], ds, metric, n, span, math.nan, math.nan,
                                   "supported" if span <= tol else "contradicted",
                                   f"span of means for >= {claim['from']:g} <= {tol:g} pts"))
    return out


def check_claims(paper: str, budget: str, store: Store, table: str | None = None,
                 figure: str | None = None) -> list[ClaimResult]:
    """Test the claims of ``paper`` on the runs stored at ``budget``: those of one table or one figure
    when given, else all."""
    spec = load_spec(paper)
    results: list[ClaimResult] = []
    cache: dict[str, dict] = {}
    for claim in spec.claims:
        n_before = len(results)
        if (table or figure) and not ((table and claim.get("table") == table) or
                                      (figure and claim.get("figure") == figure)):
            continue
        if claim.get("kind", "paired").startswith("sweep_"):
            results += _sweep(claim, paper, budget, store)
            _set_alpha(results[n_before:], claim)
            continue
        tid = claim["table"]
        runs = cache.setdefault(tid, collect(paper, tid, budget, store))
        datasets = claim.get("datasets", spec.table_datasets(tid))
        kind = claim.get("kind", "paired")
        if kind == "paired":
            results += _paired(claim, runs, datasets)
        elif kind == "threshold":
            results += _threshold(claim, runs, datasets)
        else:
            raise choice_error("claim kind", kind, ["paired", "threshold", "sweep_argmax", "sweep_pair", "sweep_flat"])
        _set_alpha(results[n_before:], claim)
    return results


def _alpha(claim: dict) -> float:
    """The claim's significance level: its own ``alpha``, else 0.05."""
    return float(claim.get("alpha", 0.05))


def _set_alpha(results: list[ClaimResult], claim: dict) -> None:
    """Record the level on every result that came from a test (threshold claims have no p)."""
    for r in results:
        if not math.isnan(r.p):
            r.alpha = _alpha(claim)
