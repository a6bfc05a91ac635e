"""The real peer client, tcia-utils 3.3.5, talks to the simulated archive unchanged.

tcia-utils builds every URL from ``setApiUrl`` (a fixed TCIA host), so that one function
is pointed at the simulator; everything else (requests, zip handling) is its own code.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from mirror.archive.sim import SimArchive, SimServer


@pytest.fixture
def peer(archive_server: SimServer, monkeypatch: pytest.MonkeyPatch) -> Any:
    # Imported here: pandas and friends cost seconds, only these tests should pay them.
    nbia = pytest.importorskip("tcia_utils.nbia")
    monkeypatch.setattr(nbia, "setApiUrl", lambda endpoint, api_url="": archive_server.base_url)
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    return nbia


def test_get_collections_and_series(peer: Any, sim: SimArchive) -> None:
    collections = peer.getCollections()
    assert sorted(c["Collection"] for c in collections) == ["Sim-Brain", "Sim-Lung"]
    series = peer.getSeries(collection="Sim-Lung")
    assert sorted(s["SeriesInstanceUID"] for s in series) == sorted(sim.series_uids("Sim-Lung"))
    assert peer.getSeries(collection="No-Such") is None  # its "No results" for an empty body


def test_get_updated_series_date_conversion(peer: Any, sim: SimArchive) -> None:
    rows = peer.getUpdatedSeries("2025/01/15")
    assert {r["SeriesInstanceUID"] for r in rows} == set(sim.series_uids())


def test_download_series_bytes_equal_the_archive(
    peer: Any, sim: SimArchive, tmp_path: Path
) -> None:
    series = peer.getSeries(collection="Sim-Lung")
    peer.downloadSeries(series, path=str(tmp_path), max_workers=2)
    for row in series:
        uid = row["SeriesInstanceUID"]
        folder = tmp_path / uid
        names = sorted(p.name for p in folder.iterdir())
        assert names[0] == "1-1.dcm" and "LICENSE" in names
        got = sorted(hashlib.md5(p.read_bytes()).hexdigest() for p in folder.glob("*.dcm"))
        assert got == sorted(sim.true_md5s(uid))


def test_download_series_with_hash(peer: Any, sim: SimArchive, tmp_path: Path) -> None:
    uid = sim.series_uids("Sim-Brain")[0]
    peer.downloadSeries([uid], input_type="list", path=str(tmp_path), hash="y", max_workers=1)
    folder = tmp_path / uid
    csv_rows = (folder / "md5hashes.csv").read_text().splitlines()
    assert csv_rows[0] == "Filename,MD5Hash"
    stored = dict(line.split(",") for line in csv_rows[1:])
    for name, value in stored.items():
        assert hashlib.md5((folder / name).read_bytes()).hexdigest() == value.zfill(32)


def test_download_series_returns_metadata_frame(peer: Any, sim: SimArchive, tmp_path: Path) -> None:
    # format="df" makes tcia-utils POST getSeriesMetadata and parse the quoted CSV.
    uids = sim.series_uids("Sim-Brain")
    frame = peer.downloadSeries(
        uids, input_type="list", path=str(tmp_path), format="df", max_workers=2
    )
    assert sorted(frame["SeriesInstanceUID"]) == sorted(uids)
    assert set(frame["Collection"]) == {"Sim-Brain"}
    assert list(frame["ImageCount"]) == [
        sim.record(u).image_count for u in frame["SeriesInstanceUID"]
    ]
