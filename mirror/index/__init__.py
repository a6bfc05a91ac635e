"""Parquet metadata indexes of a mirror: build, publish, query, export.

``connect(dest)`` gives a DuckDB connection with one view per table; ``query(dest, sql)``
returns a ``pyarrow.Table``. Both import duckdb and pyarrow only when called.
"""

from __future__ import annotations

from mirror.index.views import connect, query

__all__ = ["connect", "query"]
