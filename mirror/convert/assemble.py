"""Split one series' planes into stacks: volumes (3D/4D), localizers and 2D images.

Split keys must be identical inside a stack (§1.2a); when a position repeats, the first
4th-dimension key that makes (key, position) unique decides between one 4D array and
separate stacks (§1.2b); identical duplicates (same position and pixels) are dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from mirror.convert import geometry
from mirror.convert.geometry import DUPLICATE_MM, Geometry
from mirror.convert.scan import PLANAR_MODALITIES, SliceHeader

log = logging.getLogger(__name__)

IOP_TOL = 1e-4
SPACING_TOL = 1e-3
DIM_PRIORITY = (
    "segment",
    "echo",
    "temporal",
    "trigger",
    "acquisition",
    "bvalue",
    "pet_frame",
    "image_index",
    "stack",
    "content_time",
)

Hasher = Callable[[SliceHeader], str]


@dataclass(frozen=True, slots=True)
class StackPlan:
    """One output image: a (t, z) grid of planes; ``None`` marks an inserted missing slice."""

    role: str  # "volume", "localizer" or "image2d"
    grid: tuple[tuple[SliceHeader | None, ...], ...]
    geometry: Geometry | None
    fourth_dim: str | None = None
    fourth_values: tuple[str, ...] = ()
    dropped: tuple[tuple[str, str], ...] = ()  # (SOPInstanceUID, reason)
    flags: tuple[str, ...] = ()

    @property
    def headers(self) -> list[SliceHeader]:
        return [h for row in self.grid for h in row if h is not None]

    @property
    def first(self) -> SliceHeader:
        return self.headers[0]

    @property
    def sort_key(self) -> tuple[int, int, str, int]:
        order = {"volume": 0, "localizer": 1, "image2d": 2}[self.role]
        return (order, -len(self.headers), self.first.name, self.first.frame or 0)


@dataclass(slots=True)
class _Group:
    members: list[SliceHeader] = field(default_factory=list)


def assemble(headers: Sequence[SliceHeader], hasher: Hasher) -> list[StackPlan]:
    """All stacks of one series, primary (largest volume) first, in a deterministic order."""
    ordered = sorted(headers, key=lambda h: (h.name, h.frame or 0))
    planar = [h for h in ordered if _is_planar(h)]
    spatial = [h for h in ordered if not _is_planar(h)]
    plans = _planar_plans(planar)
    for group in _split(spatial):
        plans.extend(_group_plans(group.members, hasher))
    return sorted(plans, key=lambda p: p.sort_key)


def _is_planar(h: SliceHeader) -> bool:
    return not h.has_geometry or (h.modality in PLANAR_MODALITIES and h.n_frames == 1)


def _planar_plans(headers: Sequence[SliceHeader]) -> list[StackPlan]:
    by_file: dict[str, list[SliceHeader]] = {}
    for h in headers:
        by_file.setdefault(h.name, []).append(h)
    return [
        StackPlan(role="image2d", grid=tuple((h,) for h in frames), geometry=None)
        for frames in by_file.values()
    ]


def _split_key(h: SliceHeader) -> tuple[object, ...]:
    return (
        h.modality,
        h.manufacturer,
        h.frame_of_ref,
        h.rows,
        h.cols,
        h.samples,
        h.photometric,
        h.bits_allocated,
        h.is_localizer,
        h.image_type[2:4],
        h.frame is not None,
    )


def _split(headers: Sequence[SliceHeader]) -> list[_Group]:
    """Cluster on exact keys plus IOP within 1e-4 and PixelSpacing within 1e-3 mm."""
    groups: list[tuple[tuple[object, ...], SliceHeader, _Group]] = []
    for h in headers:
        key = _split_key(h)
        for gkey, rep, group in groups:
            if (
                gkey == key
                and _close(h.iop, rep.iop, IOP_TOL)
                and _close(h.pixel_spacing, rep.pixel_spacing, SPACING_TOL)
            ):
                group.members.append(h)
                break
        else:
            groups.append((key, h, _Group([h])))
    return [g for _, _, g in groups]


def _close(a: Sequence[float] | None, b: Sequence[float] | None, tol: float) -> bool:
    if a is None or b is None:
        return a is b
    return all(abs(x - y) <= tol for x, y in zip(a, b, strict=True))


def _group_plans(members: list[SliceHeader], hasher: Hasher) -> list[StackPlan]:
    role = "localizer" if members[0].is_localizer else "volume"
    n = geometry.normal(members[0].iop or ())
    if not _has_repeats(members, n):
        return _volume_plans(members, n, role, dropped=())
    dim = _resolving_dim(members, n)
    if dim is None:
        kept, dropped = _drop_identical(members, n, hasher)
        if not _has_repeats(kept, n):
            return _volume_plans(kept, n, role, dropped=dropped)
        return _rank_split(kept, n, role, dropped)
    return _by_dim(members, n, role, dim)


def _positions(members: Sequence[SliceHeader], n: np.ndarray) -> np.ndarray:
    return np.sort(np.asarray([geometry.depth(h, n) for h in members]))


def _has_repeats(members: Sequence[SliceHeader], n: np.ndarray) -> bool:
    d = _positions(members, n)
    return bool(len(d) > 1 and np.min(np.diff(d)) < DUPLICATE_MM)


def _dim_value(h: SliceHeader, dim: str) -> str:
    return dict(h.dims).get(dim, "")


def _resolving_dim(members: Sequence[SliceHeader], n: np.ndarray) -> str | None:
    for dim in DIM_PRIORITY:
        values = {_dim_value(h, dim) for h in members}
        if len(values) < 2:
            continue
        parts = [[h for h in members if _dim_value(h, dim) == v] for v in values]
        if not any(_has_repeats(p, n) for p in parts):
            return dim
    return None


def _by_dim(
    members: Sequence[SliceHeader], n: np.ndarray, role: str, dim: str
) -> list[StackPlan]:
    values = sorted({_dim_value(h, dim) for h in members}, key=_natural)
    parts = [[h for h in members if _dim_value(h, dim) == v] for v in values]
    ref = _positions(parts[0], n)
    same = all(
        len(p) == len(ref) and np.allclose(_positions(p, n), ref, atol=DUPLICATE_MM) for p in parts
    )
    if same and len(geometry.regular_runs(list(ref))) == 1:
        sorted_parts = [geometry.sort_by_depth(p, n) for p in parts]
        slot_index, _ = geometry.slots([geometry.depth(h, n) for h in sorted_parts[0]])
        geo = geometry.build(sorted_parts[0], slot_index)
        grid = tuple(_fill(p, slot_index) for p in sorted_parts)
        return [StackPlan(role, grid, geo, fourth_dim=dim, fourth_values=tuple(values))]
    plans: list[StackPlan] = []
    for value, part in zip(values, parts, strict=True):
        for plan in _volume_plans(part, n, role, dropped=()):
            plans.append(_with_flag(plan, f"{dim}={value}"))
    return plans


def _natural(value: str) -> tuple[float, str]:
    try:
        return (float(value), value)
    except ValueError:
        return (float("inf"), value)


def _drop_identical(
    members: Sequence[SliceHeader], n: np.ndarray, hasher: Hasher
) -> tuple[list[SliceHeader], tuple[tuple[str, str], ...]]:
    """Drop planes whose position and decoded pixels equal an earlier plane's (warned)."""
    ordered = sorted(members, key=lambda m: (m.instance_number or 0, m.sop_uid, m.frame or 0))
    depth = {h: geometry.depth(h, n) for h in ordered}
    kept: list[SliceHeader] = []
    dropped: list[tuple[str, str]] = []
    seen: list[tuple[float, str, str]] = []
    for h in ordered:
        if not any(o is not h and abs(depth[o] - depth[h]) < DUPLICATE_MM for o in ordered):
            kept.append(h)
            continue
        digest = hasher(h)
        match = next(
            (uid for d, dg, uid in seen if abs(d - depth[h]) < DUPLICATE_MM and dg == digest), None
        )
        if match is None:
            seen.append((depth[h], digest, h.sop_uid))
            kept.append(h)
        else:
            log.warning("dropping %s: identical duplicate of %s", h.sop_uid, match)
            dropped.append((h.sop_uid, f"identical duplicate of {match}"))
    return kept, tuple(dropped)


def _rank_split(
    members: Sequence[SliceHeader], n: np.ndarray, role: str, dropped: tuple[tuple[str, str], ...]
) -> list[StackPlan]:
    """Different pixels at one position and no key to tell them apart: one stack per rank."""
    ranks: list[list[SliceHeader]] = []
    for h in sorted(members, key=lambda m: (m.instance_number or 0, m.sop_uid)):
        for rank in ranks:
            if all(abs(geometry.depth(h, n) - geometry.depth(o, n)) >= DUPLICATE_MM for o in rank):
                rank.append(h)
                break
        else:
            ranks.append([h])
    plans: list[StackPlan] = []
    for i, rank in enumerate(ranks):
        for plan in _volume_plans(rank, n, role, dropped=dropped if i == 0 else ()):
            plans.append(_with_flag(plan, f"unresolved_duplicate_rank={i}"))
    return plans


def _volume_plans(
    members: Sequence[SliceHeader], n: np.ndarray, role: str, dropped: tuple[tuple[str, str], ...]
) -> list[StackPlan]:
    ordered = geometry.sort_by_depth(members, n)
    depths = [geometry.depth(h, n) for h in ordered]
    runs = geometry.regular_runs(depths)
    plans = []
    for start, stop in runs:
        run = ordered[start:stop]
        slot_index, _ = geometry.slots(depths[start:stop])
        geo = geometry.build(run, slot_index)
        flags = ("variable_spacing_run",) if len(runs) > 1 else ()
        plans.append(StackPlan(role, (_fill(run, slot_index),), geo, dropped=dropped, flags=flags))
        dropped = ()
    return plans


def _fill(run: Sequence[SliceHeader], slot_index: Sequence[int]) -> tuple[SliceHeader | None, ...]:
    row: list[SliceHeader | None] = [None] * (slot_index[-1] + 1)
    for h, k in zip(run, slot_index, strict=True):
        row[k] = h
    return tuple(row)


def _with_flag(plan: StackPlan, flag: str) -> StackPlan:
    return StackPlan(
        plan.role,
        plan.grid,
        plan.geometry,
        plan.fourth_dim,
        plan.fourth_values,
        plan.dropped,
        (*plan.flags, flag),
    )
