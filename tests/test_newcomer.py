"""A newcomer's first hour (issue 17): the embedded data sets, honest exit codes, one-line errors for bad
input, and the regression gate against a baseline file. Engine cases use the toy project (conftest)."""
from __future__ import annotations

import fnmatch
import shutil
import sqlite3
from pathlib import Path

import pytest
import tomllib

from dcrepro.cli import main
from dcrepro.data import REGISTRY, dataset_status, is_available, load_dataset
from dcrepro.data.registry import EMBEDDED, EMBEDDED_ROOT

REPO = Path(__file__).resolve().parents[1]


def _one_line(text: str) -> str:
    assert text.count("\n") == 1, text
    return text


# ---------------------------------------------------------------- the embedded copies

def test_a_root_without_usps_reads_the_embedded_copy_checksum_verified(tmp_path):
    st = dataset_status("usps", tmp_path)                       # hashes every file against the registry
    assert st["status"] == "present" and st["checked"] == "sha256" and st["source"] == "embedded copy"
    assert is_available("usps", tmp_path)
    data = load_dataset("usps", tmp_path)
    assert len(data) == 9_298 and "embedded copy" in data.meta["data_source"]
    assert dataset_status("usps", tmp_path, embedded=False)["status"] == "missing"   # what `data fetch` sees
    for name in EMBEDDED:                                      # byte-identical to the registered files
        assert dataset_status(name, tmp_path)["files"] == {f.path: "ok" for f in REGISTRY[name].files}


def test_a_partial_copy_in_the_root_is_reported_not_replaced(tmp_path):
    (tmp_path / "snips").mkdir()
    shutil.copy(EMBEDDED_ROOT / "snips" / "train.tsv", tmp_path / "snips" / "train.tsv")
    st = dataset_status("snips", tmp_path)
    assert st["status"] == "missing" and st["source"] == "data root" and not is_available("snips", tmp_path)


def test_the_embedded_files_are_package_data():
    globs = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["dcrepro.data"]
    for name in EMBEDDED:
        for f in REGISTRY[name].files:
            assert any(fnmatch.fnmatch(f"embedded/{f.path}", g) for g in globs), f.path
        assert (EMBEDDED_ROOT / name / "PROVENANCE.txt").is_file()


def test_data_list_says_embedded_copy(tmp_path, capsys):
    from dcrepro.data.cli import (
        main as data_main,  # `dcrepro data list` without reading every spec
    )

    assert data_main(["list", "--fast", "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.startswith("agnews "))
    assert "embedded copy" in line
    assert "mnist: missing" in out


# ---------------------------------------------------------------- bad input: exit code and one line

@pytest.mark.parametrize("argv,needle", [
    (["run", "--seeds", "-3"], "argument --seeds: must be >= 1, got -3"),
    (["run", "--seeds", "two"], "argument --seeds: expected a whole number >= 1, got 'two'"),
    (["run", "--workers", "0"], "argument --workers: must be >= 1, got 0"),
    (["run", "--threads", "-1"], "argument --threads: must be >= 1, got -1"),
])
def test_numeric_options_are_checked(capsys, argv, needle):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2 and needle in _one_line(capsys.readouterr().err)


@pytest.mark.parametrize("content", [b"this is a text file, not a store\n", "foreign"])
@pytest.mark.parametrize("argv", [["table"], ["check"], ["accept"], ["run", "--quiet"]])
def test_a_file_that_is_not_a_store_is_one_line_naming_it(toy_project, capsys, content, argv):
    bad = toy_project / "store.sqlite"
    if content == "foreign":
        con = sqlite3.connect(bad)
        con.execute("CREATE TABLE photos (id INTEGER)")
        con.commit()
        con.close()
    else:
        bad.write_bytes(content)
    assert main([*argv, "--paper", "toy", "--budget", "full", "--store", str(bad)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[-1].startswith("dcrepro: error: ") and str(bad) in err[-1]
    if content == "foreign":
        assert "not a dcrepro result store" in err[-1]
        assert sqlite3.connect(bad).execute("SELECT name FROM sqlite_master").fetchall() == [("photos",)]


def test_a_truncated_data_file_is_one_error_before_anything_runs(tmp_path, monkeypatch, capsys):
    root = tmp_path / "data"
    (root / "usps").mkdir(parents=True)
    (root / "usps" / "usps.h5").write_bytes((EMBEDDED_ROOT / "usps" / "usps.h5").read_bytes()[:5000])
    monkeypatch.setenv("DCREPRO_DATA", str(root))
    store = tmp_path / "s.sqlite"
    argv = ["run", "--paper", "dcss", "--table", "table1", "--datasets", "usps", "--budget", "quick",
            "--seeds", "2", "--store", str(store), "--quiet"]
    assert main(argv) == 1
    err = capsys.readouterr().err.splitlines()[-1]
    assert "USPS (usps)" in err and str(root / "usps" / "usps.h5") in err and "size mismatch" in err
    assert not store.exists() or sqlite3.connect(store).execute("SELECT COUNT(*) FROM runs").fetchone() == (0,)


def test_a_stray_key_error_is_a_bug_not_an_unknown_name(monkeypatch):
    from dcrepro import cli

    def broken(a):
        raise KeyError("acc")

    monkeypatch.setattr(cli, "cmd_list", broken)
    with pytest.raises(KeyError):
        main(["list"])


# ---------------------------------------------------------------- honest exit codes of `run`

def test_run_exit_codes(toy_project, capsys):
    assert main(["run", "--paper", "toy", "--budget", "full", "--datasets", "absent", "--quiet"]) == 1
    assert "nothing ran: data not available for absent (see `dcrepro data list`)" in capsys.readouterr().err
    assert main(["run", "--paper", "toy", "--budget", "full", "--quiet"]) == 0      # absent skipped, named
    out = capsys.readouterr().out
    assert "OK: 3 ran, 0 already stored; skipped, data not available: absent" in out
    assert main(["run", "--paper", "toy", "--budget", "full", "--quiet"]) == 0      # resumed: all stored
    assert "OK: 0 ran, 3 already stored" in capsys.readouterr().out


def test_a_failed_run_fails_the_command(toy_project, capsys):
    spec = toy_project / "benchmarks" / "toy.toml"
    spec.write_text(spec.read_text().replace("fail = false", "fail = true"))
    assert main(["run", "--paper", "toy", "--budget", "full", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "FAIL: 3 run(s) failed, 0 ran ok" in err and "RuntimeError: toy failure requested" in err


# ---------------------------------------------------------------- the regression gate

def test_check_against_a_baseline_file(toy_project, capsys):
    base = toy_project / "baseline.sqlite"
    assert main(["run", "--paper", "toy", "--budget", "full", "--quiet"]) == 0
    assert main(["check", "--paper", "toy", "--budget", "full", "--against", "accepted",
                 "--baseline", str(base)]) == 1                                     # no such file yet
    assert f"baseline {base} cannot be used (no such file" in capsys.readouterr().err
    assert not base.exists()
    base.write_text("not a database")
    assert main(["check", "--paper", "toy", "--budget", "full", "--against", "accepted",
                 "--baseline", str(base)]) == 1
    assert f"baseline {base} cannot be used (file is not a database)" in capsys.readouterr().err
    base.unlink()
    assert main(["accept", "--paper", "toy", "--budget", "full", "--baseline", str(base)]) == 0
    assert "written to" in capsys.readouterr().out
    check = ["check", "--paper", "toy", "--budget", "full", "--against", "accepted", "--baseline", str(base)]
    assert main(check) == 0
    # the working store's own accepted table is not what the gate reads: empty it, the file still holds
    with sqlite3.connect(toy_project / "store.sqlite") as con:
        con.execute("DELETE FROM accepted")
    assert main(check) == 0
    # a number that moves beyond its band fails the gate
    with sqlite3.connect(toy_project / "store.sqlite") as con:
        con.execute("UPDATE outputs SET metrics_json = json_set(metrics_json, '$.acc', "
                    "json_extract(metrics_json, '$.acc') - 0.2) WHERE output = 'good'")
    capsys.readouterr()
    assert main(check) == 1
    assert "OUTSIDE BAND Good blobs acc" in capsys.readouterr().out
    # a cell the baseline lacks (e.g. a changed config) fails it too
    with sqlite3.connect(base) as con:
        con.execute("DELETE FROM accepted WHERE output = 'bad'")
    assert main(check) == 1
    assert "NO BASELINE Bad blobs" in capsys.readouterr().out


def test_the_committed_quick_baseline_covers_every_quick_run_on_the_embedded_data(tmp_path, monkeypatch):
    """What CI's gate runs (the quick plan, 2 seeds, an empty data root) must all have an accepted baseline;
    a changed quick config fails here first (re-accept: README, 'Regression gate')."""
    from dcrepro.runner import build_plan
    from dcrepro.spec import list_papers

    path = REPO / "results" / "baseline_quick.sqlite"
    assert path.is_file(), "make it: README, 'Regression gate'"
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    accepted = {k for (k,) in con.execute("SELECT DISTINCT key FROM accepted")}
    con.close()
    monkeypatch.setenv("DCREPRO_DATA", str(tmp_path))
    plan = [it for p in list_papers() for it in build_plan(p, seeds=2, budget="quick") if is_available(it.cfg.dataset)]
    assert {it.cfg.dataset for it in plan} == set(EMBEDDED)
    assert not [it.label() for it in plan if it.key not in accepted], "quick runs without an accepted baseline"
