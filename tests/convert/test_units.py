"""Pure units with literals: spacing runs, slots, pyramid maths, orientation labels, errors."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from mirror.convert import geometry, ngff
from mirror.convert.decode import UndecodableInstance, plugin_for


@pytest.mark.parametrize(
    ("depths", "runs"),
    [
        ([0, 2, 4, 6, 8], [(0, 5)]),  # regular
        ([0, 2, 4, 8, 10], [(0, 5)]),  # one missing slice: gaps are multiples of 2
        ([0, 2, 4, 6, 11, 16, 21], [(0, 4), (4, 7)]),  # 2 mm then 5 mm
        ([0.0, 2.0, 4.004, 6.0], [(0, 4)]),  # within 1 % of the gap
        ([5.0], [(0, 1)]),
    ],
)
def test_regular_runs(depths, runs):
    assert geometry.regular_runs(depths) == runs


def test_slots_leave_room_for_missing_slices():
    assert geometry.slots([0.0, 2.0, 4.0, 10.0]) == ([0, 1, 2, 5], 2.0)


def test_downsample_rounds_half_up_and_replicates_odd_edges():
    block = np.array([[[1, 2, 7], [3, 4, 9]]], dtype=np.int16)  # (1, 2, 3)
    out = ngff.downsample(block, "mean")
    assert out.dtype == np.int16
    assert out.tolist() == [[[3, 8]]]  # (1+2+3+4+2)//4 = 3; (7+7+9+9+2)//4 = 8
    extreme = np.full((1, 2, 2), 32767, dtype=np.int16)
    assert ngff.downsample(extreme, "mean").tolist() == [[[32767]]]  # no int16 overflow
    labels = np.array([[[1, 2], [3, 4]]], dtype=np.uint8)
    assert ngff.downsample(labels, "nearest").tolist() == [[[1]]]


def test_layout_levels_and_shards():
    layout = ngff.Layout(("z", "y", "x"), (130, 512, 500), (2.0, 0.5, 0.5), (0.0, -10.0, 0.0), "millimeter")
    assert layout.n_levels() == 3
    assert layout.level_shape(2) == (130, 128, 125)
    assert layout.chunks_and_shards(0) == ((64, 64, 64), (64, 512, 512))
    assert layout.level_translation(1) == pytest.approx((0.0, -9.75, 0.25))
    tiny = ngff.Layout(("y", "x"), (16, 20), (1.0, 1.0), (0.0, 0.0), None)
    assert tiny.n_levels() == 1 and tiny.chunks_and_shards(0) == ((16, 20), (16, 20))


def test_anatomical_labels_only_for_axis_aligned_frames():
    axial = [[0, 0, 1], [0, 1, 0], [1, 0, 0]]
    assert ngff.anatomical_labels(axial) == (
        "inferior-to-superior", "anterior-to-posterior", "right-to-left",
    )
    prone = [[0, 0, -1], [0, -1, 0], [1, 0, 0]]
    assert ngff.anatomical_labels(prone)[1:] == ("posterior-to-anterior", "left-to-right")
    c, s = np.cos(0.5), np.sin(0.5)
    assert ngff.anatomical_labels([[0, -s, c], [0, c, s], [1, 0, 0]]) == ()


def test_undecodable_survives_pickling_with_its_reason():
    error = pickle.loads(pickle.dumps(UndecodableInstance("bad", reason="decode_failed", sop_uid="1.2")))
    assert (str(error), error.reason, error.sop_uid) == ("bad", "decode_failed", "1.2")


def test_preferred_plugins():
    assert plugin_for("1.2.840.10008.1.2.5") == "pylibjpeg"  # RLE: the fast one
    assert plugin_for("1.2.840.10008.1.2.4.80") == "pyjpegls"
    assert plugin_for("1.2.840.10008.1.2.1") == "native"
