"""Download a registered data set into the data root, checking every byte against the registry.

Behind ``dcrepro data fetch NAME`` (:mod:`dcrepro.data.cli`). Files with direct URLs are downloaded
one by one; archive sets (CIFAR, STL-10, Tiny-ImageNet) are downloaded, checked, and unpacked.
Offline, or on any network/checksum failure, :class:`FetchError` is raised with one line saying
what failed; nothing half-written is left under the final path (temporary file + ``os.replace``).
ImageNet-10 / ImageNet-Dogs cannot be downloaded (ILSVRC-2012 needs an account).
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from .registry import _root, dataset_status, get_spec

__all__ = ["FetchError", "fetch_dataset", "download", "remove_partial"]

_CHUNK = 1 << 20


class FetchError(RuntimeError):
    """A download could not be completed (offline, HTTP error, checksum mismatch, unwritable root)."""


def download(urls, dest: Path, *, sha256: str | None = None, md5: str | None = None, timeout: float = 60,
             progress: bool = True) -> Path:
    """Download the first URL that works to ``dest``, verifying the checksum before moving it in place.

    Parameters
    ----------
    urls : sequence of str
        Mirrors tried in order (``file://`` URLs work too, which the tests use).
    dest : pathlib.Path
    sha256, md5 : str, optional
        Expected digest; a mismatch discards the download and tries the next mirror.

    Raises
    ------
    FetchError
        No mirror delivered a file with the expected checksum; the message names the last reason.
    """
    dest = Path(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise FetchError(f"cannot create {dest.parent}: {e.strerror or e}") from None
    tmp = dest.with_name(f".{dest.name}.part{os.getpid()}")
    reason = "no URL given"
    for url in urls:
        algo, expected = ("sha256", sha256) if sha256 else ("md5", md5)
        digest = hashlib.new(algo)
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as out:
                total = int(response.headers.get("Content-Length") or 0) or None
                bar = None
                if progress:
                    from tqdm import tqdm

                    bar = tqdm(total=total, unit="B", unit_scale=True, desc=dest.name, leave=False)
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    if bar is not None:
                        bar.update(len(chunk))
                if bar is not None:
                    bar.close()
        except (urllib.error.URLError, OSError, ValueError) as e:
            reason = f"{url}: {getattr(e, 'reason', None) or e}"
            tmp.unlink(missing_ok=True)
            continue
        if expected and digest.hexdigest() != expected:
            reason = f"{url}: {algo} {digest.hexdigest()} != expected {expected}"
            tmp.unlink(missing_ok=True)
            continue
        os.replace(tmp, dest)
        return dest
    raise FetchError(f"could not download {dest.name} ({reason}); offline? Copy the file by hand to {dest}")


def _safe_extract(archive: Path, dest: Path) -> None:
    """Unpack a .tar.gz or .zip into ``dest``, refusing members that would land outside it."""
    dest.mkdir(parents=True, exist_ok=True)
    if archive.suffix == ".zip":
        with zipfile.ZipFile(archive) as z:
            for member in z.namelist():
                target = (dest / member).resolve()
                if not target.is_relative_to(dest.resolve()):
                    raise FetchError(f"{archive.name}: member {member!r} would unpack outside {dest}")
            z.extractall(dest)
    else:
        with tarfile.open(archive, "r:*") as t:
            t.extractall(dest, filter="data")


def fetch_dataset(name: str, root=None, *, timeout: float = 60, progress: bool = True) -> dict:
    """Download (and unpack) data set ``name`` into the data root and verify it.

    Returns
    -------
    dict
        ``{'name', 'fetched': [paths written], 'status': dataset_status(...)['status']}``.

    Raises
    ------
    FetchError
        Offline, a failed or corrupt download, an unwritable root, or a data set that has no
        public download (the message then says how to obtain it).
    """
    spec, root = get_spec(name), _root(root)
    before = dataset_status(spec.name, root, embedded=False)  # into the root, whatever the package ships
    if before["status"] == "present":
        return {"name": spec.name, "fetched": [], "status": "present"}
    fetched: list[str] = []
    if spec.archive is not None:
        a = spec.archive
        archive = root / ".downloads" / a.filename
        download(a.urls, archive, sha256=a.sha256, md5=a.md5, timeout=timeout, progress=progress)
        try:
            _safe_extract(archive, root / a.extract_to)
        except (OSError, tarfile.TarError, zipfile.BadZipFile) as e:
            raise FetchError(f"could not unpack {archive}: {e}") from None
        archive.unlink(missing_ok=True)
        fetched.append(str(root / a.extract_to))
    elif any(f.urls for f in spec.files):
        for f in spec.files:
            if before["files"].get(f.path) == "ok":
                continue
            download(f.urls, root / f.path, sha256=f.sha256, md5=f.md5, timeout=timeout, progress=progress)
            fetched.append(str(root / f.path))
    else:
        raise FetchError(f"{spec.display_name} ({spec.name}) has no public download. "
                         + spec.how_to_get.format(dir=root / spec.folder))
    after = dataset_status(spec.name, root, embedded=False)
    if after["status"] != "present":
        bad = {p: s for p, s in after["files"].items() if s not in ("ok", "unverified")}
        raise FetchError(f"{spec.name}: after download the files are still not right: {bad}")
    return {"name": spec.name, "fetched": fetched, "status": after["status"]}


def remove_partial(root=None) -> None:
    """Delete the ``.downloads`` scratch folder of the data root (interrupted archive downloads)."""
    shutil.rmtree(_root(root) / ".downloads", ignore_errors=True)
