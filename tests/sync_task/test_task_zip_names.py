"""ZIP entry names are hostile: whatever passes must be one plain, visible file name."""

from __future__ import annotations

import zipfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mirror.archive.nbiazip.verify import check_entry, parse_md5_csv, stored_md5s
from mirror.errors import ArchiveProtocolError, UnsafeArchiveEntry

NAME_PIECES = st.sampled_from(["a", "0001", ".dcm", "..", "/", "\\", "C:", "-", "_", ".", "\x00", "é", " "])


@settings(max_examples=200, deadline=None)
@given(st.lists(NAME_PIECES, min_size=1, max_size=6).map("".join) | st.text(min_size=1, max_size=30))
def test_entry_names_that_pass_are_plain_file_names(name: str) -> None:
    info = zipfile.ZipInfo(name)  # zipfile itself strips NULs and maps os.sep
    try:
        check_entry(info, max_entry_bytes=10)
    except UnsafeArchiveEntry:
        return
    accepted = info.filename
    assert "/" not in accepted and "\\" not in accepted and ":" not in accepted
    assert not accepted.startswith((".", "_", "-")) and accepted not in ("", ".", "..")
    assert accepted.isascii()


def test_csv_parsing_normalises_and_rejects() -> None:
    raw = b"Filename,MD5Hash\n00000002.dcm,ABCDEF\n00000001.dcm,0123456789abcdef0123456789abcdef\n"
    assert parse_md5_csv(raw) == {
        "00000002.dcm": "abcdef".zfill(32),
        "00000001.dcm": "0123456789abcdef0123456789abcdef",
    }
    # the archive's series hash is over the digests exactly as stored (unpadded, any case)
    assert stored_md5s(raw) == {"00000002.dcm": "ABCDEF",
                                "00000001.dcm": "0123456789abcdef0123456789abcdef"}
    for bad in (b"", b"Filename;MD5Hash\n", b"Filename,MD5Hash\na,b,c\n", b"\xff\xfe",
                b"Filename,MD5Hash\na," + b"1" * 33 + b"\n"):
        with pytest.raises(ArchiveProtocolError):
            parse_md5_csv(bad)


def test_central_directory_tail_is_sized_by_the_listing() -> None:
    from datetime import date

    from mirror.archive.nbiazip.unzip import tail_bytes
    from mirror.archive.port import SeriesRecord

    def record(count: int) -> SeriesRecord:
        return SeriesRecord(series_uid="1.2.3", study_uid="1.2", patient_id="P", collection="C",
                            modality="CT", image_count=count, file_size=count * 1000,
                            date_released=date(2024, 1, 2))

    assert tail_bytes(record(0)) == 16 * 2**20  # count unknown: the fixed ceiling
    assert tail_bytes(record(4000)) == 64 * 1024 + 1024 * 4002
    assert tail_bytes(record(10**6)) == 16 * 2**20
