"""Readers, loaders, registry errors, subsets and fetch of dcrepro.data on small synthetic files.

Every file is written by tests/_datagen.py in the real published format, under a temporary data
root laid out like shared/data; nothing here needs the real data sets.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import io
import tarfile
from contextlib import redirect_stdout

import numpy as np
import pytest

import _datagen as G
from dcrepro.data import (ChecksumMismatch, DataNotAvailable, Dataset, REGISTRY, images_to_float, is_available,
                          list_datasets, load_dataset, resolve_name, stratified_subset)
from dcrepro.data import classes as C
from dcrepro.data.readers import read_idx, read_lines, read_stl_images
from dcrepro.data.registry import dataset_status

# The CIFAR-100 fine → coarse table as used by SCAN / SPICE / CC (fine ids 0..99 in order), written
# out independently of dcrepro.data.classes so that the test can catch a wrong super-class table.
STANDARD_100_TO_20 = [
    4, 1, 14, 8, 0, 6, 7, 7, 18, 3, 3, 14, 9, 18, 7, 11, 3, 9, 7, 11, 6, 11, 5, 10, 7, 6, 13, 15, 3, 15,
    0, 11, 1, 10, 12, 14, 16, 9, 11, 5, 5, 19, 8, 8, 15, 13, 14, 17, 18, 10, 16, 4, 17, 4, 2, 0, 17, 4, 18, 17,
    10, 3, 2, 12, 12, 16, 12, 1, 9, 19, 2, 10, 0, 1, 16, 12, 9, 13, 15, 13, 16, 19, 2, 4, 6, 19, 5, 5, 8, 19,
    18, 1, 2, 15, 6, 0, 17, 8, 14, 13]


def _load_with_loader(name, root, **kw):
    spec = REGISTRY[name]
    return spec.loader(spec, root, **kw)


# ---------------------------------------------------------------- IDX / MNIST family

def test_idx_gz_and_raw_roundtrip(tmp_path):
    a = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    assert np.array_equal(read_idx(G.write_idx(tmp_path / "x.gz", a)), a)
    lab = np.array([3, 1, 4], dtype=np.uint8)
    assert np.array_equal(read_idx(G.write_idx(tmp_path / "y", lab, compress=False)), lab)


def test_idx_truncated_and_bad_magic_raise(tmp_path):
    p = G.write_idx(tmp_path / "x", np.zeros((3, 4, 4), np.uint8), compress=False)
    p.write_bytes(p.read_bytes()[:-5])
    with pytest.raises(ValueError, match="truncated"):
        read_idx(p)
    p.write_bytes(b"\x01\x02\x08\x01" + b"\x00" * 8)
    with pytest.raises(ValueError, match="magic"):
        read_idx(p)


def test_mnist_loader_pools_train_and_test(tmp_path):
    written = G.write_mnist_like(tmp_path, "mnist", 30, 10, seed=1)
    ds = _load_with_loader("mnist", tmp_path)
    assert ds.X.shape == (40, 28, 28, 1) and ds.X.dtype == np.uint8 and ds.y.dtype == np.int64
    assert np.array_equal(ds.X[:30, ..., 0], written["train"][0])
    assert np.array_equal(ds.X[30:, ..., 0], written["t10k"][0])
    assert list(map(len, (ds.splits["train"], ds.splits["test"], ds.splits["all"]))) == [30, 10, 40]
    assert ds.splits["test"][0] == 30


def test_2mnist_shifts_fashion_labels_by_10(tmp_path):
    G.write_mnist_like(tmp_path, "mnist", 20, 10, seed=1)
    f = G.write_mnist_like(tmp_path, "fashion_mnist", 20, 10, seed=2)
    ds = _load_with_loader("2mnist", tmp_path)
    assert len(ds) == 60 and ds.n_classes == 20
    assert set(ds.y[:30]) <= set(range(10)) and np.array_equal(ds.y[30:50], f["train"][1] + 10)
    assert np.array_equal(ds.X[30:50, ..., 0], f["train"][0])
    assert len(ds.splits["train"]) == 40 and len(ds.splits["fashion_mnist"]) == 30


def test_usps_h5_to_uint8(tmp_path):
    w = G.write_usps_h5(tmp_path, 12, 5)
    ds = _load_with_loader("usps", tmp_path)
    assert ds.X.shape == (17, 16, 16, 1) and ds.X.dtype == np.uint8
    expect = np.rint(w["train"][0][3].astype(np.float64) * 255).reshape(16, 16)
    assert np.array_equal(ds.X[3, :, :, 0], expect)           # row-major 16×16
    assert np.array_equal(ds.y[12:], w["test"][1]) and len(ds.splits["test"]) == 5


# ---------------------------------------------------------------- colour images

def test_cifar10_pickles_channel_major_to_hwc(tmp_path):
    X, y = G.write_cifar10(tmp_path, per_batch=3)
    ds = load_dataset("cifar10", tmp_path)                   # md5-only entries: no size check
    assert ds.X.shape == (18, 32, 32, 3) and np.array_equal(ds.X, X) and np.array_equal(ds.y, y)
    # the first 1024 bytes of a CIFAR row are the red plane, row by row
    row = G.cifar_rows(X[:1])[0]
    assert np.array_equal(ds.X[0, :, :, 0].ravel(), row[:1024])
    assert len(ds.splits["train"]) == 15 and len(ds.splits["test"]) == 3


def test_cifar100_to_20_is_the_standard_mapping():
    m = C.cifar100_to_20()
    assert m.shape == (100,) and np.array_equal(m, STANDARD_100_TO_20)
    assert np.array_equal(np.bincount(m), np.full(20, 5))
    fine = C.CIFAR100_FINE_CLASSES
    assert fine[0] == "apple" and fine[99] == "worm" and len(set(fine)) == 100
    # spot checks by name
    sup = sorted(C.CIFAR100_SUPERCLASSES)
    assert sup[m[fine.index("whale")]] == "aquatic_mammals" and sup[m[fine.index("tractor")]] == "vehicles_2"


def test_cifar100_20_loader_uses_mapping_and_checks_stored_coarse(tmp_path):
    rng = np.random.default_rng(0)
    fine = {"train": rng.integers(0, 100, 12), "test": rng.integers(0, 100, 4)}
    coarse = {k: np.asarray(STANDARD_100_TO_20)[v] for k, v in fine.items()}
    G.write_cifar100(tmp_path, fine, coarse)
    ds = load_dataset("cifar100_20", tmp_path)
    assert ds.n_classes == 20 and np.array_equal(ds.y, np.concatenate([coarse["train"], coarse["test"]]))
    coarse["test"] = (coarse["test"] + 1) % 20                # a file whose coarse labels disagree
    G.write_cifar100(tmp_path, fine, coarse)
    with pytest.raises(DataNotAvailable, match="disagree"):
        load_dataset("cifar100_20", tmp_path)


def test_stl10_binary_column_major(tmp_path):
    w = G.write_stl10(tmp_path, 3, 2)
    ds = load_dataset("stl10", tmp_path)
    assert ds.X.shape == (5, 96, 96, 3)
    assert np.array_equal(ds.X[:3], w["train"][0]) and np.array_equal(ds.X[3:], w["test"][0])
    assert np.array_equal(ds.y, np.concatenate([w["train"][1], w["test"][1]]).astype(int) - 1)
    # orientation: byte k of a channel plane is pixel (row k % 96, column k // 96)
    raw = np.fromfile(tmp_path / "stl10/stl10_binary/train_X.bin", np.uint8)
    assert raw[1] == ds.X[0, 1, 0, 0] and raw[96] == ds.X[0, 0, 1, 0]
    (tmp_path / "stl10/stl10_binary/test_X.bin").write_bytes(b"\x00" * 100)
    with pytest.raises(ValueError):
        read_stl_images(tmp_path / "stl10/stl10_binary/test_X.bin")


def test_imagenet10_image_folder_resized(tmp_path, monkeypatch):
    monkeypatch.setenv("DCREPRO_CACHE", str(tmp_path / "cache"))
    wnids = sorted(C.IMAGENET10_WNIDS)
    n = G.write_image_folder(tmp_path / "imagenet10", wnids, per_class=2)
    ds = load_dataset("imagenet10", tmp_path, image_size=8)
    assert ds.X.shape == (n, 8, 8, 3) and np.array_equal(np.bincount(ds.y), np.full(10, 2))
    assert ds.meta["class_names"][0] == C.IMAGENET10_WNIDS[wnids[0]]
    assert list((tmp_path / "cache" / "decoded").glob("imagenet10-8-*.npz"))   # decoded once, cached
    again = load_dataset("imagenet10", tmp_path, image_size=8)
    assert np.array_equal(again.X, ds.X)
    with pytest.raises(ValueError, match="image_size"):
        load_dataset("mnist", tmp_path, image_size=8)


def test_tiny_imagenet_layout(tmp_path, monkeypatch):
    monkeypatch.setenv("DCREPRO_CACHE", str(tmp_path / "cache"))
    base = tmp_path / "tiny_imagenet" / "tiny-imagenet-200"
    wnids = ["n01443537", "n01629819", "n01641577"]
    (base).mkdir(parents=True)
    (base / "wnids.txt").write_text("\n".join(wnids[::-1]) + "\n")
    G.write_image_folder(base / "train", wnids, per_class=2, sizes=((64, 64),), subdir="images")
    ann = []
    for i, w in enumerate([wnids[2], wnids[0]]):
        G.write_png(base / "val" / "images" / f"val_{i}.JPEG.png", np.zeros((64, 64, 3), np.uint8))
        ann.append(f"val_{i}.JPEG.png\t{w}\t0\t0\t63\t63")
    (base / "val" / "val_annotations.txt").write_text("\n".join(ann) + "\n")
    ds = load_dataset("tiny_imagenet", tmp_path)
    assert ds.X.shape == (8, 64, 64, 3) and len(ds.splits["train"]) == 6 and len(ds.splits["test"]) == 2
    assert list(ds.y[6:]) == [0, 2]              # labels from val_annotations.txt, ordered by class


# ---------------------------------------------------------------- texts

def test_snips_tsv_names_quotes_and_na_strings(tmp_path):
    G.write_tsv(tmp_path / "snips/train.tsv", [('add "jethro" to my list', "AddToPlaylist"),
                                               ("NA", "GetWeather"), ("null", "PlayMusic")])
    G.write_tsv(tmp_path / "snips/dev.tsv", [("rate it five", "RateBook")])
    G.write_tsv(tmp_path / "snips/test.tsv", [("weather now", "GetWeather")])
    ds = _load_with_loader("snips", tmp_path)
    assert ds.X.dtype == object and list(ds.X[:3]) == ['add "jethro" to my list', "NA", "null"]
    assert ds.meta["class_names"] == ["AddToPlaylist", "GetWeather", "PlayMusic", "RateBook"]
    assert list(ds.y) == [0, 1, 2, 3, 1]
    assert [list(ds.splits[k]) for k in ("train", "dev", "test")] == [[0, 1, 2], [3], [4]]


def test_dbpedia_labels_become_zero_based(tmp_path):
    for split, rows in (("train", [("a b", "1"), ("c", "14")]), ("dev", [("d", "2")]), ("test", [("e", "7")])):
        G.write_tsv(tmp_path / f"dbpedia/{split}.tsv", rows)
    ds = _load_with_loader("dbpedia", tmp_path)
    assert list(ds.y) == [0, 13, 1, 6] and ds.meta["class_names"][13] == "WrittenWork"


def test_stc2_lines_keep_unicode_separators(tmp_path):
    texts = ["How do I use LINQ ?", "title with\u2028inside", "x\x0cy", "last"]
    G.write_stc2(tmp_path, "stackoverflow", "StackOverflow", texts, [18, 1, 20, 2])
    ds = _load_with_loader("stackoverflow", tmp_path)
    assert list(ds.X) == texts and list(ds.y) == [17, 0, 19, 1]
    assert ds.meta["class_names"][17] == "linq"
    (tmp_path / "stackoverflow/StackOverflow_gnd.txt").write_text("1\n2\n")
    with pytest.raises(ValueError, match="lines"):
        _load_with_loader("stackoverflow", tmp_path)
    (tmp_path / "crlf.txt").write_bytes(b"a\r\nb\r\n")
    assert list(read_lines(tmp_path / "crlf.txt")) == ["a", "b"]


def test_agnews_label_text_without_quoting(tmp_path):
    (tmp_path / "agnews").mkdir()
    (tmp_path / "agnews/agnewsdataraw-8000").write_text('3\toil "prices" rise\n1\tnull\n4\tmicrosoft\n')
    ds = _load_with_loader("agnews", tmp_path)
    assert list(ds.X) == ['oil "prices" rise', "null", "microsoft"] and list(ds.y) == [2, 0, 3]


# ---------------------------------------------------------------- registry errors

def test_missing_files_error_names_paths_and_source(tmp_path):
    assert not is_available("mnist", tmp_path)
    with pytest.raises(DataNotAvailable) as e:
        load_dataset("mnist", tmp_path)
    msg = str(e.value)
    assert str(tmp_path / "mnist" / "train-images-idx3-ubyte.gz") in msg
    assert "ossci-datasets" in msg and "DCREPRO_DATA" in msg and "dcrepro data fetch mnist" in msg
    with pytest.raises(DataNotAvailable, match="ILSVRC-2012"):
        load_dataset("imagenet_dogs", tmp_path)


def _with_real_checksums(monkeypatch, name, root):
    """Point the registry entry's checksums at the files just written (as if they were the real ones)."""
    spec = REGISTRY[name]
    files = tuple(dataclasses.replace(f, sha256=hashlib.sha256((root / f.path).read_bytes()).hexdigest(),
                                      size=(root / f.path).stat().st_size, md5=None) for f in spec.files)
    monkeypatch.setitem(REGISTRY, name, dataclasses.replace(spec, files=files))
    return files


def test_checksum_and_size_mismatch(tmp_path, monkeypatch):
    G.write_usps_h5(tmp_path)
    files = _with_real_checksums(monkeypatch, "usps", tmp_path)
    assert len(load_dataset("usps", tmp_path, verify=True)) == 17
    assert dataset_status("usps", tmp_path)["status"] == "present"
    # same size, one byte changed: only hashing sees it
    p = tmp_path / files[0].path
    raw = bytearray(p.read_bytes())
    raw[-1] ^= 0xFF
    p.write_bytes(bytes(raw))
    assert dataset_status("usps", tmp_path)["status"] == "checksum mismatch"
    with pytest.raises(ChecksumMismatch, match="sha256 mismatch"):
        load_dataset("usps", tmp_path, verify=True)
    # truncated: the size check catches it without hashing
    p.write_bytes(bytes(raw[:100]))
    with pytest.raises(ChecksumMismatch, match="size mismatch"):
        load_dataset("usps", tmp_path)


def test_corrupt_file_gives_one_clear_error(tmp_path):
    X, _ = G.write_cifar10(tmp_path, per_batch=2)
    (tmp_path / "cifar10/cifar-10-batches-py/data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(DataNotAvailable) as e:
        load_dataset("cifar10", tmp_path)
    assert "could not be read" in str(e.value) and "dcrepro data verify cifar10" in str(e.value)
    assert not isinstance(e.value, ChecksumMismatch)


def test_names_and_aliases():
    assert list_datasets() == ["mnist", "fashion_mnist", "2mnist", "usps", "cifar10", "cifar100_20", "stl10",
                               "imagenet10", "imagenet_dogs", "tiny_imagenet", "snips", "dbpedia",
                               "stackoverflow", "biomedical", "agnews"]
    assert resolve_name("Fashion-MNIST") == "fashion_mnist" and resolve_name("CIFAR-100-20") == "cifar100_20"
    with pytest.raises(ValueError, match="valid data sets: mnist"):
        resolve_name("cifar-11")


# ---------------------------------------------------------------- Dataset, subsets, transforms

def _toy(n=10):
    return Dataset("toy", "features", np.arange(n, dtype=np.float32)[:, None], np.arange(n) % 2, 2,
                   {"train": np.arange(0, 6), "test": np.arange(6, n)})


def test_subset_rebases_splits():
    ds = _toy()
    sub = ds.subset([8, 1, 5, 6])
    assert list(sub.X[:, 0]) == [8, 1, 5, 6] and list(sub.splits["all"]) == [0, 1, 2, 3]
    assert list(sub.splits["train"]) == [1, 2] and list(sub.splits["test"]) == [3, 0]
    assert sub.meta["subset_of"] == 10 and len(sub) == 4
    mask = np.zeros(10, bool)
    mask[[2, 7]] = True
    assert list(ds.subset(mask).splits["test"]) == [1]
    with pytest.raises(ValueError, match="unique"):
        ds.subset([1, 1])
    with pytest.raises(ValueError, match="labels must lie"):
        Dataset("bad", "features", np.zeros((2, 1)), [0, 2], 2)


def test_stratified_subset_keeps_proportions_and_is_seeded():
    y = np.repeat([0, 1, 2], [600, 300, 100])
    idx = stratified_subset(y, 100, seed=3)
    assert len(idx) == 100 and np.all(np.diff(idx) > 0)
    assert list(np.bincount(y[idx])) == [60, 30, 10]
    assert np.array_equal(idx, stratified_subset(y, 100, seed=3))
    assert not np.array_equal(idx, stratified_subset(y, 100, seed=4))
    odd = stratified_subset(np.repeat([0, 1, 2], [5, 5, 5]), 7, seed=0)   # remainders spread, sum exact
    assert len(odd) == 7 and sorted(np.bincount(np.repeat([0, 1, 2], [5, 5, 5])[odd])) == [2, 2, 3]
    assert len(stratified_subset(y, 5000)) == 1000


def test_images_to_float_layouts():
    X = np.arange(2 * 3 * 4 * 1, dtype=np.uint8).reshape(2, 3, 4, 1)
    assert images_to_float(X).shape == (2, 1, 3, 4)
    flat = images_to_float(X, "flat")
    assert flat.shape == (2, 12) and flat.dtype == np.float32 and np.isclose(flat[1, 0], 12 / 255)
    with pytest.raises(ValueError, match="layout"):
        images_to_float(X, "chw")


# ---------------------------------------------------------------- fetch and CLI

def test_fetch_file_urls_with_checksums(tmp_path, monkeypatch):
    from dcrepro.data.fetch import FetchError, fetch_dataset

    src = tmp_path / "mirror"
    G.write_tsv(src / "snips/train.tsv", [("a", "X")])
    G.write_tsv(src / "snips/dev.tsv", [("b", "Y")])
    G.write_tsv(src / "snips/test.tsv", [("c", "X")])
    files = _with_real_checksums(monkeypatch, "snips", src)
    files = tuple(dataclasses.replace(f, urls=("http://127.0.0.1:9/offline", (src / f.path).as_uri()))
                  for f in files)
    monkeypatch.setitem(REGISTRY, "snips", dataclasses.replace(REGISTRY["snips"], files=files))
    root = tmp_path / "root"
    out = fetch_dataset("snips", root, progress=False)       # first mirror refused, second works
    assert out["status"] == "present" and len(out["fetched"]) == 3
    assert len(load_dataset("snips", root, verify=True)) == 3
    bad = tuple(dataclasses.replace(f, sha256="0" * 64) for f in files)
    monkeypatch.setitem(REGISTRY, "snips", dataclasses.replace(REGISTRY["snips"], files=bad))
    with pytest.raises(FetchError, match="sha256"):
        fetch_dataset("snips", tmp_path / "other", progress=False)
    assert not list((tmp_path / "other").rglob("*.tsv"))     # nothing half-written left behind


def test_fetch_archive_and_offline_failure(tmp_path, monkeypatch):
    from dcrepro.data.fetch import FetchError, fetch_dataset

    staging = tmp_path / "staging"
    G.write_stl10(staging, 2, 1)
    tgz = tmp_path / "stl10_binary.tar.gz"
    with tarfile.open(tgz, "w:gz") as t:
        t.add(staging / "stl10" / "stl10_binary", arcname="stl10_binary")
    spec = REGISTRY["stl10"]
    files = tuple(dataclasses.replace(f, md5=hashlib.md5((staging / f.path).read_bytes()).hexdigest())
                  for f in spec.files)
    archive = dataclasses.replace(spec.archive, urls=(tgz.as_uri(),), md5=hashlib.md5(tgz.read_bytes()).hexdigest())
    monkeypatch.setitem(REGISTRY, "stl10", dataclasses.replace(spec, files=files, archive=archive))
    out = fetch_dataset("stl10", tmp_path / "root", progress=False)
    assert out["status"] == "present" and len(load_dataset("stl10", tmp_path / "root")) == 3
    offline = dataclasses.replace(archive, urls=("http://127.0.0.1:9/stl10_binary.tar.gz",))
    monkeypatch.setitem(REGISTRY, "stl10", dataclasses.replace(spec, files=files, archive=offline))
    with pytest.raises(FetchError, match="could not download"):
        fetch_dataset("stl10", tmp_path / "root2", progress=False)


def _run_cli(argv, tables=None):
    from dcrepro.data.cli import register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"), tables=tables)
    args = parser.parse_args(argv)
    buf = io.StringIO()
    with redirect_stdout(buf):
        rc = args.func(args)
    return rc, buf.getvalue()


def test_cli_list_verify_fetch(tmp_path, capsys):
    G.write_mnist_like(tmp_path, "mnist", 20, 10, seed=1)
    rc, out = _run_cli(["data", "list", "--root", str(tmp_path)], tables=lambda: {"mnist": ["dcss/table1"]})
    assert rc == 0
    line = next(ln for ln in out.splitlines() if ln.startswith("mnist "))
    assert "checksum mismatch" in line and "dcss/table1" in line    # synthetic files != the real MNIST
    assert "cifar10: missing" in out and "cifar-10-python.tar.gz" in out
    rc, out = _run_cli(["data", "verify", "dbpedia", "--root", str(tmp_path)])  # (snips: the embedded copy)
    assert rc == 1 and "missing" in out and str(tmp_path / "dbpedia" / "train.tsv") in capsys.readouterr().err
    rc, _ = _run_cli(["data", "fetch", "imagenet10", "--root", str(tmp_path)])
    assert rc == 2 and "no public download" in capsys.readouterr().err
