"""Failure regions: which hyperparameter values produce each failure label, as readable rules.

For each failure label present, a shallow scikit-learn decision tree (one label vs the rest) is fit
on the trials' params; every leaf where that label is the majority becomes one rule, e.g.
``optimizer.lr > 0.42 → diverging (9 of 9 trials)``, with a concrete change to the search space.

Params are the sampled ones (the ``sweep.space`` tag) when known, else those that vary across
runs. Numeric params spanning more than two decades are split in log10 space (so a threshold is a
geometric midpoint between trials, as a log-uniform search space samples them); ``None``/``null``
(a feature turned off, e.g. no clipping) is a missing value that the tree routes to one side,
and the rule says "or off" when off goes with the failure; text params become ``name = value`` flags.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .verdict import ADVICE, OVERFIT, count_noun

_OFF = {"none", "null", "", "off", "nan"}


@dataclass(frozen=True)
class Condition:
    """One test on one param: ``op`` is ``>``, ``<=``, ``=`` or ``!=``; ``off`` says where unset values go."""

    param: str
    op: str
    value: float | str
    off: bool = False

    def __str__(self) -> str:
        if isinstance(self.value, float) and math.isinf(self.value):  # a split between set and unset
            return f"{self.param} is {'off' if self.off else 'on'}"
        v = _fmt(self.value) if isinstance(self.value, float) else self.value
        text = f"{self.param} {'≤' if self.op == '<=' else ('≠' if self.op == '!=' else self.op)} {v}"
        return f"{text} or off" if self.off else text

    def matches(self, row: dict[str, str]) -> bool:
        """Whether a trial's params satisfy this condition."""
        raw = row.get(self.param)
        if self.op in ("=", "!="):
            return (str(raw) == self.value) == (self.op == "=")
        v = _as_float(raw)
        if v is None or math.isnan(v):
            return self.off
        return v > float(self.value) if self.op == ">" else v <= float(self.value)


@dataclass(frozen=True)
class Rule:
    """``conditions → label (hits of support trials)``, plus what to change in the search space."""

    label: str
    conditions: tuple[Condition, ...]
    hits: int           # trials with this label that match the conditions
    support: int        # trials that match the conditions
    label_total: int    # trials with this label in the whole sweep
    suggestion: str
    also: tuple[Condition, ...] = ()  # single conditions that match exactly the same trials

    def __str__(self) -> str:
        parts, done = [], set()
        for c in self.conditions:
            other = next((d for d in self.conditions if d.param == c.param and {c.op, d.op} == {">", "<="}), None)
            if other is None:
                parts.append(str(c))
            elif c.param not in done:  # a band reads "a < X ≤ b"
                lo, hi = (c, other) if c.op == ">" else (other, c)
                parts.append(f"{_fmt(float(lo.value))} < {c.param} ≤ {_fmt(float(hi.value))}")
                done.add(c.param)
        cond = " and ".join(parts) or "the whole search space"
        if self.also:  # the trials cannot tell these apart: say so rather than pick one silently
            cond += f" (or {' or '.join(map(str, self.also))}: the same trials)"
        return f"{cond} → {self.label} ({self.hits} of {self.support} trials)"


def _fmt(x: float) -> str:
    return f"{x:.2g}" if (abs(x) < 1e-2 or abs(x) >= 1e4) and x != 0 else f"{x:.3g}"


def _as_float(v: str | None) -> float | None:
    if v is None or str(v).strip().lower() in _OFF:
        return None
    try:
        return float(v)
    except ValueError:
        return math.nan  # marks a text value


@dataclass
class _Feature:
    name: str           # column name shown in rules
    param: str
    kind: str           # "num", "log", "cat"
    category: str = ""


def choose_params(params: Sequence[dict[str, str]], space: str | None) -> list[str]:
    """The sampled params (``sweep.space``) if given, else every param whose value varies across runs."""
    if space:
        names = [p.strip() for p in space.split(",") if p.strip()]
        return [p for p in names if any(p in row for row in params)]
    keys = sorted({k for row in params for k in row})
    return [k for k in keys if len({row.get(k) for row in params}) > 1]


def numeric(raw: Sequence[str | None]) -> np.ndarray | None:
    """A param's values as floats (NaN where it is off), or None when it is categorical (any text, or all off)."""
    nums = [_as_float(v) for v in raw]
    if any(x is not None and math.isnan(x) for x in nums) or all(x is None for x in nums):
        return None
    return np.array([math.nan if x is None else x for x in nums], dtype=float)


def log_scaled(vals: np.ndarray) -> bool:
    """Positive values spanning more than two decades: read (and split) on a log scale."""
    finite = vals[np.isfinite(vals)]
    return bool(finite.size) and finite.min() > 0 and finite.max() / finite.min() > 100


def _design(params: Sequence[dict[str, str]], names: list[str]) -> tuple[np.ndarray, list[_Feature]]:
    cols, feats = [], []
    for name in names:
        raw = [row.get(name) for row in params]
        if (vals := numeric(raw)) is not None:
            log = log_scaled(vals)
            cols.append(np.log10(vals) if log else vals)
            feats.append(_Feature(name, name, "log" if log else "num"))
        else:
            for cat in sorted({str(v) for v in raw}):
                cols.append(np.array([1.0 if str(v) == cat else 0.0 for v in raw]))
                feats.append(_Feature(f"{name}={cat}", name, "cat", cat))
    return (np.column_stack(cols) if cols else np.zeros((len(params), 0))), feats


def _path_conditions(tree, feats: list[_Feature], has_nan: np.ndarray, leaf: int) -> list[Condition]:
    """The conditions on the path from the root to ``leaf``."""
    t = tree.tree_
    parent = {}
    for node in range(t.node_count):
        for child, side in ((t.children_left[node], "left"), (t.children_right[node], "right")):
            if child != -1:
                parent[child] = (node, side)
    conds: list[Condition] = []
    node = leaf
    while node in parent:
        up, side = parent[node]
        f = feats[t.feature[up]]
        thr = float(t.threshold[up])
        missing_left = bool(getattr(t, "missing_go_to_left", np.zeros(t.node_count, bool))[up])
        if f.kind == "cat":
            cats = [g.category for g in feats if g.param == f.param]
            if side == "right":
                conds.append(Condition(f.param, "=", f.category))
            elif len(cats) == 2:  # "≠ sgd" of two choices reads better as "= adam"
                conds.append(Condition(f.param, "=", next(c for c in cats if c != f.category)))
            else:
                conds.append(Condition(f.param, "!=", f.category))
        else:
            value = 10 ** thr if f.kind == "log" else thr
            off = bool(has_nan[t.feature[up]]) and (side == "left") == missing_left
            conds.append(Condition(f.param, "<=" if side == "left" else ">", value, off))
        node = up
    return _merge(conds[::-1])


def _merge(conds: list[Condition]) -> list[Condition]:
    """Keep the tightest bound per (param, direction); keep categorical tests as they are."""
    out: dict[tuple[str, str, str | float], Condition] = {}
    for c in conds:
        if c.op in ("=", "!="):
            out[(c.param, c.op, c.value)] = c
            continue
        key = (c.param, c.op, "")
        prev = out.get(key)
        if prev is None:
            out[key] = c
        else:
            tighter = max if c.op == ">" else min
            value = tighter(float(prev.value), float(c.value))
            out[key] = Condition(c.param, c.op, value, prev.off and c.off)
    return list(out.values())


def suggest(label: str, conds: Sequence[Condition], also: Sequence[Condition] = (),
            elsewhere: Sequence[str] = (), failure_labels: Sequence[str] = ()) -> str:
    """A concrete change to the search space that avoids the region, plus the label's general advice.

    ``elsewhere`` holds the labels of the trials outside the region: when all of them failed too, the
    change leads to no better trial, and the suggestion says so rather than send the user there. An
    overfit region is then the one to keep: its trials fitted the data, those outside did not."""
    fix = _change(conds)
    if also:
        fix += "".join(f", or {_change([c])}" for c in also) + " (these trials cannot tell which)"
    if elsewhere and all(lab in failure_labels for lab in elsewhere):
        counts = ", ".join(f"{elsewhere.count(lab)} {lab}" for lab in dict.fromkeys(elsewhere))
        others = f"the {count_noun(len(elsewhere), 'other trial')} failed too ({counts})"
        fix = f"keep this region, since {others}" if label == OVERFIT and conds else f"{fix}, though {others}"
    return f"{fix}; {ADVICE.get(label, '')}".rstrip("; ")


def _change(conds: Sequence[Condition]) -> str:
    """The change to the search space that avoids every trial matching ``conds``."""
    parts = []
    ops = {(c.param, c.op) for c in conds}
    for c in conds:
        v = _fmt(float(c.value)) if isinstance(c.value, float) else c.value
        if c.op in (">", "<=") and {(c.param, ">"), (c.param, "<=")} <= ops:  # a band: a < X ≤ b
            if c.op == ">":
                hi = next(d for d in conds if d.param == c.param and d.op == "<=")
                parts.append(f"avoid {c.param} between {v} and {_fmt(float(hi.value))}")
        elif isinstance(c.value, float) and math.isinf(c.value):
            parts.append(f"keep {c.param} on" if c.off else f"try {c.param} off")
        elif c.op == ">":
            parts.append(f"cap {c.param} below {v}" + (" and keep it on" if c.off else ""))
        elif c.op == "<=":
            parts.append(f"raise the lower bound of {c.param} above {v}" + (" and keep it on" if c.off else ""))
        elif c.op == "=":
            parts.append(f"drop {c.param}={v}")
        else:
            parts.append(f"keep {c.param}={v}")
    return " and ".join(parts) if parts else "every part of the search space has it: move or shrink the whole space"


def failure_rules(
    params: Sequence[dict[str, str]],
    labels: Sequence[str],
    failure_labels: Sequence[str],
    space: str | None = None,
    max_depth: int = 2,
) -> list[Rule]:
    """Rules for each failure label present: leaves of a shallow one-vs-rest tree where it is the majority."""
    from sklearn.tree import DecisionTreeClassifier

    n = len(labels)
    names = choose_params(params, space)
    if n < 4 or not names:
        return []
    x, feats = _design(params, names)
    if x.shape[1] == 0:
        return []
    has_nan = np.isnan(x).any(axis=0)
    y_all = np.asarray(labels)
    rules: list[Rule] = []
    seen: set[tuple[str, tuple[str, ...]]] = set()
    for label in failure_labels:
        y = (y_all == label).astype(int)
        total = int(y.sum())
        if total == 0:
            continue
        if total * 4 >= 3 * n and total >= 2:  # (nearly) every trial: the whole space is the region
            elsewhere = [str(lab) for lab in y_all[y == 0]]
            rules.append(Rule(label, (), total, n, total, suggest(label, (), (), elsewhere, failure_labels)))
        if total == n:
            continue
        tree = DecisionTreeClassifier(max_depth=max_depth, min_samples_leaf=max(1, min(3, total // 2)),
                                      random_state=0).fit(x, y)
        leaves = tree.apply(x)
        for leaf in np.unique(leaves):
            members = leaves == leaf
            hits, support = int(y[members].sum()), int(members.sum())
            if hits < 2 or hits * 2 <= support:  # one trial is an anecdote, not a region
                continue
            conds = _prune(_path_conditions(tree, feats, has_nan, int(leaf)), params, y)
            key = (label, tuple(str(c) for c in conds))
            if key in seen:
                continue
            seen.add(key)
            hits, support = _score(conds, params, y)
            if 2 * (total - hits) >= n - support:  # as common outside the region as in half of it: not a region
                continue
            also = _equivalents(conds, params, x, feats, has_nan)
            elsewhere = [str(lab) for lab in y_all[~_matching(conds, params)]]
            rules.append(Rule(label, tuple(conds), hits, support, total,
                              suggest(label, conds, also, elsewhere, failure_labels), also))
    rules.sort(key=lambda r: (-r.hits, r.support))
    return [r for r in rules if not any(_covers(o, r) for o in rules if o is not r)]


def _covers(general: Rule, specific: Rule) -> bool:
    """``general`` makes ``specific`` redundant: same label, a subset of its conditions, as many hits."""
    g, s = {str(c) for c in general.conditions}, {str(c) for c in specific.conditions}
    return general.label == specific.label and g < s and general.hits >= specific.hits


def _equivalents(conds: Sequence[Condition], params: Sequence[dict[str, str]], x: np.ndarray,
                 feats: list[_Feature], has_nan: np.ndarray, limit: int = 2) -> tuple[Condition, ...]:
    """Single conditions on other params that match exactly the trials ``conds`` match (at most one per
    param): with few trials, ``scheduler.name = cosine`` and ``optimizer.lr > 0.3`` can pick out the same two."""
    target = _matching(conds, params)
    used = {c.param for c in conds}
    found: dict[str, Condition] = {}
    for j, f in enumerate(feats):
        if f.param in used or f.param in found or len(found) >= limit:
            continue
        if f.kind == "cat":
            candidates = [Condition(f.param, "=", f.category)]
        else:
            v = np.unique(x[:, j][np.isfinite(x[:, j])])
            cuts = (v[:-1] + v[1:]) / 2  # midpoints, in log10 space for a log-scaled param
            offs = (False, True) if has_nan[j] else (False,)
            candidates = [Condition(f.param, op, float(10 ** t if f.kind == "log" else t), off)
                          for t in cuts for op in (">", "<=") for off in offs]
        hit = next((c for c in candidates if np.array_equal(_matching([c], params), target)), None)
        if hit is not None:
            found[f.param] = hit
    return tuple(found.values())


def _matching(conds: Sequence[Condition], params: Sequence[dict[str, str]]) -> np.ndarray:
    """Which trials satisfy every condition."""
    return np.array([all(c.matches(row) for c in conds) for row in params], dtype=bool)


def _score(conds: Sequence[Condition], params: Sequence[dict[str, str]], y: np.ndarray) -> tuple[int, int]:
    """(trials with the label, trials) matching every condition."""
    m = _matching(conds, params)
    return int(y[m].sum()), int(m.sum())


def _prune(conds: list[Condition], params: Sequence[dict[str, str]], y: np.ndarray) -> list[Condition]:
    """Drop conditions that do not make the rule purer (a depth-2 tree adds a second split even when
    the first one already isolates the label)."""
    conds = list(conds)
    for c in list(conds):
        if len(conds) == 1:
            break
        hits, support = _score(conds, params, y)
        rest = [d for d in conds if d is not c]
        h2, s2 = _score(rest, params, y)
        if s2 and h2 >= hits and h2 * support >= hits * s2:  # same or better precision, no fewer hits
            conds = rest
    return conds
