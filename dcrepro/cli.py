"""The ``dcrepro`` command: list, run, table, check, accept, figure, env, data.

Unknown papers, tables, rows, data sets, budgets or devices get one line naming the valid choices
and exit code 2; ``check`` exits 1 when any comparable cell lies outside its band.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


from .spec import BUDGETS, choice_error, list_papers, load_spec


def _papers(arg: str | None) -> list[str]:
    papers = list_papers()
    if not arg or arg == "all":
        return papers
    if arg not in papers:
        raise choice_error("paper", arg, papers)
    return [arg]


def _tables(spec, tables: list[str] | None) -> list[str]:
    for t in tables or []:
        spec.table(t)  # raises with the valid choices
    return tables or list(spec.tables)


def cmd_list(a) -> int:
    from .methods import list_methods

    for paper in _papers(a.paper):
        spec = load_spec(paper)
        print(f"{paper}: {spec.meta.get('title', '')}")
        for tid in spec.tables:
            rows = ", ".join(f"{r} [{ref.job}:{ref.output}]" for r, ref in spec.table_rows(tid).items())
            print(f"  {tid}: datasets {', '.join(spec.table_datasets(tid))}\n    rows: {rows}")
        for fid, fig in spec.figures.items():
            print(f"  figure {fid}: {fig.get('param')} on {', '.join(fig.get('datasets', []))}")
    print("methods:", ", ".join(list_methods()))
    return 0


def _plan(a):
    from .runner import build_plan, plan_figure

    plan = []
    for paper in _papers(a.paper):
        spec = load_spec(paper)
        if a.figure:
            for fid in (list(spec.figures) if a.figure == ["all"] else a.figure):
                plan += plan_figure(paper, fid, a.budget, a.seeds)
        else:
            plan += build_plan(paper, _tables(spec, a.table), a.rows, a.datasets, a.seeds, a.budget)
    return plan


def cmd_run(a) -> int:
    from .data import is_available
    from .runner import execute

    plan = _plan(a)
    missing = sorted({it.cfg.dataset for it in plan if not is_available(it.cfg.dataset)})
    if missing:
        print(f"data not available (skipped; see `dcrepro data list`): {', '.join(missing)}", file=sys.stderr)
    print(f"plan: {len(plan)} runs at budget {a.budget}")
    if a.dry_run:
        for it in plan:
            print(f"  {it.label()} config {it.cfg.config_hash} effective budget {it.cfg.effective_budget}")
        return 0
    counts = execute(plan, a.store, a.device, a.workers, a.force, progress=not a.quiet, threads=a.threads)
    print("outcome:", ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    return 0


def cmd_table(a) -> int:
    from .store import Store
    from .tables import write_table

    with Store(a.store) as store:
        for paper in _papers(a.paper):
            spec = load_spec(paper)
            for tid in _tables(spec, a.table):
                for p in write_table(paper, tid, a.budget, store, a.out, "accepted" if a.against == "accepted" else "paper"):
                    print(p)
    return 0


def cmd_figure(a) -> int:
    from .plots import write_figure
    from .store import Store

    with Store(a.store) as store:
        for paper in _papers(a.paper):
            spec = load_spec(paper)
            for fid in list(spec.figures) if not a.figure or a.figure == ["all"] else a.figure:
                for p in write_figure(paper, fid, store, a.budget, a.out):
                    print(p)
    return 0


def cmd_check(a) -> int:
    from .aggregate import table_cells
    from .claims import check_claims
    from .reference import VERDICTS
    from .store import Store

    bad = 0
    with Store(a.store) as store:
        for paper in _papers(a.paper):
            spec = load_spec(paper)
            for tid in _tables(spec, a.table):
                cells = table_cells(paper, tid, a.budget, store, a.against)
                counts = cells["verdict"].map(VERDICTS).value_counts().to_dict()
                out = cells[cells["verdict"].isin(["below", "above"])]
                bad += len(out)
                print(f"{paper}/{tid}: " + ", ".join(f"{v} {n}" for v, n in sorted(counts.items())))
                for r in out.itertuples():
                    print(f"  OUTSIDE BAND {r.row} {r.dataset} {r.metric}: ours {r.ours:.2f} vs "
                          f"{'paper' if a.against == 'paper' else 'accepted'} {r.paper:.2f} band [{r.lo:.2f}, {r.hi:.2f}]")
                if a.against == "paper":
                    _print_claims(check_claims(paper, a.budget, store, tid))
            if a.against == "paper" and not a.table:
                for fid in spec.figures:
                    _print_claims(check_claims(paper, a.budget, store, figure=fid))
    print("FAIL" if bad else "OK", f"{bad} comparable cell(s) outside band")
    return 1 if bad else 0


def _print_claims(results) -> None:
    for c in results:
        print(f"  claim {c.claim} [{c.dataset} {c.metric}]: {c.outcome} "
              f"(mean diff {c.mean_diff:.2f} pts, n={c.n}, p={c.p:.3g}, alpha={c.alpha:g}; {c.test})")


def cmd_accept(a) -> int:
    from .aggregate import collect
    from .envinfo import git_revision
    from .store import Store

    n = 0
    with Store(a.store) as store:
        for paper in _papers(a.paper):
            spec = load_spec(paper)
            for tid in _tables(spec, a.table):
                keys = {r.key for rr in collect(paper, tid, a.budget, store).values() for r in rr.ok}
                n += store.accept(keys, git_revision())
    print(f"accepted {n} run outputs as the regression baseline")
    return 0


def cmd_merge(a) -> int:
    from .store import Store

    for src in a.sources:
        if not Path(src).is_file():
            raise SystemExit(f"dcrepro merge: no store file {src!r}")
    with Store(a.store) as store:
        for src in a.sources:
            copied, skipped = store.merge_from(src)
            print(f"{src}: {copied} run(s) copied, {skipped} already here")
    return 0


def cmd_env(a) -> int:
    from . import envinfo
    from .data import data_root
    from .store import default_store_path

    dev = envinfo.resolve_device("auto")
    info = {"versions": envinfo.versions(), "device": envinfo.device_name(dev), "git": envinfo.git_revision(),
            "data_root": str(data_root()), "store": str(default_store_path())}
    print(json.dumps(info, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="dcrepro", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)

    def common(p, tables=True):
        p.add_argument("--paper", default="all", help=f"paper id or 'all' ({', '.join(list_papers())})")
        if tables:
            p.add_argument("--table", nargs="+", help="table ids (default: all tables of the paper)")
        p.add_argument("--budget", default="reduced", choices=BUDGETS)
        p.add_argument("--store", default=None, help="result store (default $DCREPRO_STORE, else results/store.sqlite; quick budget: results/quick.sqlite)")

    p = sub.add_parser("list", help="papers, tables, rows, data sets, methods")
    p.add_argument("--paper", default="all")
    p.set_defaults(fn=cmd_list)

    p = sub.add_parser("run", help="run the plan for tables (or figures) of a paper")
    common(p)
    p.add_argument("--rows", nargs="+")
    p.add_argument("--datasets", nargs="+")
    p.add_argument("--figure", nargs="+", help="run figures' parameter sweeps ('all' for every figure) instead of tables")
    p.add_argument("--seeds", type=int, default=None, help="number of seeds (default: the spec's, 10)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--workers", type=int, default=1, help="parallel CPU worker processes")
    p.add_argument("--threads", type=int, default=None,
                   help="torch/BLAS threads of a sequential run (1 when other jobs share the CPU)")
    p.add_argument("--force", action="store_true", help="re-run runs already stored")
    p.add_argument("--dry-run", action="store_true", help="print the plan only")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(fn=cmd_run)

    p = sub.add_parser("table", help="render tables to paper_tables/<paper>/<table>.{md,tex,csv}")
    common(p)
    p.add_argument("--out", default=None)
    p.add_argument("--against", default="paper", choices=["paper", "accepted"])
    p.set_defaults(fn=cmd_table)

    p = sub.add_parser("figure", help="plot figures (parameter sweeps) to paper_tables/<paper>/")
    common(p, tables=False)
    p.add_argument("--figure", nargs="+")
    p.add_argument("--out", default=None)
    p.set_defaults(fn=cmd_figure)

    p = sub.add_parser("check", help="diff every cell against its band; exit 1 if a comparable cell is outside")
    common(p)
    p.add_argument("--against", default="paper", choices=["paper", "accepted"])
    p.set_defaults(fn=cmd_check)

    p = sub.add_parser("accept", help="mark the current runs of tables as the regression baseline")
    common(p)
    p.set_defaults(fn=cmd_accept)

    p = sub.add_parser("merge", help="copy ok runs from other stores (e.g. made on a GPU machine) into this one")
    p.add_argument("sources", nargs="+", help="sqlite store files to read")
    p.add_argument("--store", default=None)
    p.add_argument("--budget", default="reduced", choices=BUDGETS, help="picks the default store")
    p.set_defaults(fn=cmd_merge)
    p = sub.add_parser("env", help="versions, device, data root, store")
    p.set_defaults(fn=cmd_env)

    from .data.cli import register

    register(sub, tables=_tables_by_dataset)
    from .backbones.cli import register as register_backbone

    register_backbone(sub)
    return ap


def _tables_by_dataset() -> dict[str, list[str]]:
    """{data set: ['paper/table', ...]} from the specs (for `dcrepro data list`)."""
    out: dict[str, list[str]] = {}
    for paper in list_papers():
        spec = load_spec(paper)
        for tid in spec.tables:
            for ds in spec.table_datasets(tid):
                out.setdefault(ds.partition("@")[0], []).append(f"{paper}/{tid}")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    a = ap.parse_args(argv)
    if getattr(a, "store", "") is None and hasattr(a, "budget"):
        from .store import default_store_path

        a.store = str(default_store_path(a.budget))
    try:
        return int((a.fn if hasattr(a, "fn") else a.func)(a) or 0)
    except KeyError as e:  # unknown names: one line naming the valid choices
        print(f"dcrepro: error: {e.args[0]}", file=sys.stderr)
        return 2
    except ValueError as e:
        print(f"dcrepro: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
