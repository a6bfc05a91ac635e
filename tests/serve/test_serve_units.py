"""Pure pieces of the server: nested BulkDataURIs, Accept negotiation, non-finite numbers."""

from __future__ import annotations

import io
import json

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from mirror.errors import NotAcceptable
from mirror.serve import accept
from mirror.serve.metadata import bulk_value, dumps, instance_json


def test_nested_bulk_data_uri_resolves_to_the_nested_value():
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    item = Dataset()
    item.add_new(0x00091010, "OB", b"\x01" * 2000)
    ds.add_new(0x00091011, "SQ", Sequence([item]))
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    body = json.loads(instance_json(io.BytesIO(out.getvalue()), "U"))
    uri = body["00091011"]["Value"][0]["00091010"]["BulkDataURI"]
    assert uri == "U/bulkdata/00091011/0/00091010"
    assert bulk_value(io.BytesIO(out.getvalue()), uri.split("/bulkdata/")[1]) == b"\x01" * 2000
    assert body["7FE00010"]["BulkDataURI"] == "U/bulkdata/7FE00010"


def test_non_finite_numbers_become_strings():
    assert json.loads(dumps([{"x": {"vr": "DS", "Value": [float("nan"), 1.5]}}])) == \
        [{"x": {"vr": "DS", "Value": ["nan", 1.5]}}]


@pytest.mark.parametrize(("header", "stored", "want"), [
    ('multipart/related; type="application/octet-stream"; transfer-syntax=*',
     "1.2.840.10008.1.2.4.90", ("image/jp2", "1.2.840.10008.1.2.4.90")),
    ("multipart/related; type=application/octet-stream",
     "1.2.840.10008.1.2.4.90", ("application/octet-stream", "1.2.840.10008.1.2.1")),
    ('multipart/related; type="*/*"', "1.2.840.10008.1.2.5",
     ("image/dicom-rle", "1.2.840.10008.1.2.5")),
    (None, "1.2.840.10008.1.2", ("application/octet-stream", "1.2.840.10008.1.2.1")),
    ('multipart/related; type="image/jls"; q=0.5, multipart/related; '
     'type="image/jp2"', "1.2.840.10008.1.2.4.90", ("image/jp2", "1.2.840.10008.1.2.4.90")),
])
def test_frame_negotiation(header, stored, want):
    ranges = accept.parse_accept(header)
    choice = accept.choose_frame(ranges, accept.frame_offers(stored, decodable=True))
    assert (choice.media, choice.transfer_syntax) == want


def test_frame_negotiation_refuses_what_it_cannot_make():
    ranges = accept.parse_accept('multipart/related; type="image/jls"')
    with pytest.raises(NotAcceptable):
        accept.choose_frame(ranges, accept.frame_offers("1.2.840.10008.1.2.1", decodable=True))


def test_fast_json_equals_pydicom_on_its_test_files():
    """Every element pydicom can encode comes out identical (pydicom drops invalid values
    under suppress_invalid_tags; the server sends them as stored)."""
    import warnings
    from pathlib import Path

    import pydicom.data

    from mirror.serve.fastjson import dataset_json

    # Local files only: get_testdata_files() would try to download the missing ones.
    bundled = Path(pydicom.data.__file__).parent / "test_files"
    external = Path(get_testdata_file("emri_small.dcm")).parent  # pydicom-data's store
    paths = sorted({*bundled.rglob("*.dcm"), *external.rglob("*.dcm")})

    def handler(elem):
        return f"U/{elem.tag:08X}"

    checked = 0
    for path in paths:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                ours = pydicom.dcmread(path, stop_before_pixels=True)
                theirs = pydicom.dcmread(path, stop_before_pixels=True)
                want = theirs.to_json_dict(1024, handler, suppress_invalid_tags=True)
            except Exception:
                continue
            got = dataset_json(ours, lambda path: "U/" + path.rsplit("/", 1)[-1], 1024)
        assert {k: got.get(k) for k in want} == want, path
        checked += 1
    assert checked > 100


def test_headers_longer_than_the_first_read_are_read_whole():
    from mirror.serve.metadata import HEAD_BYTES

    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.add_new(0x00291010, "OB", b"\x02" * (HEAD_BYTES + 1000))
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    body = json.loads(instance_json(io.BytesIO(out.getvalue()), "U"))
    assert body["00291010"]["BulkDataURI"] == "U/bulkdata/00291010"
    assert body["00280010"]["Value"] == [128]  # Rows: after the long element
    assert body["7FE00010"]["BulkDataURI"] == "U/bulkdata/7FE00010"
