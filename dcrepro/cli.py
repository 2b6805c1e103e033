"""The ``dcrepro`` command: list, run, table, check, accept, figure, report, env, data.

Unknown papers, tables, rows, data sets, budgets or devices, and bad numbers (``--seeds 0``), get one
line naming the valid choices and exit code 2. Exit code 1, with one line saying why: ``run`` when a run
failed or nothing could run, a data file that fails its checksum (found before anything runs), a store
file that is not a dcrepro store; ``check`` when any comparable cell lies outside its band.
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
            print(f"  figure {fid}: {fig.param} on {', '.join(fig.datasets)}")
        for r in spec.readings.values():
            print(f"  reading {r.describe()}")
    print("methods:", ", ".join(list_methods()))
    return 0


def _plan(a):
    from .runner import build_plan, plan_figure

    plan = []
    for paper in _papers(a.paper):
        spec = load_spec(paper)
        if a.figure:
            for fid in (list(spec.figures) if a.figure == ["all"] else a.figure):
                plan += plan_figure(paper, fid, a.budget, a.seeds, a.readings)
        else:
            plan += build_plan(paper, _tables(spec, a.table), a.rows, a.datasets, a.seeds, a.budget,
                               readings=a.readings)
    return plan


def cmd_run(a) -> int:
    from .data import is_available
    from .runner import check_data, execute

    plan = _plan(a)
    missing = sorted(ds for ds in {it.cfg.dataset for it in plan} if not is_available(ds))
    if missing:
        print(f"data not available (skipped; see `dcrepro data list`): {', '.join(missing)}", file=sys.stderr)
    print(f"plan: {len(plan)} runs at budget {a.budget}")
    if a.dry_run:
        for it in plan:
            print(f"  {it.label()} config {it.cfg.config_hash} effective budget {it.cfg.effective_budget}")
        return 0
    check_data(plan)  # a corrupt data file: one error now, for every executor (hashed once per process)
    if a.executor == "slurm":
        from .slurm import execute_slurm, load_options

        opts = load_options(a.slurm_config, partition=a.slurm_partition, time=a.slurm_time, gpus=a.slurm_gpus,
                            cpus=a.slurm_cpus, mem=a.slurm_mem, bundle=a.slurm_bundle)
        counts = execute_slurm(plan, a.store, a.device, a.force, opts, progress=not a.quiet)
    else:
        counts = execute(plan, a.store, a.device, a.workers, a.force, progress=not a.quiet, threads=a.threads,
                         workers_per_gpu=a.workers_per_gpu or 0, seeds_per_process=a.seeds_per_process)
    print("outcome:", ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    return _run_verdict(plan, counts, missing, a.store)


def _run_verdict(plan, counts: dict[str, int], missing: list[str], store_path) -> int:
    """Exit code of ``dcrepro run``, with one line saying why: 1 when a run failed or nothing could run;
    0 when every run whose data is here is stored ok (the skipped data sets are named)."""
    ok, stored, busy = counts.get("ok", 0), counts.get("skipped", 0), counts.get("busy", 0)
    if counts.get("failed"):
        from .store import Store

        keys = {it.key for it in plan}
        with Store(store_path) as store:
            rec = next((r for r in store.records(status="failed") if r.key in keys), None)
        first = ""
        if rec is not None:
            last = [ln.strip() for ln in (rec.error or "").splitlines() if ln.strip()][-1:] or ["?"]
            first = f"; first: {rec.paper}/{rec.job}/{rec.dataset}/seed{rec.seed}: {last[0]}"
        print(f"FAIL: {counts['failed']} run(s) failed, {ok} ran ok (`dcrepro table` marks them ✗){first}",
              file=sys.stderr)
        return 1
    if not ok + stored + busy:
        why = (f"data not available for {', '.join(missing)} (see `dcrepro data list`)" if missing
               else "the plan is empty")
        print(f"nothing ran: {why}", file=sys.stderr)
        return 1
    skipped = f"; skipped, data not available: {', '.join(missing)}" if missing else ""
    print(f"OK: {ok} ran, {stored} already stored{', ' + str(busy) + ' running elsewhere' if busy else ''}{skipped}")
    return 0


def cmd_table(a) -> int:
    from .store import Store
    from .tables import write_claims, write_table

    with Store(a.store, baseline=_baseline(a) if a.against == "accepted" else None) as store:
        for paper in _papers(a.paper):
            spec = load_spec(paper)
            for tid in _tables(spec, a.table):
                for p in write_table(paper, tid, a.budget, store, a.out, "accepted" if a.against == "accepted" else "paper"):
                    print(p)
            if a.against != "accepted" and not a.table:
                print(write_claims(paper, a.budget, store, a.out))
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
    from .metrics import get_metric
    from .reference import VERDICTS
    from .store import Store

    bad = unaccepted = 0
    with Store(a.store, baseline=_baseline(a) if a.against == "accepted" else None) as store:
        for paper in _papers(a.paper):
            spec = load_spec(paper)
            for tid in _tables(spec, a.table):
                cells = table_cells(paper, tid, a.budget, store, a.against)
                if a.against == "accepted":  # wall-clock seconds follow the machine and its load: never gated
                    secs = cells["ours_metric"].map(lambda m: get_metric(m).scale == "seconds") & (cells["n"] > 0)
                    cells.loc[secs, "verdict"] = "seconds_not_compared"
                counts = cells["verdict"].map(VERDICTS).value_counts().to_dict()
                out = cells[cells["verdict"].isin(["below", "above"])]
                bad += len(out)
                if a.against == "accepted":  # a cell we ran that the baseline lacks (e.g. a changed config)
                    new = cells[(cells["verdict"] == "missing") & (cells["n"] > 0)]
                    unaccepted += len(new)
                    for r in new.itertuples():
                        print(f"  NO BASELINE {r.row} {r.dataset} {r.metric}: ours {r.ours:.2f} (config {r.config_hash})")
                print(f"{paper}/{tid}: " + ", ".join(f"{v} {n}" for v, n in sorted(counts.items())))
                for r in out.itertuples():
                    print(f"  OUTSIDE BAND {r.row} {r.dataset} {r.metric}: ours {r.ours:.2f} vs "
                          f"{r.reference_kind} {r.reference:.2f} band [{r.lo:.2f}, {r.hi:.2f}]")
                if a.against == "paper":
                    _print_claims(check_claims(paper, a.budget, store, tid))
            if a.against == "paper" and not a.table:
                for fid in spec.figures:
                    _print_claims(check_claims(paper, a.budget, store, figure=fid))
    extra = (f", {unaccepted} run cell(s) with no accepted baseline (`dcrepro accept` them if the change is "
             "meant)") if unaccepted else ""
    print("FAIL" if bad or unaccepted else "OK", f"{bad} comparable cell(s) outside band{extra}")
    return 1 if bad or unaccepted else 0


def _baseline(a) -> str | None:
    """The file holding the accepted baseline: ``--baseline``, else for the quick budget the committed
    ``results/baseline_quick.sqlite`` (its runs go to a git-ignored store), else the store's own table."""
    from .spec import project_root

    if a.baseline:
        return None if a.baseline == "store" else a.baseline
    return str(project_root() / "results" / "baseline_quick.sqlite") if a.budget == "quick" else None


def _print_claims(results) -> None:
    for c in results:
        print(f"  claim {c.claim} [{c.dataset} {c.metric}; reading {c.reading}]: {c.outcome} "
              f"(mean diff {c.mean_diff:.2f} pts, n={c.n}, p={c.p:.3g}, Holm p={c.p_holm:.3g}, alpha={c.alpha:g}; "
              f"{c.reason or c.test})")


def cmd_accept(a) -> int:
    from .aggregate import collect
    from .envinfo import git_revision
    from .store import Store

    n, base = 0, _baseline(a)
    with Store(a.store) as store:
        for paper in _papers(a.paper):
            spec = load_spec(paper)
            for tid in _tables(spec, a.table):
                keys = {r.key for rr in collect(paper, tid, a.budget, store).values() for r in rr.ok}
                n += store.accept(keys, git_revision())
                if base:
                    store.save_accepted(keys, base)
    if not n:
        print(f"nothing to accept: no ok runs at budget {a.budget} in {a.store} (run them first)", file=sys.stderr)
        return 1
    print(f"accepted {n} run outputs as the regression baseline" + (f" (written to {base})" if base else ""))
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


def cmd_report(a) -> int:
    from .report import write_report
    from .store import Store

    with Store(a.store) as store:
        pages = write_report(a.out, _papers(a.paper), a.budget, store)
    print(f"report: {pages[0]} ({len(pages) - 1} paper pages; open it in a browser, no server needed)")
    return 0


def cmd_status(a) -> int:
    from .slurm import job_folder, load_options, plan_status
    from .store import Store

    plan = _plan(a)
    print(f"plan: {len(plan)} runs at budget {a.budget}")
    with Store(a.store) as store:
        folder = job_folder(store.path, load_options(a.slurm_config))
        for paper, counts in plan_status(plan, store, folder).items():
            print(f"{paper}: " + ", ".join(f"{k} {counts[k]}" for k in
                                           ("done", "failed", "queued", "running", "collecting", "not started", "no data")
                                           if counts.get(k)))
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


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (the usage is one ``--help`` away); sub-parsers inherit it."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def _count(text: str) -> int:
    """A whole number >= 1 (seeds, workers, threads)."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {n}")
    return n


_BASELINE_HELP = ("store file holding the accepted baseline (default: results/baseline_quick.sqlite, committed, "
                  "for the quick budget; 'store': the store's own accepted table, the default for other budgets)")


def build_parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="dcrepro", description=__doc__.splitlines()[0])
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
    p.add_argument("--readings", nargs="+", default=None, metavar="READING",
                   help="readings of unstated details to run: 'default' (the default), 'all', a reading id (each of "
                        "its options, one factor at a time), 'id=option', or a joint-grid label; `dcrepro list` "
                        "shows them")
    p.add_argument("--seeds", type=_count, default=None, help="number of seeds (default: the spec's, 10)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--workers", type=_count, default=1, help="parallel CPU worker processes")
    p.add_argument("--threads", type=_count, default=None,
                   help="torch/BLAS threads of a sequential run (1 when other jobs share the CPU)")
    p.add_argument("--seeds-per-process", type=_count, default=1,
                   help="train up to this many seeds of one config at once (stacked parameters) where the method "
                        "has a batched implementation (DCSS, the DEC family, DAC's head); one record per seed")
    p.add_argument("--executor", default="local", choices=["local", "slurm"],
                   help="local: this machine (process pool); slurm: submitit job arrays (README: Scale-out)")
    p.add_argument("--workers-per-gpu", type=_count, default=None,
                   help="local cuda runs: this many worker processes on each visible GPU (each pinned by "
                        "CUDA_VISIBLE_DEVICES; >1 where a run uses a fraction of a GPU)")
    p.add_argument("--slurm-config", default=None, help="TOML file of site defaults ([slurm] table; "
                   "default $DCREPRO_SLURM_CONFIG; see slurm.example.toml)")
    p.add_argument("--slurm-partition", default=None)
    p.add_argument("--slurm-time", type=_count, default=None, help="minutes per array task (default 60)")
    p.add_argument("--slurm-gpus", type=int, default=None, help="GPUs per array task (default 0)")
    p.add_argument("--slurm-cpus", type=_count, default=None, help="CPUs per array task (default 2)")
    p.add_argument("--slurm-mem", type=float, default=None, help="GB per array task (default: the partition's)")
    p.add_argument("--slurm-bundle", type=_count, default=None, help="runs per array task (default 1)")
    p.add_argument("--force", action="store_true", help="re-run runs already stored")
    p.add_argument("--dry-run", action="store_true", help="print the plan only")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(fn=cmd_run)

    p = sub.add_parser("table", help="render tables to paper_tables/<paper>/<table>.{md,tex,csv}")
    common(p)
    p.add_argument("--out", default=None)
    p.add_argument("--against", default="paper", choices=["paper", "accepted"])
    p.add_argument("--baseline", default=None, help=_BASELINE_HELP)
    p.set_defaults(fn=cmd_table)

    p = sub.add_parser("figure", help="plot figures (parameter sweeps) to paper_tables/<paper>/")
    common(p, tables=False)
    p.add_argument("--figure", nargs="+")
    p.add_argument("--out", default=None)
    p.set_defaults(fn=cmd_figure)

    p = sub.add_parser("check", help="diff every cell against its band; exit 1 if a comparable cell is outside")
    common(p)
    p.add_argument("--against", default="paper", choices=["paper", "accepted"])
    p.add_argument("--baseline", default=None, help=_BASELINE_HELP)
    p.set_defaults(fn=cmd_check)

    p = sub.add_parser("accept", help="mark the current runs of tables as the regression baseline")
    common(p)
    p.add_argument("--baseline", default=None, help=_BASELINE_HELP)
    p.set_defaults(fn=cmd_accept)

    p = sub.add_parser("merge", help="copy ok runs from other stores (e.g. made on a GPU machine) into this one")
    p.add_argument("sources", nargs="+", help="sqlite store files to read")
    p.add_argument("--store", default=None)
    p.add_argument("--budget", default="reduced", choices=BUDGETS, help="picks the default store")
    p.set_defaults(fn=cmd_merge)

    p = sub.add_parser("report", help="static HTML report (index.html + one page per paper) that opens from file://")
    common(p, tables=False)
    p.add_argument("--out", required=True, help="folder for index.html, <paper>.html and the figures")
    p.set_defaults(fn=cmd_report)

    p = sub.add_parser("status", help="done / failed / queued / running runs of a plan (local or SLURM)")
    common(p)
    p.add_argument("--rows", nargs="+")
    p.add_argument("--datasets", nargs="+")
    p.add_argument("--figure", nargs="+", help="the figures' sweeps instead of tables ('all' for every figure)")
    p.add_argument("--seeds", type=_count, default=None)
    p.add_argument("--readings", nargs="+", default=None, metavar="READING", help="as for `dcrepro run`")
    p.add_argument("--slurm-config", default=None, help="site config naming the job folder, if not the default")
    p.set_defaults(fn=cmd_status)

    p = sub.add_parser("env", help="versions, device, data root, store")
    p.set_defaults(fn=cmd_env)

    from .data.cli import register

    register(sub, tables=_tables_by_dataset)
    from .backbones.cli import register as register_backbone

    register_backbone(sub)
    return ap


def _tables_by_dataset() -> dict[str, list[str]]:
    """{data set: ['paper/table', ...]} from the specs (for `dcrepro data list`)."""
    from .data.catalog import REGISTRY
    from .spec import tables_using

    return {name: tables_using(name) for name in REGISTRY}


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    a = ap.parse_args(argv)
    if getattr(a, "store", "") is None and hasattr(a, "budget"):
        from .store import default_store_path

        a.store = str(default_store_path(a.budget))
    from .data import DataNotAvailable
    from .errors import UnknownNameError
    from .store import StoreError

    try:
        return int((a.fn if hasattr(a, "fn") else a.func)(a) or 0)
    except UnknownNameError as e:  # unknown names (errors.choice_error): one line naming the valid choices
        print(f"dcrepro: error: {e}", file=sys.stderr)
        return 2
    except ValueError as e:  # spec errors (file, section, valid choices) and invalid values; a KeyError is a bug
        print(f"dcrepro: error: {e}", file=sys.stderr)
        return 2
    except (StoreError, DataNotAvailable) as e:  # an unusable store file; corrupt data found at plan time
        print(f"dcrepro: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
