"""Query results as text or files: table, CSV, JSON, Parquet."""

from __future__ import annotations

import datetime as dt
import json
from typing import IO, TYPE_CHECKING, Any

from mirror.errors import UsageError

if TYPE_CHECKING:
    import pyarrow as pa

FORMATS = ("table", "csv", "json", "parquet")


def _json_default(value: Any) -> Any:
    if isinstance(value, dt.date | dt.datetime | dt.time):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def to_json(table: pa.Table) -> bytes:
    """A JSON array of row objects (dates as ISO text)."""
    return (json.dumps(table.to_pylist(), default=_json_default, indent=1) + "\n").encode()


def to_csv(table: pa.Table) -> bytes:
    import pyarrow as pa
    import pyarrow.csv as pcsv

    # CSV has no lists: render list columns as JSON text so the file stays one row per line.
    for i, field in enumerate(table.schema):
        if pa.types.is_list(field.type) or pa.types.is_struct(field.type):
            text = [None if v is None else json.dumps(v, default=_json_default)
                    for v in table.column(i).to_pylist()]
            table = table.set_column(i, field.name, pa.array(text, pa.string()))
    sink = pa.BufferOutputStream()
    pcsv.write_csv(table, sink)
    return bytes(sink.getvalue().to_pybytes())


def write_result(table: pa.Table, fmt: str, stream: IO[bytes]) -> None:
    """Write ``table`` in ``fmt`` (csv, json, parquet) to a binary stream."""
    if fmt == "csv":
        stream.write(to_csv(table))
    elif fmt == "json":
        stream.write(to_json(table))
    elif fmt == "parquet":
        import pyarrow.parquet as pq

        pq.write_table(table, stream, compression="zstd")
    else:
        raise UsageError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")


def text_cells(table: pa.Table, limit: int) -> tuple[list[str], list[list[str]]]:
    """Column names and up to ``limit`` rows of display text (for the terminal table)."""
    rows = table.slice(0, limit).to_pylist()
    names = table.column_names
    cells = [["" if r[n] is None else _cell(r[n]) for n in names] for r in rows]
    return names, cells


def _cell(value: Any) -> str:
    if isinstance(value, list | dict):
        return json.dumps(value, default=_json_default)
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)
