"""Open a converted series as a lazy xarray DataArray with physical coordinates.

``xr.open_zarr`` cannot open the whole multiscale group (levels share dimension names with
different sizes), so this reads one level with dask and attaches the NGFF scale/translation
as coordinates, the per-slice SOPInstanceUIDs and LPS positions, and ``affine_lps``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import zarr

from mirror.errors import ConversionError, UsageError


def attrs_of(node: Any) -> dict[str, Any]:
    """A node's attributes as a plain dict (zarr types them as arbitrary JSON)."""
    data: dict[str, Any] = dict(node.attrs)
    return data


def open_root(path_or_store: Any) -> Any:
    """The committed root group of a series store (raises if the marker is absent)."""
    try:
        root = zarr.open_group(path_or_store, mode="r")
    except (FileNotFoundError, KeyError, ValueError) as exc:
        raise ConversionError(f"no OME-Zarr series store at {path_or_store!r}: {exc}") from exc
    dicom = attrs_of(root).get("dicom")
    if not isinstance(dicom, dict) or "schema" not in dicom:
        raise ConversionError(f"{path_or_store!r} is not a committed conversion (no marker)")
    return root


def image_group(root: Any, stack: int | None) -> Any:
    """The NGFF image group of ``stack`` (None = the primary stack at the root)."""
    stacks = attrs_of(root)["dicom"].get("stacks", [])
    written = [s for s in stacks if s.get("status") == "written"]
    if not written:
        raise ConversionError("the series has no written stack (all quarantined or non-image)")
    if stack is None:
        return root
    match = next((s for s in written if s["id"] == stack), None)
    if match is None:
        ids = [s["id"] for s in written]
        raise UsageError(f"no written stack {stack}; written stacks are {ids}")
    return root if match["path"] == "" else root[match["path"]]


def open_series(path_or_store: Any, level: int = 0, stack: int | None = None) -> Any:
    """One pyramid level of one stack as an ``xarray.DataArray`` (dask-backed, lazy)."""
    try:
        import xarray as xr
    except ImportError as exc:
        raise UsageError("open_series needs xarray: pip install 'tcia-mirror[xarray]'") from exc
    import dask.array as da

    group = image_group(open_root(path_or_store), stack)
    attrs = attrs_of(group)
    multiscale = attrs["ome"]["multiscales"][0]
    datasets = multiscale["datasets"]
    if not 0 <= level < len(datasets):
        raise UsageError(f"level {level} out of range: the image has {len(datasets)} levels")
    dataset = datasets[level]
    dims = [axis["name"] for axis in multiscale["axes"]]
    array = group[dataset["path"]]
    data = da.from_zarr(array)  # type: ignore[no-untyped-call]
    scale, translation = _transforms(dataset)
    dicom = dict(attrs["dicom"])
    coords = _coords(dims, data.shape, scale, translation, dicom)
    out_attrs = {
        "affine_lps": dicom.get("affine_lps"),
        "level": level,
        "dicom": dicom,
        "units": {a["name"]: a.get("unit", "") for a in multiscale["axes"]},
    }
    return xr.DataArray(data, dims=dims, coords=coords, attrs=out_attrs, name=dicom.get("Modality"))


def _transforms(dataset: dict[str, Any]) -> tuple[list[float], list[float]]:
    scale: list[float] = []
    translation: list[float] = []
    for transform in dataset["coordinateTransformations"]:
        if transform["type"] == "scale":
            scale = transform["scale"]
        elif transform["type"] == "translation":
            translation = transform["translation"]
    return scale, translation or [0.0] * len(scale)


def _coords(
    dims: list[str],
    shape: tuple[int, ...],
    scale: list[float],
    translation: list[float],
    dicom: dict[str, Any],
) -> dict[str, Any]:
    coords: dict[str, Any] = {}
    for i, dim in enumerate(dims):
        if dim in ("y", "x", "z"):
            coords[dim] = translation[i] + scale[i] * np.arange(shape[i])
    fourth = dicom.get("fourth_dimension")
    if "t" in dims and fourth:
        coords["t"] = np.asarray(fourth["values"])
    slices = dicom.get("slices") or []
    if "z" in dims and slices:
        first_row = slices[0]
        coords["sop_instance_uid"] = ("z", [s["sop_instance_uid"] if s else "" for s in first_row])
        ipp = np.asarray([s["ipp"] if s else [np.nan] * 3 for s in first_row], dtype=float)
        for axis, label in enumerate(("L", "P", "S")):
            coords[f"ipp_{label}"] = ("z", ipp[:, axis])
    return coords
