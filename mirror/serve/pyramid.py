"""Series thumbnails from a converted OME-Zarr pyramid, when the series has one.

The coarsest level that still covers the thumbnail is read (a few KB) instead of decoding a
full-resolution frame. Its values already have the modality LUT applied (HU for CT), so the
VOI window of the middle instance applies as is.
"""

from __future__ import annotations

import logging
from typing import Any

from mirror.serve.snapshot import IndexView
from mirror.storage.port import Store

log = logging.getLogger(__name__)

_VOLUME = """SELECT v.store_path, max(i.WindowCenter) AS wc, max(i.WindowWidth) AS ww,
       min(i.PhotometricInterpretation) AS photometric
FROM vol v JOIN inst i USING (SeriesInstanceUID)
WHERE i.StudyInstanceUID = ? AND i.SeriesInstanceUID = ? GROUP BY v.store_path LIMIT 1"""


def series_plane(view: IndexView, store: Store, study: str, series: str,
                 side: int) -> tuple[Any, dict[str, Any]] | None:
    """``(middle plane, header-like values)`` from the pyramid, or None to use the files."""
    rows = view.rows(_VOLUME, [study, series])
    if not rows:
        return None
    row = rows[0]
    try:
        plane = _middle_plane(store, row["store_path"], side)
    except Exception as exc:  # a damaged or foreign store: the files still answer
        log.warning("thumbnail of %s from its pyramid failed: %s", series, exc)
        return None
    if plane is None:
        return None
    header = {"RescaleSlope": 1, "RescaleIntercept": 0, "WindowCenter": row["wc"],
              "WindowWidth": row["ww"], "PhotometricInterpretation": row["photometric"]}
    return plane, header


def _middle_plane(store: Store, store_path: str, side: int) -> Any:
    from mirror.convert import open_series

    zstore = store.zarr_store(store_path, read_only=True)
    level = 0
    while True:  # the coarsest level still at least `side` pixels across
        try:
            candidate = open_series(zstore, level=level + 1)
        except Exception:
            break
        if max(candidate.shape[-2:]) < side:
            break
        level += 1
    volume = open_series(zstore, level=level)
    if volume.dims != ("z", "y", "x"):
        return None  # time series, colour or labels: the files render those
    return volume.isel(z=volume.sizes["z"] // 2).values
