"""SQL ``WHERE`` filters over document fields: checked with sqlglot, evaluated by DuckDB over an
Arrow table of the fields (no parser of our own).

The condition comes from users and web requests, so it is held to one boolean expression over
the known fields: no ``;``, no subqueries, no table functions, and DuckDB runs with external
access disabled and its configuration locked (a condition cannot read or write files).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np

from ..errors import FieldError, UsageError, VectorIndexError


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
            "lock_configuration": True,  # last: nothing above can be switched back on from SQL
        },
    )


def check_where(where: object, schema) -> str:
    """The condition ``where`` checked against the fields' Arrow ``schema`` and rewritten by
    sqlglot (comments dropped); a ``UsageError`` naming the problem and listing the known fields
    (with their types) otherwise. Nothing is searched or encoded before this passes."""
    import sqlglot
    from sqlglot import exp

    if not isinstance(where, str) or not where.strip():
        raise UsageError(f"where must be a non-empty SQL condition, got {where!r}")
    known = f"known fields: {describe(schema)}"
    try:
        statements = sqlglot.parse(f"SELECT * FROM t WHERE {where}", read="duckdb")
    except sqlglot.errors.SqlglotError as err:
        raise UsageError(f"where {where!r} is not a valid SQL condition ({_first_line(err)}); {known}") from None
    select = statements[0] if len(statements) == 1 else None
    if not isinstance(select, exp.Select) or set(k for k, v in select.args.items() if v) != {
        "expressions",
        "from_",
        "where",
    }:
        raise UsageError(f"where {where!r} must be one SQL condition (no ';', no ORDER BY, LIMIT ...); {known}")
    condition = select.args["where"].this
    for node in condition.walk():
        if isinstance(node, (exp.Query, exp.Subquery, exp.Table, exp.Star, exp.Placeholder, exp.Parameter)):
            raise UsageError(f"where {where!r} may not hold a subquery, table or parameter; {known}")
    types = {f.name: f.type for f in schema}
    for column in condition.find_all(exp.Column):
        if column.table or column.name not in types:
            raise UsageError(f"where {where!r}: unknown field {column.sql()!r}; {known}")
    _check_literal_types(where, condition, types, known)
    sql = condition.sql(dialect="duckdb")
    import duckdb

    con = _connect()
    try:
        con.register("t", _one_null_row(schema))
        kind = con.execute(f"DESCRIBE SELECT ({sql}) AS keep FROM t").fetchall()[0][1]
        con.sql(f"SELECT ({sql}) AS keep FROM t").fetchall()  # constants that cannot be cast fail here
    except duckdb.Error as err:
        raise UsageError(f"where {where!r}: {_first_line(err)}; {known}") from None
    finally:
        con.close()
    if kind != "BOOLEAN":
        raise UsageError(f"where {where!r} is a {kind}, not a condition (true or false for each document); {known}")
    return sql


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


def where_mask(sql: str, table) -> np.ndarray:
    """The rows of ``table`` (Arrow) for which the checked condition ``sql`` is true (null: false)."""
    import pyarrow.compute as pc

    con = _connect()
    try:
        con.register("t", table)
        keep = con.sql(f"SELECT ({sql}) AS keep FROM t").to_arrow_table()["keep"]
    finally:
        con.close()
    return np.asarray(pc.fill_null(keep, False).to_numpy(zero_copy_only=False), dtype=bool)


def _first_line(err: Exception) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
