"""Run health: degeneracy rules over the signals a run emits.

A method emits health signals with its metrics (``RowOutput.metrics``): the runner adds
``nonempty_clusters`` and ``min_cluster_share`` for every output with labels, methods add their own
(``defit_share``, ``centroid_drift``, ...). A spec declares rules per job::

    [jobs.dkm.health]
    degenerate_if = ["nonempty_clusters < n_clusters / 2"]

A rule is a small arithmetic comparison over those names, the run's parameters and ``n_clusters`` (the K
given to the run);
it is parsed once (a typo is an error at spec load) and evaluated per stored output. A seed is
*degenerate* when any rule holds; a rule whose signal the record lacks (a run stored before the
signal existed) is *unknown*, never degenerate. Claims drop degenerate seeds (see :mod:`dcrepro.claims`).
"""
from __future__ import annotations

import ast
import operator
from dataclasses import dataclass

import numpy as np

__all__ = ["Rule", "parse_rule", "check_health", "cluster_health", "n_clusters_of"]

_BIN = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}
_CMP = {ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge,
        ast.Eq: operator.eq, ast.NotEq: operator.ne}


class _Missing(Exception):
    pass


@dataclass(frozen=True)
class Rule:
    """One parsed ``degenerate_if`` expression."""

    text: str
    tree: ast.Expression
    names: frozenset[str]

    def holds(self, values: dict[str, float]) -> bool | None:
        """True/False, or None when a signal the rule needs is absent."""
        try:
            return bool(_eval(self.tree.body, values))
        except _Missing:
            return None


def parse_rule(text: str) -> Rule:
    """Parse ``text`` (e.g. ``"nonempty_clusters < n_clusters / 2"``); ValueError on anything but names,
    numbers, + - * /, comparisons, ``and``/``or``."""
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as e:
        raise ValueError(f"health rule {text!r}: {e.msg}") from None
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            names.add(node.id)
        elif not isinstance(node, (ast.Expression, ast.Compare, ast.BinOp, ast.BoolOp, ast.Constant, ast.Load,
                                   ast.UnaryOp, ast.USub, ast.And, ast.Or, *_BIN, *_CMP)):
            raise ValueError(f"health rule {text!r}: {type(node).__name__} not allowed (names, numbers, "
                             f"+ - * /, comparisons, and/or)")
    if not isinstance(tree.body, (ast.Compare, ast.BoolOp)):
        raise ValueError(f"health rule {text!r} is not a comparison")
    return Rule(text, tree, frozenset(names))


def _eval(node, values):
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        if node.id not in values or values[node.id] is None:
            raise _Missing(node.id)
        return values[node.id]
    if isinstance(node, ast.UnaryOp):
        return -_eval(node.operand, values)
    if isinstance(node, ast.BinOp):
        return _BIN[type(node.op)](_eval(node.left, values), _eval(node.right, values))
    if isinstance(node, ast.BoolOp):
        parts = [_eval(v, values) for v in node.values]
        return all(parts) if isinstance(node.op, ast.And) else any(parts)
    left = _eval(node.left, values)
    for op, right in zip(node.ops, node.comparators):
        r = _eval(right, values)
        if not _CMP[type(op)](left, r):
            return False
        left = r
    return True


def check_health(rules: tuple[Rule, ...], metrics: dict[str, float], n_clusters: int | None,
                 params: dict | None = None) -> tuple[str, list[str]]:
    """('degenerate' | 'ok' | 'unknown', the rules that held) for one output of one run. A rule may name the
    run's parameters too (``pu_negative_branch == 'defit' and defit_share > 0.9``); signals win a name clash."""
    if not rules:
        return "ok", []
    scalars = {k: v for k, v in (params or {}).items() if isinstance(v, (int, float, str, bool))}
    values = scalars | dict(metrics) | ({"n_clusters": n_clusters} if n_clusters else {})
    if "nonempty_clusters" not in values and "n_clusters_pred" in values:  # records older than the signal:
        values["nonempty_clusters"] = values["n_clusters_pred"]  # the same count (distinct predicted labels)
    held, unknown = [], False
    for r in rules:
        h = r.holds(values)
        if h is None:
            unknown = True
        elif h:
            held.append(r.text)
    if held:
        return "degenerate", held
    return ("unknown" if unknown else "ok"), []


def cluster_health(labels) -> dict[str, float]:
    """Signals every labelled output gets: ``nonempty_clusters`` (distinct labels) and
    ``min_cluster_share`` (the smallest non-empty cluster's share of the samples)."""
    _, counts = np.unique(np.asarray(labels), return_counts=True)
    if not len(counts):
        return {"nonempty_clusters": 0.0, "min_cluster_share": 0.0}
    return {"nonempty_clusters": float(len(counts)), "min_cluster_share": float(counts.min() / counts.sum())}


def n_clusters_of(cfg) -> int | None:
    """K a run was given (the ``n_clusters`` of rules): the config's ``n_clusters``, else the data set's
    number of classes; None for a name the data registry does not know (rules needing K stay unknown)."""
    if cfg.n_clusters:
        return int(cfg.n_clusters)
    try:
        from .data.catalog import REGISTRY

        return int(REGISTRY[cfg.dataset.partition("@")[0]].n_classes)
    except KeyError:
        return None


def params_of(cfg) -> dict:
    """The parameters a run ran with, as rules see them: the method's parameter defaults (its registered params
    class) overlaid with the config's resolved parameters, so a rule may name a parameter the spec leaves at
    the method's default (``pu_negative_branch`` of a job that does not set it)."""
    import dataclasses

    from .methods import method_params

    defaults = {}
    try:
        cls = method_params(cfg.method)
    except (KeyError, ValueError):
        cls = None
    if cls is not None and dataclasses.is_dataclass(cls):
        defaults = {f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING}
    return defaults | dict(cfg.params)

