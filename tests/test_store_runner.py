"""Store atomicity, resume, claims and the runner's failure handling, on the toy project."""
import os
import signal
import subprocess
import sys
import textwrap
import time


from dcrepro.runner import build_plan, execute
from dcrepro.store import Store


def test_plan_expansion_and_budget_identity(toy_project):
    plan = build_plan("toy", budget="reduced")
    # 1 job × 2 data sets × 3 seeds; reduced has no overrides, so it *is* the full config
    assert len(plan) == 6
    assert {it.cfg.effective_budget for it in plan} == {"full"}
    quick = build_plan("toy", budget="quick")
    assert {it.cfg.effective_budget for it in quick} == {"quick"}
    assert quick[0].cfg.deviations[:2] == ["quick budget", "toy quick schedule"]
    assert quick[0].key != plan[0].key


def test_run_store_resume_and_force(toy_project):
    plan = build_plan("toy", budget="reduced")
    counts = execute(plan, device="cpu", progress=False)
    assert counts == {"skipped": 0, "ok": 3, "unavailable": 3}
    with Store() as s:
        recs = s.records(paper="toy", status="ok")
        assert len(recs) == 3 and all(set(r.outputs) == {"good", "bad"} for r in recs)
        assert all(r.outputs["good"]["acc"] > 0.9 for r in recs)  # computed by the runner from labels
        assert all(r.outputs["good"]["time_s"] == 0.01 for r in recs)  # method-measured numbers kept
        first_keys = s.keys()
    counts = execute(plan, device="cpu", progress=False)
    assert counts["skipped"] == 3 and counts.get("ok", 0) == 0
    counts = execute(plan, device="cpu", progress=False, force=True)
    assert counts["ok"] == 3
    with Store() as s:
        assert s.keys() == first_keys and s.count() == 3  # replaced, never duplicated



def test_a_stored_run_says_how_it_was_made(toy_project):
    """Config hash, git revision, device, versions and the processor travel with every run."""
    import json

    execute(build_plan("toy", budget="reduced")[:1], device="cpu", progress=False)
    with Store() as s:
        rec = s.records(paper="toy", status="ok")[0]
        versions = json.loads(s._con.execute("SELECT versions_json FROM runs WHERE key=?", (rec.key,)).fetchone()[0])
    assert rec.config_hash and rec.git_rev and rec.device.startswith("cpu:")
    assert {"python", "numpy", "torch", "scikit-learn", "cpu_model", "torch_cpu_capability"} <= set(versions)
    assert versions["cpu_model"] and versions["torch_cpu_capability"]

def test_failure_is_recorded_and_plan_goes_on(toy_project, monkeypatch):
    from dcrepro.spec import load_spec

    spec = load_spec("toy")
    spec.jobs["toy"]["dataset"] = {"blobs": {"params": {"fail": True}}}
    plan = build_plan("toy", budget="reduced", datasets=["blobs"])
    counts = execute(plan, device="cpu", progress=False)
    assert counts["failed"] == 3
    with Store() as s:
        recs = s.records(status="failed")
        assert len(recs) == 3 and "toy failure requested" in recs[0].error


def test_merge_copies_missing_ok_runs_and_never_overwrites(toy_project, tmp_path):
    """Runs made on another machine (its own store) come back with `dcrepro merge`."""
    plan = build_plan("toy", budget="reduced")
    execute(plan, store_path=tmp_path / "gpu.sqlite", device="cpu", progress=False)  # "the GPU machine"
    execute(plan[:1], device="cpu", progress=False)  # the local store already has one of the runs
    with Store() as s:
        local_before = {r.key: r.outputs for r in s.records(status="ok")}
    with Store(tmp_path / "gpu.sqlite") as g:
        remote = {r.key: r for r in g.records(status="ok")}
        g._con.execute("UPDATE runs SET device='cuda:test' WHERE 1")  # mark where they were made
    with Store() as s:
        copied, skipped = s.merge_from(tmp_path / "gpu.sqlite")
        assert (copied, skipped) == (len(remote) - 1, 1)
        merged = {r.key: r for r in s.records(status="ok")}
        assert set(merged) == set(remote)
        (kept,) = local_before
        assert merged[kept].device != "cuda:test" and merged[kept].outputs == local_before[kept]
        assert all(merged[k].device == "cuda:test" and merged[k].outputs == remote[k].outputs
                   for k in merged if k != kept)
        assert s.merge_from(tmp_path / "gpu.sqlite") == (0, len(remote))  # idempotent


def test_claims_block_a_second_runner(toy_project):
    plan = build_plan("toy", budget="reduced", datasets=["blobs"])
    with Store() as s:
        s._con.execute("INSERT INTO claims VALUES (?,?,?,?)", (plan[0].key, "another-host", 1, time.time()))
    counts = execute(plan, device="cpu", progress=False)
    assert counts == {"skipped": 0, "busy": 1, "ok": 2}


KILL_SCRIPT = textwrap.dedent("""
    import sys
    sys.path.insert(0, {tests!r})
    import conftest
    class MP:
        def setattr(self, obj, name, value, raising=True): setattr(obj, name, value)
    conftest.install_toy(MP())
    from dcrepro.spec import load_spec
    from dcrepro.runner import build_plan, execute
    load_spec("toy").jobs["toy"]["params"]["sleep"] = 0.6
    execute(build_plan("toy", budget="reduced", seeds=8, datasets=["blobs"]), device="cpu", progress=False)
""")


def test_kill_mid_plan_loses_nothing_and_duplicates_nothing(toy_project):
    """SIGKILL a runner mid-plan, re-run: finished runs kept, no partial record, the dead claim taken over."""
    script = KILL_SCRIPT.format(tests=os.path.dirname(__file__))
    env = dict(os.environ)
    proc = subprocess.Popen([sys.executable, "-c", script], env=env)
    store_path = env["DCREPRO_STORE"]
    deadline = time.time() + 60
    while time.time() < deadline:
        time.sleep(0.2)
        if os.path.exists(store_path):
            with Store(store_path) as s:
                if s.count() >= 2:
                    break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with Store(store_path) as s:
        done_before = s.keys()
        n_claims = s._con.execute("SELECT COUNT(*) FROM claims").fetchone()[0]
        # every stored record is complete: both outputs present
        assert all(set(r.outputs) == {"good", "bad"} for r in s.records())
    assert 2 <= len(done_before) < 8
    assert n_claims == 1  # the run in flight when killed left only its claim
    from dcrepro.spec import load_spec
    load_spec("toy").jobs["toy"]["params"]["sleep"] = 0.6  # the same config as the killed runner's
    plan = build_plan("toy", budget="reduced", seeds=8, datasets=["blobs"])
    counts = execute(plan, device="cpu", progress=False)
    assert counts["skipped"] == len(done_before) and counts["ok"] == 8 - len(done_before)
    with Store(store_path) as s:
        assert s.count() == 8 and done_before <= s.keys()
        assert s._con.execute("SELECT COUNT(*) FROM claims").fetchone()[0] == 0
