"""Shards encoded in our pool are byte-identical to zarr's own, whatever the pool width, and
a whole conversion is deterministic whether it runs on one thread or several."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import convert_corpus as cc
import numpy as np
import pytest
import zarr
from pydicom.uid import JPEG2000Lossless
from zarr.codecs import BloscCodec, GzipCodec

from mirror.convert import shards
from mirror.convert.series import convert_source
from mirror.convert.source import DirSource


def _array(store: dict, shape, dtype, shard, fill) -> zarr.Array:
    codec = BloscCodec(cname="zstd", clevel=1, shuffle="bitshuffle", typesize=np.dtype(dtype).itemsize)
    chunks = tuple(min(64, n) for n in shard)
    return zarr.create_array(store=store, shape=shape, dtype=dtype, chunks=chunks, shards=shard,
                             fill_value=fill, compressors=codec)  # fmt: skip


def _objects(array: zarr.Array) -> dict[str, bytes]:
    raw = array.store_path.store._store_dict
    return {k: raw[k].to_bytes() for k in sorted(raw) if k != "zarr.json"}


def _volume(shape, dtype, fill) -> np.ndarray:
    rng = np.random.default_rng(3)
    data = rng.integers(0, 100, shape).astype(dtype)
    data[:, :64, :64] = fill  # whole inner chunks of fill value are omitted from the shard
    return data


@pytest.mark.parametrize(
    ("shape", "dtype", "fill"),
    [
        ((130, 150, 140), "int16", -2000),  # partial shard in z, padding in y and x
        ((64, 128, 128), "uint16", 0),
        ((70, 100, 90), "float32", 0.0),
        ((20, 64, 64), "uint8", 0),
    ],
)
def test_shard_bytes_equal_zarrs_own(shape, dtype, fill):
    data = _volume(shape, dtype, fill)
    shard = (min(64, shape[0]), -(-shape[1] // 64) * 64, -(-shape[2] // 64) * 64)
    reference = _array({}, shape, dtype, shard, fill)
    ours = _array({}, shape, dtype, shard, fill)
    plan = shards.plan_for(ours)
    assert plan is not None
    with ThreadPoolExecutor(3) as pool:
        for z0 in range(0, shape[0], shard[0]):
            reference[z0 : z0 + shard[0]] = data[z0 : z0 + shard[0]]
            shards.write_shard(plan, (z0, 0, 0), data[z0 : z0 + shard[0]], pool)
    assert _objects(ours) == _objects(reference)
    np.testing.assert_array_equal(ours[...], data)


def test_all_fill_shard_writes_no_object():
    array = _array({}, (64, 64, 64), "int16", (64, 64, 64), -1)
    plan = shards.plan_for(array)
    with ThreadPoolExecutor(2) as pool:
        shards.write_shard(plan, (0, 0, 0), np.full((64, 64, 64), -1, np.int16), pool)
    assert _objects(array) == {}
    assert (array[...] == -1).all()


def test_pool_width_does_not_change_the_bytes():
    array = _array({}, (64, 256, 256), "int16", (64, 256, 256), 0)
    plan = shards.plan_for(array)
    data = _volume((64, 256, 256), "int16", 0)
    blobs = []
    for width in (1, 4):
        with ThreadPoolExecutor(width) as pool:
            blobs.append(shards.encode_shard(plan, data, pool))
    assert blobs[0] == blobs[1]


def test_other_codec_chains_are_left_to_zarr():
    array = zarr.create_array(store={}, shape=(8, 8), dtype="int16", chunks=(4, 4), shards=(8, 8),
                              compressors=GzipCodec())  # fmt: skip
    assert shards.plan_for(array) is None
    unsharded = zarr.create_array(store={}, shape=(8, 8), dtype="int16", chunks=(4, 4))
    assert shards.plan_for(unsharded) is None


def _chunks(store: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(store)): p.read_bytes()
        for p in sorted(store.rglob("*"))
        if p.is_file() and p.name != "zarr.json"
    }


@pytest.mark.parametrize("syntax", [None, JPEG2000Lossless])
def test_parallel_conversion_equals_serial_byte_for_byte(tmp_path, syntax):
    folder = tmp_path / "series"
    if syntax is None:
        cc.regular(folder, n=70, rows=72, cols=72)
    else:
        cc.compressed(folder, syntax, n=70)
    outs = []
    for threads in (1, 4):
        out = tmp_path / f"t{threads}.ome.zarr"
        convert_source(DirSource(str(folder)), zarr.storage.LocalStore(str(out)), name="s",
                       threads=threads)  # fmt: skip
        outs.append(_chunks(out))
    assert outs[0] == outs[1]
    assert any(k.startswith("s0/c/") for k in outs[0])
