"""Every shipped spec resolves at every budget, its methods exist, its rows match the reference files,
and its parameters are accepted by the methods' dataclasses (no typo waits for a long run to fail)."""
import dataclasses
import importlib

import pytest

from dcrepro.methods import get_method
from dcrepro.reference import load_reference
from dcrepro.spec import BUDGETS, list_papers, load_spec, resolve

PAPERS = [p for p in list_papers()]


def _params_class(method: str):
    fn = get_method(method)
    mod = importlib.import_module(fn.__module__)
    # a method module defines exactly one dataclass whose name ends in 'Params' and that the function uses;
    # pick the one named after the registered function's module-level convention
    cands = [v for k, v in vars(mod).items() if k.endswith("Params") and dataclasses.is_dataclass(v)
             and v.__module__ == mod.__name__]
    return cands


@pytest.mark.parametrize("paper", PAPERS)
def test_spec_resolves_and_rows_match_reference(paper):
    spec = load_spec(paper)
    all_rows = {r for t in spec.tables for r in load_reference(paper, t)["row"]}
    for tid in spec.tables:
        ref_rows = set(load_reference(paper, tid)["row"])
        for row in spec.table_rows(tid):
            # a row the table does not print (e.g. DCSS Table 4's plain "DEC", the other arm of a claim)
            # must at least be a row of another table of the paper: no invented labels
            assert row in ref_rows or row in all_rows, f"{paper}/{tid}: row {row!r} is in no reference table"
        for job, ds in spec.runs_for_table(tid):
            for b in BUDGETS:
                cfg = resolve(spec, job, ds, b)
                assert cfg.effective_budget in BUDGETS
                if b != "full" and cfg.effective_budget != "full":
                    assert cfg.deviations and cfg.deviations[0] == f"{b} budget"
            get_method(spec.job(job)["method"])


@pytest.mark.parametrize("paper", PAPERS)
def test_spec_params_are_valid_method_params(paper):
    from dcrepro.methods import params_from_dict

    spec = load_spec(paper)
    for job, body in spec.jobs.items():
        classes = _params_class(body["method"])
        if not classes:
            continue
        for ds in body.get("datasets", []):
            for b in BUDGETS:
                params = resolve(spec, job, ds, b).params
                # accepted by at least one of the module's parameter dataclasses
                errors = []
                for cls in classes:
                    try:
                        params_from_dict(cls, params)
                        break
                    except (ValueError, TypeError) as e:
                        errors.append(str(e))
                else:
                    pytest.fail(f"{paper} job {job} on {ds} at {b}: {errors[0]}")


@pytest.mark.parametrize("paper", list_papers())
def test_figure_runs_need_only_the_outputs_they_plot(paper):
    """A sweep may switch a stage off (DCSS fig10a: with_mnet = false); its runs must then be checked
    against the figure's outputs, not all of the job's, or every such run is stored as failed."""
    from dcrepro.runner import plan_figure

    spec = load_spec(paper)
    for fid, fig in spec.figures.items():
        items = plan_figure(paper, fid, "quick", seeds=1)
        assert items and all(set(it.outputs) == set(fig.outputs) for it in items), fid
        assert set(fig.outputs) <= set(spec.job(fig.job).get("outputs", [fig.job])), fid


def test_a_phase1_only_sweep_point_runs_and_is_stored(tmp_path):
    from dcrepro.data import is_available
    from dcrepro.runner import execute, plan_figure
    from dcrepro.store import Store

    if not is_available("usps"):
        pytest.skip("USPS not under DCREPRO_DATA")
    item = plan_figure("dcss", "fig10c", "quick", seeds=1)[0]
    assert item.cfg.params["with_mnet"] is False
    counts = execute([item], tmp_path / "s.sqlite", device="cpu", progress=False, threads=1)
    assert counts.get("ok") == 1, counts
    with Store(tmp_path / "s.sqlite") as s:
        (rec,) = s.records()
    assert set(rec.outputs) == {"ae_kmeans", "dcssu"}
