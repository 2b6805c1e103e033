"""``dcrepro data list | verify [NAME] | fetch NAME``: the data-set commands of the CLI.

``list`` and ``verify`` also show the backbone feature sets (``cifar10@simclr_h``, ...; see
:mod:`dcrepro.data.feature_sets`) after the registered data sets.

The lead's ``dcrepro/cli.py`` calls :func:`register` with its argparse sub-parsers; each command
sets ``func`` (``args -> exit code``). The plain functions behind the commands —
:func:`list_rows`, :func:`verify_rows`, :func:`format_rows`, :func:`fetch` — are usable directly.
"Which tables use a data set" comes from the caller (``tables``: a mapping ``{dataset: ["dcss/table1",
...]}`` or a zero-argument callable returning one, read from the specs); nothing is hard-coded here.
"""
from __future__ import annotations

import sys
from typing import Callable, Mapping

from .dataset import DataNotAvailable
from .feature_sets import FEATURE_SPACES, list_feature_sets, make_command, split_feature_name
from .registry import EMBEDDED_SOURCE, REGISTRY, _root, dataset_status, get_spec, load_dataset, resolve_name

__all__ = ["register", "list_rows", "verify_rows", "format_rows", "missing_instructions", "fetch"]

TableMap = Mapping[str, list] | Callable[[], Mapping[str, list]] | None


def _tables(tables: TableMap) -> Mapping[str, list]:
    return (tables() if callable(tables) else tables) or {}


def _count(name: str, root) -> tuple[int | None, int | None, str | None]:
    """(samples, distinct labels, error) of a loaded data set."""
    import numpy as np

    try:
        data = load_dataset(name, root)
    except DataNotAvailable as e:
        return None, None, str(e).splitlines()[0]
    return len(data), int(len(np.unique(data.y))), None


def list_rows(root=None, tables: TableMap = None, *, count: bool = True, hashes: bool = True,
              names: list[str] | None = None) -> list[dict]:
    """One row per data set: status, samples, classes, size on disk, tables that use it.

    Parameters
    ----------
    root : path-like, optional
        Data root (default ``$DCREPRO_DATA`` / ``~/.cache/dcrepro``).
    tables : mapping or callable, optional
        ``{dataset id: [table ids]}``.
    count : bool
        Load every present data set and count its samples and classes (a few seconds in all);
        otherwise the expected numbers are shown.
    hashes : bool
        Hash the files (sha256 / md5) to tell 'present' from 'checksum mismatch'.
    names : list of str, optional
        Restrict to these data sets (default: every registered data set, then the feature sets of
        :func:`~dcrepro.data.list_feature_sets`).

    Returns
    -------
    list of dict
        Keys: name, display_name, modality, status, checked, source ('data root' | 'embedded copy'),
        samples, expected_samples, classes, expected_classes, size_mib, tables, note.
    """
    table_map = _tables(tables)
    rows = []
    for name in [resolve_name(n) for n in names] if names else list(REGISTRY) + list_feature_sets():
        if "@" in name:  # a feature set: facts from its image set
            base, space = split_feature_name(name)
            spec = REGISTRY[base]
            display, modality = f"{spec.display_name} @ {FEATURE_SPACES[space].label}", "features"
        else:
            spec = get_spec(name)
            display, modality = spec.display_name, spec.modality
        st = dataset_status(name, root, hashes=hashes)
        samples = classes = note = None
        if st["status"] == "present" and count:
            samples, classes, note = _count(name, root)
            if note is None and samples != spec.n_samples:
                note = f"expected {spec.n_samples:,} samples"
        rows.append({"name": name, "display_name": display, "modality": modality,
                     "status": st["status"], "checked": st["checked"], "source": st.get("source", "data root"),
                     "samples": samples,
                     "expected_samples": spec.n_samples, "classes": classes, "expected_classes": spec.n_classes,
                     "size_mib": st["bytes"] / 2**20 if st["status"] != "missing" else None,
                     "tables": list(table_map.get(name, [])), "note": note})
    return rows


def verify_rows(names: list[str] | None = None, root=None) -> list[dict]:
    """Hash every file and load each data set, checking sizes against the registry.

    Missing data sets appear with status 'missing'; a present one gets 'ok' only when its checksums
    match (where published) and it loads with the expected number of samples and classes.
    """
    rows = list_rows(root, count=True, hashes=True, names=names)
    for r in rows:
        if r["status"] == "present":
            ok = (r["note"] is None and r["samples"] == r["expected_samples"]
                  and r["classes"] == r["expected_classes"])
            r["verdict"] = "ok" if ok else "FAILED"
        else:
            r["verdict"] = r["status"]
    return rows


def _fmt_int(v) -> str:
    return f"{v:,}" if isinstance(v, int) else "-"


def format_rows(rows: list[dict], fmt: str = "simple") -> str:
    """Render :func:`list_rows` / :func:`verify_rows` output with tabulate."""
    from tabulate import tabulate

    verdict = any("verdict" in r for r in rows)
    body = []
    for r in rows:
        status = r["status"] if r["status"] != "present" else f"present ({r['checked']})"
        if r.get("source") == EMBEDDED_SOURCE:
            status += f", {EMBEDDED_SOURCE}"
        line = [r["name"], r["display_name"], r["modality"], status,
                _fmt_int(r["samples"]) if r["samples"] is not None else f"({r['expected_samples']:,})",
                _fmt_int(r["classes"]) if r["classes"] is not None else f"({r['expected_classes']})",
                f"{r['size_mib']:.1f}" if r["size_mib"] is not None else "-",
                ", ".join(r["tables"]) or "-"]
        if verdict:
            line.append(r["verdict"])
        line.append(r["note"] or "")
        body.append(line)
    headers = ["id", "data set", "modality", "status", "samples", "classes", "MiB", "tables"]
    headers += ["verify"] if verdict else []
    return tabulate(body, headers=headers + ["note"], tablefmt=fmt, disable_numparse=True)


def missing_instructions(rows: list[dict], root=None) -> str:
    """One short paragraph per missing data set: where its files go and where they come from."""
    root = _root(root)
    out = []
    for r in rows:
        if r["status"] == "present":
            continue
        if "@" in r["name"]:
            out.append(f"  {r['name']}: {r['status']} - make it on a GPU machine (needs the image set): "
                       f"`{make_command(r['name'], root)}`.")
            continue
        spec = get_spec(r["name"])
        if spec.archive is not None:
            how = f"unpack {spec.archive.urls[0]} into {root / spec.archive.extract_to}"
        elif any(f.urls for f in spec.files):
            how = f"download the {len(spec.files)} files into {root / spec.folder}"
        else:
            how = spec.how_to_get.split(". ")[0] + f"; place as {root / spec.folder}/<wnid>/*.JPEG"
        fetchable = spec.archive is not None or any(f.urls for f in spec.files)
        tail = f" (or `dcrepro data fetch {spec.name}`)" if fetchable else ""
        out.append(f"  {spec.name}: {r['status']} - {how}{tail}. Details: `dcrepro data verify {spec.name}`.")
    return ("Not available:\n" + "\n".join(out)) if out else ""


def fetch(name: str, root=None) -> dict:
    """Download data set ``name`` into the root (see :func:`dcrepro.data.fetch.fetch_dataset`)."""
    from .fetch import fetch_dataset

    return fetch_dataset(name, root)


def _cmd_list(args, tables: TableMap) -> int:
    rows = list_rows(args.root, tables, count=not args.fast, hashes=not args.fast)
    print(f"data root: {_root(args.root)}")
    print(format_rows(rows, args.format))
    embedded = [r["name"] for r in rows if r.get("source") == EMBEDDED_SOURCE]
    if embedded:
        print(f"\n{', '.join(embedded)}: not under the data root; read from the {EMBEDDED_SOURCE} shipped in the "
              "package (byte-identical to the registered files: the same data).")
    extra = missing_instructions(rows, args.root)
    if extra:
        print("\n" + extra)
    return 0


def _cmd_verify(args) -> int:
    try:
        names = [resolve_name(args.name)] if args.name else None
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    rows = verify_rows(names, args.root)
    print(f"data root: {_root(args.root)}")
    print(format_rows(rows, args.format))
    if names and rows[0]["status"] != "present":
        try:  # the full message: which files, where, from where
            load_dataset(names[0], args.root, verify=True)
        except DataNotAvailable as e:
            print("\n" + str(e), file=sys.stderr)
        return 1
    return 1 if any(r["verdict"] == "FAILED" or r["status"] == "checksum mismatch" for r in rows) else 0


def _cmd_fetch(args) -> int:
    from .fetch import FetchError

    try:
        result = fetch(args.name, args.root)
    except (FetchError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    done = ", ".join(result["fetched"]) or "nothing to do"
    print(f"{result['name']}: {result['status']} ({done})")
    return 0


def register(subparsers, tables: TableMap = None) -> None:
    """Add ``data {list,verify,fetch}`` to an argparse sub-parsers object.

    Each leaf parser sets ``func``: call ``args.func(args)`` and exit with its return value.

    Parameters
    ----------
    subparsers : argparse._SubParsersAction
    tables : mapping or callable, optional
        ``{dataset id: [table ids]}`` (or a callable returning it, evaluated when ``list`` runs).
    """
    data = subparsers.add_parser("data", help="list, verify and fetch the benchmark data sets",
                                 description="Data sets live under $DCREPRO_DATA (default ~/.cache/dcrepro).")
    sub = data.add_subparsers(dest="data_command", metavar="{list,verify,fetch}")
    sub.required = True

    def common(p):
        p.add_argument("--root", default=None, help="data root (default: $DCREPRO_DATA or ~/.cache/dcrepro)")
        p.add_argument("--format", default="simple", help="tabulate format (simple, github, latex, ...)")

    p = sub.add_parser("list", help="every data set: present / missing / checksum mismatch, samples, classes")
    common(p)
    p.add_argument("--fast", action="store_true", help="no hashing, no loading: presence and expected sizes only")
    p.set_defaults(func=lambda a: _cmd_list(a, tables))
    p = sub.add_parser("verify", help="hash the files and load the data set(s); non-zero exit on failure")
    common(p)
    p.add_argument("name", nargs="?", help="one data set (default: all)")
    p.set_defaults(func=_cmd_verify)
    p = sub.add_parser("fetch", help="download a data set with checksum verification (needs internet)")
    p.add_argument("--root", default=None, help="data root (default: $DCREPRO_DATA or ~/.cache/dcrepro)")
    p.add_argument("name", help="data set id")
    p.set_defaults(func=_cmd_fetch)


def main(argv=None) -> int:
    """Stand-alone entry (``python -m dcrepro.data.cli list``) until the main CLI is wired."""
    import argparse

    parser = argparse.ArgumentParser(prog="dcrepro")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["data", *(argv if argv is not None else sys.argv[1:])])
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
