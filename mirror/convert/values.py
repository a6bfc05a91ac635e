"""Stored values → output values: Modality LUT, dtype choice, photometric handling (§1.7).

The Modality LUT (RescaleSlope/Intercept) is applied when the result is exactly representable
as an integer type (CT in int16 HU); anything else becomes float32. MONOCHROME1 values are
kept as stored and flagged ``display_inverted`` so viewers can invert after VOI.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mirror.convert.scan import RTDOSE_SOP, SEG_SOP, SliceHeader
from mirror.errors import ConversionError

_INT_CANDIDATES = ("int16", "uint16", "int32", "uint32")
CT_AIR = -1024


class ValueOverflow(ConversionError):
    """A plane does not fit the optimistic integer dtype; the stack restarts wider."""


@dataclass(frozen=True, slots=True)
class ValuePlan:
    kind: str  # stored | rescale_int | rescale_float | dose | label | rgb | modality_lut
    dtype: str
    fill_value: int | float
    per_slice_rescale: bool
    photometric_in: str
    display_inverted: bool
    channels: int
    # The declared BitsStored range (+ intercept) may not fit ``dtype`` although real data
    # does (CT stored as signed 16 bit with intercept -1024): write optimistically, and
    # restart in ``wide_dtype`` when a plane does not fit (ValueOverflow).
    wide_dtype: str = ""

    def widened(self) -> ValuePlan:
        return dataclasses.replace(self, dtype=self.wide_dtype, wide_dtype="")

    def as_json(self, headers: Sequence[SliceHeader]) -> dict[str, Any]:
        first = headers[0]
        data: dict[str, Any] = {
            "value_mapping": {
                "kind": self.kind,
                "dtype": self.dtype,
                "fill_value": self.fill_value,
                "RescaleType": first.rescale_type,
                "per_slice_rescale": self.per_slice_rescale,
                "BitsStored": first.bits_stored,
                "PixelRepresentation": first.pixel_rep,
            },
            "photometric": {
                "input": self.photometric_in,
                "output": "RGB" if self.channels == 3 else self.photometric_in,
                "display_inverted": self.display_inverted,
            },
        }
        if self.per_slice_rescale or self.kind == "rescale_float":
            data["value_mapping"]["slopes"] = [h.slope for h in headers]
            data["value_mapping"]["intercepts"] = [h.intercept for h in headers]
        if first.dose_scaling is not None:
            data["value_mapping"]["DoseGridScaling"] = first.dose_scaling
        return data


def stored_dtype(h: SliceHeader) -> np.dtype[Any]:
    if h.bits_allocated == 1:
        return np.dtype("uint8")
    size = {8: 1, 16: 2, 32: 4}.get(h.bits_allocated, 8)
    return np.dtype(f"{'i' if h.pixel_rep else 'u'}{size}")


def stored_range(h: SliceHeader) -> tuple[int, int]:
    bits = max(1, min(h.bits_stored, h.bits_allocated))
    if h.pixel_rep:
        return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return 0, 2**bits - 1


def plan_values(headers: Sequence[SliceHeader]) -> ValuePlan:
    """One value mapping for every plane of a stack (a stack never mixes dtypes)."""
    first = headers[0]
    pi = first.photometric
    mono1 = pi == "MONOCHROME1"
    if first.samples == 3:
        dtype = "uint8" if first.bits_allocated == 8 else "uint16"
        return ValuePlan("rgb", dtype, 0, False, pi, mono1, channels=3)
    if first.sop_class == SEG_SOP:
        return ValuePlan("label", "uint8", 0, False, pi, mono1, channels=1)
    if first.sop_class == RTDOSE_SOP and first.dose_scaling is not None:
        return ValuePlan("dose", "float32", 0.0, False, pi, mono1, channels=1)
    if first.modality_lut:
        return ValuePlan("modality_lut", "float32", 0.0, False, pi, mono1, channels=1)
    return _rescale_plan(headers, pi, mono1)


def _rescale_plan(headers: Sequence[SliceHeader], pi: str, mono1: bool) -> ValuePlan:
    first = headers[0]
    pairs = {(h.slope, h.intercept) for h in headers}
    per_slice = len(pairs) > 1
    slope, intercept = next(iter(pairs))
    # union of the declared ranges: PixelRepresentation may differ between instances
    lo = min(stored_range(h)[0] for h in headers)
    hi = max(stored_range(h)[1] for h in headers)
    if not per_slice and slope == 1.0 and intercept == int(intercept):
        shift = int(intercept)
        wide = _fitting(lo + shift, hi + shift)
        if wide:
            narrow = _narrow(headers, shift, wide)
            fill = _fill(first, lo + shift, hi + shift, lambda v: v + shift)
            fill = min(max(fill, np.iinfo(narrow).min), np.iinfo(narrow).max)
            kind = "stored" if shift == 0 else "rescale_int"
            retry = wide if wide != narrow else ""
            fill_int = int(fill)
            return ValuePlan(kind, narrow, fill_int, False, pi, mono1, channels=1, wide_dtype=retry)
    fill = _fill(first, -np.inf, np.inf, lambda v: v * first.slope + first.intercept)
    return ValuePlan("rescale_float", "float32", float(fill), per_slice, pi, mono1, channels=1)


def _narrow(headers: Sequence[SliceHeader], shift: int, wide: str) -> str:
    """The dtype to try first: the stored one when nothing shifts, else int16 for 32-bit."""
    stored = {str(stored_dtype(h)) for h in headers}
    if shift == 0 and len(stored) == 1:
        return stored.pop()
    return "int16" if wide in ("int32", "uint32") else wide


def _fitting(lo: int, hi: int) -> str:
    for name in _INT_CANDIDATES:
        info = np.iinfo(name)
        if info.min <= lo and hi <= info.max:
            return name
    return ""


def _fill(h: SliceHeader, lo: float, hi: float, mapping: Any) -> float:
    """Padding value when declared, else CT air, else 0 (clamped into the value range)."""
    if h.padding is not None:
        candidate = mapping(h.padding)
    elif h.modality == "CT":
        candidate = CT_AIR
    else:
        candidate = 0
    return float(min(max(candidate, lo), hi))


def map_values(stored: np.ndarray, h: SliceHeader, plan: ValuePlan, out: np.ndarray) -> None:
    """Stored plane (from the decoder) -> ``out`` (``plan.dtype``, native byte order)."""
    out_dtype = np.dtype(plan.dtype)
    if plan.kind == "rgb":
        np.copyto(out, np.moveaxis(stored, -1, 0), casting="unsafe")
    elif plan.kind in ("label", "modality_lut"):
        np.copyto(out, stored, casting="unsafe")
    elif plan.kind in ("stored", "rescale_int"):
        shift = int(h.intercept)
        if plan.wide_dtype:
            _check_range(stored, shift, out_dtype, h.name)
        # unsafe casting is exact here: the declared or checked range fits out_dtype
        if shift == 0:
            np.copyto(out, stored, casting="unsafe")
        else:
            work = np.int32 if out_dtype.itemsize <= 2 else np.int64
            np.add(stored, work(shift), out=out, casting="unsafe")
    elif plan.kind == "dose":
        np.multiply(stored, float(h.dose_scaling or 1.0), out=out, casting="unsafe")
    else:
        np.copyto(out, stored.astype(np.float64) * h.slope + h.intercept, casting="unsafe")


def _check_range(stored: np.ndarray, shift: int, dtype: np.dtype[Any], name: str) -> None:
    info = np.iinfo(dtype)
    if not stored.size:
        return
    if int(stored.min()) + shift < info.min or int(stored.max()) + shift > info.max:
        raise ValueOverflow(f"{name}: values outside {dtype}")
