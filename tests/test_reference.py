"""Integrity of reference_results/: every file loads, no duplicate cells, statuses honest, spot values."""
import math

import pytest

from dcrepro.reference import COLUMNS, list_reference_tables, load_reference, reference_layout

EXPECTED = {"dcss": ["table1", "table2", "table3", "table4", "table5"], "deccrl": ["table2", "table3"],
            "dcglu": ["table1", "table3", "table4"], "rpsc": ["table2", "table3", "table4", "table5"]}


def test_every_target_table_has_a_file():
    have = set(list_reference_tables())
    want = {f"{p}/{t}" for p, ts in EXPECTED.items() for t in ts}
    assert want <= have, f"missing reference tables: {sorted(want - have)}"


@pytest.mark.parametrize("pt", [f"{p}/{t}" for p, ts in EXPECTED.items() for t in ts])
def test_reference_file_integrity(pt):
    paper, table = pt.split("/")
    df = load_reference(paper, table)
    assert list(df.columns) == COLUMNS
    assert not df.duplicated(["row", "dataset", "metric"]).any()
    assert set(df["status"]) <= {"ok", "na", "missing_in_source"}
    ok = df[df["status"] == "ok"]
    assert ok["value"].notna().all(), "an ok cell without a value"
    assert df[df["status"] != "ok"]["value"].isna().all(), "a '-' or lost cell was filled in"
    assert set(df["scale"]) <= {"percent", "fraction", "seconds", "ratio"}
    assert set(df.loc[df["metric"] == "nmi", "nmi_variant"]) <= {"arithmetic", "geometric"}
    pct = ok[(ok["scale"] == "percent") & ok["metric"].isin(["acc", "nmi", "ari"])]["value"]
    assert ((pct >= 0) & (pct <= 100)).all()
    frac = ok[(ok["scale"] == "fraction")]["value"]
    assert ((frac >= -1) & (frac <= 1)).all()
    # the layout file describes the same rows × columns grid
    layout = reference_layout(paper, table)
    if layout.get("rows"):
        assert list(dict.fromkeys(df["row"])) == layout["rows"]
        assert len(df) == len(layout["rows"]) * len(layout["columns"])


@pytest.mark.parametrize("paper,table,row,dataset,metric,value", [
    ("dcss", "table1", "k-means", "mnist", "acc", 53.20),
    ("dcss", "table1", "k-means", "usps", "nmi", 62.00),
    ("dcss", "table1", "DCSS", "mnist", "acc", 98.00),
    ("dcss", "table1", "DCSSu", "usps", "nmi", 81.84),
    ("dcss", "table3", "DCSS", "cifar10@simclr_z", "nmi", 68.91),
    ("dcglu", "table1", "DAC*", "snips", "nmi", 79.92),
    ("dcglu", "table1", "DeepDPM", "dbpedia", "acc", 58.30),
    ("dcglu", "table3", "DAC-DEC*", "dbpedia", "acc", 83.14),
    ("deccrl", "table2", "DECCRL", "stackoverflow", "acc", 82.3),
    ("deccrl", "table3", "Ours w/o CRL", "agnews", "nmi", 59.2),
    ("rpsc", "table2", "RPSC", "imagenet_dogs", "acc", 0.688),
    ("rpsc", "table2", "RPSC-Self", "cifar10", "nmi", 0.754),
])
def test_spot_values(paper, table, row, dataset, metric, value):
    df = load_reference(paper, table).set_index(["row", "dataset", "metric"])
    assert df.loc[(row, dataset, metric), "value"] == pytest.approx(value)


@pytest.mark.parametrize("paper,table,row,dataset,metric,status", [
    ("dcss", "table1", "PICA", "mnist", "acc", "na"),
    ("deccrl", "table3", "Ours", "stackoverflow", "nmi", "missing_in_source"),
    ("deccrl", "table2", "STCC", "agnews", "acc", "na"),
    ("rpsc", "table2", "RPSC", "tiny_imagenet", "nmi", "na"),
])
def test_spot_statuses(paper, table, row, dataset, metric, status):
    df = load_reference(paper, table).set_index(["row", "dataset", "metric"])
    assert df.loc[(row, dataset, metric), "status"] == status
    assert math.isnan(df.loc[(row, dataset, metric), "value"])


def test_std_and_runs_where_reported():
    df = load_reference("dcglu", "table1").set_index(["row", "dataset", "metric"])
    cell = df.loc[("DAC*", "snips", "nmi")]
    assert cell["std"] == pytest.approx(4.40) and cell["n_runs"] == 10
