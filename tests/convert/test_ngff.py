"""The stores are valid OME-Zarr 0.5, readable by other tools and by open_series; reconverting
is byte-identical; an unfinished store (no marker) is invisible."""

from __future__ import annotations

from pathlib import Path

import convert_corpus as cc
import ngff_zarr
import numpy as np
import pytest
import zarr
from ome_zarr_models.v05.image import Image

from mirror.convert import open_series
from mirror.errors import ConversionError, UsageError


def _files(store: Path) -> dict[str, bytes]:
    return {str(p.relative_to(store)): p.read_bytes() for p in sorted(store.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("case", ["regular", "temporal", "two_orientations", "gantry_tilt"])
def test_metadata_validates_with_ome_zarr_models(tmp_path, convert, case):
    store, outcome = convert(getattr(cc, case)(tmp_path / case))
    root = zarr.open_group(str(store), mode="r")
    image = Image.from_zarr(root)
    assert image.attributes.ome.version == "0.5"
    for stack in outcome.stacks[1:]:
        Image.from_zarr(root[stack.path])


def test_ngff_zarr_reads_scale_and_translation(tmp_path, convert):
    store, _ = convert(cc.regular(tmp_path / "regular", rows=128, cols=128))
    multiscales = ngff_zarr.from_ngff_zarr(str(store))
    image = multiscales.images[0]
    assert image.dims == ("z", "y", "x")
    assert image.scale == pytest.approx({"z": 2.0, "y": 0.8, "x": 0.7})
    assert image.translation == pytest.approx({"z": -20.0, "y": -11.0, "x": -12.0})
    np.testing.assert_array_equal(np.asarray(image.data), zarr.open_array(str(store / "s0"))[...])
    assert len(multiscales.images) == 2


def test_open_series_coordinates_match_positions(tmp_path, convert):
    store, _ = convert(cc.gantry_tilt(tmp_path / "tilt"))
    volume = open_series(str(store))
    assert volume.dims == ("z", "y", "x")
    assert volume.attrs["affine_lps"] is not None
    positions = np.stack([volume.coords[f"ipp_{a}"].values for a in "LPS"], axis=1)
    affine = np.asarray(volume.attrs["affine_lps"])
    for k in range(volume.sizes["z"]):
        assert np.allclose(affine @ [k, 0, 0, 1], [*positions[k], 1.0], atol=1e-3)
    assert volume.coords["z"].values[1] - volume.coords["z"].values[0] == pytest.approx(1.8794, abs=1e-4)
    assert all(volume.coords["sop_instance_uid"].values)
    assert float(volume.sel(z=volume.coords["z"][3]).mean()) == pytest.approx(
        float(zarr.open_array(str(store / "s0"))[3].mean())
    )


def test_open_series_4d_and_substacks(tmp_path, convert):
    store, _ = convert(cc.temporal(tmp_path / "dce"))
    volume = open_series(str(store), level=0)
    assert volume.dims == ("t", "z", "y", "x")
    assert list(volume.coords["t"].values) == ["1", "2", "3"]
    store2, _ = convert(cc.two_orientations(tmp_path / "orient"))
    coronal = open_series(str(store2), stack=1)
    assert coronal.sizes["z"] == 6
    with pytest.raises(UsageError):
        open_series(str(store2), stack=7)
    with pytest.raises(UsageError):
        open_series(str(store2), level=5)


def test_reconversion_is_byte_identical(tmp_path, convert):
    folder = cc.regular(tmp_path / "regular", rows=96, cols=80)
    store, _ = convert(folder)
    first = _files(store)
    store_again, _ = convert(folder)
    assert store_again == store
    assert _files(store) == first
    assert any(name.startswith("s0/c/") for name in first)


def test_store_without_marker_is_invisible(tmp_path, convert):
    store, _ = convert(cc.regular(tmp_path / "regular"))
    root = zarr.open_group(str(store), mode="r+")
    root.attrs.clear()  # what a crash between the arrays and the root metadata leaves
    with pytest.raises(ConversionError, match="not a committed"):
        open_series(str(store))
