"""Verdicts that test the paper, not our own choices: readings, run health, testability, multiplicity.

Constructed data: per-seed values are written into Records by hand, so each concept is checked on numbers
whose outcome is known."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from dcrepro.aggregate import RowRuns
from dcrepro.claims import _decide, _paired
from dcrepro.health import check_health, parse_rule
from dcrepro.spec import BUDGETS, Claim, RunConfig
from dcrepro.stats import holm, noninferiority_test
from dcrepro.store import Record

from conftest import TOY_SPEC


def _arm(row: str, accs: list[float], nonempty: list[int] | None = None, rules=()) -> RowRuns:
    cfg = RunConfig("toy", row.lower(), "toy", "blobs", "quick", {}, n_clusters=10)
    recs = []
    for s, a in enumerate(accs):
        m = {"acc": a}
        if nonempty is not None:
            m["nonempty_clusters"] = float(nonempty[s])
        recs.append(Record(f"k{row}{s}", "toy", row.lower(), "blobs", s, "ok", "h", "quick", [], 1.0, None, {"out": m}))
    return RowRuns(row, "blobs", "out", cfg, ok=recs, rules=tuple(parse_rule(r) for r in rules))


def _claim(**kw) -> Claim:
    return Claim(**({"id": "A vs B", "table": "table1", "better": "A", "worse": "B", "metrics": ("acc",)} | kw))


def _outcome(claim: Claim, a: RowRuns, b: RowRuns):
    res = _paired(claim, {("A", "blobs"): a, ("B", "blobs"): b}, ["blobs"])
    _decide(res)
    assert len(res) == 1
    return res[0]


RNG = np.random.default_rng(0)
HEALTHY = list(0.60 + RNG.normal(0, 0.005, 10))


def test_a_collapsed_arm_makes_the_claim_not_testable_never_contradicted():
    rule = ["nonempty_clusters < n_clusters / 2"]
    collapsed = _arm("A", [0.20] * 10, nonempty=[3] * 10, rules=rule)  # 3 of K = 10 clusters left
    r = _outcome(_claim(), collapsed, _arm("B", HEALTHY, nonempty=[10] * 10, rules=rule))
    assert r.outcome == "not testable"
    assert "A degenerate on 10 of 10 seeds (nonempty_clusters < n_clusters / 2)" in r.reason
    # the same numbers without a health rule: the collapse reads as a contradiction
    assert _outcome(_claim(), _arm("A", [0.20] * 10), _arm("B", HEALTHY)).outcome == "contradicted"


def test_degenerate_seeds_are_dropped_and_the_rest_tested():
    rule = ["nonempty_clusters < n_clusters / 2"]
    a = _arm("A", [x + 0.05 for x in HEALTHY[:7]] + [0.1] * 3, nonempty=[10] * 7 + [2] * 3, rules=rule)
    r = _outcome(_claim(), a, _arm("B", HEALTHY, nonempty=[10] * 10, rules=rule))
    assert r.outcome == "supported" and r.n == 7 and "A degenerate on 3 of 10 seeds" in r.reason
    assert r.mean_diff == pytest.approx(5.0)


def test_a_rule_without_its_signal_is_unknown_not_degenerate():
    rule = (parse_rule("defit_share > 0.9"),)
    assert check_health(rule, {"acc": 0.5}, 10) == ("unknown", [])
    assert check_health(rule, {"defit_share": 1.0}, 10) == ("degenerate", ["defit_share > 0.9"])
    # records older than nonempty_clusters: the metrics' n_clusters_pred is the same count
    k_rule = (parse_rule("nonempty_clusters < n_clusters / 2"),)
    assert check_health(k_rule, {"n_clusters_pred": 3.0}, 10) == ("degenerate", ["nonempty_clusters < n_clusters / 2"])
    with pytest.raises(ValueError, match="not allowed"):
        parse_rule("__import__('os').system('true') > 0")


def test_seeds_of_unknown_health_are_kept_and_named():
    rule = ["nonempty_clusters < n_clusters / 2"]
    a = _arm("A", [x + 0.05 for x in HEALTHY], rules=rule)  # records without the signal the rule needs
    r = _outcome(_claim(), a, _arm("B", HEALTHY, nonempty=[10] * 10, rules=rule))
    assert r.outcome == "supported" and r.n == 10
    assert "A health unknown on 10 of 10 seeds" in r.reason and "B health" not in r.reason


def test_rules_see_the_method_defaults_of_parameters_the_spec_leaves_unset():
    from dcrepro.health import params_of

    cfg = RunConfig("dcglu", "sweep", "dac", "snips", "quick", {"pu": True}, n_clusters=7)
    assert params_of(cfg)["pu_negative_branch"] == "defit" and params_of(cfg)["pu"] is True
    rule = (parse_rule("pu_negative_branch == 'defit' and defit_share > 0.9"),)
    assert check_health(rule, {"defit_share": 1.0}, 7, params_of(cfg))[0] == "degenerate"
    assert check_health(rule, {"defit_share": 1.0}, 7, cfg.params)[0] == "unknown"


def test_not_worse_claim_is_a_noninferiority_test_against_its_margin():
    b = HEALTHY
    within = [x - 0.002 for x in b]  # 0.2 points worse: inside the 1-point margin
    beyond = [x - 0.03 for x in b]  # 3 points worse
    assert _outcome(_claim(relation=">="), _arm("A", within), _arm("B", b)).outcome == "supported"
    r = _outcome(_claim(relation=">="), _arm("A", beyond), _arm("B", b))
    assert r.outcome == "contradicted" and r.mean_diff == pytest.approx(-3.0)
    # a margin wider than the loss makes the 3-point loss acceptable
    assert _outcome(_claim(relation=">=", margin=5.0), _arm("A", beyond), _arm("B", b)).outcome == "supported"
    p_ok, p_worse = noninferiority_test([1.0, 1.1, 0.9], [1.5, 1.4, 1.6], margin=1.0)
    assert p_ok < 0.05 < p_worse


def test_holm_on_a_known_vector():
    # R: p.adjust(c(0.01, 0.02, 0.03, 0.04, 0.05), "holm")
    assert holm([0.01, 0.02, 0.03, 0.04, 0.05]) == pytest.approx([0.05, 0.08, 0.09, 0.09, 0.09])
    assert holm([0.04, 0.01, 0.03]) == pytest.approx([0.06, 0.03, 0.06])
    out = holm([0.2, math.nan, 0.01])
    assert out[0] == pytest.approx(0.2) and math.isnan(out[1]) and out[2] == pytest.approx(0.02)


def test_outcomes_are_decided_on_holm_adjusted_p_values():
    # alone, a p of ~0.03 is supported at 0.05; among 3 such cells Holm lifts it over 0.05
    b = list(0.6 + RNG.normal(0, 0.01, 6))
    a = [x + d for x, d in zip(b, [0.011, -0.002, 0.012, 0.004, 0.013, 0.002])]
    arms = {("A", "blobs"): _arm("A", a), ("B", "blobs"): _arm("B", b)}
    one = _paired(_claim(), arms, ["blobs"])
    _decide(one)
    assert one[0].p < 0.05 and one[0].outcome == "supported"
    three = _paired(_claim(), arms, ["blobs"]) * 1 + _paired(_claim(id="x"), arms, ["blobs"]) + \
        _paired(_claim(id="y"), arms, ["blobs"])
    _decide(three)
    assert all(r.p_holm == pytest.approx(min(1, 3 * r.p)) and r.outcome == "inconclusive" for r in three)


# ---------------------------------------------------------------- readings and testability, end to end
READINGS = """
[[readings]]
id = "noise_level"
question = "The paper says 'a little label noise' without a number."
jobs = ["toy"]
default = "low"
reason = "the toy's literal default"
[readings.options]
low = { noise = 0.05 }
high = { noise = 0.3 }
"""


def _write_spec(project, text: str) -> None:
    from dcrepro import spec

    (project / "benchmarks" / "toy.toml").write_text(text)
    spec._load.cache_clear()


def test_a_reading_changes_the_config_hash_the_default_keeps_todays(toy_project):
    from dcrepro.spec import load_spec, resolve

    before = {b: resolve(load_spec("toy"), "toy", "blobs", b).config_hash for b in BUDGETS}
    _write_spec(toy_project, TOY_SPEC + READINGS)
    spec = load_spec("toy")
    default, high = spec.variants(["all"])
    assert default.label == "default" and high.label == "noise_level=high"
    for b in BUDGETS:
        assert resolve(spec, "toy", "blobs", b, variant=default).config_hash == before[b]
        cfg = resolve(spec, "toy", "blobs", b, variant=high)
        assert cfg.config_hash != before[b] and cfg.params["noise"] == 0.3 and cfg.reading == "noise_level=high"


def test_a_default_that_is_not_what_the_job_runs_is_a_load_error(toy_project):
    from dcrepro.spec import load_spec

    _write_spec(toy_project, TOY_SPEC + READINGS.replace('default = "low"', 'default = "high"'))
    with pytest.raises(ValueError, match=r"toy.toml: \[\[readings\]\] 'noise_level': default 'high' differs"):
        load_spec("toy")


def test_readings_run_render_and_export_with_their_label(toy_project):
    from dcrepro.runner import build_plan, execute
    from dcrepro.store import Store
    from dcrepro.tables import render_table, write_claims

    _write_spec(toy_project, TOY_SPEC + READINGS)
    plan = build_plan("toy", budget="quick", readings=["all"])
    assert {it.cfg.reading for it in plan} == {"default", "noise_level=high"}
    execute(plan, device="cpu", progress=False)
    with Store() as s:
        out = render_table("toy", "table1", "quick", s)
        claims = pd.read_csv(write_claims("toy", "quick", s, toy_project / "out"))
    cells = pd.read_csv(pd.io.common.StringIO(out["csv"]))
    assert set(cells["reading"]) == {"default", "noise_level=high"} and "degenerate" in cells
    assert list(claims.columns) == ["claim", "table", "dataset", "metric", "reading", "budget", "n", "mean_diff", "d_z",
                                    "p", "p_holm", "alpha", "outcome", "reason"]
    assert set(claims["reading"]) == {"default", "noise_level=high"}
    assert "## Readings of unstated details" in out["md"] and "noise_level=high" in out["md"]


def test_a_claim_outside_its_testable_budgets_says_why(toy_project):
    from dcrepro.claims import check_claims
    from dcrepro.runner import build_plan, execute
    from dcrepro.store import Store

    text = TOY_SPEC.replace('id = "Good > Bad"', 'id = "Good > Bad"\ntestable_at = ["full"]\n'
                                                 'testable_reason = "the toy effect needs the full schedule"')
    _write_spec(toy_project, text)
    execute(build_plan("toy", budget="quick"), device="cpu", progress=False)
    with Store() as s:
        res = [r for r in check_claims("toy", "quick", s, table="table1")]
    assert res and all(r.outcome == "not testable" for r in res)
    assert all(r.reason.startswith("not testable at the quick budget: the toy effect needs the full schedule")
               for r in res)
    assert all(r.mean_diff > 20 and math.isnan(r.p_holm) for r in res)  # statistics shown, no verdict


@pytest.mark.parametrize("bad, message", [
    ('[[claims]]\nid = "x"\ntable = "table1"\nbetter = "Good"\nworse = "Nope"\n', "unknown row 'Nope' of table1; valid rows: Good, Bad"),
    ('[[claims]]\nid = "x"\ntable = "table9"\nbetter = "Good"\nworse = "Bad"\n', "unknown table 'table9'"),
    ('[[claims]]\nid = "x"\ntable = "table1"\nbetter = "Good"\nworse = "Bad"\nbeter = 1\n', "unknown key 'beter'"),
    ('[budgets.fast]\n', "[budgets.fast]: unknown budget; valid budgets: quick, reduced, full"),
    ('[jobs.toy.health]\ndegenerate_if = ["acc <"]\n', "[jobs.toy.health]"),
])
def test_spec_errors_name_the_file_section_and_valid_choices(toy_project, bad, message):
    from dcrepro.spec import load_spec

    text = TOY_SPEC + "\n" + bad if not bad.startswith("[jobs.toy.health]") else \
        TOY_SPEC.replace("[jobs.toy.params]", bad + "[jobs.toy.params]")
    _write_spec(toy_project, text)
    with pytest.raises(ValueError) as e:
        load_spec("toy")
    assert "toy.toml" in str(e.value) and message in str(e.value)


def test_a_parameter_the_method_does_not_accept_is_a_load_error(toy_project):
    from dcrepro.spec import load_spec

    _write_spec(toy_project, TOY_SPEC + '\n[jobs.km]\nmethod = "kmeans"\ndatasets = ["blobs"]\n[jobs.km.params]\nn_inits = 3\n')
    with pytest.raises(ValueError, match=r"toy.toml: \[jobs.km\]: unknown parameter 'n_inits' of method 'kmeans' "
                                         r"\(KMeansParams\); valid parameters: .*n_init"):
        load_spec("toy")
    _write_spec(toy_project, TOY_SPEC + '\n[jobs.km]\nmethod = "kmeens"\ndatasets = ["blobs"]\n')
    with pytest.raises(ValueError, match=r"toy.toml: \[jobs.km\]: unknown method 'kmeens'; valid methods: .*kmeans"):
        load_spec("toy")
