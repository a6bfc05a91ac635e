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


# A terminal column narrower than this shows "2…" for a UID and helps nobody: below it the
# result is printed one record per block, as DuckDB's CLI and psql's \x do.
MIN_READABLE = 10


def natural_widths(names: list[str], cells: list[list[str]]) -> list[int]:
    """The width each column's longest text (or name) takes."""
    return [max([len(name), *(len(row[i]) for row in cells)]) for i, name in enumerate(names)]


def readable_widths(names: list[str], cells: list[list[str]]) -> list[int]:
    """The width each column needs to stay readable: its text, but at most ``MIN_READABLE``."""
    return [min(w, MIN_READABLE) for w in natural_widths(names, cells)]


def table_width(widths: list[int]) -> int:
    """Characters a table with these column widths takes: text, padding and borders."""
    return sum(w + 3 for w in widths) + 1


def fits_horizontally(names: list[str], cells: list[list[str]], width: int) -> bool:
    """True if every column can keep its readable width on a ``width``-wide terminal."""
    return table_width(readable_widths(names, cells)) <= width


def fits_whole(names: list[str], cells: list[list[str]], width: int) -> bool:
    """True if no cell has to be cut on a ``width``-wide terminal."""
    return table_width(natural_widths(names, cells)) <= width


def clip(text: str, width: int) -> str:
    """``text`` on one line, cut to ``width`` characters with an ellipsis."""
    flat = text.replace("\n", " ")
    return flat if len(flat) <= width else flat[: max(width - 1, 0)] + "…"


def vertical_lines(names: list[str], cells: list[list[str]], width: int) -> list[str]:
    """One block per row, ``name | value`` a line, values clipped to the terminal width."""
    pad = max(len(n) for n in names) if names else 0
    room = max(width - pad - 3, 8)
    lines: list[str] = []
    for number, row in enumerate(cells, start=1):
        lines.append(f"-[ row {number} ]".ljust(width, "-")[:width])
        lines.extend(f"{n.ljust(pad)} | {clip(v, room)}" for n, v in zip(names, row, strict=True))
    return lines
