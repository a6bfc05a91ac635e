"""A collection's listing as one Arrow table: a column per :class:`SeriesRecord` field.

``--full`` lists every series the archive holds (a million at TCIA's scale). As records that
is a gigabyte of Python objects before the plan starts; as columns it is a tenth of that,
and the driver joins it against the ledger without making an object per unchanged series
(:mod:`mirror.sync.columnar`). A source whose listing already is a table (IDC's release
index) offers :class:`TabularListing`; any other source's records become a table here,
one collection at a time.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from mirror.archive.port import SeriesRecord

if TYPE_CHECKING:
    import pyarrow as pa

# The annotation of each SeriesRecord field (postponed, so a string) -> its Arrow type name.
_TYPES = {"str": "string", "int": "int64", "int | None": "int64", "date | None": "date32"}
FIELDS: tuple[tuple[str, str], ...] = tuple(
    (f.name, _TYPES[str(f.type)]) for f in dataclasses.fields(SeriesRecord)
)
_NUMBERS = ("image_count", "file_size")
_BATCH = 20_000  # never absent in a record: 0 stands for none


@runtime_checkable
class TabularListing(Protocol):
    """A source that lists a collection as a table in :func:`series_schema` directly."""

    def series_table(self, collection: str) -> Any:
        """Every series of ``collection`` as a ``pyarrow.Table`` of :func:`series_schema`
        (what ``series(collection)`` returns, row for row)."""
        ...


def series_schema() -> pa.Schema:
    import pyarrow as pa

    kinds = {"string": pa.string(), "int64": pa.int64(), "date32": pa.date32()}
    return pa.schema([pa.field(name, kinds[kind]) for name, kind in FIELDS])


def records_table(records: Iterable[SeriesRecord]) -> pa.Table:
    """Records as a listing table (the order is kept)."""
    import pyarrow as pa

    rows = list(records)
    columns = {name: [getattr(r, name) for r in rows] for name, _ in FIELDS}
    return pa.table(columns, schema=series_schema())


def table_records(table: pa.Table) -> list[SeriesRecord]:
    """The rows of a listing table as records (a first mirror's plan makes one per series:
    a batch of columns at a time, never a dict per row)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    names = [name for name, _ in FIELDS]
    out: list[SeriesRecord] = []
    for batch in table.select(names).to_batches(max_chunksize=_BATCH):
        columns = [
            pc.fill_null(column, "").to_pylist()
            if column.null_count and column.type == pa.string()
            else column.to_pylist()
            for column in batch.columns
        ]
        out.extend(SeriesRecord(*values) for values in zip(*columns, strict=True))
    return out


def conform(table: pa.Table) -> pa.Table:
    """``table`` with exactly the listing columns, in order and type; absent strings are ""
    and absent numbers 0 (as a record built from the same listing would have them)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    schema = series_schema()
    columns = []
    for field in schema:
        if field.name in table.column_names:
            column = table.column(field.name).cast(field.type)
        else:
            column = pa.nulls(table.num_rows, field.type)
        if column.null_count and (field.type == pa.string() or field.name in _NUMBERS):
            column = pc.fill_null(column, "" if field.type == pa.string() else 0)
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=schema)
