"""The simulated archive speaks NBIA v4 as the reference describes it (nbia-api.md §3-5)."""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import re
import struct
import zipfile
from collections.abc import Iterator
from datetime import date

import httpx
import pydicom
import pytest

from mirror.archive.sim import SimArchive, SimServer, build_preset
from mirror.archive.sim.model import SimInstance
from mirror.archive.sim.rows import new_file_names


@pytest.fixture
def http(archive_server: SimServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=archive_server.base_url, timeout=30) as client:
        yield client


def _zip(resp: httpx.Response) -> zipfile.ZipFile:
    assert resp.status_code == 200, resp.text
    return zipfile.ZipFile(io.BytesIO(resp.content))


def test_series_rows_omit_null_keys_and_use_v4_types(http: httpx.Client) -> None:
    rows = http.get("getSeries", params={"Collection": "Sim-Lung"}).json()
    assert rows
    for row in rows:
        assert None not in row.values()
        assert "ProtocolName" not in row and "ThirdPartyAnalysis" not in row
        assert isinstance(row["ImageCount"], int) and isinstance(row["FileSize"], int)
        assert isinstance(row["SeriesNumber"], int) and row["Authorized"] == 1
        for key in ("DateReleased", "StudyDate", "SeriesDate", "MaxSubmissionTimestamp"):
            assert re.fullmatch(r"\d{2}-\d{2}-\d{4}", row[key]), (key, row[key])


def test_file_size_is_the_sum_of_served_files(http: httpx.Client, sim: SimArchive) -> None:
    for row in http.get("getSeries").json():
        uid = row["SeriesInstanceUID"]
        zf = _zip(http.get("getImageWithMD5Hash", params={"SeriesInstanceUID": uid}))
        dcm = [i for i in zf.infolist() if i.filename.endswith(".dcm")]
        assert sum(i.file_size for i in dcm) == row["FileSize"]
        assert len(dcm) == row["ImageCount"]


def test_no_rows_is_an_empty_body(http: httpx.Client) -> None:
    resp = http.get("getSeries", params={"Collection": "nope"})
    assert resp.status_code == 200 and resp.content == b""
    size = http.get("getSeriesSize", params={"SeriesInstanceUID": "1.2.3"})
    assert size.status_code == 200 and size.content == b""


def test_collection_match_is_case_insensitive(http: httpx.Client) -> None:
    upper = http.get("getSeries", params={"Collection": "SIM-LUNG"}).json()
    lower = http.get("getSeries", params={"Collection": "sim-lung"}).json()
    assert {r["SeriesInstanceUID"] for r in upper} == {r["SeriesInstanceUID"] for r in lower}
    assert {r["Collection"] for r in upper} == {"Sim-Lung"}


def test_unknown_parameter_is_400_with_the_allowed_list(http: httpx.Client) -> None:
    resp = http.get("getSeries", params={"Colection": "Sim-Lung"})
    assert resp.status_code == 400
    assert resp.text.startswith("Invalid query parameter: 'Colection'. Allowed parameters are: [")
    assert "Collection" in resp.text


def test_missing_parameter_is_400_text(http: httpx.Client) -> None:
    resp = http.get("getImage")
    assert resp.status_code == 400
    assert resp.text == "A parameter, SeriesInstanceUID, is required for this API call."
    assert http.get("getSeriesSize").text == (
        "A parameter, SeriesInstanceUID is required for this API call."
    )
    assert http.get("NewPatientsInCollection", params={"Collection": "Sim-Lung"}).status_code == 400


def test_both_mount_points_serve_the_api(archive_server: SimServer) -> None:
    alt = f"{archive_server.root_url}/nbia-api/v4/getCollectionValues"
    main = f"{archive_server.base_url}getCollectionValues"
    assert httpx.get(alt).json() == httpx.get(main).json() != []


def test_updated_series_strictly_after_midnight(http: httpx.Client, sim: SimArchive) -> None:
    def updated(from_date: str) -> set[str]:
        resp = http.get("getUpdatedSeries", params={"fromDate": from_date})
        assert resp.status_code == 200
        return {r["SeriesInstanceUID"] for r in resp.json()} if resp.content else set()

    assert updated("01-15-2025") == set(sim.series_uids())  # released at noon on the 15th
    assert updated("01-16-2025") == set()
    uid = sim.series_uids()[1]
    sim.today = date(2025, 3, 1)
    sim.replace_instance(uid, 0)
    assert updated("03-01-2025") == {uid}
    assert updated("02-28-2025") == {uid}
    row = http.get("getSeries", params={"SeriesInstanceUID": uid}).json()[0]
    assert row["DateReleased"] == "03-01-2025"


def test_malformed_from_date_is_an_empty_200(http: httpx.Client) -> None:
    resp = http.get("getUpdatedSeries", params={"fromDate": "2025/01/01"})
    assert resp.status_code == 200 and resp.content == b""


def test_get_image_entry_order_and_default_names(http: httpx.Client, sim: SimArchive) -> None:
    uid = sim.series_uids()[0]
    resp = http.get("getImage", params={"SeriesInstanceUID": uid, "IncludeMD5": "yes"})
    assert resp.headers["content-disposition"] == f'attachment; filename="{uid}.zip"'
    assert resp.headers["transfer-encoding"] == "chunked"
    assert "content-length" not in resp.headers
    names = _zip(resp).namelist()
    count = len(sim.true_md5s(uid))
    assert names == ["LICENSE", *[f"{i:08d}.dcm" for i in range(1, count + 1)], "md5hashes.csv"]


def test_license_text(http: httpx.Client, sim: SimArchive) -> None:
    uid = sim.series_uids("Sim-Lung")[0]
    text = _zip(http.get("getImage", params={"SeriesInstanceUID": uid})).read("LICENSE").decode()
    assert text.startswith("License Information. The Sim-Lung collection is distributed under the ")
    assert text.endswith("By downloading the data, you agree to abide by terms of this license.\n")


def test_entries_use_data_descriptors_and_deflate(http: httpx.Client, sim: SimArchive) -> None:
    uid = sim.series_uids()[0]
    zf = _zip(http.get("getImage", params={"SeriesInstanceUID": uid}))
    for info in zf.infolist():
        assert info.flag_bits & 0x08, info.filename  # sizes follow the data (streamed)
        assert info.compress_type == zipfile.ZIP_DEFLATED


def test_new_file_names_follow_the_nbia_algorithm() -> None:
    def inst(number: int, acq: int) -> SimInstance:
        return SimInstance(f"1.{number}", number, number, acq)

    single = [inst(n, 1) for n in range(1, 121)]
    assert new_file_names(single)[0] == "1-001.dcm"
    assert new_file_names(single)[119] == "1-120.dcm"
    nine = [inst(n, 1) for n in range(9, 0, -1)]  # database order reversed
    assert new_file_names(nine)[0] == "1-9.dcm" and new_file_names(nine)[8] == "1-1.dcm"
    two_acq = [inst(n, 1 if n <= 3 else 2) for n in range(1, 7)]
    assert [new_file_names(two_acq)[i] for i in range(6)] == [
        "1-1.dcm",
        "1-2.dcm",
        "1-3.dcm",
        "2-1.dcm",
        "2-2.dcm",
        "2-3.dcm",
    ]


def test_new_file_names_on_the_wire(http: httpx.Client, sim: SimArchive) -> None:
    shuffled = sim.series_uids("Sim-Brain")[1]  # the preset's series in shuffled db order
    params = {"SeriesInstanceUID": shuffled, "NewFileNames": "Yes"}
    zf = _zip(http.get("getImage", params=params))
    assert zf.namelist() == ["LICENSE", "1-1.dcm", "1-2.dcm"]
    numbers = [pydicom.dcmread(io.BytesIO(zf.read(n))).InstanceNumber for n in zf.namelist()[1:]]
    assert numbers == [1, 2]


def test_md5hashes_csv_format(http: httpx.Client, sim: SimArchive) -> None:
    for uid in sim.series_uids():
        zf = _zip(http.get("getImageWithMD5Hash", params={"SeriesInstanceUID": uid}))
        assert "LICENSE" not in zf.namelist()
        raw = zf.read("md5hashes.csv").decode()
        assert raw.startswith("Filename,MD5Hash\n") and raw.endswith("\n") and "\r" not in raw
        rows = dict(line.split(",") for line in raw.splitlines()[1:])
        assert set(rows) == {n for n in zf.namelist() if n.endswith(".dcm")}
        for name, stored in rows.items():
            true = hashlib.md5(zf.read(name)).hexdigest()
            assert stored == true.lstrip("0")  # CTP quirk: no leading zeros


def test_unpadded_hashes_occur(sim: SimArchive) -> None:
    # The quirk must be exercised: with this seed some of 64 MD5s start with a zero.
    uid = sim.add_series("Quirk", patient_id="Q1", n_instances=64, rows=8, cols=8)
    stored = [sim.stored_md5(uid, i) for i in range(64)]
    assert any(len(h) < 32 for h in stored)
    assert [h.zfill(32) for h in stored] == sim.true_md5s(uid)


def test_instances_are_real_dicom_with_geometry(http: httpx.Client, sim: SimArchive) -> None:
    uid = sim.series_uids("Sim-Lung")[0]
    params = {"SeriesInstanceUID": uid, "NewFileNames": "Yes"}
    zf = _zip(http.get("getImage", params=params))
    slices = [pydicom.dcmread(io.BytesIO(zf.read(n))) for n in zf.namelist()[1:]]
    assert {s.SeriesInstanceUID for s in slices} == {uid}
    assert {s.Modality for s in slices} == {"CT"}
    z = [float(s.ImagePositionPatient[2]) for s in slices]
    steps = {round(b - a, 4) for a, b in itertools.pairwise(z)}
    assert steps == {float(slices[0].SliceThickness)}
    assert slices[0].pixel_array.shape == (32, 32)
    assert slices[0].RescaleIntercept == -1024
    assert len({s.SOPInstanceUID for s in slices}) == len(slices)


def test_bytes_are_reproducible_and_versioned(sim: SimArchive) -> None:
    uid = sim.series_uids()[0]
    again = build_preset("tiny", seed=0)
    assert again.instance_bytes(uid, 0) == sim.instance_bytes(uid, 0)
    before = sim.true_md5s(uid)
    sim.replace_instance(uid, 1)
    after = sim.true_md5s(uid)
    assert after[0] == before[0] and after[1] != before[1]
    assert build_preset("tiny", seed=1).series_uids() != sim.series_uids()


def test_withdrawn_series_download_is_400_not_granted(http: httpx.Client, sim: SimArchive) -> None:
    uid = sim.series_uids()[0]
    sim.withdraw_series(uid)
    resp = http.get("getImage", params={"SeriesInstanceUID": uid})
    assert resp.status_code == 400
    assert resp.text == (
        "The user has not been granted the access to image with given SeriesInstanceUID,"
        f"{uid}. Please contact System Admin to resolve this issue."
    )
    assert uid not in {r["SeriesInstanceUID"] for r in http.get("getSeries").json()}


def test_series_size_and_sop_uids(http: httpx.Client, sim: SimArchive) -> None:
    uid = sim.series_uids()[0]
    size = http.get("getSeriesSize", params={"SeriesInstanceUID": uid}).json()
    assert size == [
        {"TotalSizeInBytes": sim.file_size(uid), "ObjectCount": len(sim.true_md5s(uid))}
    ]
    sops = http.get("getSOPInstanceUIDs", params={"SeriesInstanceUID": uid}).json()
    assert len(sops) == len(sim.true_md5s(uid)) and set(sops[0]) == {"SOPInstanceUID"}


def test_md5_hierarchy_is_over_stored_digests(http: httpx.Client, sim: SimArchive) -> None:
    uid = sim.series_uids()[0]
    body = http.post("getMD5Hierarchy", data={"SeriesInstanceUID": uid}).text
    stored = sorted(sim.stored_md5(uid, i) for i in range(len(sim.true_md5s(uid))))
    assert body == hashlib.md5("".join(stored).encode()).hexdigest()
    bad = http.post("getMD5Hierarchy", data={"Bogus": "1"})
    assert bad.status_code == 400 and bad.text.startswith("Invalid form parameter: 'Bogus'")


def test_csv_format_is_quoted(http: httpx.Client) -> None:
    resp = http.get("getCollectionValues", params={"format": "csv"})
    assert resp.headers["content-type"] == "text/csv"
    assert resp.text.splitlines()[0] == '"Collection"'
    assert http.get("getCollectionValues", params={"format": "yaml"}).status_code == 500


def test_admin_endpoint_mutates_and_sets_faults(archive_server: SimServer, sim: SimArchive) -> None:
    root = archive_server.root_url
    uid = sim.series_uids()[0]
    state = httpx.post(f"{root}/admin/faults", json={"fail_next": 2, "series": [uid]}).json()
    assert state["fault_counts"]["fail_next"] == 2 and sim.faults.series == frozenset({uid})
    httpx.post(f"{root}/admin/today", json={"date": "2025-06-01"})
    assert sim.today == date(2025, 6, 1)
    new = httpx.post(
        f"{root}/admin/add_series",
        json={"collection": "Added", "patient_id": "A1", "n_instances": 2},
    ).json()["series_uid"]
    assert new in sim.series_uids("Added")
    httpx.post(f"{root}/admin/withdraw", json={"series_uid": new})
    assert new not in sim.series_uids()
    bad = httpx.post(f"{root}/admin/faults", content=json.dumps({"nonsense": 1}))
    assert bad.status_code == 400 and "nonsense" in bad.json()["error"]

    listed, md5s = sim.record(uid).fingerprint, sim.true_md5s(uid)
    httpx.post(f"{root}/admin/replace", json={"series_uid": uid, "index": 1, "rerelease": False})
    assert sim.record(uid).fingerprint == listed and sim.true_md5s(uid)[1] != md5s[1]
    httpx.post(f"{root}/admin/rerelease", json={"series_uid": uid})
    assert sim.record(uid).fingerprint != listed and sim.true_md5s(uid)[0] == md5s[0]


def test_series_metadata_post_is_quoted_csv(http: httpx.Client, sim: SimArchive) -> None:
    uids = sim.series_uids()[:2]
    resp = http.post("getSeriesMetadata", data={"list": ",".join([*uids, "9.9.9"])})
    assert resp.headers["content-disposition"] == 'attachment; filename="SeriesMetaData.csv"'
    lines = resp.text.splitlines()
    assert lines[0].startswith('"PatientID","PatientName","PatientSex"')
    assert lines[0].endswith('"ThirdPartyAnalysis","Authorized"') and len(lines) == 3
    assert http.post("getSeriesMetadata", data={}).status_code == 400


def test_single_image_and_its_md5(http: httpx.Client, sim: SimArchive) -> None:
    uid = sim.series_uids()[0]
    sop = http.get("getSOPInstanceUIDs", params={"SeriesInstanceUID": uid}).json()[0][
        "SOPInstanceUID"
    ]
    one = http.get("getSingleImage", params={"SeriesInstanceUID": uid, "SOPInstanceUID": sop})
    assert one.headers["content-type"] == "application/dicom"
    assert pydicom.dcmread(io.BytesIO(one.content)).SOPInstanceUID == sop
    stored = http.get("getMD5HashForImage", params={"SOPInstanceUID": sop}).text
    assert stored.zfill(32) == hashlib.md5(one.content).hexdigest()
    missing = http.get("getSingleImage", params={"SeriesInstanceUID": uid, "SOPInstanceUID": "1.2"})
    assert missing.status_code == 500


def test_new_patients_and_studies_since(http: httpx.Client, sim: SimArchive) -> None:
    sim.today = date(2025, 2, 1)
    sim.add_series("Sim-Lung", patient_id="SL-NEW", n_instances=2)
    params = {"Collection": "sim-lung", "fromDate": "02-01-2025"}
    patients = http.get("NewPatientsInCollection", params=params).json()
    assert [p["PatientId"] for p in patients] == ["SL-NEW"]
    studies = http.get("NewStudiesInPatientCollection", params=params).json()
    assert [s["PatientID"] for s in studies] == ["SL-NEW"] and studies[0]["SeriesCount"] == 1


def test_stored_zips_at_level_zero(archive_server: SimServer, sim: SimArchive) -> None:
    sim.compresslevel = 0
    uid = sim.series_uids()[0]
    resp = httpx.get(archive_server.base_url + "getImage", params={"SeriesInstanceUID": uid})
    zf = _zip(resp)
    assert {i.compress_type for i in zf.infolist()} == {zipfile.ZIP_STORED}
    assert zf.testzip() is None
    # As ZipOutputStream writes STORED entries: CRC and sizes in the local header, no
    # data descriptor (bit 3), so a streaming reader knows where each entry ends.
    for info in zf.infolist():
        local = resp.content[info.header_offset : info.header_offset + 30]
        flags, crc, csize, usize = struct.unpack("<6xH6xIII", local[:26])
        assert not flags & 0x08
        assert (crc, csize, usize) == (info.CRC, info.file_size, info.file_size)


def test_deflated_entries_use_data_descriptors(http: httpx.Client, sim: SimArchive) -> None:
    zf = _zip(http.get("getImage", params={"SeriesInstanceUID": sim.series_uids()[0]}))
    assert {i.compress_type for i in zf.infolist()} == {zipfile.ZIP_DEFLATED}
    assert all(i.flag_bits & 0x08 for i in zf.infolist())


def test_md5_hierarchy_levels_nest_study_patient_collection(
    http: httpx.Client, sim: SimArchive
) -> None:
    def h(values: list[str]) -> str:
        return hashlib.md5("".join(sorted(values)).encode()).hexdigest()

    def ask(**form: str) -> str:
        return http.post("getMD5Hierarchy", data=form).text

    collection = "Sim-Lung"
    series = {uid: sim.get_series(uid) for uid in sim.series_uids(collection)}
    studies: dict[str, list[str]] = {}
    patients: dict[str, set[str]] = {}
    for uid, s in series.items():
        assert s is not None
        studies.setdefault(s.study_uid, []).append(ask(SeriesInstanceUID=uid))
        patients.setdefault(s.patient_id, set()).add(s.study_uid)
    for study, hashes in studies.items():
        assert ask(StudyInstanceUID=study) == h(hashes)
    patient_hashes = []
    for pid, study_uids in patients.items():
        expected = h([h(studies[u]) for u in study_uids])
        assert ask(PatientID=pid, Collection=collection) == expected
        patient_hashes.append(expected)
    assert ask(Collection=collection) == h(patient_hashes)

    before, uid = ask(Collection=collection), next(iter(series))
    listed, md5s = sim.record(uid).fingerprint, sim.true_md5s(uid)
    sim.replace_instance(uid, rerelease=False)  # silent: no listing field changes
    assert sim.record(uid).fingerprint == listed and sim.true_md5s(uid) != md5s
    assert ask(Collection=collection) != before
    assert ask(Collection="Sim-Brain") != "" and ask(Collection="Nope") == ""
