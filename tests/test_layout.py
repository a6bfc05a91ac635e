"""Pure units for path sanitisation, UID checks, MD5 normalisation and the sidecar."""

from __future__ import annotations

import pytest

from mirror.errors import IntegrityError, UsageError
from mirror.layout import (
    InstanceEntry,
    SeriesSidecar,
    check_uid,
    hierarchy_candidates,
    hierarchy_md5,
    normalize_md5,
    safe_component,
    series_path,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("TCGA-02-0001", "TCGA-02-0001"),
        ("../../etc", "-._.._etc"),
        ("..", "-ab"),
        ("a/b\\c", "a_b_c"),
        ("_index", "index"),
        ("._x", "-_x"),
        (".hidden", "-hidden"),
        ("  spaced out  ", "spaced_out"),
        ("", "_"),
    ],
)
def test_safe_component(raw: str, expected: str) -> None:
    got = safe_component(raw)
    if raw == "..":
        assert got.startswith("-") and "/" not in got and got not in (".", "..")
    elif raw == "":
        assert got not in ("", ".", "..") and not got.startswith(("_", "."))
    else:
        assert got == expected
    assert "/" not in got and not got.startswith(("_", "."))


def test_safe_component_long_names_stay_distinct() -> None:
    a, b = "x" * 300 + "1", "x" * 300 + "2"
    assert safe_component(a) != safe_component(b)
    assert len(safe_component(a)) <= 100


def test_check_uid() -> None:
    assert check_uid("1.2.840.10008.1") == "1.2.840.10008.1"
    for bad in ["", "1..2", "../1.2", "1.2/3", "1" * 65, "1.2.", "abc"]:
        with pytest.raises(IntegrityError):
            check_uid(bad)


def test_series_path_default_and_template() -> None:
    path = series_path(
        collection="TCGA-LUAD", patient_id="../evil", study_uid="1.2", series_uid="1.3"
    )
    assert path == "TCGA-LUAD/-._evil/1.2/1.3"
    custom = series_path(
        collection="C",
        patient_id="P",
        study_uid="1.2",
        series_uid="1.3",
        modality="CT",
        template="{collection}/{modality}/{series_uid}",
    )
    assert custom == "C/CT/1.3"
    with pytest.raises(UsageError):
        series_path(
            collection="C",
            patient_id="P",
            study_uid="1.2",
            series_uid="1.3",
            template="{collection}/{nope}",
        )
    with pytest.raises(UsageError):
        series_path(
            collection="C",
            patient_id="P",
            study_uid="1.2",
            series_uid="1.3",
            template="{collection}/{patient_id}",
        )


def test_normalize_md5() -> None:
    assert normalize_md5("ABC") == "0" * 29 + "abc"
    assert normalize_md5("d41d8cd98f00b204e9800998ecf8427e") == "d41d8cd98f00b204e9800998ecf8427e"
    for bad in ["", "xyz", "0" * 33]:
        with pytest.raises(IntegrityError):
            normalize_md5(bad)


def test_sidecar_round_trip_and_content_hash_order_free() -> None:
    inst = (
        InstanceEntry("00000002.dcm", "b" * 32, 10),
        InstanceEntry("00000001.dcm", "a" * 32, 20),
    )
    sc = SeriesSidecar(
        series_uid="1.3",
        study_uid="1.2",
        patient_id="P",
        collection="C",
        modality="CT",
        path="C/P/1.2/1.3",
        instances=inst,
        fingerprint=(2, 30, "2020-01-01", "2020-01-02"),
        series_version=1,
        run_id="r1",
        synced_at="2026-01-01T00:00:00+00:00",
        tool_version="0.1",
    )
    back = SeriesSidecar.from_json(sc.to_json())
    assert back == sc
    assert back.image_count == 2 and back.total_size == 30
    assert sc.content_hash == SeriesSidecar(**{**sc.__dict__, "instances": inst[::-1]}).content_hash
    with pytest.raises(IntegrityError):
        SeriesSidecar.from_json(b"{not json")


def test_hierarchy_hash_is_over_sorted_digests_as_stored() -> None:
    import hashlib
    from dataclasses import replace

    stored = ["0f" + "1" * 30, "a" * 32]  # the archive may keep a digest unpadded: "f111…"
    expected = hashlib.md5("".join(sorted(stored)).encode()).hexdigest()
    assert hierarchy_md5(stored) == hierarchy_md5(stored[::-1]) == expected

    inst = (InstanceEntry("1.dcm", "0f" + "1" * 30, 1), InstanceEntry("2.dcm", "a" * 32, 1))
    sc = SeriesSidecar("1.3", "1.2", "P", "C", "CT", "C/P/1.2/1.3", inst, (2, 2, "", ""), 1,
                       "r", "t", "v")
    padded = hierarchy_md5(["0f" + "1" * 30, "a" * 32])
    unpadded = hierarchy_md5(["f" + "1" * 30, "a" * 32])
    assert hierarchy_candidates(sc) == {padded, unpadded}  # nothing recorded: either form
    recorded = replace(sc, md5_hierarchy=unpadded)
    assert hierarchy_candidates(recorded) == {unpadded}
    assert SeriesSidecar.from_json(recorded.to_json()).md5_hierarchy == unpadded
