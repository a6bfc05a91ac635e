"""Slice geometry: sorting along the normal, spacing checks, runs, tilt and the LPS affine.

Convention (spec §1.3/§1.6): slices ascending along n = row x col, so (column, row, slice)
is right-handed as in ITK; index (k, i, j) maps to LPS by
``IPP_0 + k·s + i·Δr·c + j·Δc·r`` where s is the measured slice step (shear included).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mirror.convert.scan import SliceHeader

DUPLICATE_MM = 0.01
SORT_RULE = "IPP·n ascending"


@dataclass(frozen=True, slots=True)
class Geometry:
    """Exact index→LPS mapping of one stack plus what the checks found."""

    affine_lps: tuple[tuple[float, ...], ...]  # 4x4, acts on (k, i, j, 1)
    spacing: tuple[float, float, float]  # (perpendicular slice spacing, row, column) in mm
    rotation: tuple[tuple[float, ...], ...]  # R = [n | c | r], columns in LPS
    translation: tuple[float, float, float]  # Rᵀ·IPP_0: origin in the image-aligned frame
    shear_per_slice_mm: tuple[float, float, float]
    tilt_deg: float
    regular: bool
    max_gap_deviation_mm: float
    max_position_residual_mm: float
    missing_slice_indices: tuple[int, ...]
    nominal_spacing: bool  # single slice: z spacing from the header, not measured

    def as_json(self) -> dict[str, object]:
        return {
            "affine_lps": [list(row) for row in self.affine_lps],
            "intrinsic_to_LPS_rotation": [list(row) for row in self.rotation],
            "shear_per_slice_mm": list(self.shear_per_slice_mm),
            "geometry_checks": {
                "regular": self.regular,
                "max_gap_deviation_mm": self.max_gap_deviation_mm,
                "max_position_residual_mm": self.max_position_residual_mm,
                "missing_slice_indices": list(self.missing_slice_indices),
                "tilt_deg": self.tilt_deg,
                "nominal_z_spacing": self.nominal_spacing,
                "sort": SORT_RULE,
            },
        }


def normal(iop: Sequence[float]) -> np.ndarray:
    return np.cross(np.asarray(iop[0:3], dtype=float), np.asarray(iop[3:6], dtype=float))


def depth(h: SliceHeader, n: np.ndarray) -> float:
    assert h.ipp is not None
    return float(np.dot(np.asarray(h.ipp, dtype=float), n))


def gap_tolerance(delta: float) -> float:
    return max(0.01 * abs(delta), 0.01)


def sort_by_depth(headers: Sequence[SliceHeader], n: np.ndarray) -> list[SliceHeader]:
    """Ascending along n; ties keep a deterministic order (file name, frame)."""
    return sorted(headers, key=lambda h: (depth(h, n), h.name, h.frame or 0))


def regular_runs(depths: Sequence[float]) -> list[tuple[int, int]]:
    """Split sorted depths into [start, stop) runs that are regular or regular-with-gaps.

    The whole stack stays one run when every gap is an integer multiple of the median gap
    (missing slices); otherwise maximal runs of equal gaps are cut out greedily.
    """
    if len(depths) < 3:
        return [(0, len(depths))]
    gaps = np.diff(np.asarray(depths))
    delta = float(np.median(gaps))
    if delta > DUPLICATE_MM and _multiples(gaps, delta):
        return [(0, len(depths))]
    runs: list[tuple[int, int]] = []
    start = 0
    while start < len(depths):
        stop = start + 1
        if stop < len(depths):
            step = gaps[start]
            while stop < len(depths) and abs(gaps[stop - 1] - step) <= gap_tolerance(step):
                stop += 1
        runs.append((start, stop))
        start = stop
    return runs


def _multiples(gaps: np.ndarray, delta: float) -> bool:
    ratios = gaps / delta
    m = np.rint(ratios)
    return bool(np.all(m >= 1) and np.all(np.abs(gaps - m * delta) <= gap_tolerance(delta)))


def slots(depths: Sequence[float]) -> tuple[list[int], float]:
    """Slot index per slice (gaps of m·Δ leave m-1 empty slots) and the plane spacing Δ."""
    if len(depths) < 2:
        return [0] * len(depths), 0.0
    gaps = np.diff(np.asarray(depths))
    delta = float(np.median(gaps))
    index = np.concatenate([[0], np.cumsum(np.rint(gaps / delta))]).astype(int)
    return [int(k) for k in index], delta


def build(headers: Sequence[SliceHeader], slot_index: Sequence[int]) -> Geometry:
    """Geometry of sorted, run-checked slices occupying ``slot_index`` (first slot is 0)."""
    first = headers[0]
    assert first.iop is not None and first.ipp is not None and first.pixel_spacing is not None
    r = np.asarray(first.iop[0:3], dtype=float)
    c = np.asarray(first.iop[3:6], dtype=float)
    n = np.cross(r, c)
    d_row, d_col = first.pixel_spacing
    ipps = np.asarray([h.ipp for h in headers], dtype=float)
    last_slot = slot_index[-1]
    nominal = last_slot == 0
    step = (ipps[-1] - ipps[0]) / last_slot if not nominal else n * (first.nominal_spacing or 1.0)
    dz = float(np.dot(step, n))
    predicted = ipps[0] + np.outer(np.asarray(slot_index, dtype=float), step)
    residual = float(np.max(np.linalg.norm(ipps - predicted, axis=1))) if len(headers) else 0.0
    depths = ipps @ n
    gap_dev = _gap_deviation(depths, slot_index, dz)
    affine = np.eye(4)
    affine[:3, 0], affine[:3, 1], affine[:3, 2], affine[:3, 3] = step, d_row * c, d_col * r, ipps[0]
    rotation = np.stack([n, c, r], axis=1)
    missing = sorted(set(range(last_slot + 1)) - set(slot_index))
    shear = step - dz * n
    return Geometry(
        affine_lps=_rows(affine),
        spacing=(abs(dz), float(d_row), float(d_col)),
        rotation=_rows(rotation),
        translation=_vec3(rotation.T @ ipps[0]),
        shear_per_slice_mm=_vec3(shear),
        tilt_deg=_angle_deg(step, n) if not nominal else 0.0,
        regular=not missing and gap_dev <= gap_tolerance(dz) and not nominal,
        max_gap_deviation_mm=round(gap_dev, 6),
        max_position_residual_mm=round(residual, 6),
        missing_slice_indices=tuple(missing),
        nominal_spacing=nominal,
    )


def _gap_deviation(depths: np.ndarray, slot_index: Sequence[int], dz: float) -> float:
    if len(depths) < 2:
        return 0.0
    expected = depths[0] + np.asarray(slot_index, dtype=float) * dz
    return float(np.max(np.abs(depths - expected)))


def _angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    cos = float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))
    angle = math.degrees(math.acos(max(-1.0, min(1.0, cos))))
    return round(angle, 4) if angle > 0.01 else 0.0


def _rows(m: np.ndarray) -> tuple[tuple[float, ...], ...]:
    return tuple(tuple(_clean(v) for v in row) for row in m)


def _vec3(v: np.ndarray) -> tuple[float, float, float]:
    return (_clean(v[0]), _clean(v[1]), _clean(v[2]))


def _clean(value: float) -> float:
    # round away float noise (1e-17) so metadata is stable and reads as written
    out = round(float(value), 9)
    return 0.0 if out == 0 else out
