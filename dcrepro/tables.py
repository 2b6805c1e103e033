"""Render a paper table: our mean ± std beside the paper's number, with a verdict per cell.

Markdown, LaTeX (booktabs) and CSV come from the same long frame (:func:`dcrepro.aggregate.table_cells`)
and are written to ``paper_tables/<paper>/<table>.{md,tex,csv}``. Every output states the budget and
the declared deviations; reduced/quick/substituted cells are "not comparable", never "within band".
"""
from __future__ import annotations

import datetime as _dt
import math
from pathlib import Path

import pandas as pd
from tabulate import tabulate

from . import envinfo
from .aggregate import table_cells
from .claims import ClaimResult, check_claims
from .reference import VERDICTS, reference_layout
from .spec import load_spec, project_root
from .store import Store

__all__ = ["render_table", "write_table", "output_dir", "MARKS"]


def output_dir(paper: str, budget: str) -> Path:
    """``paper_tables/<paper>/`` for the reduced budget (the one these machines run), ``paper_tables/<paper>/full/``
    for the full budget, so neither overwrites the other; quick-budget output (tests, smoke runs) goes to
    ``paper_tables/_quick/<paper>/`` (git-ignored) so it never overwrites a committed table."""
    base = project_root() / "paper_tables"
    return {"quick": base / "_quick" / paper, "full": base / paper / "full"}.get(budget, base / paper)

MARKS = {"within": "✓", "below": "▼", "above": "▲", "not_comparable": "≈", "failed": "✗", "missing": "·",
         "data_unavailable": "∅", "na_in_paper": "", "missing_in_source": "", "not_in_suite": "",
         "no_reference": ""}
_DS_NAMES = {"mnist": "MNIST", "fashion_mnist": "Fashion-MNIST", "2mnist": "2MNIST", "usps": "USPS",
             "cifar10": "CIFAR-10", "cifar100_20": "CIFAR-100", "stl10": "STL-10", "imagenet10": "ImageNet-10",
             "imagenet_dogs": "ImageNet-Dogs", "tiny_imagenet": "Tiny-ImageNet", "snips": "SNIPS",
             "dbpedia": "DBPedia", "stackoverflow": "StackOverflow", "biomedical": "Biomedical", "agnews": "AgNews"}


def ds_name(ds: str) -> str:
    base, _, setting = ds.partition("@")
    return _DS_NAMES.get(base, base) + (f" ({setting})" if setting else "")


def _fmt(x: float, nd: int) -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{nd}f}"


def _cell(line: pd.Series, nd: int, tex: bool = False) -> str:
    v = line["verdict"]
    pm = r"$\pm$" if tex else "±"
    paper = _fmt(line["paper"], nd) if line["paper_status"] == "ok" else \
        {"na": "-", "missing_in_source": "lost" if tex else "missing in source", "absent": ""}.get(line["paper_status"], "")
    if line["n"] > 1:
        ours = f"{_fmt(line['ours'], nd)}{pm}{_fmt(line['ours_std'], nd)}"
    elif line["n"] == 1:  # one seed: no spread to show
        ours = f"{_fmt(line['ours'], nd)} (1 seed)"
    elif v == "failed":
        ours = "failed"
    elif v == "data_unavailable":
        ours = "data n/a" if tex else "data not available"
    elif v == "missing":
        ours = "not run"
    else:
        ours = ""
    if tex:
        if ours and paper:
            return f"{ours} ({paper})"
        return ours or paper or "--"
    mark = MARKS.get(v, "")
    if ours and paper:
        return f"{ours} / {paper} {mark}".strip()
    return (f"{ours} {mark}".strip() if ours else paper) or ""


def _header_lines(paper: str, table: str, budget: str, cells: pd.DataFrame, store: Store) -> list[str]:
    spec = load_spec(paper)
    layout = reference_layout(paper, table)
    run = cells[cells["n"] > 0]
    budgets = sorted(set(run["budget"]) - {""})
    devs = sorted({d for s in run["deviations"] for d in s.split("; ") if d})
    lines = [f"# {spec.meta.get('short', paper.upper())} — {table.replace('table', 'Table ')}: "
             f"{layout.get('caption', spec.table(table).get('caption', ''))}", ""]
    cmp_note = ("**All cells compare with the paper** (full budget, no deviation)." if budgets == ["full"] and not devs
                else "**Cells run at a reduced/quick budget or with a declared deviation are *not comparable* with the "
                     "paper's numbers** (marked ≈); only the claims below test the paper at this budget.")
    lines += [f"- Requested budget: **{budget}**; effective budget of the runs shown: "
              f"{', '.join(budgets) or 'none run'}. {cmp_note}",
              f"- Seeds per cell: up to {spec.n_seeds} (n shown in the CSV); values: ours mean ± std (sample std "
              f"over seeds) / paper. NMI normalisation: {spec.nmi_variant}.",
              f"- Regenerate: `dcrepro run --paper {paper} --table {table} --budget {budget}` then "
              f"`dcrepro table --paper {paper} --table {table} --budget {budget}`."]
    if devs:
        lines.append("- Declared deviations, by job (a deviation listed once applies to every data set it names):")
        for job, rows in _rows_by_job(spec, table).items():
            jd = list(dict.fromkeys(d for s in run[run["row"].isin(rows)]["deviations"] for d in s.split("; ") if d))
            if jd:
                lines.append(f"  - `{job}` ({', '.join(rows)}): " + "; ".join(jd) + ".")
    assumptions = _assumptions(paper, table, budget)
    if assumptions:
        lines.append("- Assumptions for details the paper does not state (cells stay comparable): "
                     + "; ".join(assumptions) + ".")
    unavailable = _unavailable_inputs(paper, table, cells)
    if unavailable:
        lines.append("- Data not available here (cells marked ∅ hold no number): " + "; ".join(unavailable) + ".")
    wall = _wall_time(paper, cells, store)
    if wall:
        lines.append(f"- Compute: {wall}.")
    lines.append(f"- Generated {_dt.date.today().isoformat()} at git {envinfo.git_revision()[:12]}.")
    return lines


def _unavailable_inputs(paper: str, table: str, cells: pd.DataFrame) -> list[str]:
    """For each unavailable input of the table: its name and how to make it (feature sets: the GPU command)."""
    from .data.feature_sets import is_feature_name, make_command

    spec = load_spec(paper)
    names = []
    for row, ref in spec.table_rows(table).items():
        for col in set(cells.loc[(cells["row"] == row) & (cells["verdict"] == "data_unavailable"), "dataset"]):
            ds = spec.job_input(table, ref.job, col)
            if ds and ds not in names:
                names.append(ds)
    return [f"`{n}` (make it on a GPU: `{make_command(n, portable=True)}`)" if is_feature_name(n)
            else f"`{n}` (`dcrepro data verify {n}` says which files go where)" for n in sorted(names)]


def _assumptions(paper: str, table: str, budget: str) -> list[str]:
    from .spec import resolve

    spec = load_spec(paper)
    out: list[str] = []
    for job, ds in spec.runs_for_table(table):
        for a in resolve(spec, job, ds, budget).assumptions:
            if f"`{job}`: {a}" not in out:
                out.append(f"`{job}`: {a}")
    return out


def _rows_by_job(spec, table: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for row, ref in spec.table_rows(table).items():
        out.setdefault(ref.job, []).append(row)
    return out


def _wall_time(paper: str, cells: pd.DataFrame, store: Store) -> str:
    hashes = {h for h in cells["config_hash"] if h}
    recs = [r for h in hashes for r in store.records(paper=paper, config_hash=h) if r.status == "ok"]
    if not recs:
        return ""
    uniq = {r.key: r for r in recs}.values()
    total = sum(r.wall_s or 0 for r in uniq)
    devices = sorted({r.device for r in uniq})
    return f"{len(uniq)} runs, {total / 60:.1f} min of run wall time in total on {', '.join(devices)}"


def _per_seed_block(paper: str, table: str, budget: str, store: Store, spec_metric: str, title: str) -> list[str]:
    """Per-seed values of a measured number (e.g. DeepDPM's final K) for the rows that report it."""
    from .aggregate import collect

    rows = []
    for (row, ds), rr in collect(paper, table, budget, store).items():
        vals = rr.values(spec_metric)
        if vals:
            rows.append([row, ds_name(ds), " ".join(f"{int(v) if float(v).is_integer() else v}" for _, v in sorted(vals.items())),
                         len(vals)])
    if not rows:
        return []
    return ["", f"## {title}", "", tabulate(rows, ["row", "data set", "seeds 0.. in order", "n"], tablefmt="github")]


def _claims_block(results: list[ClaimResult]) -> list[str]:
    if not results:
        return []
    rows = [[r.claim, ds_name(r.dataset), r.metric, r.n, _fmt(r.mean_diff, 2), _fmt(r.d_z, 2),
             "" if math.isnan(r.p) else f"{r.p:.3g}", "" if math.isnan(r.alpha) else f"{r.alpha:g}", r.test,
             r.outcome] for r in results]
    return ["", "## Claims (paired over seeds)", "",
            tabulate(rows, ["claim", "data set", "metric", "n", "mean diff (pts)", "d_z", "p (one-sided)", "α", "test",
                            "outcome"], tablefmt="github"),
            "", "Paired over the seeds both arms share; one-sided test in the claimed direction (the opposite one "
                "for a contradicted or a '≥' claim); α per claim from the spec (0.05 unless the claim names one; DCGLU's "
                "table claims use the paper's own 0.01)."]


def render_table(paper: str, table: str, budget: str, store: Store, mode: str = "paper") -> dict[str, str]:
    """{'md': ..., 'tex': ..., 'csv': ...} for one table."""
    cells = table_cells(paper, table, budget, store, mode)
    nd = 2
    cols = list(dict.fromkeys(zip(cells["dataset"], cells["metric"])))
    rows = list(dict.fromkeys(cells["row"]))
    idx = {(r.row, r.dataset, r.metric): r for _, r in cells.iterrows()}
    head = ["Method"] + [f"{ds_name(d)} {m.upper()}" for d, m in cols]
    body = [[row] + [_cell(idx[(row, d, m)], nd) if (row, d, m) in idx else "" for d, m in cols] for row in rows]
    md = _header_lines(paper, table, budget, cells, store)
    md += ["", tabulate(body, head, tablefmt="github"), "",
           "Legend: ✓ within band · ▼ below band · ▲ above band · ≈ not comparable (budget/deviation) · "
           "✗ failed · ∅ data not available · · not run yet; cells with only a paper value are not re-run "
           "(cited baselines) or '-' in the paper."]
    ran = cells[cells["n"] > 0]
    if len(ran):
        md += ["", "## Cells we ran", "",
               tabulate([[r.row, ds_name(r.dataset), r.metric, _fmt(r.ours, nd), _fmt(r.ours_std, nd), r.n,
                          r.n_failed, _fmt(r.paper, nd), (f"[{_fmt(r.lo, nd)}, {_fmt(r.hi, nd)}]"
                                                            if not math.isnan(r.lo) else ""),
                          r.budget, VERDICTS[r.verdict]] for r in ran.itertuples()],
                        ["row", "data set", "metric", "ours", "std", "n", "failed", "paper", "band", "budget",
                         "verdict"], tablefmt="github")]
    md += _per_seed_block(paper, table, budget, store, spec_metric="k_found",
                          title="Number of clusters found, per seed")
    if mode == "paper":
        md += _claims_block(check_claims(paper, budget, store, table))
    tex = _latex(paper, table, budget, cells, cols, rows, idx, nd)
    return {"md": "\n".join(md) + "\n", "tex": tex, "csv": cells.to_csv(index=False)}


def _latex(paper, table, budget, cells, cols, rows, idx, nd) -> str:
    def esc(s: str) -> str:
        return s.replace("&", r"\&").replace("%", r"\%").replace("_", r"\_").replace("#", r"\#")

    datasets = list(dict.fromkeys(d for d, _ in cols))
    spans = {d: sum(1 for dd, _ in cols if dd == d) for d in datasets}
    out = [r"\begin{table}[t]", r"\centering", r"\small",
           rf"\caption{{{esc(paper.upper())} {esc(table)}: ours (mean$\pm$std over seeds) with the paper's value in "
           rf"parentheses. Budget: {esc(budget)}"
           + (r"; cells at a reduced/quick budget or with declared deviations are not comparable with the paper."
              if budget != "full" or any(cells["deviations"] != "") else ".") + "}",
           r"\begin{tabular}{l" + "c" * len(cols) + "}", r"\toprule",
           " & ".join(["Method"] + [rf"\multicolumn{{{spans[d]}}}{{c}}{{{esc(ds_name(d))}}}" for d in datasets])
           + r" \\"]
    start = 2
    rules = []
    for d in datasets:
        rules.append(rf"\cmidrule(lr){{{start}-{start + spans[d] - 1}}}")
        start += spans[d]
    out.append("".join(rules))
    out.append(" & ".join([""] + [m.upper() for _, m in cols]) + r" \\")
    out.append(r"\midrule")
    for row in rows:
        out.append(" & ".join([esc(row)] + [esc(_cell(idx[(row, d, m)], nd, tex=True)) if (row, d, m) in idx else ""
                                            for d, m in cols]) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(out) + "\n"


def write_table(paper: str, table: str, budget: str, store: Store, out_dir: Path | None = None,
                mode: str = "paper") -> list[Path]:
    out_dir = Path(out_dir or output_dir(paper, budget))
    out_dir.mkdir(parents=True, exist_ok=True)
    rendered = render_table(paper, table, budget, store, mode)
    paths = []
    for ext, text in rendered.items():
        p = out_dir / f"{table}.{ext}"
        tmp = p.with_suffix(p.suffix + ".tmp")
        tmp.write_text(text)
        tmp.replace(p)
        paths.append(p)
    return paths
