"""DICOM series -> OME-Zarr 0.5 volumes with exact geometry.

Public API (imported lazily so ``import mirror.convert`` stays cheap):

* :func:`convert_series` (``store, sidecar, *, out_prefix="_zarr", force=False, threads=2``)
  -> :class:`ConversionResult`: incremental conversion of one committed series; what
  ``mirror sync --convert`` calls.
* :func:`convert_source` (``source, zstore, *, name, series_attrs=None, threads=2``): the
  Store-free core (local folder of DICOM files -> any zarr v3 store).
* :func:`volume_rows` (``store, *, out_prefix="_zarr"``) -> ``list[dict]``: one row per
  written stack of every committed store, for the index's ``volumes`` table.
* :func:`open_series` (``path_or_store, level=0, stack=None``) -> ``xarray.DataArray``.
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "convert_series": "mirror.convert.pipeline",
    "convert_many": "mirror.convert.pipeline",
    "ConversionResult": "mirror.convert.pipeline",
    "volume_rows": "mirror.index.volumes",
    "zarr_prefix": "mirror.convert.pipeline",
    "convert_source": "mirror.convert.series",
    "open_series": "mirror.convert.reader",
    "DirSource": "mirror.convert.source",
    "StoreSource": "mirror.convert.source",
}

__all__ = [
    "ConversionResult",
    "DirSource",
    "StoreSource",
    "convert_many",
    "convert_series",
    "convert_source",
    "open_series",
    "volume_rows",
    "zarr_prefix",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'mirror.convert' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
