"""SQL ``WHERE`` filters over document fields: checked with sqlglot, evaluated by DuckDB over an
Arrow table of the fields (no parser of our own).

The condition comes from users and web requests, so it is held to what a filter needs: one boolean
expression over the known fields built only from the nodes in ``ALLOWED`` and the functions in
``FUNCTIONS`` (comparisons, IN a list of constants, BETWEEN, LIKE, IS NULL, AND/OR/NOT,
arithmetic, a few pure functions). Anything else (DuckDB's other functions: ``sleep_ms``,
``range``, ``read_text``...; subqueries, casts, lists) is refused before anything runs. DuckDB then
evaluates it with external access disabled and its configuration locked, one thread, a memory limit
(``MEMORY_LIMIT``) and a time limit (``$MIXSEARCH_WHERE_TIMEOUT``, default 2 s); every failure,
the time limit included, is a ``UsageError`` listing the fields and their types.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Iterator, Mapping

import numpy as np

from ..errors import FieldError, UsageError, VectorIndexError

#: Environment variable: the most seconds a filter may take to evaluate (default ``DEFAULT_TIMEOUT_S``).
TIMEOUT_ENV = "MIXSEARCH_WHERE_TIMEOUT"
DEFAULT_TIMEOUT_S = 2.0
#: DuckDB's memory limit while evaluating a filter (the fields are read in place from Arrow).
MEMORY_LIMIT = "256MB"

#: sqlglot node types a condition may hold besides the functions (class names of ``sqlglot.exp``).
ALLOWED = frozenset(
    {
        "Column", "Identifier", "Literal", "Boolean", "Null", "Paren",
        "And", "Or", "Not",
        "EQ", "NEQ", "GT", "GTE", "LT", "LTE",
        "Between", "In", "Like", "ILike", "Escape", "Is",
        "Add", "Sub", "Mul", "Div", "Mod", "Neg",
    }
)  # fmt: skip
#: The functions a condition may call, by sqlglot class -> the name users write. All are pure and
#: take time linear in their arguments (none builds lists, sleeps or reads anything).
FUNCTIONS = {
    "Lower": "lower",
    "Upper": "upper",
    "Length": "length",
    "Trim": "trim",
    "StartsWith": "starts_with",
    "EndsWith": "ends_with",
    "Contains": "contains",
    "Abs": "abs",
    "Round": "round",
    "Floor": "floor",
    "Ceil": "ceil",
    "Coalesce": "coalesce",
    "Nullif": "nullif",
    "Greatest": "greatest",
    "Least": "least",
}
#: What a message lists as allowed.
LANGUAGE = (
    "comparisons (= <> != < <= > >=), [NOT] IN (constants), [NOT] BETWEEN, [NOT] LIKE / ILIKE, "
    "IS [NOT] NULL / TRUE / FALSE, AND, OR, NOT, + - * / %, and the functions "
    + ", ".join(sorted(set(FUNCTIONS.values())))
)


class FieldTable(Mapping):
    """Per-row fields held as one Arrow table; ``table[name]`` gives a column as numpy (cached)."""

    def __init__(self, table):
        self.arrow = table
        self._numpy: dict[str, np.ndarray] = {}

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self._numpy:
            if name not in self.arrow.column_names:
                raise FieldError(name)
            self._numpy[name] = np.asarray(self.arrow[name].to_pylist(), dtype=object)
        return self._numpy[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.arrow.column_names)

    def __len__(self) -> int:
        return len(self.arrow.column_names)


def checked_table(fields: Mapping[str, object], n: int, where: str):
    """``fields`` as an Arrow table of ``n`` rows (what an index keeps to filter on), every field
    checked to hold ``n`` values; ``where`` names the index in the error."""
    if isinstance(fields, FieldTable):
        if fields.arrow.num_rows != n:
            raise VectorIndexError(f"{where}: fields for {fields.arrow.num_rows} rows, {n} ids")
        return fields.arrow
    for name, values in fields.items():
        if len(values) != n:  # type: ignore[arg-type]
            raise VectorIndexError(f"{where}: field {name!r} has {len(values)} values for {n} ids")  # type: ignore[arg-type]
    return arrow_table(fields, n)


def arrow_table(fields: Mapping[str, object], n: int):
    """The fields as an Arrow table of ``n`` rows (no copy for a ``FieldTable``)."""
    import pyarrow as pa

    if isinstance(fields, FieldTable):
        return fields.arrow
    if not fields:
        return pa.table({"_rows": pa.nulls(n, pa.int8())})
    return pa.table(
        {
            name: values if isinstance(values, (pa.Array, pa.ChunkedArray)) else pa.array(np.asarray(values).tolist())
            for name, values in fields.items()
        }
    )


def describe(schema) -> str:
    """``name TYPE`` of each field, for error messages."""
    return ", ".join(f"{f.name} {sql_type(f.type)}" for f in schema if f.name != "_rows")


def sql_type(arrow_type) -> str:
    """The SQL type name of an Arrow type, as ``where`` conditions and error messages show it."""
    import pyarrow as pa

    for test, name in (
        (pa.types.is_boolean, "BOOLEAN"),
        (pa.types.is_integer, "BIGINT"),
        (pa.types.is_floating, "DOUBLE"),
        (pa.types.is_string, "VARCHAR"),
        (pa.types.is_large_string, "VARCHAR"),
        (pa.types.is_timestamp, "TIMESTAMP"),
        (pa.types.is_date, "DATE"),
        (pa.types.is_null, "NULL"),
    ):
        if test(arrow_type):
            return name
    return str(arrow_type).upper()


def _connect():
    import duckdb

    return duckdb.connect(
        ":memory:",
        config={
            "enable_external_access": False,
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
            "threads": 1,
            "memory_limit": MEMORY_LIMIT,
            "lock_configuration": True,  # last: nothing above can be switched back on from SQL
        },
    )


def where_timeout() -> float:
    """The most seconds a filter may take: ``$MIXSEARCH_WHERE_TIMEOUT``, else 2."""
    raw = os.environ.get(TIMEOUT_ENV, "").strip()
    if not raw:
        return DEFAULT_TIMEOUT_S
    try:
        seconds = float(raw)
    except ValueError:
        seconds = math.nan
    if not (seconds > 0 and math.isfinite(seconds)):
        raise UsageError(f"{TIMEOUT_ENV} must be a positive number of seconds, got {raw!r}")
    return seconds


def parse_condition(where: object, known: str):
    """The sqlglot tree of the condition ``where`` once it is one condition made only of what a
    filter may hold (``ALLOWED``, ``FUNCTIONS``); a ``UsageError`` naming what is not and ending
    with ``known`` (the fields) otherwise. Fields are not checked here. Shared by the local check
    and the Milvus translation, so both accept the same language."""
    import sqlglot
    from sqlglot import exp

    if not isinstance(where, str) or not where.strip():
        raise UsageError(f"where must be a non-empty SQL condition, got {where!r}")
    try:
        statements = sqlglot.parse(f"SELECT * FROM t WHERE {where}", read="duckdb")
    except sqlglot.errors.SqlglotError as err:
        raise UsageError(f"where {where!r} is not a valid SQL condition ({_first_line(err)}); {known}") from None
    except RecursionError:
        raise UsageError(f"where {where!r} is nested too deeply; {known}") from None
    select = statements[0] if len(statements) == 1 else None
    if not isinstance(select, exp.Select) or set(k for k, v in select.args.items() if v) != {
        "expressions",
        "from_",
        "where",
    }:
        raise UsageError(f"where {where!r} must be one SQL condition (no ';', no ORDER BY, LIMIT ...); {known}")
    condition = select.args["where"].this
    nodes = list(condition.walk())
    for node in nodes:
        if isinstance(node, (exp.Query, exp.Subquery, exp.Table, exp.Star, exp.Placeholder, exp.Parameter)):
            raise UsageError(f"where {where!r} may not hold a subquery, table or parameter; {known}")
    for node in nodes:
        kind = type(node).__name__
        if kind in FUNCTIONS:
            continue
        if kind not in ALLOWED:
            raise UsageError(
                f"where {where!r}: {_construct(node)} is not allowed in a filter (allowed: {LANGUAGE}); {known}"
            )
        if isinstance(node, exp.In) and not all(_is_constant(v) for v in node.expressions):
            raise UsageError(f"where {where!r}: {_snippet(node)}: IN takes a list of constants; {known}")
        if isinstance(node, exp.In) and any(node.args.get(k) for k in ("query", "unnest", "field")):
            raise UsageError(f"where {where!r}: {_snippet(node)}: IN takes a list of constants; {known}")
        if isinstance(node, exp.Is) and not isinstance(node.expression, (exp.Null, exp.Boolean)):
            raise UsageError(f"where {where!r}: {_snippet(node)}: IS takes NULL, TRUE or FALSE; {known}")
        if isinstance(node, exp.Escape) and not (
            isinstance(node.this, (exp.Like, exp.ILike)) and _is_constant(node.expression)
        ):
            raise UsageError(f"where {where!r}: {_snippet(node)}: ESCAPE follows LIKE with a constant; {known}")
    return condition


def _is_constant(node) -> bool:
    from sqlglot import exp

    if isinstance(node, exp.Paren):
        return _is_constant(node.this)
    if isinstance(node, exp.Neg):
        return isinstance(node.this, exp.Literal) and not node.this.is_string
    return isinstance(node, (exp.Literal, exp.Boolean, exp.Null))


def _construct(node) -> str:
    """A refused node as a message names it: ``function sleep_ms``, ``CAST(year AS TEXT) (Cast)``."""
    from sqlglot import exp

    if isinstance(node, exp.Anonymous):
        return f"function {node.name.lower()}"
    if isinstance(node, exp.Func) and not isinstance(node, (exp.Cast, exp.Array, exp.Struct)):
        head = node.sql(dialect="duckdb").split("(")[0]  # DuckDB's name (range, not generate_series)
        return f"function {(head if head.isidentifier() else node.sql_name()).lower()}"
    return f"{_snippet(node)} ({type(node).__name__})"


def _snippet(node) -> str:
    sql = node.sql(dialect="duckdb")
    return repr(sql if len(sql) <= 80 else sql[:77] + "...")


def check_where(where: object, schema) -> str:
    """The condition ``where`` checked against the fields' Arrow ``schema`` and rewritten by
    sqlglot (comments dropped); a ``UsageError`` naming the problem and listing the known fields
    (with their types) otherwise. Nothing is searched or encoded before this passes."""
    from sqlglot import exp

    known = f"known fields: {describe(schema)}"
    condition = parse_condition(where, known)
    assert isinstance(where, str)
    types = {f.name: f.type for f in schema}
    for column in condition.find_all(exp.Column):
        if column.table or column.name not in types:
            raise UsageError(f"where {where!r}: unknown field {column.sql()!r}; {known}")
    _check_literal_types(where, condition, types, known)
    sql = condition.sql(dialect="duckdb")
    # the type on no rows, then one row of nulls: constants that cannot be cast fail here
    kind = _run(f"DESCRIBE SELECT ({sql}) AS keep FROM t", _one_null_row(schema), where).column(1)[0].as_py()
    _run(f"SELECT ({sql}) AS keep FROM t", _one_null_row(schema), where)
    if kind != "BOOLEAN":
        raise UsageError(f"where {where!r} is a {kind}, not a condition (true or false for each document); {known}")
    return sql


def _run(query: str, table, where: str):
    """``query`` over ``table`` (registered as ``t``) as an Arrow table, within the time limit;
    any DuckDB error, the time limit included, is a ``UsageError`` listing the fields."""
    import duckdb

    seconds = where_timeout()
    known = f"known fields: {describe(table.schema)}"
    con = _connect()
    timer = threading.Timer(seconds, con.interrupt)  # interrupt() is DuckDB's way to stop a query from outside
    timer.daemon = True
    try:
        con.register("t", table)
        timer.start()
        return con.sql(query).to_arrow_table()
    except duckdb.InterruptException:
        raise UsageError(
            f"where {where!r}: the filter took longer than {seconds:g} s over {table.num_rows} documents "
            f"(the limit is {TIMEOUT_ENV}); {known}"
        ) from None
    except duckdb.Error as err:
        raise UsageError(f"where {where!r}: {_first_line(err)}; {known}") from None
    finally:
        timer.cancel()
        con.close()


def _one_null_row(schema):
    import pyarrow as pa

    if not len(schema):
        return pa.table({"_rows": pa.nulls(1, pa.int8())})
    return pa.table({f.name: pa.nulls(1, f.type) for f in schema})


def _check_literal_types(where: str, condition, types: Mapping, known: str) -> None:
    """A field compared with a constant of another kind (``year = 'abc'``, ``source > 5``) is
    refused naming the field (DuckDB would cast, or fail only on some rows)."""
    import pyarrow as pa
    from sqlglot import exp

    comparisons = (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.In, exp.Between)
    for node in condition.find_all(*comparisons):
        operands = [node.this, *(node.expressions if isinstance(node, exp.In) else [])]
        operands += [node.args.get(k) for k in ("expression", "low", "high") if node.args.get(k) is not None]
        columns = [o for o in operands if isinstance(o, exp.Column)]
        literals = [o for o in operands if isinstance(o, exp.Literal)]
        for column in columns:
            kind = types[column.name]
            numeric = pa.types.is_integer(kind) or pa.types.is_floating(kind)
            for literal in literals:
                wrong = (numeric and literal.is_string and not _is_number(literal.this)) or (
                    (pa.types.is_string(kind) or pa.types.is_large_string(kind)) and not literal.is_string
                )
                if wrong:
                    given = "text" if literal.is_string else "a number"
                    raise UsageError(
                        f"where {where!r}: field {column.name!r} is {sql_type(kind)}, compared with {given} "
                        f"{literal.sql()}; {known}"
                    )


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def where_mask(sql: str, table, where: str | None = None) -> np.ndarray:
    """The rows of ``table`` (Arrow) for which the checked condition ``sql`` is true (null: false);
    ``where``: the condition as the user wrote it, for messages (default ``sql``). A failure at
    evaluation or past the time limit is a ``UsageError`` listing the fields."""
    import pyarrow.compute as pc

    keep = _run(f"SELECT ({sql}) AS keep FROM t", table, sql if where is None else where)["keep"]
    return np.asarray(pc.fill_null(keep, False).to_numpy(zero_copy_only=False), dtype=bool)


def _first_line(err: Exception) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
