"""QIDO-RS over real HTTP: dicomweb.md section 6, checks 1-8, with dicomweb-client and httpx."""

from __future__ import annotations

import json

import httpx
import pytest
from dicomweb_client.api import DICOMwebClient

STUDY_TAGS = ["00080020", "00080030", "00080050", "00080056", "00080061", "00080090",
              "00081190", "00100010", "00100020", "00100030", "00100040", "0020000D",
              "00200010", "00201206", "00201208"]


@pytest.fixture(scope="module")
def client(base: str) -> DICOMwebClient:
    return DICOMwebClient(base)


def uids(items: list[dict], tag: str = "0020000D") -> list[str]:
    return [i[tag]["Value"][0] for i in items]


def get(base: str, path: str, **kw) -> httpx.Response:
    return httpx.get(base + path, headers={"Accept": "application/dicom+json"}, **kw)


def test_study_search_returns_required_attributes_and_index_counts(base, tree):
    r = get(base, "/studies")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/dicom+json")
    items = r.json()
    assert sorted(uids(items)) == sorted(s.uid for s in tree.studies.values())
    by_uid = {i["0020000D"]["Value"][0]: i for i in items}
    a = by_uid[tree.studies["A"].uid]
    for item in items:
        assert all(tag in item for tag in STUDY_TAGS), set(STUDY_TAGS) - set(item)
        assert list(item) == sorted(item)  # keys ascending (PS3.18 F.2.2)
        assert item["0020000D"]["vr"] == "UI"
        assert isinstance(item["00100010"]["Value"][0]["Alphabetic"], str)
    assert a["00100010"]["Value"][0]["Alphabetic"] == "Doe^John"
    assert a["00201206"]["Value"] == [2] and a["00201208"]["Value"] == [7]
    assert a["00080061"]["Value"] == ["CT", "MR"]
    assert "Value" not in a["00080090"]  # required, empty: vr only
    assert a["00081190"]["Value"][0] == f"{base}/studies/{tree.studies['A'].uid}"


def test_paging_is_stable_and_ends_with_204(base, tree, client):
    seen = []
    for offset in range(3):
        r = get(base, f"/studies?limit=1&offset={offset}")
        assert r.status_code == 200 and len(r.json()) == 1
        if offset < 2:
            assert "additional results" in r.headers["warning"]
        seen += uids(r.json())
    assert sorted(seen) == sorted(s.uid for s in tree.studies.values())
    end = get(base, "/studies?limit=1&offset=3")
    assert end.status_code == 204 and end.content == b""
    assert len(client.search_for_studies(limit=1, get_remaining=True)) == 3
    again = [uids(get(base, f"/studies?limit=1&offset={o}").json())[0] for o in range(3)]
    assert again == seen


@pytest.mark.parametrize(("query", "expected"), [
    ("PatientName=DOE*", {"A"}),
    ("00100010=doe*", {"A"}),
    ("PatientName=*an*", {"B", "C"}),
    ("PatientName=R?e^Jane", {"B"}),
    ("PatientID=P-002", {"B"}),
    ("PatientID=P-00*", {"A", "B", "C"}),
    ("PatientID=p-002", set()),  # IDs match case-sensitively
    ("StudyDate=20200101-20201231", {"A"}),
    ("StudyDate=-20191231", {"B"}),
    ("StudyDate=20200315-", {"A", "C"}),
    ("StudyDate=20191120", {"B"}),
    ("ModalitiesInStudy=MR", {"A", "B"}),
    ("ModalitiesInStudy=CT%2CMR", {"A", "B", "C"}),
    ("AccessionNumber=ACC3", {"C"}),
    ("StudyTime=1000-1100", {"A", "B", "C"}),
    ("foo=bar", {"A", "B", "C"}),
    ("PatientName=", {"A", "B", "C"}),
])
def test_study_matching(base, tree, query, expected):
    r = get(base, f"/studies?{query}")
    want = {tree.studies[k].uid for k in expected}
    if not want:
        assert r.status_code == 204
        return
    assert r.status_code == 200, r.text
    assert set(uids(r.json())) == want


def test_matching_through_dicomweb_client(client, tree):
    found = client.search_for_studies(search_filters={"PatientName": "Doe*"})
    assert uids(found) == [tree.studies["A"].uid]
    found = client.search_for_studies(search_filters={"StudyDate": "20190101-20201231"})
    assert set(uids(found)) == {tree.studies["A"].uid, tree.studies["B"].uid}


def test_uid_list_matching(base, tree):
    a, b = tree.studies["A"].uid, tree.studies["B"].uid
    r = get(base, f"/studies?StudyInstanceUID={a},{b}")
    assert set(uids(r.json())) == {a, b}


def test_includefield_repeated_comma_list_and_lower_levels(base, client):
    for query in ("includefield=00081030&includefield=StudyDescription",
                  "includefield=00081030%2C00080060%2C00080090%2C00100030"):
        items = get(base, f"/studies?{query}").json()
        assert all(i["00081030"]["Value"][0] for i in items)
    items = get(base, "/studies?includefield=00080018").json()
    assert all("00080018" not in i for i in items)
    items = client.search_for_studies(fields=["StudyDescription"])
    assert all("00081030" in i for i in items)
    items = get(base, "/studies?includefield=all").json()
    assert all("00101010" in i for i in items)


@pytest.mark.parametrize("query", ["limit=abc", "limit=-1", "offset=x", "StudyDate=2020",
                                   "StudyDate=20201301", "StudyDate=20201231-20200101",
                                   "StudyInstanceUID=1.2.abc", "00201206=many",
                                   "StudyTime=25xx"])
def test_malformed_queries_are_400_with_request_id(base, query):
    r = get(base, f"/studies?{query}")
    assert r.status_code == 400, query
    body = r.json()
    assert body["request_id"] == r.headers["x-request-id"] and body["error"]


def test_huge_limit_is_capped_with_a_warning(base):
    r = get(base, "/studies?limit=99999999")
    assert r.status_code == 200 and len(r.json()) == 3
    assert "maximum of 1000" in r.headers["warning"]


def test_series_search_ohif_lazy_load(base, tree):
    study = tree.studies["A"].uid
    r = get(base, f"/studies/{study}/series?includefield=00080021%2C00080031%2C0008103E"
                  "%2C00200011")
    assert r.status_code == 200
    items = r.json()
    assert uids(items, "0020000E") == [tree.series["ct"].uid, tree.series["mr"].uid]
    for item in items:
        for tag in ("0020000E", "00080060", "00200011", "00201209", "0008103E", "00080021"):
            assert tag in item
        assert "00100010" not in item  # study attributes are fixed by the path
    assert items[0]["00201209"]["Value"] == [5]


def test_all_series_and_instances_carry_higher_levels(base, tree):
    items = get(base, "/series?Modality=MR").json()
    assert {i["0020000E"]["Value"][0] for i in items} >= {tree.series["mr"].uid}
    assert all("00100020" in i and "0020000D" in i for i in items)
    inst = get(base, f"/instances?SeriesInstanceUID={tree.series['ct'].uid}").json()
    assert len(inst) == 5
    assert [i["00200013"]["Value"][0] for i in inst] == [1, 2, 3, 4, 5]
    assert all(i["0020000E"]["Value"][0] == tree.series["ct"].uid for i in inst)
    study = tree.studies["B"].uid
    frames = get(base, f"/studies/{study}/instances").json()
    assert sorted(i["00280008"]["Value"][0] for i in frames) == [10, 10, 10]


def test_instance_search_in_series(client, tree):
    s, se = tree.studies["A"].uid, tree.series["mr"].uid
    found = client.search_for_instances(s, se)
    assert len(found) == 2
    assert found[0]["00080016"]["Value"] == ["1.2.840.10008.5.1.4.1.1.4"]
    assert client.search_for_instances(s, se, limit=1, offset=1)[0]["00200013"]["Value"] == [2]


def test_unknown_study_searches_are_204(base, client):
    r = get(base, "/studies/1.2.3.4.5/series")
    assert r.status_code == 204
    assert client.search_for_series("1.2.3.4.5") == []
    assert get(base, "/studies/1.2.3/instances").status_code == 204


def test_fuzzymatching_true_warns_and_matches_literally(base):
    r = get(base, "/studies?fuzzymatching=true&PatientName=Doe*")
    assert r.status_code == 200 and "fuzzymatching" in r.headers["warning"]


def test_json_has_no_nan(base):
    r = get(base, "/instances")
    json.loads(r.text, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))


def test_search_refuses_xml(base):
    r = httpx.get(base + "/studies",
                  headers={"Accept": 'multipart/related; type="application/dicom+xml"'})
    assert r.status_code == 406
