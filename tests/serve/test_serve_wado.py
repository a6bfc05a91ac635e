"""WADO-RS over real HTTP: dicomweb.md section 6, checks 8-15 (metadata, retrieve, frames,
rendered), with dicomweb-client and raw httpx requests."""

from __future__ import annotations

import io
import json

import httpx
import numpy as np
import pydicom
import pytest
from dicomweb_client.api import DICOMwebClient
from PIL import Image
from pydicom.encaps import get_frame

OHIF_FRAMES = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'
OHIF_UNQUOTED = "multipart/related; type=application/octet-stream; transfer-syntax=*"


@pytest.fixture(scope="module")
def client(base: str) -> DICOMwebClient:
    return DICOMwebClient(base)


def ids(tree, name: str, index: int = 0) -> tuple[str, str, str]:
    sidecar = tree.sidecars[name]
    ds = stored(tree, name, index)
    return sidecar.study_uid, sidecar.series_uid, ds.SOPInstanceUID


def stored(tree, name: str, index: int = 0) -> pydicom.Dataset:
    return pydicom.dcmread(io.BytesIO(stored_bytes(tree, name, index)))


def stored_bytes(tree, name: str, index: int = 0) -> bytes:
    from serve_tree import instance_bytes

    return instance_bytes(tree.series[name], index)


def parts(response: httpx.Response) -> list[tuple[str, bytes]]:
    """Split a multipart body the way cornerstone does: boundary from the body's first line."""
    body = response.content
    first = body.split(b"\r\n", 1)[0]
    assert first.startswith(b"--")
    out = []
    for chunk in body.split(first)[1:]:
        if chunk.startswith(b"--"):
            break
        head, _, data = chunk[2:].partition(b"\r\n\r\n")
        out.append((head.decode(), data[:-2]))
    return out


def url(base, s, se, i):
    return f"{base}/studies/{s}/series/{se}/instances/{i}"


def test_series_metadata(base, tree, client):
    s, se, _ = ids(tree, "ct")
    r = httpx.get(f"{base}/studies/{s}/series/{se}/metadata")
    assert r.status_code == 200
    items = json.loads(r.text, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
    assert len(items) == 5
    for item in items:
        assert all(len(v["vr"]) == 2 for v in item.values())
        assert all("Value" not in v for v in item.values() if v["vr"] in ("OB", "OW"))
        for key in ("00280010", "00280011", "00280100", "00280004", "00200032", "00280030",
                    "00200037", "00280103", "00281052", "00281053"):
            assert key in item, key
        assert item["0020000E"]["Value"] == [se]
        pixel = item["7FE00010"]
        assert pixel["vr"] == "OW" and pixel["BulkDataURI"].startswith("http")
    bulk = httpx.get(items[0]["7FE00010"]["BulkDataURI"])
    assert bulk.status_code == 200
    sop = items[0]["00080018"]["Value"][0]
    index = [stored(tree, "ct", i).SOPInstanceUID for i in range(5)].index(sop)
    assert parts(bulk)[0][1] == stored(tree, "ct", index).PixelData
    assert client.retrieve_series_metadata(s, se)[0]["00080016"]["vr"] == "UI"


def test_study_and_instance_metadata(client, tree):
    s, se, i = ids(tree, "multiframe")
    assert len(client.retrieve_study_metadata(s)) == 3
    meta = client.retrieve_instance_metadata(s, se, i)
    assert meta["00280008"]["Value"] == [10]
    # every BulkDataURI the server hands out resolves
    uris = [v["BulkDataURI"] for v in meta.values() if "BulkDataURI" in v]
    assert uris
    for uri in uris:
        assert client.retrieve_bulkdata(uri)


def test_retrieve_instance_equals_the_file(client, base, tree):
    s, se, i = ids(tree, "ct", 2)
    ds = client.retrieve_instance(s, se, i)
    assert ds.SOPInstanceUID == i
    r = httpx.get(url(base, s, se, i), headers={"Accept": 'multipart/related; '
                                                         'type="application/dicom"'})
    assert r.headers["content-type"].startswith('multipart/related; type="application/dicom"')
    assert "boundary=" in r.headers["content-type"]
    ((head, data),) = parts(r)
    assert head == "Content-Type: application/dicom; transfer-syntax=1.2.840.10008.1.2.1"
    assert data == stored_bytes(tree, "ct", 2)


def test_retrieve_series_and_study(client, tree):
    s, se, _ = ids(tree, "ct")
    got = sorted(ds.SOPInstanceUID for ds in client.iter_series(s, se))
    assert got == sorted(stored(tree, "ct", k).SOPInstanceUID for k in range(5))
    study = client.retrieve_study(s)
    assert len(study) == 7


def test_retrieve_transfer_syntax_policy(base, tree):
    s, se, i = ids(tree, "j2k")
    ok = httpx.get(url(base, s, se, i), headers={"Accept": 'multipart/related; type='
                   '"application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.90'})
    assert ok.status_code == 200
    refused = httpx.get(url(base, s, se, i), headers={"Accept": 'multipart/related; type='
                        '"application/dicom"; transfer-syntax=1.2.840.10008.1.2.1'})
    assert refused.status_code == 406


@pytest.mark.parametrize("accept", [OHIF_FRAMES, OHIF_UNQUOTED,
                                    'multipart/related; type="application/octet-stream"',
                                    "*/*"])
def test_native_frame_wire_format(base, tree, accept):
    s, se, i = ids(tree, "ct", 1)
    r = httpx.get(url(base, s, se, i) + "/frames/1", headers={"Accept": accept})
    assert r.status_code == 200
    assert r.content.startswith(b"--")
    ((head, data),) = parts(r)
    assert head == "Content-Type: application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1"
    ds = stored(tree, "ct", 1)
    assert len(data) == ds.Rows * ds.Columns * ds.SamplesPerPixel * ds.BitsAllocated // 8
    assert data == ds.PixelData


def test_multiframe_native_frames_in_order(client, tree):
    s, se, i = ids(tree, "multiframe")
    ds = stored(tree, "multiframe")
    size = ds.Rows * ds.Columns * 2
    got = client.retrieve_instance_frames(s, se, i, [1, 3])
    assert got == [ds.PixelData[:size], ds.PixelData[2 * size:3 * size]]
    got = client.retrieve_instance_frames(
        s, se, i, [10, 2], media_types=(("application/octet-stream", "1.2.840.10008.1.2.1"),))
    assert got == [ds.PixelData[9 * size:], ds.PixelData[size:2 * size]]


@pytest.mark.parametrize("name", ["j2k", "rle"])
def test_encapsulated_frames_pass_through(client, base, tree, name):
    s, se, i = ids(tree, name)
    ds = stored(tree, name)
    want = [get_frame(ds.PixelData, n, number_of_frames=10) for n in (0, 2)]
    assert client.retrieve_instance_frames(s, se, i, [1, 3]) == want
    r = httpx.get(url(base, s, se, i) + "/frames/3", headers={"Accept": OHIF_FRAMES})
    ((head, data),) = parts(r)
    ts = ds.file_meta.TransferSyntaxUID
    assert head.endswith(f"transfer-syntax={ts}")
    assert data == want[1]


def test_encapsulated_frames_decoded_on_request(base, tree):
    s, se, i = ids(tree, "rle")
    r = httpx.get(url(base, s, se, i) + "/frames/2", headers={
        "Accept": 'multipart/related; type="application/octet-stream"; '
                  'transfer-syntax=1.2.840.10008.1.2.1'})
    assert r.status_code == 200
    ((head, data),) = parts(r)
    assert head.endswith("transfer-syntax=1.2.840.10008.1.2.1")
    want = stored(tree, "rle").pixel_array[1]
    assert np.array_equal(np.frombuffer(data, want.dtype.newbyteorder("<")).reshape(want.shape),
                          want)


@pytest.mark.parametrize("accept", ['multipart/related; type="image/jls"',
                                    'multipart/related; type="application/octet-stream"; '
                                    "transfer-syntax=1.2.840.10008.1.2.4.80",
                                    "multipart/related; type=application/octet-stream; "
                                    "transfer-syntax=1.2.3.4"])
def test_frames_406_for_what_cannot_be_produced(base, tree, accept):
    s, se, i = ids(tree, "ct")
    r = httpx.get(url(base, s, se, i) + "/frames/1", headers={"Accept": accept})
    assert r.status_code == 406
    assert r.json()["request_id"] == r.headers["x-request-id"]


def test_unknown_resources_are_404(base, tree):
    s, se, i = ids(tree, "ct")
    assert httpx.get(f"{base}/studies/1.2.3.4/metadata").status_code == 404
    assert httpx.get(url(base, s, se, "1.2.3.4") + "/frames/1").status_code == 404
    assert httpx.get(f"{base}/studies/1.2.3.4").status_code == 404
    assert httpx.get(url(base, s, se, i) + "/frames/2").status_code == 404  # one frame only


def test_rendered_and_thumbnail(client, base, tree):
    s, se, i = ids(tree, "ct")
    jpeg = client.retrieve_instance_rendered(s, se, i, media_types=("image/jpeg",),
                                             params={"viewport": "256,256"})
    image = Image.open(io.BytesIO(jpeg))
    assert image.format == "JPEG" and max(image.size) <= 256
    assert np.asarray(image).std() > 5  # an image, not a flat field
    r = httpx.get(f"{base}/studies/{s}/series/{se}/thumbnail", headers={"Accept": "image/jpeg"})
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert max(Image.open(io.BytesIO(r.content)).size) <= 256
    png = httpx.get(url(base, s, se, i) + "/rendered?window=40,400&viewport=64,64",
                    headers={"Accept": "image/png"})
    assert Image.open(io.BytesIO(png.content)).format == "PNG"
    ohif = httpx.get(url(base, s, se, i) + "/thumbnail?accept=image%2Fjpeg",
                     headers={"Accept": 'multipart/related; type="application/octet-stream"'})
    assert ohif.headers["content-type"] == "image/jpeg"


def test_rendered_frames_of_compressed_multiframe(base, tree):
    s, se, i = ids(tree, "j2k")
    r = httpx.get(url(base, s, se, i) + "/frames/5/rendered", headers={"Accept": "image/jpeg"})
    assert r.status_code == 200
    assert Image.open(io.BytesIO(r.content)).size == (64, 64)


@pytest.mark.parametrize("query", ["viewport=0,10", "viewport=a,b", "window=1", "quality=500",
                                   "viewport=9999999,10", "window=40,-5"])
def test_bad_rendering_parameters(base, tree, query):
    s, se, i = ids(tree, "ct")
    r = httpx.get(url(base, s, se, i) + f"/rendered?{query}", headers={"Accept": "image/jpeg"})
    assert r.status_code in (400, 413), query


def test_rendered_series_is_one_image_per_instance(base, tree):
    s, se, _ = ids(tree, "ct")
    r = httpx.get(f"{base}/studies/{s}/series/{se}/rendered?viewport=32,32",
                  headers={"Accept": "image/png"})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith('multipart/related; type="image/png"')
    images = [Image.open(io.BytesIO(data)) for _, data in parts(r)]
    assert len(images) == 5 and all(i.format == "PNG" and i.size == (32, 32) for i in images)
