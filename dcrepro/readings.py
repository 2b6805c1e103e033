"""Readings: declared interpretations of details a paper leaves unstated or ambiguous.

A spec declares each such detail once::

    [[readings]]
    id = "pu_branch"
    question = "Algorithm 1 'defits' when R_u^- - pi_p R_p^- < 0; eq. 11-12 clip it at 0"
    jobs = ["dac_pu", "deepdpm_pu"]
    default = "defit"
    reason = "Algorithm 1 literally"          # a-priori: library default, lineage code, the paper's text
    [readings.options]
    defit = { pu_negative_branch = "defit" }
    clip = { pu_negative_branch = "clip" }

The *default reading* runs every detail at its default; its runs keep the config hashes they had before
readings existed (the default option's values must equal what the job resolves to). Every other reading
varies one detail from the default (one factor at a time, label ``"pu_branch=clip"``), or several at once
where ``[[reading_grids]] readings = ["a", "b"]`` declares that they interact (labels ``"a=x+b=y"``).
A reading sets parameters of the jobs it applies to; the other jobs of a table keep their default
config, so a claim's two arms are compared under the same reading.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

from .errors import choice_error

__all__ = ["DEFAULT", "Reading", "ReadingVariant", "parse_readings", "expand_variants", "select_variants"]

DEFAULT = "default"


@dataclass(frozen=True)
class Reading:
    """One unstated detail and its plausible readings."""

    id: str
    question: str
    jobs: tuple[str, ...]
    options: dict[str, dict]
    """option name -> parameter values it sets on the reading's jobs."""
    default: str
    reason: str

    def describe(self) -> str:
        alts = ", ".join(o for o in self.options if o != self.default)
        return f"{self.id}: {self.question} — default {self.default} ({self.reason}); also run: {alts}"


@dataclass(frozen=True)
class ReadingVariant:
    """A point in reading space: which option of each varied detail (empty: the default reading)."""

    choices: tuple[tuple[str, str], ...] = ()

    @property
    def label(self) -> str:
        return "+".join(f"{r}={o}" for r, o in self.choices) or DEFAULT

    def overrides(self, readings: dict[str, Reading], job: str) -> dict:
        """Parameter overrides this variant puts on ``job`` (empty when no varied detail applies to it)."""
        out: dict = {}
        for rid, opt in self.choices:
            r = readings[rid]
            if job in r.jobs:
                out |= r.options[opt]
        return out

    def applies_to(self, readings: dict[str, Reading], jobs) -> bool:
        return any(j in readings[rid].jobs for rid, _ in self.choices for j in jobs)


def parse_readings(raw: list[dict], grids: list[dict], jobs: dict, where: str) -> tuple[dict[str, Reading], list[tuple[str, ...]]]:
    """Validate ``[[readings]]`` and ``[[reading_grids]]``; errors name ``where`` and the valid choices."""
    known = ("id", "question", "jobs", "default", "reason", "options")
    out: dict[str, Reading] = {}
    for i, r in enumerate(raw):
        rid = r.get("id", f"#{i + 1}")
        ctx = f"{where}: [[readings]] {rid!r}"
        extra = sorted(set(r) - set(known))
        if extra:
            raise ValueError(f"{ctx}: unknown key {extra[0]!r}; valid keys: {', '.join(known)}")
        missing = [k for k in known if k not in r]
        if missing:
            raise ValueError(f"{ctx}: missing {', '.join(missing)}")
        if rid in out:
            raise ValueError(f"{ctx}: declared twice")
        bad = [j for j in r["jobs"] if j not in jobs]
        if bad:
            raise ValueError(f"{ctx}: unknown job {bad[0]!r}; valid jobs: {', '.join(jobs)}")
        opts = r["options"]
        if len(opts) < 2:
            raise ValueError(f"{ctx}: needs the default and at least one alternative option")
        if r["default"] not in opts:
            raise ValueError(f"{ctx}: default {r['default']!r} is not an option; valid options: {', '.join(opts)}")
        if any(not isinstance(v, dict) for v in opts.values()):
            raise ValueError(f"{ctx}: each option must be a table of parameter values")
        if not str(r["reason"]).strip():
            raise ValueError(f"{ctx}: the default needs an a-priori reason")
        out[rid] = Reading(rid, r["question"], tuple(r["jobs"]), dict(opts), r["default"], r["reason"])
    parsed_grids = []
    for g in grids:
        ids = tuple(g.get("readings", ()))
        bad = [x for x in ids if x not in out]
        if len(ids) < 2 or bad:
            raise ValueError(f"{where}: [[reading_grids]] {list(ids)}: needs two or more declared readings; "
                             f"valid readings: {', '.join(out)}")
        parsed_grids.append(ids)
    return out, parsed_grids


def expand_variants(readings: dict[str, Reading], grids: list[tuple[str, ...]]) -> list[ReadingVariant]:
    """The default, then every option one factor at a time, then each joint grid (non-default cells)."""
    out = [ReadingVariant()]
    for r in readings.values():
        out += [ReadingVariant(((r.id, o),)) for o in r.options if o != r.default]
    for ids in grids:
        for combo in itertools.product(*[list(readings[i].options) for i in ids]):
            varied = tuple((i, o) for i, o in zip(ids, combo) if o != readings[i].default)
            if len(varied) >= 2:
                out.append(ReadingVariant(varied))
    return out


def select_variants(readings: dict[str, Reading], grids, selectors: list[str] | None) -> list[ReadingVariant]:
    """Variants named by CLI selectors: ``default``, ``all``, a reading id (all its options), ``id=option``,
    or a variant label. None selects the default only."""
    every = expand_variants(readings, grids)
    if not selectors:
        return every[:1]
    valid = [DEFAULT, "all", *readings, *(v.label for v in every[1:])]
    chosen: list[ReadingVariant] = []
    for s in selectors:
        if s == "all":
            hits = every
        elif s == DEFAULT:
            hits = every[:1]
        elif s in readings:
            hits = [v for v in every[1:] if len(v.choices) == 1 and v.choices[0][0] == s]
        else:
            hits = [v for v in every if v.label == s]
        if not hits:
            raise choice_error("reading", s, valid)
        chosen += [v for v in hits if v not in chosen]
    return chosen
