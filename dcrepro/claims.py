"""The papers' relative claims, tested over paired seeds, per reading, with run health and testability.

Absolute cells need the paper's budget; relative claims ("DCSS > DCSSu") can hold at any budget where
both arms share it, which makes reduced-budget runs meaningful, *if* the budget can show the effect and
the runs are healthy. A claim (:class:`dcrepro.spec.Claim`, ``[[claims]]`` in a spec) is tested per data
set and metric over the seeds both arms share, under one reading of the paper's unstated details:

* ``relation = ">"``: one-sided paired test (t or Wilcoxon) of better > worse.
* ``relation = ">="``: non-inferiority: better is not worse by more than ``margin`` points (default 1);
  supported when the test of mean(d) > -margin is significant, contradicted when mean(d) < -margin is.
* Seeds on which either arm is degenerate (its job's ``degenerate_if`` rules, :mod:`dcrepro.health`) are
  dropped; when fewer than ``min(min_n, n)`` remain the outcome is **not testable** with the arm, the count
  and the rule, never supported or contradicted.
* A claim whose ``testable_at`` excludes the budget is **not testable at this budget** with its reason; its
  statistics are still shown, but it takes no part in the adjustment.
* Multiplicity: p-values are Holm-adjusted across every testable claim cell of the paper at one budget
  under one reading (the support tests and the contradiction tests as two families); outcomes are decided
  on the adjusted values at each claim's alpha.

Outcomes: supported | contradicted | inconclusive | not testable | no data. Threshold and sweep claims
(``threshold``, ``sweep_argmax``, ``sweep_pair``, ``sweep_flat``) follow the same rules where they test.
"""
from __future__ import annotations

import math
import operator
from dataclasses import asdict, dataclass, field

import numpy as np

from .aggregate import RowRuns, collect, index_records
from .readings import DEFAULT
from .spec import DEFAULT_METRICS, Claim, load_spec
from .stats import cohen_dz, holm, noninferiority_test, paired_test

__all__ = ["ClaimResult", "check_claims", "OUTCOMES", "CSV_COLUMNS"]

OUTCOMES = ("supported", "contradicted", "inconclusive", "not testable", "no data")
CSV_COLUMNS = ["claim", "table", "dataset", "metric", "reading", "budget", "n", "mean_diff", "d_z", "p", "p_holm",
               "alpha", "outcome", "reason"]
_OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}


@dataclass
class ClaimResult:
    """One claim cell: (claim, data set, metric) under one reading at one budget."""

    claim: str
    dataset: str
    metric: str
    n: int
    mean_diff: float  # points (x100 for fraction metrics)
    d_z: float
    p: float  # raw one-sided p of the test shown (the claimed direction, or the opposite when contradicted)
    outcome: str
    test: str
    alpha: float = math.nan
    table: str = ""  # table or figure id
    reading: str = DEFAULT
    budget: str = ""
    p_holm: float = math.nan
    reason: str = ""
    p_for: float = field(default=math.nan, repr=False)  # test supporting the claim
    p_against: float = field(default=math.nan, repr=False)  # test contradicting it
    testable: bool = field(default=True, repr=False)

    def csv_row(self) -> dict:
        d = asdict(self)
        return {c: d[c] for c in CSV_COLUMNS if c in d} | {"claim": self.claim, "table": self.table}


def _result(c: Claim, ds: str, metric: str, **kw) -> ClaimResult:
    base = dict(n=0, mean_diff=math.nan, d_z=math.nan, p=math.nan, outcome="no data", test=c.test, alpha=c.alpha,
                table=c.where)
    return ClaimResult(c.id, ds, metric, **(base | kw))


def _metrics(c: Claim) -> tuple[str, ...]:
    return c.metrics or DEFAULT_METRICS


def _health_drop(arms: dict[str, RowRuns], seeds: list[int], metric_output: bool = True) -> tuple[list[int], str]:
    """Seeds left after dropping those on which any arm is degenerate, and why they were dropped. Seeds whose
    health cannot be judged (a signal a rule needs is missing from their records) are kept and named."""
    notes, bad = [], set()
    for name, rr in arms.items():
        health = {s: h for s, h in rr.health().items() if s in seeds}
        deg = {s: rules for s, (state, rules) in health.items() if state == "degenerate"}
        if deg:
            bad |= set(deg)
            rules = sorted({r for rs in deg.values() for r in rs})
            notes.append(f"{name} degenerate on {len(deg)} of {len(seeds)} seeds ({'; '.join(rules)})")
        unknown = sum(state == "unknown" for state, _ in health.values())
        if unknown:
            notes.append(f"{name} health unknown on {unknown} of {len(seeds)} seeds (a signal its rules need is "
                         f"missing from the records)")
    return [s for s in seeds if s not in bad], ", ".join(notes)


def _paired(c: Claim, runs: dict, datasets: list[str]) -> list[ClaimResult]:
    out = []
    for ds in datasets:
        a_runs, b_runs = runs.get((c.better, ds)), runs.get((c.worse, ds))
        if a_runs is None or b_runs is None:
            continue
        for metric in _metrics(c):
            va, vb = a_runs.values(metric), b_runs.values(metric)
            if not va and not vb:  # neither arm ran here (e.g. data not available): nothing to say
                continue
            common = sorted(set(va) & set(vb))
            if len(common) < 2:
                out.append(_result(c, ds, metric, n=len(common), reason="fewer than 2 seeds shared by both arms"))
                continue
            seeds, why = _health_drop({c.better: a_runs, c.worse: b_runs}, common)
            if why and len(seeds) < min(c.min_n, len(common)):
                out.append(_result(c, ds, metric, n=len(seeds), outcome="not testable",
                                   reason=f"not testable: {why}", testable=False))
                continue
            a = np.array([va[s] for s in seeds]) * 100
            b = np.array([vb[s] for s in seeds]) * 100
            if c.relation == ">":
                p_for, p_against = paired_test(a, b, c.test)
                rel = f"{c.test}, one-sided"
            else:
                p_for, p_against = noninferiority_test(a, b, c.margin, c.test)
                rel = f"non-inferiority, margin {c.margin:g} pts, {c.test}"
            reason = rel + (f"; health: {why}" if why else "")
            out.append(_result(c, ds, metric, n=len(seeds), mean_diff=float((a - b).mean()), d_z=cohen_dz(a - b),
                               outcome="", p_for=p_for, p_against=p_against, reason=reason))
    return out


def _threshold(c: Claim, runs: dict, datasets: list[str]) -> list[ClaimResult]:
    from .metrics import get_metric

    out = []
    for ds in datasets:
        rr = runs.get((c.row, ds))
        vals = list(rr.values(c.metric).values()) if rr is not None else []
        if not vals:
            continue
        m = float(np.mean(vals))
        k = 100.0 if get_metric(c.metric).scale in ("fraction", "ratio") else 1.0
        unit = "%" if k == 100.0 else ""
        out.append(_result(c, ds, c.metric, n=len(vals), mean_diff=(m - c.value) * k,
                           outcome="supported" if _OPS[c.op](m, c.value) else "contradicted",
                           test=f"mean {m * k:.3g}{unit} {c.op} {c.value * k:g}{unit}",
                           reason="threshold on the mean over seeds"))
    return out


def _sweep(c: Claim, paper: str, budget: str, records, variant) -> list[ClaimResult]:
    """Claims on a figure's sweep, per data set and metric, on per-seed values (degenerate seeds dropped):

    * ``sweep_argmax`` (``expected``): supported when the best mean is at ``expected``; otherwise the best
      value is tested against ``expected`` (paired, one-sided): contradicted when significant.
    * ``sweep_pair`` (``better``, ``worse``: two grid values): a paired test as for table rows.
    * ``sweep_flat`` (``from``, ``tolerance`` points): supported when the means of the values >= ``from``
      span at most ``tolerance`` points.
    """
    from .sweeps import sweep_frame

    df = sweep_frame(paper, c.figure, records, budget, variant)
    out = []
    for (ds, metric), g in df.groupby(["dataset", "metric"], sort=False):
        if metric not in (c.metrics or (metric,)) or ds not in (c.datasets or (ds,)):
            continue
        bad = g[g["degenerate"] == True]  # noqa: E712  (None = unknown)
        healthy = g[g["degenerate"] != True]  # noqa: E712
        per = {v: dict(zip(gg["seed"], gg["y"])) for v, gg in healthy.groupby("value")}
        why = (f"{len(bad)} of {len(g)} (value, seed) runs degenerate and dropped "
               f"({'; '.join(sorted(set(bad['rules'])))})") if len(bad) else ""
        needed = {"sweep_argmax": [c.expected], "sweep_pair": [c.better, c.worse]}.get(c.kind, [])
        if len(per) < 2 or any(v not in per for v in needed):
            kw = dict(outcome="not testable", reason=f"not testable: {why}", testable=False) if why else \
                dict(reason="fewer than two grid values run")
            out.append(_result(c, ds, metric, test=c.kind, **kw))
            continue
        means = {v: float(np.mean(list(d.values()))) for v, d in per.items()}
        n = min(len(d) for d in per.values())

        def paired(x, y):
            seeds = sorted(set(per[x]) & set(per[y]))
            a, b = np.array([per[x][s] for s in seeds]), np.array([per[y][s] for s in seeds])
            return len(seeds), float((a - b).mean()), paired_test(a, b, c.test)

        note = f"; dropped: {why}" if why else ""
        if c.kind == "sweep_argmax":
            best = max(means, key=means.get)
            if np.isclose(best, c.expected):
                out.append(_result(c, ds, metric, n=n, mean_diff=0.0, outcome="supported",
                                   test=f"argmax = {best:g} (expected {c.expected:g})", reason="argmax of the means" + note))
            else:
                n, diff, (p_best, _) = paired(best, c.expected)
                out.append(_result(c, ds, metric, n=n, mean_diff=diff, outcome="", p_against=p_best,
                                   test=f"argmax = {best:g} (expected {c.expected:g})",
                                   reason=f"best value vs expected, {c.test}, one-sided" + note))
        elif c.kind == "sweep_pair":
            n, diff, (p_gt, p_lt) = paired(c.better, c.worse)
            out.append(_result(c, ds, metric, n=n, mean_diff=diff, outcome="", p_for=p_gt, p_against=p_lt,
                               test=f"{c.better:g} vs {c.worse:g}, {c.test}", reason=f"{c.test}, one-sided" + note))
        elif c.kind == "sweep_flat":
            vals = [m for v, m in means.items() if v >= c.start]
            span = max(vals) - min(vals) if vals else math.nan
            out.append(_result(c, ds, metric, n=n, mean_diff=span,
                               outcome="supported" if span <= c.tolerance else "contradicted",
                               test=f"span of means for >= {c.start:g} <= {c.tolerance:g} pts",
                               reason="span of the means" + note))
    return out


def _decide(results: list[ClaimResult]) -> None:
    """Holm-adjust the support and the contradiction tests of the testable cells; set outcomes."""
    live = [r for r in results if r.testable and r.outcome == ""]
    adj_for = holm([r.p_for for r in live])
    adj_against = holm([r.p_against for r in live])
    for r, pf, pa in zip(live, adj_for, adj_against):
        if not math.isnan(pf) and pf < r.alpha:
            r.outcome, r.p, r.p_holm = "supported", r.p_for, pf
        elif not math.isnan(pa) and pa < r.alpha:
            r.outcome, r.p, r.p_holm = "contradicted", r.p_against, pa
        else:
            r.outcome = "inconclusive"
            r.p, r.p_holm = (r.p_for, pf) if not math.isnan(r.p_for) else (r.p_against, pa)
    for r in results:  # not testable at this budget: statistics shown, no verdict
        if r.outcome == "" and not r.testable:
            r.outcome = "not testable"
            r.p = r.p_for if not math.isnan(r.p_for) else r.p_against


def check_claims(paper: str, budget: str, store, table: str | None = None, figure: str | None = None,
                 variant=None, records=None) -> list[ClaimResult]:
    """Test every claim of ``paper`` on the runs stored at ``budget`` under reading ``variant`` (None: the
    default), Holm-adjusted over all of them; return those of one table or figure when given, else all.
    ``records`` is a preloaded :func:`dcrepro.aggregate.index_records` (the store is read once per render)."""
    spec = load_spec(paper)
    records = records or index_records(store, paper)
    label = variant.label if variant is not None else DEFAULT
    results: list[ClaimResult] = []
    cache: dict[str, dict] = {}
    for c in spec.claims:
        if c.kind.startswith("sweep_"):
            got = _sweep(c, paper, budget, records, variant)
        else:
            runs = cache.setdefault(c.table, collect(paper, c.table, budget, records, variant))
            datasets = list(c.datasets or spec.table_datasets(c.table))
            got = _paired(c, runs, datasets) if c.kind == "paired" else _threshold(c, runs, datasets)
        if budget not in c.testable_at:
            for r in got:
                if r.outcome in ("", "supported", "contradicted"):
                    r.outcome, r.testable = "", False
                    r.reason = f"not testable at the {budget} budget: {c.testable_reason}" + \
                        (f" ({r.reason})" if r.reason else "")
        for r in got:
            r.reading, r.budget = label, budget
        results += got
    _decide(results)
    return [r for r in results
            if not (table or figure) or (table and r.table == table) or (figure and r.table == figure)]
