"""CLI: unknown names give one line with the valid choices (exit 2); run/table/check end to end."""
import pytest

from dcrepro.cli import main


@pytest.mark.parametrize("argv,needle", [
    (["run", "--paper", "nope"], "valid papers: "),
    (["run", "--paper", "toy", "--table", "table9"], "valid tables: table1"),
    (["run", "--paper", "toy", "--rows", "Nope"], "valid rows: Good, Bad"),
    (["run", "--paper", "toy", "--datasets", "cifar"], "valid datasets: blobs, absent"),
    (["figure", "--paper", "toy", "--figure", "fig9"], "valid figures: fig1"),
])
def test_unknown_names(toy_project, capsys, argv, needle):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1


def test_bad_budget_and_device_are_argparse_errors(toy_project, capsys):
    with pytest.raises(SystemExit) as e:
        main(["run", "--paper", "toy", "--budget", "huge"])
    assert e.value.code == 2 and "quick" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["run", "--paper", "toy", "--device", "tpu"])


def test_run_table_check_accept(toy_project, capsys):
    assert main(["run", "--paper", "toy", "--budget", "full", "--quiet"]) == 0
    assert "ok 3" in capsys.readouterr().out
    assert main(["table", "--paper", "toy", "--budget", "full"]) == 0
    assert (toy_project / "paper_tables" / "toy" / "full" / "table1.md").exists()
    # Bad row is above its band -> check fails
    assert main(["check", "--paper", "toy", "--budget", "full"]) == 1
    assert "OUTSIDE BAND Bad blobs acc" in capsys.readouterr().out
    assert main(["accept", "--paper", "toy", "--budget", "full"]) == 0
    assert main(["check", "--paper", "toy", "--budget", "full", "--against", "accepted"]) == 0
    assert main(["list", "--paper", "toy"]) == 0
    assert "toy" in capsys.readouterr().out
