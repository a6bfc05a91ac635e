"""OME-Zarr 0.5 layout pieces: axes, chunk/shard shapes, pyramid levels, multiscales JSON.

Array axis order is NGFF's: t, c, then space (z, y, x). Chunks are 64^3 for volumes (1024^2
for 2D images) inside shards holding whole slabs, so a slab write never touches a partial
shard (zarr-python read-modify-writes partial shards, and concurrent ones lose data).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

NGFF_VERSION = "0.5"
CHUNK_3D = 64
CHUNK_2D = 1024
MIN_LEVEL_SIZE = 64
MAX_LEVELS = 3


@dataclass(frozen=True, slots=True)
class Layout:
    """Level-0 shape and physical placement of one image, axes in NGFF order."""

    axes: tuple[str, ...]
    shape: tuple[int, ...]
    scale: tuple[float, ...]
    translation: tuple[float, ...]
    unit: str | None  # "millimeter" when the in-plane spacing is known
    orientation: tuple[str, ...] = ()  # RFC-4 anatomical labels of z, y, x when axis-aligned

    def level_shape(self, level: int) -> tuple[int, ...]:
        factor = 2**level
        return tuple(
            math.ceil(n / factor) if ax in ("y", "x") else n
            for ax, n in zip(self.axes, self.shape, strict=True)
        )

    def level_scale(self, level: int) -> tuple[float, ...]:
        return tuple(
            s * 2**level if ax in ("y", "x") else s
            for ax, s in zip(self.axes, self.scale, strict=True)
        )

    def level_translation(self, level: int) -> tuple[float, ...]:
        # NGFF: pixel centres move by (s_L - s_0)/2 when 2x2 blocks are averaged
        return tuple(
            t + (s_l - s_0) / 2 if ax in ("y", "x") else t
            for ax, t, s_l, s_0 in zip(
                self.axes, self.translation, self.level_scale(level), self.scale, strict=True
            )
        )

    def n_levels(self) -> int:
        levels = 1
        while levels < MAX_LEVELS and max(self.level_shape(levels)[-2:]) >= MIN_LEVEL_SIZE:
            levels += 1
        return levels

    def chunks_and_shards(self, level: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
        shape = self.level_shape(level)
        spatial_chunk = CHUNK_3D if "z" in self.axes else CHUNK_2D
        chunks: list[int] = []
        shards: list[int] = []
        for ax, n in zip(self.axes, shape, strict=True):
            if ax == "t":
                chunks.append(1)
                shards.append(1)
            elif ax == "c":
                chunks.append(n)
                shards.append(n)
            elif ax == "z":
                chunks.append(min(CHUNK_3D, n))
                shards.append(min(CHUNK_3D, n))
            else:
                c = min(spatial_chunk, n)
                chunks.append(c)
                shards.append(math.ceil(n / c) * c)
        return tuple(chunks), tuple(shards)


def axes_json(layout: Layout) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    labels = dict(zip(("z", "y", "x"), layout.orientation, strict=False))
    for ax in layout.axes:
        if ax == "t":
            out.append({"name": "t", "type": "time"})
        elif ax == "c":
            out.append({"name": "c", "type": "channel"})
        else:
            axis: dict[str, Any] = {"name": ax, "type": "space"}
            if layout.unit:
                axis["unit"] = layout.unit
            if ax in labels:
                axis["orientation"] = {"type": "anatomical", "value": labels[ax]}
            out.append(axis)
    return out


_LPS_LABELS = (
    ("right-to-left", "left-to-right"),
    ("anterior-to-posterior", "posterior-to-anterior"),
    ("inferior-to-superior", "superior-to-inferior"),
)


def anatomical_labels(rotation: Sequence[Sequence[float]]) -> tuple[str, ...]:
    """RFC-4 labels for the z, y, x axes (columns of R in LPS), or () if any is oblique."""
    labels = []
    for column in np.asarray(rotation, dtype=float).T:
        k = int(np.argmax(np.abs(column)))
        if abs(abs(column[k]) - 1.0) > 1e-6:
            return ()
        labels.append(_LPS_LABELS[k][0 if column[k] > 0 else 1])
    return tuple(labels)


def multiscales_json(name: str, layout: Layout, method: str) -> dict[str, object]:
    datasets = [
        {
            "path": f"s{level}",
            "coordinateTransformations": [
                {"type": "scale", "scale": _nums(layout.level_scale(level))},
                {"type": "translation", "translation": _nums(layout.level_translation(level))},
            ],
        }
        for level in range(layout.n_levels())
    ]
    return {
        "version": NGFF_VERSION,
        "multiscales": [
            {
                "name": name,
                "axes": axes_json(layout),
                "datasets": datasets,
                "type": method,
                "metadata": {"method": _METHODS[method]},
            }
        ],
    }


_METHODS = {
    "mean": "2x2 block mean in y,x (z kept); integers (a+b+c+d+2)//4; odd edges replicated",
    "nearest": "every second pixel in y,x (labels)",
}


def downsample(block: np.ndarray, method: str) -> np.ndarray:
    """Halve the last two axes: 2x2 block mean or, for labels, nearest (every second pixel).

    Integer means are exact sums in a wider type rounded half up, ``(a+b+c+d+2) // 4``:
    deterministic, and the mean of in-range values is always in range (no clipping).
    """
    if method == "nearest":
        return np.ascontiguousarray(block[..., ::2, ::2])
    y, x = block.shape[-2:]
    if y % 2 or x % 2:
        pad = [(0, 0)] * (block.ndim - 2) + [(0, y % 2), (0, x % 2)]
        block = np.pad(block, pad, mode="edge")
    integer = np.issubdtype(block.dtype, np.integer)
    work = (np.int32 if block.dtype.itemsize <= 2 else np.int64) if integer else np.float64
    total = np.add(block[..., 0::2, 0::2], block[..., 1::2, 0::2], dtype=work)
    total += block[..., 0::2, 1::2]
    total += block[..., 1::2, 1::2]
    if integer:
        total += 2
        np.right_shift(total, 2, out=total)  # == floor division by 4 (arithmetic shift), 5x faster
        out: np.ndarray = total.astype(block.dtype)
    else:
        out = (total / 4.0).astype(block.dtype)
    return out


def _nums(values: tuple[float, ...]) -> list[float]:
    return [_num(v) for v in values]


def _num(value: float) -> float:
    out = round(float(value), 9)
    return 0.0 if out == 0 else out
