"""The result store: one sqlite file (WAL), one record per finished run.

A run is identified by ``key = sha256(paper, job, dataset, seed, config_hash)``. A record is written in
one transaction together with all the row outputs the run yielded (DCSS: AE + k-means, DCSSu, DCSS),
so a run killed half-way leaves nothing behind. Before running, a runner *claims* the key; a second
runner on the same store skips claimed keys, and a claim whose process is gone (same host) or that is
older than ``STALE_AFTER_S`` is taken over. Failed runs are stored as records with status 'failed' and
their traceback; a later run of the same key replaces them.

``accept`` copies the current records of a set of runs into the ``accepted`` table: the baseline of
``dcrepro check --against accepted`` (today's code against our last accepted run). That table may also
live in a separate, committed store file (``Store(path, baseline=FILE)``, :meth:`Store.save_accepted`):
the quick budget's git-ignored store is checked against ``results/baseline_quick.sqlite``.
"""
from __future__ import annotations

import hashlib
import json
import os
import socket
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from .paths import default_store_path

__all__ = ["default_store_path", "run_key", "Store", "StoreError", "Record"]

STALE_AFTER_S = 48 * 3600
_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
  key TEXT PRIMARY KEY, paper TEXT, job TEXT, method TEXT, dataset TEXT, seed INTEGER,
  budget TEXT, effective_budget TEXT, config_hash TEXT, config_json TEXT, deviations_json TEXT,
  status TEXT CHECK (status IN ('ok', 'failed')), error TEXT,
  wall_s REAL, started REAL, finished REAL, device TEXT, versions_json TEXT, git_rev TEXT,
  n_samples INTEGER, host TEXT);
CREATE INDEX IF NOT EXISTS runs_cfg ON runs(paper, job, dataset, config_hash);
CREATE TABLE IF NOT EXISTS outputs (
  key TEXT REFERENCES runs(key) ON DELETE CASCADE, output TEXT, metrics_json TEXT, info_json TEXT,
  labels_sha TEXT, PRIMARY KEY (key, output));
CREATE TABLE IF NOT EXISTS claims (key TEXT PRIMARY KEY, host TEXT, pid INTEGER, since REAL);
CREATE TABLE IF NOT EXISTS accepted (
  key TEXT, output TEXT, paper TEXT, job TEXT, dataset TEXT, seed INTEGER, config_hash TEXT,
  metrics_json TEXT, labels_sha TEXT, accepted_at REAL, git_rev TEXT, PRIMARY KEY (key, output));
"""


def run_key(paper: str, job: str, dataset: str, seed: int, config_hash: str) -> str:
    return hashlib.sha256(f"{paper}|{job}|{dataset}|{seed}|{config_hash}".encode()).hexdigest()[:24]


@dataclass
class Record:
    key: str
    paper: str
    job: str
    dataset: str
    seed: int
    status: str
    config_hash: str
    effective_budget: str
    deviations: list[str]
    wall_s: float | None
    error: str | None
    outputs: dict[str, dict]  # output -> metrics
    device: str = ""
    git_rev: str = ""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class StoreError(RuntimeError):
    """The store file cannot be used (not sqlite, another program's database, unreadable): one line
    naming the file."""


class Store:
    """``baseline``: another store file (e.g. the committed ``results/baseline_quick.sqlite``) whose accepted
    table is read by :meth:`accepted` instead of this store's own (written by :meth:`save_accepted`)."""

    def __init__(self, path: str | Path | None = None, baseline: str | Path | None = None):
        self.path = Path(path) if path else default_store_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._con = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        try:
            self._con.execute("PRAGMA journal_mode=WAL")
            tables = {t for (t,) in self._con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        except sqlite3.DatabaseError as e:  # a text file, a truncated database, an unreadable path
            self._con.close()
            raise StoreError(f"{self.path} cannot be used as a result store ({e}): a dcrepro store is an sqlite "
                             "file; move this one away or pass --store with another file") from None
        if tables and "runs" not in tables:  # never add our tables to another program's database
            self._con.close()
            raise StoreError(f"{self.path} is an sqlite database but not a dcrepro result store (tables: "
                             f"{', '.join(sorted(tables))}); pass --store with another file")
        self._con.execute("PRAGMA foreign_keys=ON")
        self._con.execute("PRAGMA synchronous=NORMAL")
        self._con.executescript(_SCHEMA)
        self._host = socket.gethostname()
        self.baseline = Path(baseline) if baseline else None
        if self.baseline is not None:  # read only; a missing file would be created by ATTACH
            why = "no such file; `dcrepro accept --baseline FILE` writes one"
            if self.baseline.is_file():
                try:
                    self._con.execute("ATTACH DATABASE ? AS baseline", (str(self.baseline),))
                    why = "" if self._con.execute("SELECT 1 FROM baseline.sqlite_master WHERE type='table' "
                                                  "AND name='accepted'").fetchone() else "no accepted table"
                except sqlite3.DatabaseError as e:
                    why = str(e)
            if why:
                self._con.close()
                raise StoreError(f"baseline {self.baseline} cannot be used ({why})")
            self._con.execute("CREATE TEMP VIEW accepted AS SELECT * FROM baseline.accepted")  # shadows main's

    def close(self) -> None:
        """Fold the WAL into the main file (so the .sqlite file alone is complete) and close."""
        try:
            self._con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            self._con.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self._con.execute("BEGIN IMMEDIATE")
        try:
            yield self._con
        except BaseException:
            self._con.execute("ROLLBACK")
            raise
        else:
            self._con.execute("COMMIT")

    # -- claims -----------------------------------------------------------------------------------
    def claim(self, key: str, force: bool = False) -> str:
        """Try to take ``key``: returns 'claimed', 'done' (an ok record exists) or 'busy'."""
        with self._tx() as con:
            row = con.execute("SELECT status FROM runs WHERE key=?", (key,)).fetchone()
            if row and row[0] == "ok" and not force:
                return "done"
            c = con.execute("SELECT host, pid, since FROM claims WHERE key=?", (key,)).fetchone()
            if c:
                host, pid, since = c
                stale = (time.time() - since > STALE_AFTER_S) or (host == self._host and not _pid_alive(pid))
                if not stale and not (host == self._host and pid == os.getpid()):
                    return "busy"
            con.execute("INSERT OR REPLACE INTO claims VALUES (?,?,?,?)", (key, self._host, os.getpid(), time.time()))
            return "claimed"

    def release(self, key: str) -> None:
        with self._tx() as con:
            con.execute("DELETE FROM claims WHERE key=? AND host=? AND pid=?", (key, self._host, os.getpid()))

    # -- writing ----------------------------------------------------------------------------------
    def put(self, run: dict, outputs: dict[str, dict] | None = None) -> None:
        """Write one run record and its outputs atomically (replacing an older record of the key)
        and drop its claim. ``run`` holds the columns of ``runs``; ``outputs`` maps output name to
        {'metrics': {...}, 'info': {...}, 'labels_sha': str}."""
        cols = ["key", "paper", "job", "method", "dataset", "seed", "budget", "effective_budget", "config_hash",
                "config_json", "deviations_json", "status", "error", "wall_s", "started", "finished", "device",
                "versions_json", "git_rev", "n_samples", "host"]
        run = {"host": self._host, **run}
        for k in ("config_json", "deviations_json", "versions_json"):
            if not isinstance(run.get(k), (str, type(None))):
                run[k] = json.dumps(run[k], sort_keys=True, default=str)
        with self._tx() as con:
            con.execute("DELETE FROM outputs WHERE key=?", (run["key"],))
            con.execute("DELETE FROM runs WHERE key=?", (run["key"],))
            con.execute(f"INSERT INTO runs ({','.join(cols)}) VALUES ({','.join('?' * len(cols))})",
                        [run.get(c) for c in cols])
            for name, o in (outputs or {}).items():
                con.execute("INSERT INTO outputs VALUES (?,?,?,?,?)",
                            (run["key"], name, json.dumps(o.get("metrics", {})),
                             json.dumps(o.get("info", {}), default=str), o.get("labels_sha")))
            con.execute("DELETE FROM claims WHERE key=?", (run["key"],))

    # -- reading ----------------------------------------------------------------------------------
    def records(self, paper: str | None = None, job: str | None = None, dataset: str | None = None,
                config_hash: str | None = None, status: str | None = None) -> list[Record]:
        where, args = [], []
        for col, val in (("paper", paper), ("job", job), ("dataset", dataset), ("config_hash", config_hash),
                         ("status", status)):
            if val is not None:
                where.append(f"r.{col}=?")
                args.append(val)
        sql = ("SELECT r.key, r.paper, r.job, r.dataset, r.seed, r.status, r.config_hash, r.effective_budget, "
               "r.deviations_json, r.wall_s, r.error, r.device, r.git_rev, o.output, o.metrics_json FROM runs r "
               "LEFT JOIN outputs o ON o.key = r.key" + (" WHERE " + " AND ".join(where) if where else "") +
               " ORDER BY r.paper, r.job, r.dataset, r.seed")
        recs: dict[str, Record] = {}
        for (key, p, j, d, seed, st, ch, eb, devs, wall, err, dev, rev, out, mj) in self._con.execute(sql, args):
            rec = recs.get(key) or recs.setdefault(key, Record(key, p, j, d, seed, st, ch, eb, json.loads(devs or "[]"),
                                                               wall, err, {}, dev or "", rev or ""))
            if out is not None:
                rec.outputs[out] = json.loads(mj)
        return list(recs.values())

    def count(self) -> int:
        return self._con.execute("SELECT COUNT(*) FROM runs").fetchone()[0]

    def keys(self, status: str = "ok") -> set[str]:
        return {k for (k,) in self._con.execute("SELECT key FROM runs WHERE status=?", (status,))}

    def info(self, key: str, output: str) -> dict:
        row = self._con.execute("SELECT info_json FROM outputs WHERE key=? AND output=?", (key, output)).fetchone()
        return json.loads(row[0]) if row else {}

    def versions(self, key: str) -> dict[str, str]:
        """The library versions (and CPU facts) stored with run ``key`` (see :func:`dcrepro.envinfo.versions`)."""
        row = self._con.execute("SELECT versions_json FROM runs WHERE key=?", (key,)).fetchone()
        return json.loads(row[0]) if row and row[0] else {}

    def merge_from(self, other: str | Path) -> tuple[int, int]:
        """Copy the ok runs of another store (e.g. one written on a GPU machine) that this one lacks.

        A key this store already holds as ok is left alone (never overwritten); a failed record here is
        replaced by an ok one there. Returns (copied, skipped)."""
        src = sqlite3.connect(f"file:{Path(other)}?mode=ro", uri=True)
        try:
            runs = src.execute("SELECT * FROM runs WHERE status='ok'").fetchall()
            cols = [d[0] for d in src.execute("SELECT * FROM runs LIMIT 0").description]
            have = self.keys("ok")
            copied = 0
            with self._tx() as con:
                for row in runs:
                    key = row[cols.index("key")]
                    if key in have:
                        continue
                    con.execute("DELETE FROM outputs WHERE key=?", (key,))
                    con.execute("DELETE FROM runs WHERE key=?", (key,))
                    con.execute(f"INSERT INTO runs ({','.join(cols)}) VALUES ({','.join('?' * len(cols))})", row)
                    con.executemany("INSERT INTO outputs VALUES (?,?,?,?,?)",
                                    src.execute("SELECT * FROM outputs WHERE key=?", (key,)).fetchall())
                    copied += 1
            return copied, len(runs) - copied
        finally:
            src.close()

    # -- accepted baseline ------------------------------------------------------------------------
    def accept(self, keys: Iterable[str], git_rev: str = "") -> int:
        """Copy the ok records of ``keys`` into the accepted baseline (replacing older acceptances)."""
        n = 0
        with self._tx() as con:
            for key in keys:
                rows = con.execute(
                    "SELECT r.key, o.output, r.paper, r.job, r.dataset, r.seed, r.config_hash, o.metrics_json, "
                    "o.labels_sha FROM runs r JOIN outputs o ON o.key=r.key WHERE r.key=? AND r.status='ok'",
                    (key,)).fetchall()
                for row in rows:
                    con.execute("INSERT OR REPLACE INTO accepted VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                                (*row, time.time(), git_rev))
                    n += 1
        return n

    def save_accepted(self, keys: Iterable[str], path: str | Path) -> int:
        """Copy the accepted outputs of runs ``keys`` into the accepted table of the store file ``path`` (a
        baseline file, see ``baseline``), replacing what it held for the same (paper, job, data set, seed)."""
        Store(path).close()  # creates it with the schema, or refuses a file that is not a dcrepro store
        self._con.execute("ATTACH DATABASE ? AS dest", (str(path),))
        n = 0
        try:
            with self._tx() as con:
                for key in keys:
                    for row in con.execute("SELECT * FROM main.accepted WHERE key=?", (key,)).fetchall():
                        con.execute("DELETE FROM dest.accepted WHERE paper=? AND job=? AND dataset=? AND seed=? "
                                    "AND output=?", (row[2], row[3], row[4], row[5], row[1]))
                        con.execute(f"INSERT INTO dest.accepted VALUES ({','.join('?' * len(row))})", row)
                        n += 1
        finally:
            self._con.execute("DETACH DATABASE dest")
        con = sqlite3.connect(path)  # a committed file: no -wal/-shm beside it when read
        con.execute("PRAGMA journal_mode=DELETE")
        con.close()
        return n

    def accepted(self, paper: str, job: str, dataset: str, config_hash: str) -> dict[tuple[int, str], dict]:
        """{(seed, output): metrics} of the accepted baseline for one (job, dataset, config)."""
        rows = self._con.execute(
            "SELECT seed, output, metrics_json FROM accepted WHERE paper=? AND job=? AND dataset=? AND config_hash=?",
            (paper, job, dataset, config_hash)).fetchall()
        return {(s, o): json.loads(m) for s, o, m in rows}
