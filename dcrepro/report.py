"""A static HTML report of the store: ``index.html`` plus one page per paper, readable from ``file://``.

Each paper page shows every table as a grid (ours mean ± std beside the paper's value, cells coloured by
verdict), the provenance of every cell we ran (runs, seeds, budget, deviations, config hash, git
revision, device, library versions), the claims, the figures, and the same tables against the accepted
baseline (``dcrepro accept``). The pages need no server and nothing from the network: the CSS is
inline, links are relative, and the figures' PNGs are copied next to the pages.

Everything comes from the public engine: :func:`dcrepro.aggregate.table_cells` and
:func:`~dcrepro.aggregate.collect` for the cells and their runs, :func:`dcrepro.claims.check_claims` for the
claims, :func:`dcrepro.tables.output_dir` for the figures ``dcrepro figure`` drew.
"""
from __future__ import annotations

import datetime as _dt
import math
import shutil
from html import escape
from pathlib import Path

import pandas as pd

from . import envinfo
from .aggregate import collect, index_records, table_cells, variants_run
from .claims import check_claims
from .metrics import display_name, get_metric
from .readings import DEFAULT
from .reference import VERDICTS, reference_layout, to_reference_scale
from .spec import load_spec
from .store import Store
from .tables import MARKS, ds_name, output_dir

__all__ = ["write_report", "VERDICT_COLOURS"]

VERDICT_COLOURS = {
    "within": "#bfe3c0", "below": "#f4b6b6", "above": "#f4b6b6", "not_comparable": "#dcdcdc",
    "seconds_not_compared": "#dcdcdc", "failed": "#f7c88f", "missing": "#fdf1b8", "data_unavailable": "#eef0f5",
}
"""Background of a cell by verdict; verdicts not listed (cited baselines, '-' in the paper) stay white."""
OUTCOME_COLOURS = {"supported": "#bfe3c0", "contradicted": "#f4b6b6", "inconclusive": "#fdf1b8"}

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;max-width:1500px;
padding:0 1.2em 3em;color:#1d1d1f}
h1{font-size:1.6em;margin:.6em 0 .2em}h2{margin-top:1.8em;border-bottom:1px solid #ccc}h3{margin:1.2em 0 .3em}
nav{padding:.5em 0;border-bottom:1px solid #ddd}nav a{margin-right:1em}
.note{background:#f6f7f9;border-left:4px solid #8a94a6;padding:.5em .9em;margin:.6em 0}
.scroll{overflow-x:auto}
table{border-collapse:collapse;margin:.4em 0}th,td{border:1px solid #c9ccd1;padding:3px 6px;vertical-align:top}
th{background:#f0f1f3;font-weight:600}td.num{text-align:right;white-space:nowrap}
table.grid td{text-align:center;white-space:nowrap;min-width:6.5em}table.grid td.row{text-align:left;font-weight:600}
.paper{display:block;color:#444;font-size:.85em}.mark{font-weight:700}.warn{color:#a33;font-size:.85em;display:block}
table.grid a{color:inherit;text-decoration:none;border-bottom:1px dotted #333}
.legend span{display:inline-block;padding:1px 7px;margin:2px 4px 2px 0;border:1px solid #c9ccd1}
details.prov{border:1px solid #ddd;margin:.25em 0;padding:.2em .6em}details.prov:target{outline:2px solid #3a6ea5}
details.prov summary{cursor:pointer}dl{display:grid;grid-template-columns:max-content 1fr;gap:.15em 1em;margin:.4em 0}
dt{font-weight:600}dd{margin:0}code{font-size:.92em}
figure{margin:1em 0}figure img{max-width:100%;border:1px solid #ddd}figcaption{color:#444;font-size:.9em}
"""
_OPEN_TARGET = ("<script>function openTarget(){"  # a link to a cell's provenance opens its <details>
                "var e=document.getElementById(decodeURIComponent(location.hash.slice(1)));"
                "if(e&&e.tagName==='DETAILS'){e.open=true;}}window.addEventListener('hashchange',openTarget);"
                "window.addEventListener('DOMContentLoaded',openTarget);</script>")


def write_report(out_dir: str | Path, papers: list[str], budget: str, store: Store) -> list[Path]:
    """Write ``index.html`` and ``<paper>.html`` (figures under ``<paper>/``) into ``out_dir``; returns the pages."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pages, summaries = [], []
    for paper in papers:
        body, summary = _paper_page(paper, budget, store, out)
        page = out / f"{paper}.html"
        page.write_text(_page(f"{load_spec(paper).meta.get('short', paper)}: reproduction report", body))
        pages.append(page)
        summaries.append((paper, summary))
    index = out / "index.html"
    index.write_text(_page("dcrepro reproduction report", _index_body(summaries, budget, store)))
    return [index] + pages


# -- pages ------------------------------------------------------------------------------------------
def _page(title: str, body: str) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{escape(title)}</title>'
            f"<style>{_CSS}</style>{_OPEN_TARGET}</head>\n<body>\n{body}\n</body></html>\n")


def _intro(budget: str, store: Store) -> str:
    legend = "".join(f'<span style="background:{VERDICT_COLOURS.get(v, "#fff")}">{escape(MARKS.get(v, ""))} '
                     f"{escape(VERDICTS[v])}</span>" for v in VERDICTS)
    when = _dt.datetime.now().isoformat(timespec="minutes")
    return (f"<p>Budget <b>{escape(budget)}</b> · store <code>{escape(str(store.path))}</code> · generated {when} "
            f"at git <code>{escape(envinfo.git_revision()[:12])}</code></p>"
            '<div class="note"><b>Not comparable</b> (grey) marks a cell run at a reduced or quick budget, or with a '
            "declared deviation from the paper's protocol: our number stands beside the paper's but is not judged "
            "against it. Only cells at the full budget with no deviation get a band and a verdict (green within, red "
            "below or above). The paired claims test the paper's relative statements at any budget.</div>"
            f'<p class="legend">{legend}</p>'
            "<p>Each cell: ours, mean ± sample std over seeds, and below it the paper's value. Click a cell we ran "
            "for its provenance.</p>")


def _index_body(summaries: list[tuple[str, dict]], budget: str, store: Store) -> str:
    rows = []
    for paper, s in summaries:
        spec = load_spec(paper)
        verdicts = ", ".join(f"{VERDICTS.get(v, v)} {n}" for v, n in sorted(s["verdicts"].items()))
        outcomes = ", ".join(f"{o} {n}" for o, n in sorted(s["outcomes"].items())) or "none"
        rows.append(f'<tr><td><a href="{escape(paper)}.html">{escape(spec.meta.get("short", paper))}</a></td>'
                    f"<td>{escape(spec.meta.get('title', ''))}</td><td>{len(spec.tables)} tables, "
                    f"{len(spec.figures)} figures</td><td>{escape(verdicts)}</td><td>{escape(outcomes)}</td></tr>")
    return ("<h1>dcrepro: reproduction report</h1>" + _intro(budget, store)
            + "<table><tr><th>paper</th><th>title</th><th>content</th><th>cells we ran, by verdict</th>"
              "<th>claims (default reading)</th></tr>" + "".join(rows) + "</table>")


def _paper_page(paper: str, budget: str, store: Store, out: Path) -> tuple[str, dict]:
    spec = load_spec(paper)
    index = index_records(store, paper)  # the store is read once per paper
    claims: dict[str, list] = {}  # reading label -> claim results (all tables and figures)
    for v in variants_run(paper, budget, index):
        claims[v.label] = check_claims(paper, budget, store, variant=_arg(v), records=index)
    summary = {"verdicts": {}, "outcomes": {}}
    for r in claims.get(DEFAULT, []):
        summary["outcomes"][r.outcome] = summary["outcomes"].get(r.outcome, 0) + 1
    nav = ['<a href="index.html">← all papers</a>'] + [f'<a href="#{escape(t)}">{escape(_table_title(t))}</a>'
                                                       for t in spec.tables]
    nav += ['<a href="#figures">figures</a>'] if spec.figures else []
    parts = [f"<nav>{''.join(nav)}</nav>",
             f"<h1>{escape(spec.meta.get('short', paper))}: {escape(spec.meta.get('title', ''))}</h1>",
             _intro(budget, store), _readings_note(spec)]
    for tid in spec.tables:
        parts.append(_table_section(paper, tid, budget, store, index, claims, summary))
    if spec.figures:
        parts.append('<h2 id="figures">Figures</h2>')
        for fid in spec.figures:
            parts.append(_figure_section(paper, fid, budget, out, claims))
    return "\n".join(parts), summary


def _arg(variant):
    """The engine's argument for a reading: None for the default one."""
    return variant if variant.choices else None


def _readings_note(spec) -> str:
    readings = spec.readings
    if not readings:
        return ""
    return ('<div class="note"><b>Readings.</b> Where the paper leaves a detail unstated, the spec declares its '
            "plausible readings; every table below shows the default reading (chosen a priori, never fitted to the "
            "paper's numbers), and each other reading with runs follows it, folded."
            + _ul(r.describe() for r in readings.values()) + "</div>")


def _table_title(tid: str) -> str:
    return tid.replace("table", "Table ")


# -- tables -----------------------------------------------------------------------------------------
def _table_section(paper: str, tid: str, budget: str, store: Store, index, claims: dict, summary: dict) -> str:
    spec = load_spec(paper)
    caption = reference_layout(paper, tid).get("caption", spec.table(tid).get("caption", ""))
    parts = [f'<h2 id="{escape(tid)}">{escape(_table_title(tid))}: {escape(caption)}</h2>']
    for vi, v in enumerate(variants_run(paper, budget, index, set(spec.table_jobs(tid)))):  # the default first
        label = v.label
        cells = table_cells(paper, tid, budget, index, "paper", _arg(v))
        runs = collect(paper, tid, budget, index, _arg(v))
        ran = cells[cells["n"] > 0]
        prov_ids = {key: f"p-{tid}-{vi}-{i}" for i, key in enumerate(k for k, rr in runs.items() if rr.ok or rr.failed)}
        mine = [r for r in claims.get(label, []) if r.table == tid]
        body = [_grid(cells, prov_ids), _claims_table(mine)]
        if prov_ids:
            body.append(f"<h4>Provenance of the cells we ran ({len(prov_ids)} row × data set)</h4>")
            body += [_provenance(prov_ids[key], runs[key], cells, budget, store) for key in prov_ids]
        if vi == 0:
            for verdict in ran["verdict"]:
                summary["verdicts"][verdict] = summary["verdicts"].get(verdict, 0) + 1
            budgets = sorted(set(ran["budget"]) - {""})
            which = f"Reading <b>{escape(label)}</b>. " if spec.readings else ""
            parts.append(f"<p>{which}Effective budget of the runs shown: "
                         f"{escape(', '.join(budgets) or 'none run')}. Regenerate: <code>dcrepro run --paper "
                         f"{escape(paper)} --table {escape(tid)} --budget {escape(budget)}</code></p>")
            parts += body
            parts.append(_regression(paper, tid, budget, index, prov_ids))
        else:
            outcomes = ", ".join(f"{o} {n}" for o, n in pd.Series([r.outcome for r in mine], dtype=object)
                                 .value_counts().items()) or "no claims"
            parts.append(f'<details class="reading"><summary>Reading <b>{escape(label)}</b>: {len(ran)} cells run; '
                         f"claims: {escape(outcomes)}</summary>" + "".join(body) + "</details>")
    return "\n".join(parts)


def _grid(cells: pd.DataFrame, prov_ids: dict, against: str = "paper") -> str:
    cols = list(dict.fromkeys(zip(cells["dataset"], cells["metric"])))
    datasets = list(dict.fromkeys(d for d, _ in cols))
    spans = {d: sum(1 for dd, _ in cols if dd == d) for d in datasets}
    head = ('<tr><th rowspan="2">Method</th>' + "".join(f'<th colspan="{spans[d]}">{escape(ds_name(d))}</th>'
                                                         for d in datasets) + "</tr><tr>"
            + "".join(f"<th>{escape(display_name(m))}</th>" for _, m in cols) + "</tr>")
    idx = {(r["row"], r["dataset"], r["metric"]): r for _, r in cells.iterrows()}
    body = []
    for row in dict.fromkeys(cells["row"]):
        tds = [f'<td class="row">{escape(row)}</td>']
        for d, m in cols:
            line = idx.get((row, d, m))
            tds.append(_cell(line, prov_ids.get((row, d)), against) if line is not None else "<td></td>")
        body.append("<tr>" + "".join(tds) + "</tr>")
    return f'<div class="scroll"><table class="grid">{head}{"".join(body)}</table></div>'


def _fmt(x, nd: int = 2) -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{nd}f}"


def _cell(line: pd.Series, prov_id: str | None, against: str) -> str:
    v = line["verdict"]
    n = int(line["n"])
    if n > 1:
        ours = f"{_fmt(line['ours'])} ± {_fmt(line['ours_std'])}"
    elif n == 1:
        ours = f"{_fmt(line['ours'])} (1 seed)"
    else:
        ours = {"failed": "failed", "data_unavailable": "data not available", "missing": "not run"}.get(v, "")
    if against == "accepted":
        ref = f"accepted {_fmt(line['reference'])}" if n and v != "missing" else ("no accepted runs" if n else "")
    else:
        ref = {"ok": f"paper {_fmt(line['paper'])}", "na": "paper: -", "missing_in_source": "paper: missing in source"
               }.get(line["paper_status"], "")
    band = f" [{_fmt(line['lo'])}, {_fmt(line['hi'])}]" if not math.isnan(line["lo"]) else ""
    tip = f"{VERDICTS.get(v, v)}{band}; n = {n}" + (f", {int(line['n_failed'])} failed" if line["n_failed"] else "")
    if ours and prov_id:
        ours = f'<a href="#{prov_id}">{escape(ours)}</a>'
    else:
        ours = escape(ours)
    mark = f' <span class="mark">{escape(MARKS[v])}</span>' if MARKS.get(v) and ours else ""
    degenerate = int(line["degenerate"])
    warn = f'<span class="warn">⚠ {degenerate} degenerate seed{"s" * (degenerate > 1)}</span>' if degenerate else ""
    colour = VERDICT_COLOURS.get(v)
    style = f' style="background:{colour}"' if colour else ""
    cell_id = escape(f"{line['row']}|{line['dataset']}|{line['metric']}")
    return (f'<td class="v-{escape(v)}"{style} title="{escape(tip)}" data-cell="{cell_id}" data-verdict="{escape(v)}">'
            f"{ours}{mark}"
            f'<span class="paper">{escape(ref)}</span>{warn}</td>')


# -- provenance --------------------------------------------------------------------------------------
def _provenance(pid: str, rr, cells: pd.DataFrame, budget: str, store: Store) -> str:
    recs = rr.ok + rr.failed
    mine = cells[(cells["row"] == rr.row) & (cells["dataset"] == rr.dataset)]
    metrics = list(dict.fromkeys(zip(mine["metric"], mine["ours_metric"], mine["scale"])))
    seeds = sorted({r.seed for r in rr.ok})
    versions: dict[str, set] = {}
    for r in recs:
        for k, val in store.versions(r.key).items():
            versions.setdefault(k, set()).add(str(val))
    devices = pd.Series([r.device or "unknown" for r in recs]).value_counts()
    walls = [r.wall_s for r in rr.ok if r.wall_s]
    facts = [("runs", f"{len(rr.ok)} ok, {len(rr.failed)} failed; seeds {_ranges(seeds) or 'none'}"),
             ("budget", f"requested {budget}; effective {rr.cfg.effective_budget}"
                        + (" (comparable with the paper)" if rr.cfg.comparable else " (not comparable)")),
             ("deviations", _ul(rr.cfg.deviations) if rr.cfg.deviations else "none"),
             ("assumptions", _ul(rr.cfg.assumptions) if rr.cfg.assumptions else "none"),
             ("job · data set", escape(f"{rr.cfg.job} ({rr.cfg.method}) · {rr.cfg.dataset}, output {rr.output}")),
             ("config hash", f"<code>{escape(rr.cfg.config_hash)}</code>"),
             ("git revision", ", ".join(f"<code>{escape(g)}</code>" for g in sorted({r.git_rev or '?' for r in recs}))),
             ("device", escape(", ".join(f"{d} ({c} runs)" for d, c in devices.items()))),
             ("wall time", escape(f"{sum(walls) / 60:.1f} min in total, {sorted(walls)[len(walls) // 2]:.0f} s "
                                  "median per run") if walls else "not recorded"),
             ("versions", escape("; ".join(f"{k} {' / '.join(sorted(v))}" for k, v in sorted(versions.items())))
              or "not recorded")]
    if rr.failed:
        facts.append(("failures", _ul([f"seed {r.seed}: {_last_line(r.error)}" for r in rr.failed])))
    dl = "".join(f"<dt>{escape(k)}</dt><dd>{v}</dd>" for k, v in facts)
    per_seed = _per_seed(rr, metrics)
    return (f'<details class="prov" id="{pid}"><summary>{escape(rr.row)} · {escape(ds_name(rr.dataset))} '
            f"({len(rr.ok)} runs)</summary><dl>{dl}</dl>{per_seed}</details>")


def _per_seed(rr, metrics: list[tuple[str, str, str]]) -> str:
    vals = {m: rr.values(om) for m, om, _ in metrics}
    seeds = sorted({s for v in vals.values() for s in v})
    if not seeds:
        return ""

    def shown(m, om, scale, s):
        x = vals[m].get(s)
        if x is None:
            return ""
        return _fmt(to_reference_scale(x, scale) if get_metric(om).scale in ("fraction", "ratio") else x)

    head = "<tr><th>seed</th>" + "".join(f"<th>{escape(display_name(m))}</th>" for m, _, _ in metrics) + "</tr>"
    rows = "".join(f"<tr><td>{s}</td>" + "".join(f'<td class="num">{shown(m, om, sc, s)}</td>' for m, om, sc in metrics)
                   + "</tr>" for s in seeds)
    return f"<table>{head}{rows}</table>"


def _last_line(text: str | None) -> str:
    lines = (text or "").strip().splitlines()
    return lines[-1] if lines else "no error message stored"


def _ul(items) -> str:
    return "<ul>" + "".join(f"<li>{escape(str(i))}</li>" for i in items) + "</ul>"


def _ranges(seeds: list[int]) -> str:
    """[0, 1, 2, 5] -> '0-2, 5'."""
    out, start = [], None
    for i, s in enumerate(seeds):
        if start is None:
            start = s
        if i + 1 == len(seeds) or seeds[i + 1] != s + 1:
            out.append(str(start) if start == s else f"{start}-{s}")
            start = None
    return ", ".join(out)


# -- claims, figures, regression ---------------------------------------------------------------------
def _claims_table(results) -> str:
    if not results:
        return ""
    lines = []
    for r in results:
        lines.append({"claim": r.claim, "data set": ds_name(r.dataset), "metric": display_name(r.metric),
                      "n": r.n, "mean diff (pts)": _fmt(r.mean_diff),
                      "d_z": _fmt(r.d_z), "p": _p(r.p), "p (Holm)": _p(r.p_holm),
                      "α": _p(r.alpha), "test": r.test, "outcome": r.outcome,
                      "reason": r.reason})
    head = [h for h in lines[0] if any(str(line[h]) for line in lines)]  # no column that is empty throughout
    rows = []
    for line in lines:
        tds = []
        for h in head:
            if h == "outcome":
                colour = OUTCOME_COLOURS.get(line[h], "#eeeeee")
                tds.append(f'<td class="o-{escape(line[h].replace(" ", "_"))}" style="background:{colour}">'
                           f"{escape(line[h])}</td>")
            else:
                tds.append(f"<td>{escape(str(line[h]))}</td>")
        rows.append("<tr>" + "".join(tds) + "</tr>")
    return ("<h3>Claims (paired over seeds)</h3><div class=\"scroll\"><table><tr>"
            + "".join(f"<th>{escape(h)}</th>" for h in head) + "</tr>" + "".join(rows) + "</table></div>"
            "<p>One-sided test in the claimed direction on the seeds both arms share; α per claim from the spec.</p>")


def _p(x) -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3g}"


def _figure_section(paper: str, fid: str, budget: str, out: Path, claims: dict) -> str:
    caption = load_spec(paper).figure(fid).caption
    png = output_dir(paper, budget) / f"{fid}.png"
    parts = [f'<h3 id="{escape(fid)}">{escape(fid)}: {escape(caption)}</h3>']
    if png.exists():
        (out / paper).mkdir(exist_ok=True)
        shutil.copy2(png, out / paper / png.name)
        parts.append(f'<figure><img src="{escape(paper)}/{escape(png.name)}" alt="{escape(fid)}: {escape(caption)}">'
                     f"<figcaption>Drawn by <code>dcrepro figure --paper {escape(paper)} --figure {escape(fid)} "
                     f"--budget {escape(budget)}</code>; mean ± std over seeds.</figcaption></figure>")
    else:
        parts.append(f"<p>Not drawn yet: <code>dcrepro run --paper {escape(paper)} --figure {escape(fid)} --budget "
                     f"{escape(budget)}</code>, then <code>dcrepro figure --paper {escape(paper)} --figure "
                     f"{escape(fid)} --budget {escape(budget)}</code>.</p>")
    for label, results in claims.items():
        mine = [r for r in results if r.table == fid]
        if mine:
            parts.append(f"<p>Reading <b>{escape(label)}</b></p>" + _claims_table(mine) if len(claims) > 1
                         else _claims_table(mine))
    return "".join(parts)


def _regression(paper: str, tid: str, budget: str, index, prov_ids: dict) -> str:
    cells = table_cells(paper, tid, budget, index, "accepted")
    ran = cells[cells["n"] > 0]
    if not len(ran):
        return ""
    counts = ran["verdict"].map(lambda v: VERDICTS.get(v, v)).value_counts()
    if set(ran["verdict"]) == {"missing"}:
        return (f"<p>Regression view: no accepted baseline for this table yet (<code>dcrepro accept --paper "
                f"{escape(paper)} --table {escape(tid)} --budget {escape(budget)}</code> makes one).</p>")
    return ("<details><summary>Regression view: today's runs against the accepted baseline ("
            + escape(", ".join(f"{v} {n}" for v, n in counts.items())) + ")</summary>"
            + _grid(ran, prov_ids, against="accepted") + "</details>")
