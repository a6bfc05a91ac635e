"""Write one series' stacks into an OME-Zarr 0.5 store, root metadata last (the commit marker).

The root ``zarr.json`` carries ``ome`` (primary stack) and ``dicom`` (series provenance with
``dicom.schema``); until it is written the store has no ``dicom`` attribute and readers and
:func:`mirror.convert.pipeline.volume_rows` ignore it. Further stacks live under
``stacks/<k>/``. Slabs of exactly shard depth are decoded in parallel (pixel bytes read where
the header scan located them, see :mod:`mirror.convert.direct`), mapped to output values once
per slab, and written as whole shards encoded in the same pool (:mod:`mirror.convert.shards`);
codecs are deterministic, so reconverting gives byte-identical chunks.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec

from mirror.convert import direct, ngff, shards
from mirror.convert.assemble import StackPlan
from mirror.convert.decode import UndecodableInstance, plugin_for, read_planes
from mirror.convert.geometry import SORT_RULE
from mirror.convert.scan import SliceHeader
from mirror.convert.source import InstanceSource
from mirror.convert.values import (
    ValueOverflow,
    ValuePlan,
    map_values,
    plan_values,
    stored_dtype,
)
from mirror.index.volumes import VOLUME_SCHEMA

log = logging.getLogger(__name__)

SCHEMA = VOLUME_SCHEMA  # the index reads the markers (mirror.index.volumes)
# zstd clevel 1 (zstd level 1 inside c-blosc): on CT it encodes about 2x faster than clevel 3
# for about 4 % more bytes (benchmarks/convert.py measures both, results/convert.json).
BLOSC_CLEVEL = 1


@dataclass(frozen=True, slots=True)
class StackResult:
    """Outcome of one stack: written (``path`` inside the store) or quarantined (``reason``)."""

    stack_id: int
    role: str
    status: str  # "written" | "quarantined"
    path: str
    shape: tuple[int, ...] = ()
    dtype: str = ""
    axes: tuple[str, ...] = ()
    spacing: tuple[float, ...] = ()
    flags: tuple[str, ...] = ()
    n_instances: int = 0
    reason: str = ""
    detail: str = ""
    sop_uid: str = ""

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.stack_id,
            "role": self.role,
            "status": self.status,
            "path": self.path,
            "shape": list(self.shape),
            "dtype": self.dtype,
            "axes": list(self.axes),
            "spacing": list(self.spacing),
            "flags": list(self.flags),
            "n_instances": self.n_instances,
            "reason": self.reason,
            "detail": self.detail,
            "sop_instance_uid": self.sop_uid,
        }


@dataclass(frozen=True, slots=True)
class _Job:
    root: zarr.Group
    source: InstanceSource
    name: str
    pool: Executor


@dataclass(slots=True)
class _Written:
    results: list[StackResult] = field(default_factory=list)
    root_attrs: dict[str, Any] | None = None


def write_series(
    zstore: Any,
    plans: Sequence[StackPlan],
    source: InstanceSource,
    *,
    name: str,
    series_attrs: dict[str, Any],
    pool: Executor,
) -> list[StackResult]:
    """Write every stack (failures quarantined, never fatal), then the root marker."""
    root = zarr.open_group(zstore, mode="w", zarr_format=3)  # clears a previous conversion
    job = _Job(root, source, name, pool)
    done = _Written()
    for stack_id, plan in enumerate(plans):
        path = "" if done.root_attrs is None else f"stacks/{stack_id}"
        result, attrs = _write_or_quarantine(job, path, stack_id, plan)
        done.results.append(result)
        if result.status == "written" and path == "":
            done.root_attrs = attrs
        elif result.status == "written":
            root.require_group(path).attrs.update(attrs)
    dicom = dict(series_attrs)
    ome: dict[str, Any] = {}
    if done.root_attrs is not None:
        ome = done.root_attrs["ome"]
        dicom.update(done.root_attrs["dicom"])
    dicom.update({"schema": SCHEMA, "stacks": [r.as_json() for r in done.results]})
    root.attrs.update({"ome": ome, "dicom": dicom} if ome else {"dicom": dicom})
    return done.results


def _write_or_quarantine(
    job: _Job, path: str, stack_id: int, plan: StackPlan
) -> tuple[StackResult, dict[str, Any]]:
    values = plan_values(plan.headers)
    try:
        try:
            return _write_stack(job, path, stack_id, plan, values)
        except ValueOverflow:
            if not values.wide_dtype:
                raise
            log.info("stack %d of %s does not fit %s: rewriting", stack_id, job.name, values.dtype)
            _remove(job.root, path)
            return _write_stack(job, path, stack_id, plan, values.widened())
    except (UndecodableInstance, ValueOverflow) as exc:
        reason = exc.reason if isinstance(exc, UndecodableInstance) else "value_overflow"
        sop_uid = exc.sop_uid if isinstance(exc, UndecodableInstance) else ""
        log.warning("stack %d of %s quarantined: %s", stack_id, job.name, exc)
        _remove(job.root, path)
        return StackResult(
            stack_id, plan.role, "quarantined", "", flags=plan.flags,
            n_instances=len(plan.headers), reason=reason, detail=str(exc), sop_uid=sop_uid,
        ), {}  # fmt: skip


def _remove(root: zarr.Group, path: str) -> None:
    if path:
        if path in root:
            del root[path]
        return
    for key in [k for k in root if k.startswith("s") and k[1:].isdigit()]:
        del root[key]


def _layout(plan: StackPlan, values: ValuePlan) -> ngff.Layout:
    first = plan.first
    n_t, n_z = len(plan.grid), len(plan.grid[0])
    axes: list[str] = ["t"] if n_t > 1 else []
    scale: list[float] = [1.0] if n_t > 1 else []
    translation: list[float] = [0.0] if n_t > 1 else []
    if values.channels > 1:
        axes, scale, translation = [*axes, "c"], [*scale, 1.0], [*translation, 0.0]
    shape = [n for n in (n_t if n_t > 1 else 0, values.channels if values.channels > 1 else 0) if n]
    geo = plan.geometry
    if geo is not None:
        axes.append("z")
        shape.append(n_z)
        scale.extend(geo.spacing)
        translation.extend(geo.translation)
    else:
        scale.extend(first.pixel_spacing or (1.0, 1.0))
        translation.extend((0.0, 0.0))
    axes.extend(("y", "x"))
    shape.extend((first.rows, first.cols))
    unit = "millimeter" if first.pixel_spacing else None
    labels = ngff.anatomical_labels(geo.rotation) if geo is not None else ()
    return ngff.Layout(tuple(axes), tuple(shape), tuple(scale), tuple(translation), unit, labels)


def _write_stack(
    job: _Job, path: str, stack_id: int, plan: StackPlan, values: ValuePlan
) -> tuple[StackResult, dict[str, Any]]:
    layout = _layout(plan, values)
    method = "nearest" if values.kind == "label" else "mean"
    arrays = _create_levels(job.root, path, layout, values)
    plans = [shards.plan_for(a) for a in arrays]
    shard_shape = layout.chunks_and_shards(0)[1]
    depth = shard_shape[layout.axes.index("z")] if "z" in layout.axes else 1
    slabs = [(t, z0) for t, row in enumerate(plan.grid) for z0 in range(0, len(row), depth)]

    def decode(i: int) -> list[np.ndarray]:
        t, z0 = slabs[i]
        block = _decode_block(plan.grid[t][z0 : z0 + depth], plan, values, job)
        return _pyramid(block, len(arrays), method)

    # decode slab i+1 (in the shared pool) while slab i is encoded and written
    with ThreadPoolExecutor(1, thread_name_prefix="prefetch") as ahead:
        pending = ahead.submit(decode, 0)
        for i, (t, z0) in enumerate(slabs):
            levels = pending.result()
            if i + 1 < len(slabs):
                pending = ahead.submit(decode, i + 1)
            _write_levels(arrays, plans, layout, levels, t=t, z0=z0, pool=job.pool)
    result = StackResult(
        stack_id, plan.role, "written", path, layout.shape, values.dtype, layout.axes,
        layout.scale, plan.flags, len(plan.headers),
    )  # fmt: skip
    attrs = {
        "ome": ngff.multiscales_json(f"{job.name}/{path}".rstrip("/"), layout, method),
        "dicom": _stack_dicom(plan, values, stack_id),
    }
    return result, attrs


def _create_levels(
    root: zarr.Group, path: str, layout: ngff.Layout, values: ValuePlan
) -> list[zarr.Array[Any]]:
    arrays = []
    typesize = np.dtype(values.dtype).itemsize
    for level in range(layout.n_levels()):
        chunks, shard_shape = layout.chunks_and_shards(level)
        codec = BloscCodec(
            cname="zstd", clevel=BLOSC_CLEVEL, shuffle="bitshuffle", typesize=typesize
        )
        arrays.append(
            root.create_array(
                name=f"{path}/s{level}" if path else f"s{level}",
                shape=layout.level_shape(level),
                dtype=values.dtype,
                chunks=chunks,
                shards=shard_shape,
                fill_value=values.fill_value,
                compressors=codec,
                dimension_names=layout.axes,
                overwrite=True,
            )
        )
    return arrays


def _decode_block(
    row: Sequence[SliceHeader | None],
    plan: StackPlan,
    values: ValuePlan,
    job: _Job,
) -> np.ndarray:
    """(C, dz, Y, X) output values for one slab; missing slots hold the fill value."""
    first = plan.first
    out = np.empty((values.channels, len(row), first.rows, first.cols), dtype=values.dtype)
    present = [(k, h) for k, h in enumerate(row) if h is not None]
    if _slab_dtype(present, values) is None:
        _decode_planes(present, values, job, out)
    else:
        _decode_slab(present, len(row), values, job, out)
    for k, h in enumerate(row):
        if h is None:
            out[:, k] = values.fill_value
    return out


def _slab_dtype(
    present: Sequence[tuple[int, SliceHeader]], values: ValuePlan
) -> np.dtype[Any] | None:
    """The stored dtype shared by a slab's planes when one value mapping fits them all."""
    if values.channels != 1 or values.kind not in _SLAB_KINDS or not present:
        return None
    keys = {(stored_dtype(h), h.slope, h.intercept, h.dose_scaling) for _, h in present}
    return stored_dtype(present[0][1]) if len(keys) == 1 else None


_SLAB_KINDS = frozenset({"stored", "rescale_int", "rescale_float", "dose"})


def _decode_planes(
    present: Sequence[tuple[int, SliceHeader]], values: ValuePlan, job: _Job, out: np.ndarray
) -> None:
    """Plane by plane through pydicom (colour, labels, LUT sequences, mixed slabs)."""
    by_file: dict[str, list[tuple[int, SliceHeader]]] = {}
    for k, h in present:
        by_file.setdefault(h.name, []).append((k, h))
    futures = [
        job.pool.submit(read_planes, job.source, fname, [h for _, h in items])
        for fname, items in by_file.items()
    ]
    for future, items in zip(futures, by_file.values(), strict=True):
        for plane, (k, h) in zip(future.result(), items, strict=True):
            map_values(plane, h, values, out[:, k] if values.channels > 1 else out[0, k])


def _decode_slab(
    present: Sequence[tuple[int, SliceHeader]],
    depth: int,
    values: ValuePlan,
    job: _Job,
    out: np.ndarray,
) -> None:
    """Stored values of every plane into one slab, then one value mapping for the slab.

    Planes are read directly where :mod:`mirror.convert.direct` can (in the pool: the
    reads and the imagecodecs decodes release the GIL); files it cannot read go through
    pydicom and are mapped plane by plane.
    """
    dtype = stored_dtype(present[0][1])
    identity = values.kind == "stored" and np.dtype(values.dtype) == dtype
    raw = out[0] if identity else np.empty(out.shape[1:], dtype=dtype)
    by_file: dict[str, list[tuple[int, SliceHeader]]] = {}
    for k, h in present:
        by_file.setdefault(h.name, []).append((k, h))
    futures = [
        job.pool.submit(_read_file, job.source, fname, [(h, raw[k]) for k, h in items])
        for fname, items in by_file.items()
    ]
    fallback: list[tuple[int, SliceHeader, np.ndarray]] = []
    for future, items in zip(futures, by_file.values(), strict=True):
        planes = future.result()
        if planes is not None:
            fallback.extend((k, h, p) for (k, h), p in zip(items, planes, strict=True))
    if identity and not fallback:
        return
    # one vectorised mapping for the whole slab; a float rescale computes in float64, so it
    # stays per plane to keep its temporaries at plane size
    if not fallback and len(present) == depth and values.kind != "rescale_float":
        map_values(raw, present[0][1], values, out[0])
        return
    pydicom_planes = {k for k, _, _ in fallback}
    for k, h in present:
        if k not in pydicom_planes and not identity:
            map_values(raw[k], h, values, out[0, k])
    for k, h, plane in fallback:
        map_values(plane, h, values, out[0, k])


def _read_file(
    source: InstanceSource, name: str, planes: Sequence[tuple[SliceHeader, np.ndarray]]
) -> list[np.ndarray] | None:
    """Read one file's planes into the slab (None) or return them decoded by pydicom."""
    if all(direct.supported(h) for h, _ in planes):
        with source.open(name) as fp:
            if direct.read_file(fp, planes):
                return None
    return [np.asarray(p) for p in read_planes(source, name, [h for h, _ in planes])]


def _pyramid(block: np.ndarray, n_levels: int, method: str) -> list[np.ndarray]:
    levels = [block]
    while len(levels) < n_levels:
        levels.append(ngff.downsample(levels[-1], method))
    return levels


def _write_levels(
    arrays: Sequence[zarr.Array[Any]],
    plans: Sequence[shards.ShardPlan | None],
    layout: ngff.Layout,
    levels: Sequence[np.ndarray],
    *,
    t: int,
    z0: int,
    pool: Executor,
) -> None:
    """Whole shards only: every slab spans the full shard depth (or the array's end)."""
    for array, shard_plan, data in zip(arrays, plans, levels, strict=True):
        view = data
        if "z" not in layout.axes:
            view = view[:, 0]
        if "c" not in layout.axes:
            view = view[0]
        if "t" in layout.axes:
            view = view[np.newaxis]
        start = [{"t": t, "z": z0}.get(ax, 0) for ax in layout.axes]
        if shard_plan is not None:
            shards.write_shard(shard_plan, start, view, pool)
            continue
        box = tuple(slice(s, s + n) for s, n in zip(start, view.shape, strict=True))
        array[box] = view


def _stack_dicom(plan: StackPlan, values: ValuePlan, stack_id: int) -> dict[str, Any]:
    first = plan.first
    data: dict[str, Any] = {
        "schema": SCHEMA,
        "frame": "LPS",
        "stack_id": stack_id,
        "role": plan.role,
        "flags": list(plan.flags),
        "Modality": first.modality,
        "FrameOfReferenceUID": first.frame_of_ref,
        "pixel_spacing_source": first.spacing_source,
        "slices": [[_slice_json(h) for h in row] for row in plan.grid],
        "dropped_instances": [{"sop_instance_uid": u, "reason": r} for u, r in plan.dropped],
        "window": [{"center": first.window[0], "width": first.window[1]}] if first.window else [],
        "decoders": sorted({f"{h.transfer_syntax}:{_decoder_name(h)}" for h in plan.headers}),
    }  # fmt: skip
    if plan.fourth_dim:
        data["fourth_dimension"] = {"key": plan.fourth_dim, "values": list(plan.fourth_values)}
    if plan.geometry is not None:
        data.update(plan.geometry.as_json())
    else:
        data["geometry_checks"] = {"patient_geometry": False, "sort": SORT_RULE}
    data.update(values.as_json(plan.headers))
    return data


def _decoder_name(h: SliceHeader) -> str:
    return direct.decoder_name(h) or plugin_for(h.transfer_syntax) or "pydicom"


def _slice_json(h: SliceHeader | None) -> dict[str, Any] | None:
    if h is None:
        return None
    return {
        "sop_instance_uid": h.sop_uid,
        "file": h.name,
        "frame": h.frame,
        "ipp": list(h.ipp) if h.ipp else None,
        "transfer_syntax": h.transfer_syntax,
    }
