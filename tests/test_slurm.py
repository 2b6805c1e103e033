"""The SLURM executor: options, the driver's bookkeeping, and a real one-node SLURM cluster.

``test_real_slurm_kill_and_resume`` submits a quick-budget toy plan (24 runs, 4 of them failing) through
submitit to the cluster that ``tests/slurm/start_cluster.sh`` starts (as root; `.ci/run` calls it), kills
the driver with SIGKILL half-way, cancels a task that is still queued, resumes, and compares every
metric with a local run of the same plan. It skips, saying why, where SLURM cannot start.
"""
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from dcrepro.runner import build_plan, execute, gpu_slots
from dcrepro.slurm import SlurmOptions, _Book, _collect, job_folder, load_options, plan_status, queue_states
from dcrepro.store import Store

TESTS = Path(__file__).resolve().parent
START = TESTS / "slurm" / "start_cluster.sh"

FAIL_SPEC = """
[jobs.toyfail]
method = "toy"
datasets = ["blobs"]
outputs = ["good", "bad"]
[jobs.toyfail.params]
noise = 0.05
sleep = 0.0
fail = true

[tables.table2]
caption = "a method that always fails"
datasets = ["blobs"]
metrics = ["acc"]
[tables.table2.rows]
"Flaky" = "toyfail:good"
"""


def _plan():
    """24 runs on 'blobs' (4 failing first, 20 ok) + 20 on the absent data set (never submitted)."""
    return (build_plan("toy", ["table2"], seeds=4, budget="quick")
            + build_plan("toy", ["table1"], seeds=20, budget="quick"))


@pytest.fixture
def toy_slurm(toy_project, monkeypatch):
    spec = toy_project / "benchmarks" / "toy.toml"
    spec.write_text(spec.read_text().replace("sleep = 0.0", "sleep = 0.2") + FAIL_SPEC)
    from dcrepro.spec import _load

    _load.cache_clear()
    # a SLURM task is a fresh python: it must find the toy method (tests/slurm/toy_setup.py, conftest)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS / "slurm"), str(TESTS), str(TESTS.parent)]))
    monkeypatch.syspath_prepend(str(TESTS / "slurm"))
    return toy_project


# -- without a cluster ------------------------------------------------------------------------------
def test_options_from_site_file_and_flags(tmp_path):
    cfg = tmp_path / "site.toml"
    cfg.write_text('[slurm]\npartition = "gpu"\ntime = 120\ngpus = 1\nsetup = ["module load cuda"]\n')
    o = load_options(cfg, time=30, cpus=None)
    assert (o.partition, o.time, o.gpus, o.cpus, o.setup) == ("gpu", 30, 1, 2, ["module load cuda"])
    example = TESTS.parent / "slurm.example.toml"
    assert load_options(example).partition  # the shipped example parses
    cfg.write_text("[slurm]\npartiton = 'gpu'\n")
    with pytest.raises(ValueError, match="unknown slurm option 'partiton'; valid slurm options: partition, time"):
        load_options(cfg)
    with pytest.raises(ValueError, match="slurm bundle must be an integer >= 1, got 0"):
        load_options(None, bundle=0)
    with pytest.raises(ValueError, match="not found"):
        load_options(tmp_path / "nope.toml")


def test_cli_rejects_bad_executor_and_values(toy_project, capsys):
    from dcrepro.cli import main

    with pytest.raises(SystemExit) as e:
        main(["run", "--paper", "toy", "--executor", "pbs"])
    assert e.value.code == 2 and "'local', 'slurm'" in capsys.readouterr().err
    assert main(["run", "--paper", "toy", "--datasets", "blobs", "--executor", "slurm", "--slurm-gpus", "-1"]) == 2
    err = capsys.readouterr().err
    assert "slurm gpus must be an integer >= 0, got -1" in err and err.count("\n") == 1


def test_gpu_slots_pin_workers_to_gpus():
    assert gpu_slots(2, visible="0,1") == ["0", "0", "1", "1"]
    assert gpu_slots(1, visible="3") == ["3"]
    with pytest.raises(ValueError, match=">= 1"):
        gpu_slots(0, visible="0")


def test_collect_stores_results_and_records_lost_jobs(toy_slurm):
    """Records left by tasks are stored once; a task that left the queue without its record is a failed
    run with its log; a job submitted after the queue was read is not judged."""
    import pickle

    from dcrepro.runner import compute
    from dcrepro.slurm import _identity

    items = [it for it in _plan() if it.cfg.dataset == "blobs"][4:7]
    folder = job_folder(toy_slurm / "store.sqlite", SlurmOptions())
    (folder / "results").mkdir(parents=True)
    (folder / "submitit").mkdir()
    (folder / "submitit" / "7_1_0_log.err").write_text("srun: error: task killed: OUT_OF_MEMORY\n")
    (folder / "runs.jsonl").write_text("".join(__import__("json").dumps(_identity(it)) + "\n" for it in items))
    book = _Book(folder)
    book.submitted("7_0", [items[0].key])
    book.submitted("7_1", [items[1].key])
    run, outs = compute(items[0], "cpu", toy_slurm / "cache")
    with open(folder / "results" / f"{items[0].key}.pkl", "wb") as f:
        pickle.dump((run, outs), f)
    asked = time.time()
    book.submitted("8_0", [items[2].key])  # after the look at the queue
    with Store() as s:
        counts = _collect(s, folder, book, ({"7_0": "COMPLETED"}, asked))
        assert counts == {"ok": 1, "failed": 1}
        assert _collect(s, folder, book, ({}, asked)) == {}  # idempotent: nothing left to settle
        ok, lost = s.records(status="ok"), s.records(status="failed")
        assert [r.key for r in ok] == [items[0].key] and [r.key for r in lost] == [items[1].key]
        assert "slurm job 7_1 ended (left the queue)" in lost[0].error and "OUT_OF_MEMORY" in lost[0].error
        assert (lost[0].paper, lost[0].dataset, lost[0].seed) == ("toy", "blobs", items[1].seed)
        assert book.pending() == {items[2].key: "8_0"}
        status = plan_status(items, s, folder)
    assert status == {"toy": {"done": 1, "failed": 1, "collecting": 1}}
    assert not list((folder / "results").iterdir())


# -- a real SLURM cluster ---------------------------------------------------------------------------
def _node_up() -> bool:
    try:
        out = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return any(s in out for s in ("idle", "mixed", "allocated"))


@pytest.fixture(scope="module")
def slurm_cluster():
    if _node_up():
        return
    if os.geteuid() != 0:
        pytest.skip("slurm is not running and starting it needs root (tests/slurm/start_cluster.sh)")
    try:
        r = subprocess.run(["bash", str(START)], capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        pytest.skip("slurm did not start within 600 s (tests/slurm/start_cluster.sh)")
    if r.returncode != 0 or not _node_up():
        pytest.skip(f"slurm could not start: {(r.stderr or r.stdout).strip().splitlines()[-1:]}")


DRIVER = textwrap.dedent("""
    import sys
    sys.path[:0] = [{slurm!r}, {tests!r}]
    import toy_setup
    toy_setup.install()
    from test_slurm import _plan
    from dcrepro.slurm import SlurmOptions, execute_slurm
    print(execute_slurm(_plan(), device="cpu", options=SlurmOptions(**{opts!r}), progress=False,
                        setup=toy_setup.install), flush=True)
""")
OPTS = dict(time=5, cpus=1, bundle=4, parallelism=2, poll=0.5)  # 6 array tasks, 2 at a time


@pytest.mark.slurm
def test_real_slurm_kill_and_resume(slurm_cluster, toy_slurm, capsys):
    import toy_setup

    from dcrepro.slurm import execute_slurm

    t0 = time.time()
    store_path = Path(os.environ["DCREPRO_STORE"])
    folder = job_folder(store_path, SlurmOptions())
    plan = _plan()
    runnable = {it.key for it in plan if it.cfg.dataset == "blobs"}
    failing = {it.key for it in plan if it.cfg.job == "toyfail"}
    assert len(runnable) == 24 and len(failing) == 4

    driver = subprocess.Popen([sys.executable, "-c", DRIVER.format(slurm=str(TESTS / "slurm"), tests=str(TESTS),
                                                                   opts=OPTS)])
    deadline = time.time() + 60
    while time.time() < deadline and driver.poll() is None:
        time.sleep(0.3)
        if store_path.exists():
            with Store(store_path) as s:
                if s.count() >= 6:
                    break
    assert driver.poll() is None, "the driver ended before it could be killed"
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait()
    with Store(store_path) as s:
        stored_at_kill = s.count()
    pending = _Book(folder).pending()
    assert 6 <= stored_at_kill < 24 and pending
    # a task still waiting in the queue is cancelled while no driver runs: it must come back as lost
    last = max(set(pending.values()), key=lambda j: int(j.split("_")[1]))
    assert queue_states()[0].get(last) == "PENDING"
    subprocess.run(["scancel", last], check=True)
    cancelled = {k for k, j in pending.items() if j == last}

    counts = execute_slurm(plan, device="cpu", options=SlurmOptions(**OPTS), progress=False,
                           setup=toy_setup.install)
    summary = f"resumed driver: {counts} ({stored_at_kill} runs were stored when the first driver was killed)"
    assert counts["unavailable"] == 20 and counts.get("busy", 0) == 0

    with Store(store_path) as s:
        recs = {r.key: r for r in s.records()}
        assert set(recs) == runnable and s.count() == 24  # every run stored, once
        assert s._con.execute("SELECT COUNT(*) FROM claims").fetchone()[0] == 0
        assert {k for k, r in recs.items() if r.status == "failed"} == failing
        for k in failing:  # the method's traceback, and where the task's log is
            err = recs[k].error
            assert "toy failure requested" in err and "log: " in err
            assert Path(err.rsplit("log: ", 1)[1].strip()).exists()
        status = plan_status(plan, s, folder)
    assert status == {"toy": {"done": 20, "failed": 4, "no data": 20}}
    assert not _Book(folder).pending() and not list((folder / "results").iterdir())
    from dcrepro.cli import main

    assert main(["status", "--paper", "toy", "--budget", "quick", "--table", "table2", "--seeds", "4"]) == 0
    assert "toy: failed 4" in capsys.readouterr().out

    # resume submitted only what was missing: no run that succeeded was ever submitted twice
    book = [__import__("json").loads(line) for line in (folder / "book.jsonl").read_text().splitlines()]
    times: dict[str, int] = {}
    for e in book:
        for k in e.get("keys", []) if "submit" in e else []:
            times[k] = times.get(k, 0) + 1
    assert set(times) == runnable
    assert {k for k, n in times.items() if n > 1} <= failing | cancelled
    assert cancelled <= {k for k, n in times.items() if n > 1}
    assert any(e.get("how") == "lost" and e["settle"] == last for e in book)

    # the same numbers as a local run of the same plan
    local = toy_slurm / "local.sqlite"
    execute(plan, store_path=local, device="cpu", progress=False)
    with Store(local) as s:
        loc = {r.key: r for r in s.records()}
    assert {k for k, r in loc.items() if r.status == "ok"} == runnable - failing
    for k in runnable - failing:
        assert recs[k].outputs == loc[k].outputs, k
    sha = "SELECT key, output, labels_sha FROM outputs ORDER BY key, output"
    with Store(store_path) as a, Store(local) as b:
        assert a._con.execute(sha).fetchall() == b._con.execute(sha).fetchall()
    with capsys.disabled():
        print(f"\n{summary}\nreal slurm test: {time.time() - t0:.1f} s")
    shutil.rmtree(folder / "submitit", ignore_errors=True)


@pytest.mark.slurm
def test_real_slurm_refusal_is_one_line_and_frees_claims(slurm_cluster, toy_slurm, capsys):
    from dcrepro.cli import main

    assert main(["run", "--paper", "toy", "--datasets", "blobs", "--budget", "quick", "--executor", "slurm",
                 "--slurm-partition", "no-such-partition", "--quiet"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[-1].startswith("dcrepro: error: sbatch refused the job array: ") and "partition" in err[-1]
    with Store() as s:
        assert s._con.execute("SELECT COUNT(*) FROM claims").fetchone()[0] == 0 and s.count() == 0
