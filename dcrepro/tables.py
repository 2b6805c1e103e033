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
from .data.registry import display_name as ds_name
from .paths import output_dir
from .reference import VERDICTS, reference_layout
from .spec import load_spec
from .store import Store

__all__ = ["render_table", "write_table", "write_claims", "output_dir", "MARKS"]


MARKS = {"within": "✓", "below": "▼", "above": "▲", "not_comparable": "≈", "failed": "✗", "missing": "·",
         "data_unavailable": "∅", "na_in_paper": "", "missing_in_source": "", "not_in_suite": "",
         "no_reference": ""}
def _fmt(x: float, nd: int) -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{nd}f}"


def _cell(line: pd.Series, nd: int, tex: bool = False) -> str:
    v = line["verdict"]
    pm = r"$\pm$" if tex else "±"
    if line.get("reference_kind") == "accepted":  # regression view: ours / our accepted runs' mean
        paper = _fmt(line["reference"], nd)
    else:
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


def _header_lines(paper: str, table: str, budget: str, cells: pd.DataFrame, store) -> list[str]:
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
    embedded = _embedded_inputs(paper, table, budget, store)
    if embedded:
        lines.append("- Read from the copy shipped inside the package (the data root lacked it; byte-identical "
                     "files, so the same data): " + ", ".join(f"`{d}`" for d in embedded) + ".")
    wall = _wall_time(paper, cells, store)
    if wall:
        lines.append(f"- Compute: {wall}.")
    lines.append(f"- Generated {_dt.date.today().isoformat()} at git {envinfo.git_revision()[:12]}.")
    return lines


VIEW_METHODS = ("rpsc", "scan", "spice_self")
"""Methods that train on a feature set's cached pool of augmented views (:mod:`dcrepro.backbones.views`)."""


def _unavailable_inputs(paper: str, table: str, cells: pd.DataFrame) -> list[str]:
    """For each unavailable input of the table: its name and how to make it (feature sets: the GPU command)."""
    from .data.feature_sets import backbone_device, is_feature_name, make_command, views_command

    spec = load_spec(paper)
    names, with_views = [], set()
    for row, ref in spec.table_rows(table).items():
        for col in set(cells.loc[(cells["row"] == row) & (cells["verdict"] == "data_unavailable"), "dataset"]):
            ds = spec.job_input(table, ref.job, col)
            if ds and ds not in names:
                names.append(ds)
            if ds and spec.jobs[ref.job]["method"] in VIEW_METHODS:
                with_views.add(ds)

    def how(n: str) -> str:
        if not is_feature_name(n):
            return f"`{n}` (`dcrepro data verify {n}` says which files go where)"
        views = f", then its view pool: `{views_command(n, portable=True)}`" if n in with_views else ""
        where = " on a GPU" if backbone_device(n) == "cuda" else ""
        return f"`{n}` (make it{where}: `{make_command(n, portable=True)}`{views})"

    return [how(n) for n in sorted(names)]


def _embedded_inputs(paper: str, table: str, budget: str, store) -> list[str]:
    """Data sets whose runs in this table read the package's embedded copy (their outputs' info says so)."""
    from .aggregate import collect

    info = getattr(store, "store", store).info  # a RecordIndex keeps its Store
    return sorted({rr.dataset for rr in collect(paper, table, budget, store).values()
                   if any("data_source" in info(r.key, rr.output) for r in rr.ok)})


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


def _wall_time(paper: str, cells: pd.DataFrame, store) -> str:
    hashes = {h for h in cells["config_hash"] if h}
    recs = [r for r in store.records(paper=paper, status="ok") if r.config_hash in hashes]
    if not recs:
        return ""
    uniq = {r.key: r for r in recs}.values()
    total = sum(r.wall_s or 0 for r in uniq)
    devices = sorted({r.device for r in uniq})
    return f"{len(uniq)} runs, {total / 60:.1f} min of run wall time in total on {', '.join(devices)}"


def _per_seed_block(paper: str, table: str, budget: str, store, spec_metric: str, title: str) -> list[str]:
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


def _p(x: float) -> str:
    return "" if x is None or math.isnan(x) else f"{x:.3g}"


def _claims_block(results: list[ClaimResult]) -> list[str]:
    if not results:
        return []
    reading = results[0].reading
    rows = [[r.claim, ds_name(r.dataset), r.metric, r.n, _fmt(r.mean_diff, 2), _fmt(r.d_z, 2), _p(r.p), _p(r.p_holm),
             "" if math.isnan(r.alpha) else f"{r.alpha:g}", r.outcome, r.reason or r.test] for r in results]
    return ["", f"## Claims (paired over seeds; reading: {reading})", "",
            tabulate(rows, ["claim", "data set", "metric", "n", "mean diff (pts)", "d_z", "p (one-sided)", "p (Holm)",
                            "α", "outcome", "test / why"], tablefmt="github"),
            "", "Paired over the seeds both arms share, minus the seeds on which either arm is degenerate (its job's "
                "health rules); one-sided test in the claimed direction (the opposite one when contradicted); a '≥' "
                "claim is a non-inferiority test against its margin. Outcomes are decided on Holm-adjusted p-values "
                "across every testable claim cell of the paper at this budget and reading, at each claim's α (0.05 "
                "unless the spec names one; DCGLU's table claims use the paper's own 0.01). 'not testable' says why: "
                "a budget that cannot show the effect, or degenerate runs."]


def _short(r: ClaimResult) -> str:
    if r.outcome in ("supported", "contradicted", "inconclusive"):
        return f"{r.outcome} ({_fmt(r.mean_diff, 1)}, p_holm {_p(r.p_holm) or '-'}, n {r.n})"
    if r.outcome == "not testable":
        return "not testable: " + r.reason.split(": ", 1)[-1]
    return r.outcome


def _readings_block(paper: str, table: str, budget: str, index, cells: pd.DataFrame) -> list[str]:
    """Every reading of the unstated details this table depends on, and each claim cell's outcome (and, at
    the full budget, each comparable cell's verdict) under every reading that has runs."""
    from .aggregate import table_cells, variants_run

    spec = load_spec(paper)
    jobs = set(spec.table_jobs(table))
    readings = [r for r in spec.readings.values() if jobs & set(r.jobs)]
    if not readings:
        return []
    lines = ["", "## Readings of unstated details", "",
             "The table above runs each detail at its default reading (an a-priori choice, never fitted to the "
             "paper's numbers); every other reading varies one detail at a time (or a declared joint grid).", ""]
    for r in readings:
        alts = ", ".join(f"`{o}` ({_kv(p)})" for o, p in r.options.items() if o != r.default)
        q = r.question.strip()
        q += "" if q[-1:] in ".?!" else "."
        lines.append(f"- **{r.id}** — {q} Default `{r.default}` ({_kv(r.options[r.default])}): {r.reason}. "
                     f"Also: {alts}. Jobs: {', '.join(j for j in r.jobs if j in jobs)}.")
    ran = [v for v in variants_run(paper, budget, index, jobs)]
    every = [v for v in spec.variants(["all"]) if not v.choices or v.applies_to(spec.readings, jobs)]
    missing = [v.label for v in every if v.label not in {x.label for x in ran}]
    if missing:
        lines += ["", f"Not run yet at the {budget} budget: " + ", ".join(f"`{m}`" for m in missing) +
                  f" (`dcrepro run --paper {paper} --table {table} --budget {budget} --readings all`)."]
    if len(ran) < 2:
        return lines
    per = {v.label: {(c.claim, c.dataset, c.metric): c for c in check_claims(paper, budget, index, table, variant=v)}
           for v in ran}
    keys = list(dict.fromkeys(k for d in per.values() for k in d))
    if keys:
        lines += ["", "| claim | data set | metric | " + " | ".join(per) + " |",
                  "|" + "---|" * (3 + len(per))]
        for k in keys:
            lines.append(f"| {k[0]} | {ds_name(k[1])} | {k[2]} | " +
                         " | ".join(_short(per[v][k]) if k in per[v] else "no data" for v in per) + " |")
    if budget == "full":
        verdicts = {v.label: table_cells(paper, table, budget, index, "paper", v) for v in ran}
        comp = [c for c in cells.itertuples() if c.comparable and c.paper_status == "ok"]
        if comp:
            lines += ["", "Comparable cells under each reading (which readings land within band):", "",
                      "| cell | paper | " + " | ".join(verdicts) + " |", "|" + "---|" * (2 + len(verdicts))]
            for c in comp:
                vals = []
                for df in verdicts.values():
                    m = df[(df["row"] == c.row) & (df["dataset"] == c.dataset) & (df["metric"] == c.metric)]
                    vals.append(f"{_fmt(m['ours'].iloc[0], 2)} {VERDICTS.get(m['verdict'].iloc[0], '')}" if len(m) else "")
                lines.append(f"| {c.row} / {ds_name(c.dataset)} / {c.metric} | {_fmt(c.paper, 2)} | " + " | ".join(vals) + " |")
    return lines


def _kv(params: dict) -> str:
    return ", ".join(f"{k} = {v}" for k, v in params.items())


def render_table(paper: str, table: str, budget: str, store: Store, mode: str = "paper") -> dict[str, str]:
    """{'md': ..., 'tex': ..., 'csv': ...} for one table (the store is read once: see ``index_records``).

    Markdown and LaTeX render the default reading; the CSV holds one block of cells per reading with runs."""
    from .aggregate import index_records, variants_run

    index = index_records(store, paper)
    cells = table_cells(paper, table, budget, index, mode)
    nd = 3 if load_spec(paper).meta.get("scale") == "fraction" else 2  # as the paper prints (RPSC: 0.xxx)
    cols = list(dict.fromkeys(zip(cells["dataset"], cells["metric"])))
    rows = list(dict.fromkeys(cells["row"]))
    idx = {(r.row, r.dataset, r.metric): r for _, r in cells.iterrows()}
    head = ["Method"] + [f"{ds_name(d)} {_metric_label(m)}" for d, m in cols]
    body = [[row] + [_cell(idx[(row, d, m)], nd) if (row, d, m) in idx else "" for d, m in cols] for row in rows]
    md = _header_lines(paper, table, budget, cells, index)
    md += ["", tabulate(body, head, tablefmt="github"), "",
           "Legend: ✓ within band · ▼ below band · ▲ above band · ≈ not comparable (budget/deviation) · "
           "✗ failed · ∅ data not available · · not run yet; cells with only a paper value are not re-run "
           "(cited baselines) or '-' in the paper."]
    ran = cells[cells["n"] > 0]
    if len(ran):
        md += ["", "## Cells we ran", "",
               tabulate([[r.row, ds_name(r.dataset), r.metric, _fmt(r.ours, nd), _fmt(r.ours_std, nd), r.n,
                          r.n_failed, r.degenerate, _fmt(r.reference if mode == "accepted" else r.paper, nd),
                          (f"[{_fmt(r.lo, nd)}, {_fmt(r.hi, nd)}]"
                                                                          if not math.isnan(r.lo) else ""),
                          r.budget, VERDICTS[r.verdict]] for r in ran.itertuples()],
                        ["row", "data set", "metric", "ours", "std", "n", "failed", "degenerate",
                         "accepted" if mode == "accepted" else "paper", "band",
                         "budget", "verdict"], tablefmt="github")]
        md += _health_note(paper, table)
    md += _per_seed_block(paper, table, budget, index, spec_metric="k_found",
                          title="Number of clusters found, per seed")
    if mode == "paper":
        md += _claims_block(check_claims(paper, budget, index, table))
        md += _readings_block(paper, table, budget, index, cells)
    tex = _latex(paper, table, budget, cells, cols, rows, idx, nd)
    others = [table_cells(paper, table, budget, index, mode, v) for v in variants_run(paper, budget, index,
                                                                                       set(load_spec(paper).table_jobs(table)))[1:]]
    csv = pd.concat([cells, *others], ignore_index=True).to_csv(index=False)
    return {"md": "\n".join(md) + "\n", "tex": tex, "csv": csv}


def _health_note(paper: str, table: str) -> list[str]:
    """The health rules of the table's jobs (what 'degenerate' counts)."""
    spec = load_spec(paper)
    rules = [f"`{j}`: " + " or ".join(f"`{r.text}`" for r in spec.health[j]) for j in spec.table_jobs(table)
             if spec.health.get(j)]
    if not rules:
        return []
    return ["", "'degenerate' counts the seeds on which a health rule of the row's job held (claims drop them): "
            + "; ".join(rules) + ". Runs stored before a rule's signal existed are not counted."]


def write_claims(paper: str, budget: str, store: Store, out_dir: Path | None = None) -> Path:
    """``claims.csv``: every claim cell of ``paper`` at ``budget`` under every reading with runs."""
    from .aggregate import index_records, variants_run
    from .claims import CSV_COLUMNS

    index = index_records(store, paper)
    rows = [r.csv_row() for v in variants_run(paper, budget, index) for r in check_claims(paper, budget, index, variant=v)]
    out_dir = Path(out_dir or output_dir(paper, budget))
    out_dir.mkdir(parents=True, exist_ok=True)
    p = out_dir / "claims.csv"
    tmp = p.with_suffix(".csv.tmp")
    pd.DataFrame(rows, columns=CSV_COLUMNS).to_csv(tmp, index=False)
    tmp.replace(p)
    return p


def _metric_label(metric: str) -> str:
    """A metric's header in the tables: its display name from the metric registry."""
    from .metrics import display_name

    return display_name(metric)


_TEX_SPECIALS = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                 "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "<": r"\textless{}",
                 ">": r"\textgreater{}", "|": r"\textbar{}", "±": r"$\pm$", "≈": r"$\approx$", "✓": r"$\surd$",
                 "✗": r"$\times$", "×": r"$\times$", "▼": r"$\downarrow$", "▲": r"$\uparrow$", "∅": r"$\emptyset$",
                 "·": r"$\cdot$", "α": r"$\alpha$", "≤": r"$\leq$", "≥": r"$\geq$", "—": "---", "–": "--",
                 "’": "'", "“": "``", "”": "''"}


def esc(text: str) -> str:
    """Plain text -> LaTeX that pdflatex compiles with no package beyond booktabs: every special character
    escaped, the symbols the tables use (±, ≈, ✓, ...) as math; any other non-ASCII character is spelled by
    its ASCII base letter (é -> e) or, failing that, '?'."""
    import unicodedata

    out = []
    for ch in str(text):
        if ch in _TEX_SPECIALS:
            out.append(_TEX_SPECIALS[ch])
        elif ch.isascii():
            out.append(ch)
        else:
            base = unicodedata.normalize("NFKD", ch).encode("ascii", "ignore").decode()
            out.append(esc(base) if base else "?")
    return "".join(out)


def _latex(paper, table, budget, cells, cols, rows, idx, nd) -> str:
    def cell(row, d, m) -> str:  # _cell's TeX form carries a ready-made $\pm$: back to text, then escape it all
        return esc(_cell(idx[(row, d, m)], nd, tex=True).replace(r"$\pm$", "±")) if (row, d, m) in idx else ""

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
    out.append(" & ".join([""] + [esc(_metric_label(m)) for _, m in cols]) + r" \\")
    out.append(r"\midrule")
    for row in rows:
        out.append(" & ".join([esc(row)] + [cell(row, d, m) for d, m in cols]) + r" \\")
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
