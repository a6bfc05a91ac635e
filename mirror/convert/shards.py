"""Whole-shard encoding in our own thread pool, laid out exactly as zarr-python lays it out.

zarr-python encodes a shard's inner chunks as one asyncio task each and reached about
200 MB/s on 2 cores where numcodecs Blosc alone, which releases the GIL, reaches 370. So a
slab's shard is encoded here: inner chunks in zarr's Morton order, chunks equal to the fill
value omitted (zarr's ``write_empty_chunks=False``), the region past the array's end padded
with the fill value, then the (offset, nbytes) uint64 index and its CRC32C at the end. The
bytes equal zarr's own (tests/convert/test_shards.py), so the store stays plain zarr. Arrays
with any other codec chain are written through zarr.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import google_crc32c
import numpy as np
import zarr
from numcodecs import Blosc
from zarr.codecs import BloscCodec, BytesCodec, Crc32cCodec, ShardingCodec
from zarr.codecs.sharding import ShardingCodecIndexLocation
from zarr.core.buffer import default_buffer_prototype
from zarr.core.indexing import morton_order_iter
from zarr.core.sync import sync

_EMPTY = np.uint64(2**64 - 1)
_SHUFFLE = {"noshuffle": 0, "shuffle": 1, "bitshuffle": 2}


@dataclass(frozen=True, slots=True)
class ShardPlan:
    """What encoding one shard of ``array`` needs, read from the array's own metadata."""

    array: Any  # zarr.Array
    shard_shape: tuple[int, ...]
    chunk_shape: tuple[int, ...]
    codec: Blosc
    fill: np.ndarray  # 0-d, the array's dtype

    @property
    def chunks_per_shard(self) -> tuple[int, ...]:
        return tuple(s // c for s, c in zip(self.shard_shape, self.chunk_shape, strict=True))


def plan_for(array: zarr.Array[Any]) -> ShardPlan | None:
    """A plan when the codec chain is the one :mod:`mirror.convert.write` creates, else None."""
    codecs = array.metadata.codecs  # type: ignore[union-attr]
    if len(codecs) != 1 or not isinstance(codecs[0], ShardingCodec):
        return None
    sharding = codecs[0]
    inner, index = sharding.codecs, sharding.index_codecs
    little = BytesCodec(endian="little")
    if (
        len(inner) != 2
        or inner[0] not in (little, BytesCodec(endian=None))  # None: one-byte dtypes
        or not isinstance(inner[1], BloscCodec)
        or tuple(index) != (little, Crc32cCodec())
        or sharding.index_location != ShardingCodecIndexLocation.end
        or array.dtype.byteorder == ">"
    ):
        return None
    blosc = inner[1]
    codec = Blosc(
        cname=blosc.cname.value,
        clevel=blosc.clevel,
        shuffle=_SHUFFLE[blosc.shuffle.value],
        blocksize=blosc.blocksize,
        typesize=blosc.typesize,
    )
    fill = np.asarray(array.fill_value, dtype=array.dtype)
    return ShardPlan(array, tuple(array.shards or ()), sharding.chunk_shape, codec, fill)


def write_shard(plan: ShardPlan, start: Sequence[int], data: np.ndarray, pool: Executor) -> None:
    """Write ``data`` (the whole in-bounds part of one shard, origin ``start``) as one object."""
    coords = tuple(s // n for s, n in zip(start, plan.shard_shape, strict=True))
    blob = encode_shard(plan, data, pool)
    key = plan.array.metadata.encode_chunk_key(coords)
    path = plan.array.store_path / key
    if blob is None:
        sync(path.delete())  # all fill value: zarr stores no object either
        return
    sync(path.set(default_buffer_prototype().buffer.from_bytes(blob)))


def encode_shard(plan: ShardPlan, data: np.ndarray, pool: Executor) -> bytes | None:
    """The shard object's bytes (None when every inner chunk equals the fill value)."""
    full = _padded(plan, data)
    order = list(morton_order_iter(plan.chunks_per_shard))
    parts = list(pool.map(lambda c: _encode_chunk(plan, full, c), order))
    index = np.full((*plan.chunks_per_shard, 2), _EMPTY, dtype="<u8")
    offset = 0
    for coords, part in zip(order, parts, strict=True):
        if part is not None:
            index[coords] = (offset, len(part))
            offset += len(part)
    if offset == 0:
        return None
    raw = index.tobytes()
    crc = np.array([google_crc32c.value(raw)], dtype="<u4").tobytes()
    return b"".join([*(p for p in parts if p is not None), raw, crc])


def _padded(plan: ShardPlan, data: np.ndarray) -> np.ndarray:
    """``data`` grown to the full shard shape with the fill value (past the array's end)."""
    if data.shape == plan.shard_shape:
        return data
    full = np.full(plan.shard_shape, plan.fill, dtype=plan.fill.dtype)
    full[tuple(slice(0, n) for n in data.shape)] = data
    return full


def _encode_chunk(plan: ShardPlan, full: np.ndarray, coords: tuple[int, ...]) -> bytes | None:
    box = tuple(slice(c * n, (c + 1) * n) for c, n in zip(coords, plan.chunk_shape, strict=True))
    chunk = np.ascontiguousarray(full[box])
    if _all_fill(chunk, plan.fill):
        return None
    return bytes(plan.codec.encode(chunk.reshape(-1).view(np.uint8)))


def _all_fill(chunk: np.ndarray, fill: np.ndarray) -> bool:
    if fill.dtype.kind == "f" and math.isnan(float(fill)):
        return bool(np.isnan(chunk).all())
    if chunk.flat[0] != fill or chunk.flat[-1] != fill:
        return False  # most chunks hold data: skip the full comparison
    return bool((chunk == fill).all())
