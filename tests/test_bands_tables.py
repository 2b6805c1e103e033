"""Bands, verdicts, claims, table rendering and the regression mode, on the toy project."""
import math

import pytest

from dcrepro.aggregate import table_cells
from dcrepro.claims import check_claims, paired_test
from dcrepro.reference import Band, band_for, verdict
from dcrepro.runner import build_plan, execute
from dcrepro.store import Store
from dcrepro.tables import render_table, write_table


def test_band_formula_floor_and_std():
    # no paper std, tiny ours std -> the floor (1.5 points)
    b = band_for("x", "t", "acc", "percent", 50.0, None, None, 0.1, 10)
    assert b.half_width == pytest.approx(1.5)
    # paper std 5 over 10 runs, ours std 5 over 10: z * sqrt(2.5 + 2.5)
    b = band_for("x", "t", "acc", "percent", 50.0, 5.0, 10, 5.0, 10)
    assert b.half_width == pytest.approx(2 * math.sqrt(5.0))
    # fraction scale: the floor scales too
    assert band_for("x", "t", "acc", "fraction", 0.5, None, None, 0.0, 10).half_width == pytest.approx(0.015)
    # a per-cell tolerance overrides
    assert band_for("x", "t", "acc", "percent", 50.0, 5.0, 10, 5.0, 10, tolerance=0.7).half_width == 0.7
    assert verdict(48.6, Band(50, 1.5)) == "within"
    assert verdict(48.4, Band(50, 1.5)) == "below"
    assert verdict(51.6, Band(50, 1.5)) == "above"


def test_verdicts_full_table(toy_project):
    execute(build_plan("toy", budget="full"), device="cpu", progress=False)
    with Store() as s:
        cells = table_cells("toy", "table1", "full", s).set_index(["row", "dataset", "metric"])
    v = cells["verdict"]
    assert v[("Cited", "blobs", "acc")] == "not_in_suite"
    assert v[("Cited", "absent", "acc")] == "na_in_paper"
    assert v[("Cited", "absent", "nmi")] == "missing_in_source"
    assert v[("Good", "absent", "acc")] == "data_unavailable"
    # Good reaches ~96-97 % ACC vs 95 ± band: within; Bad ~ 67 % vs 60 -> above
    assert v[("Good", "blobs", "acc")] == "within"  # an assumption (unstated detail) keeps cells comparable
    assert v[("Bad", "blobs", "acc")] == "above"
    assert cells.loc[("Good", "blobs", "acc"), "n"] == 3


def test_reduced_or_quick_cells_are_never_within(toy_project):
    execute(build_plan("toy", budget="quick"), device="cpu", progress=False)
    with Store() as s:
        cells = table_cells("toy", "table1", "quick", s)
    ran = cells[cells["n"] > 0]
    assert len(ran) and set(ran["verdict"]) == {"not_comparable"}
    # and nothing of the quick runs shows up in the full table
    with Store() as s:
        full = table_cells("toy", "table1", "full", s)
    assert (full["n"] == 0).all()


def test_claims_paired(toy_project):
    execute(build_plan("toy", budget="quick"), device="cpu", progress=False)
    with Store() as s:
        res = check_claims("toy", "quick", s)
    assert {(r.dataset, r.metric) for r in res} == {("blobs", "acc"), ("blobs", "nmi")}
    assert all(r.outcome == "supported" and r.n == 3 and r.mean_diff > 20 for r in res)
    assert all(r.alpha == 0.05 for r in res)  # the default; a claim's own `alpha` wins (below)
    from dcrepro.spec import load_spec

    import dataclasses

    spec = load_spec("toy")
    spec.claims[0] = dataclasses.replace(spec.claims[0], alpha=1e-12)  # nothing is that significant with n = 3
    with Store() as s:
        strict = check_claims("toy", "quick", s)
    assert all(r.alpha == 1e-12 and r.outcome == "inconclusive" for r in strict)
    # the opposite claim is contradicted
    p_gt, p_lt = paired_test([1.0, 2.0, 3.0], [2.0, 3.5, 4.1])
    assert p_lt < 0.05 < p_gt


def test_render_and_write(toy_project):
    execute(build_plan("toy", budget="quick"), device="cpu", progress=False)
    with Store() as s:
        out = render_table("toy", "table1", "quick", s)
        md = out["md"]
        assert "not comparable" in md and "quick budget" in md and "Claims" in md
        assert "data not available" in md
        assert "toy unstated detail" in md
        assert r"\toprule" in out["tex"] and r"\bottomrule" in out["tex"]
        assert out["csv"].splitlines()[0].startswith("row,dataset,metric")
        paths = write_table("toy", "table1", "quick", s)
    assert all(p.exists() for p in paths) and {p.suffix for p in paths} == {".md", ".tex", ".csv"}


def test_regression_mode_against_accepted(toy_project):
    execute(build_plan("toy", budget="full"), device="cpu", progress=False)
    with Store() as s:
        keys = s.keys()
        assert s.accept(keys) == 2 * len(keys)
        cells = table_cells("toy", "table1", "full", s, mode="accepted")
    ran = cells[cells["n"] > 0]
    assert set(ran["verdict"]) == {"within"}  # same runs: identical means


def test_figure_sweep(toy_project):
    from dcrepro.plots import write_figure
    from dcrepro.runner import plan_figure

    plan = plan_figure("toy", "fig1")
    assert len(plan) == 3 * 3
    execute(plan, device="cpu", progress=False)
    with Store() as s:
        paths = write_figure("toy", "fig1", s)
    assert {p.suffix for p in paths} == {".png", ".pdf", ".csv", ".md"}
    card = [p for p in paths if p.suffix == ".md"][0].read_text()
    assert "- this sweep: varies noise\n" in card and "deviations" not in card  # full budget: none declared
    from dcrepro.claims import check_claims

    with Store() as s:
        res = {r.claim: r.outcome for r in check_claims("toy", "reduced", s, figure="fig1")}
    assert res["best at zero noise"] == "supported"
    assert res["0.0 beats 0.4"] == "supported"
    assert res["flat from 0.2"] == "contradicted"  # ACC drops by far more than 1 point from 0.2 to 0.4
    import pandas as pd

    df = pd.read_csv([p for p in paths if p.suffix == ".csv"][0])
    means = df.groupby("value")["y"].mean()
    assert means[0.0] > means[0.4]  # more label noise, lower ACC



def test_figure_caption_puts_the_sweep_settings_over_the_budget_deviations(toy_project):
    """A quick-budget sweep of `sleep` keeps the quick schedule's noise: the caption shows both, sweep first."""
    from dcrepro.plots import write_figure
    from dcrepro.runner import plan_figure
    from dcrepro.spec import _load

    spec = toy_project / "benchmarks" / "toy.toml"
    spec.write_text(spec.read_text() + '[figures.fig2]\ncaption = "s"\njob = "toy"\nparam = "sleep"\n'
                    'values = [0.0, 0.001]\ndatasets = ["blobs"]\noutputs = ["good"]\nmetrics = ["acc"]\n'
                    'params = { fail = false }\n')
    _load.cache_clear()
    execute(plan_figure("toy", "fig2", budget="quick", seeds=1), device="cpu", progress=False)
    with Store() as s:
        paths = write_figure("toy", "fig2", s, budget="quick", out_dir=toy_project / "out")
    card = [p for p in paths if p.suffix == ".md"][0].read_text()
    assert "- this sweep: varies sleep, fail = False (these hold over the budget's deviations below)\n" in card
    assert "- budget's deviations: quick budget; toy quick schedule\n" in card

def test_sweep_claims_with_a_partial_sweep_say_no_data(toy_project):
    """Only the grid point that equals the table config has runs: the sweep claims must not guess."""
    from dcrepro.claims import check_claims

    execute(build_plan("toy", budget="full"), device="cpu", progress=False)  # noise 0.05 is not on the grid
    from dcrepro.runner import plan_figure

    execute([it for it in plan_figure("toy", "fig1") if it.cfg.params["noise"] == 0.4], device="cpu", progress=False)
    with Store() as s:
        res = check_claims("toy", "reduced", s, figure="fig1")
    assert {r.outcome for r in res} == {"no data"}


def test_each_budget_has_its_own_output_folder():
    """A full-budget table must never overwrite the committed reduced one (nor quick output either)."""
    from dcrepro.tables import output_dir

    dirs = {b: output_dir("dcss", b) for b in ("quick", "reduced", "full")}
    assert len(set(dirs.values())) == 3
    assert dirs["reduced"].name == "dcss" and dirs["full"] == dirs["reduced"] / "full"
    assert "_quick" in dirs["quick"].parts


def test_sweep_frame_uses_the_figure_seeds_at_every_grid_value(toy_project):
    """A grid value that equals a table config may have 10 seeds stored; the figure (and its claims) must
    still average the figure's seeds only, so every point rests on the same seeds."""
    from dcrepro.plots import sweep_frame
    from dcrepro.runner import plan_figure

    execute(plan_figure("toy", "fig1", seeds=5), device="cpu", progress=False)  # 5 stored, figure says 3
    with Store() as s:
        df = sweep_frame("toy", "fig1", s)
    assert sorted(df["seed"].unique()) == [0, 1, 2]
    assert df.groupby("value")["seed"].nunique().eq(3).all()
