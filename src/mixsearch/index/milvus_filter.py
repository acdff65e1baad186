"""Filters as Milvus boolean expressions: ``Filter.modality`` and ``Filter.where`` (SQL) translated.

``where`` is parsed and checked as the local store does (``where.parse_condition``: sqlglot, DuckDB's
dialect, the same allow-list) and rewritten into Milvus's expression language. SQL keeps a row only
where the condition is TRUE, with NULL (a missing value) neither true nor false; Milvus's ``not`` and
``not in`` treat a null as false and so would keep it (``NOT (year IN (2020))`` on a row without a
year). The translation therefore pushes every NOT down to the comparisons (``NOT year > 5`` ->
``year <= 5``) and guards the negations Milvus gets wrong with ``is not null``, so both engines keep
the same rows.

A Milvus server older than 2.5 has no nullable fields: there the index stores a null as a stand-in
value beside a boolean *null flag* field (``null_flags``: field -> its flag), and the translation
reads ``year IS NULL`` as ``year__null == true`` and guards every comparison of ``year`` with
``year__null == false``, which is SQL's rule that a comparison with NULL is never true.

Translated: comparisons (``= <> != < <= > >=``), AND, OR, NOT, [NOT] IN (a list of literals),
[NOT] BETWEEN, [NOT] LIKE, IS [NOT] NULL, IS [NOT] TRUE/FALSE, a bare boolean column, string,
number and boolean literals. What the filter language allows beyond that (its functions,
arithmetic, ILIKE, LIKE ... ESCAPE) is a ``UsageError`` naming the construct, and what it refuses
(subqueries, DuckDB's other functions...) is refused as the local store refuses it; a field the
index does not keep is one naming the field.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping

from ..errors import UsageError

#: SQL comparison (sqlglot class name) -> (Milvus operator, the operator of its negation).
_COMPARISONS = {
    "EQ": ("==", "!="),
    "NEQ": ("!=", "=="),
    "GT": (">", "<="),
    "GTE": (">=", "<"),
    "LT": ("<", ">="),
    "LTE": ("<=", ">"),
}
#: The same with the sides swapped (``5 < year`` -> ``year > 5``).
_MIRRORED = {"==": "==", "!=": "!=", ">": "<", ">=": "<=", "<": ">", "<=": ">="}


def modality_expression(modalities: Iterable[str]) -> str:
    """``modality in ["image", "text"]``."""
    return f"modality in {_list(sorted(modalities))}"


def where_to_milvus(where: str, fields: Collection[str], null_flags: Mapping[str, str] | None = None) -> str:
    """The Milvus boolean expression keeping the rows the SQL condition ``where`` keeps.

    ``fields``: the names the index keeps (a name outside them is a ``UsageError``); ``null_flags``:
    the boolean field that marks each field's nulls, on a collection without nullable fields.
    """
    from .where import parse_condition

    # the local check's parser and allow-list first: both engines refuse the same conditions in
    # the same words; what passes but Milvus cannot express (functions, arithmetic) is refused below
    tree = parse_condition(where, f"the index keeps {', '.join(sorted(fields))}")
    try:
        return _Translator(str(where), fields, null_flags).true(tree)
    except RecursionError:
        raise UsageError(f"where {where!r} is nested too deeply to translate to a Milvus filter") from None


class _Translator:
    """Two mutually recursive views of a condition: where it is TRUE, and where it is FALSE."""

    def __init__(self, where: str, fields: Collection[str], null_flags: Mapping[str, str] | None = None):
        self.where = where
        self.fields = set(fields)
        self.flags = dict(null_flags or {})

    def is_null(self, column: str) -> str:
        flag = self.flags.get(column)
        return f"{flag} == true" if flag else f"{column} is null"

    def not_null(self, column: str) -> str:
        flag = self.flags.get(column)
        return f"{flag} == false" if flag else f"{column} is not null"

    def known(self, expression: str, *columns: str) -> str:
        """``expression`` only where its columns hold values: what Milvus's nullable fields do by
        themselves, and a null flag has to say (its stand-in value would otherwise be compared)."""
        guards = [f"{self.flags[c]} == false" for c in dict.fromkeys(columns) if c in self.flags]
        return f"({' and '.join([*guards, expression])})" if guards else expression

    def fail(self, node, why: str = "cannot be translated to a Milvus filter") -> UsageError:
        return UsageError(f"where {self.where!r}: {node.sql(dialect='duckdb')!r} ({type(node).__name__}) {why}")

    def true(self, node) -> str:
        """Milvus expression for the rows where ``node`` is TRUE."""
        from sqlglot import exp

        if isinstance(node, exp.Paren):
            return self.true(node.this)
        if isinstance(node, exp.And):
            return f"({self.true(node.this)} and {self.true(node.expression)})"
        if isinstance(node, exp.Or):
            return f"({self.true(node.this)} or {self.true(node.expression)})"
        if isinstance(node, exp.Not):
            return self.false(node.this)
        return self.atom(node, negate=False)

    def false(self, node) -> str:
        """Milvus expression for the rows where ``node`` is FALSE (not NULL)."""
        from sqlglot import exp

        if isinstance(node, exp.Paren):
            return self.false(node.this)
        if isinstance(node, exp.And):
            return f"({self.false(node.this)} or {self.false(node.expression)})"
        if isinstance(node, exp.Or):
            return f"({self.false(node.this)} and {self.false(node.expression)})"
        if isinstance(node, exp.Not):
            return self.true(node.this)
        return self.atom(node, negate=True)

    def atom(self, node, negate: bool) -> str:
        from sqlglot import exp

        kind = type(node).__name__
        if kind in _COMPARISONS:
            return self.comparison(node, _COMPARISONS[kind][negate])
        if isinstance(node, exp.In):
            if node.args.get("query") is not None or node.args.get("unnest") is not None:
                raise self.fail(node, "(a subquery) cannot be translated to a Milvus filter")
            column = self.column(node.this)
            values = _list([self.literal(v, node) for v in node.expressions])
            if negate:
                return f"({self.not_null(column)} and {column} not in {values})"
            return self.known(f"{column} in {values}", column)
        if isinstance(node, exp.Between):
            column = self.column(node.this)
            low, high = self.literal(node.args["low"], node), self.literal(node.args["high"], node)
            if negate:
                return self.known(f"({column} < {_value(low)} or {column} > {_value(high)})", column)
            return self.known(f"({column} >= {_value(low)} and {column} <= {_value(high)})", column)
        if isinstance(node, exp.Like):
            if node.args.get("escape") is not None:
                raise self.fail(node, "(LIKE ... ESCAPE) cannot be translated to a Milvus filter")
            column, pattern = self.column(node.this), self.literal(node.expression, node)
            if not isinstance(pattern, str):
                raise self.fail(node, "needs a text pattern")
            negate ^= bool(node.args.get("negate"))
            like = f"{column} like {_value(pattern)}"
            return f"({self.not_null(column)} and not ({like}))" if negate else self.known(like, column)
        if isinstance(node, exp.Escape) and isinstance(node.this, exp.Like):
            raise self.fail(node, "(LIKE ... ESCAPE) cannot be translated to a Milvus filter")
        if isinstance(node, exp.Is):
            column = self.column(node.this)
            if isinstance(node.expression, exp.Null):
                return self.not_null(column) if negate else self.is_null(column)
            if isinstance(node.expression, exp.Boolean):
                value = _value(bool(node.expression.this))
                # IS TRUE is never NULL: its negation holds where the value is the other one or null
                if negate:
                    return f"({self.is_null(column)} or {column} != {value})"
                return self.known(f"{column} == {value}", column)
            raise self.fail(node)
        if isinstance(node, exp.Column):  # a boolean column on its own: WHERE flag
            column = self.column(node)
            return self.known(f"{column} == {_value(not negate)}", column)
        if isinstance(node, exp.Boolean):
            return _value(bool(node.this) != negate)
        raise self.fail(node)

    def comparison(self, node, op: str) -> str:
        from sqlglot import exp

        left, right = node.this, node.expression
        if isinstance(left, exp.Null) or isinstance(right, exp.Null):
            raise self.fail(node, "compares with NULL, which is never true in SQL: use IS NULL / IS NOT NULL")
        if isinstance(left, exp.Column) and isinstance(right, exp.Column):
            a, b = self.column(left), self.column(right)
            return self.known(f"{a} {op} {b}", a, b)
        if isinstance(left, exp.Column):
            a = self.column(left)
            return self.known(f"{a} {op} {_value(self.literal(right, node))}", a)
        if isinstance(right, exp.Column):
            b = self.column(right)
            return self.known(f"{b} {_MIRRORED[op]} {_value(self.literal(left, node))}", b)
        for side in (left, right):  # a field inside a function or arithmetic: name that part
            if side.find(exp.Column) is not None:
                raise self.fail(side)
        raise self.fail(node, "compares no field of the index")

    def column(self, node) -> str:
        from sqlglot import exp

        if not isinstance(node, exp.Column) or node.table:
            raise self.fail(node, "is not a field name (only fields are compared with values)")
        name = node.name
        if name not in self.fields:
            raise UsageError(
                f"where {self.where!r}: unknown field {name!r}; the index keeps {', '.join(sorted(self.fields))}"
            )
        return name

    def literal(self, node, context) -> object:
        """A Python value (str, int, float, bool) from a literal (or a negated number)."""
        from sqlglot import exp

        if isinstance(node, exp.Paren):
            return self.literal(node.this, context)
        if isinstance(node, exp.Neg):
            value = self.literal(node.this, context)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return -value
        elif isinstance(node, exp.Boolean):
            return bool(node.this)
        elif isinstance(node, exp.Literal):
            if node.is_string:
                return str(node.this)
            text = str(node.this)
            try:
                return int(text)
            except ValueError:
                return float(text)
        elif isinstance(node, exp.Null):
            raise self.fail(context, "uses NULL as a value: use IS NULL / IS NOT NULL")
        raise self.fail(node, "is not a literal (text, number or boolean)")


def _value(value: object) -> str:
    """A Python literal as Milvus writes it (strings JSON-quoted: Milvus reads the same escapes)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(value, ensure_ascii=False)


def _list(values: Iterable[object]) -> str:
    return "[" + ", ".join(_value(v) for v in values) + "]"
