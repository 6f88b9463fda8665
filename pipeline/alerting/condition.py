"""Rule conditions: a small expression language compiled to vectorised NumPy, never run as Python.

Grammar (parsed with ``ast``, every other node refused): comparisons ``>= > <= < == !=``
(chains such as ``10 <= calls < 100`` too), ``and``, ``or``, ``not``, parentheses, numbers
(``-`` allowed in front of one), and names. A name is a column of the subject (for accounts
every numeric ``signatures_1m`` column, for clusters ``rules.CLUSTER_NAMES``), ``signal.<name>``
(that signal's points in the frame, 0 to its weight), or one of the rule's ``params``
(a number, substituted at compile time). Comparisons take numbers; ``and``/``or``/``not``
take comparisons. A compiled ``Condition`` maps a dict of float64 columns (one entry per
name in ``Condition.columns``) to a boolean array, one value per row.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass

import numpy as np

MAX_CONDITION_CHARS = 2000
MAX_DEPTH = 32
SIGNAL_PREFIX = "signal."

Columns = Mapping[str, np.ndarray]
_Fn = Callable[[Columns, int], "np.ndarray | float"]

_COMPARE = {ast.GtE: operator.ge, ast.Gt: operator.gt, ast.LtE: operator.le, ast.Lt: operator.lt,
            ast.Eq: operator.eq, ast.NotEq: operator.ne}
_SYMBOL = {ast.GtE: ">=", ast.Gt: ">", ast.LtE: "<=", ast.Lt: "<", ast.Eq: "==", ast.NotEq: "!="}


class ConditionError(ValueError):
    """The condition is not in the language, or names something unknown; the message says what."""


@dataclass(frozen=True)
class Condition:
    text: str
    columns: tuple[str, ...]  # names of the columns it reads (``score``, ``signal.x`` …)
    _fn: _Fn

    def __call__(self, columns: Columns, n: int | None = None) -> np.ndarray:
        """Boolean array over the rows of ``columns`` (``n`` rows; needed only when no column is read)."""
        rows = n if n is not None else (len(next(iter(columns.values()))) if columns else 0)
        out = self._fn(columns, rows)
        return np.broadcast_to(np.asarray(out, bool), (rows,)) if np.ndim(out) == 0 else out  # type: ignore[return-value]


def compile_condition(text: str, names: Collection[str], *, signals: Collection[str] | None = None,
                      params: Mapping[str, float] | None = None) -> Condition:
    """Compile ``text``; raises ConditionError naming the unknown name or refused construct.

    ``names``: the subject's columns; ``signals``: known signal names (None: no ``signal.*``
    allowed); ``params``: constants the condition may name.
    """
    if len(text) > MAX_CONDITION_CHARS:
        raise ConditionError(f"longer than {MAX_CONDITION_CHARS} characters")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise ConditionError(f"invalid syntax at column {exc.offset}: {text!r}") from None
    compiler = _Compiler(frozenset(names), None if signals is None else frozenset(signals), dict(params or {}))
    kind, fn = compiler.node(tree.body, 0)
    if kind != "bool":
        raise ConditionError(f"{text!r} is a number, not a condition: compare it (e.g. score >= 70)")
    return Condition(text, tuple(sorted(compiler.used)), fn)


class _Compiler:
    def __init__(self, names: frozenset[str], signals: frozenset[str] | None, params: dict[str, float]) -> None:
        self.names, self.signals, self.params = names, signals, params
        self.used: set[str] = set()

    def node(self, node: ast.expr, depth: int) -> tuple[str, _Fn]:
        if depth > MAX_DEPTH:
            raise ConditionError(f"nested deeper than {MAX_DEPTH} levels")
        d = depth + 1
        if isinstance(node, ast.BoolOp):
            parts = [self._bool(v, d) for v in node.values]
            combine = np.logical_and if isinstance(node.op, ast.And) else np.logical_or
            return "bool", lambda c, n: _reduce(combine, [p(c, n) for p in parts])
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            inner = self._bool(node.operand, d)
            return "bool", lambda c, n: np.logical_not(inner(c, n))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and _is_number(node.operand):
            value = -float(node.operand.value)  # type: ignore[attr-defined]
            return "num", lambda c, n: value
        if isinstance(node, ast.Compare):
            return "bool", self._compare(node, d)
        if isinstance(node, ast.Constant):
            if not _is_number(node):
                raise ConditionError(f"only numbers are allowed as constants, not {node.value!r}")
            value = float(node.value)  # type: ignore[arg-type]  # _is_number: an int or a float
            return "num", lambda c, n: value
        if isinstance(node, ast.Name):
            return "num", self._name(node.id)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "signal":
            return "num", self._signal(node.attr)
        raise ConditionError(f"{ast.unparse(node)!r} is not allowed: use comparisons (>= > <= < == !=), "
                             "and, or, not, parentheses, numbers and names")

    def _bool(self, node: ast.expr, depth: int) -> _Fn:
        kind, fn = self.node(node, depth)
        if kind != "bool":
            raise ConditionError(f"{ast.unparse(node)!r} is a number where a condition is expected")
        return fn

    def _num(self, node: ast.expr, depth: int) -> _Fn:
        kind, fn = self.node(node, depth)
        if kind != "num":
            raise ConditionError(f"{ast.unparse(node)!r} is a condition where a number is expected")
        return fn

    def _compare(self, node: ast.Compare, depth: int) -> _Fn:
        ops = []
        for op in node.ops:
            if type(op) not in _COMPARE:
                raise ConditionError(f"operator {type(op).__name__} is not allowed; use one of "
                                     f"{' '.join(_SYMBOL.values())}")
            ops.append(_COMPARE[type(op)])
        operands = [self._num(node.left, depth)] + [self._num(c, depth) for c in node.comparators]

        def compare(c: Columns, n: int) -> np.ndarray | float:
            values = [f(c, n) for f in operands]
            return _reduce(np.logical_and, [op(values[i], values[i + 1]) for i, op in enumerate(ops)])

        return compare

    def _name(self, name: str) -> _Fn:
        if name in self.params:
            value = float(self.params[name])
            return lambda c, n: value
        if name not in self.names:
            known = sorted(self.names | set(self.params))
            raise ConditionError(f"unknown name {name!r}; known: {', '.join(known)}"
                                 + (", signal.<name>" if self.signals is not None else ""))
        self.used.add(name)
        return lambda c, n: c[name]

    def _signal(self, signal: str) -> _Fn:
        if self.signals is None:
            raise ConditionError(f"signal.{signal}: signals are not available to this subject")
        if signal not in self.signals:
            raise ConditionError(f"unknown signal {signal!r}; known: {', '.join(sorted(self.signals))}")
        key = SIGNAL_PREFIX + signal
        self.used.add(key)
        return lambda c, n: c[key]


def _is_number(node: ast.expr) -> bool:
    return (isinstance(node, ast.Constant) and isinstance(node.value, int | float)
            and not isinstance(node.value, bool))


def _reduce(combine: Callable[..., np.ndarray], values: list[np.ndarray | float]) -> np.ndarray | float:
    out = values[0]
    for v in values[1:]:
        out = combine(out, v)
    return out
