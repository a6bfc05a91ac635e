"""Ledger, manifest, lock and report units (no archive, no cluster)."""

from __future__ import annotations

import json
import multiprocessing
import sqlite3
from datetime import date
from pathlib import Path

import pytest

from mirror.archive.port import SeriesRecord
from mirror.errors import LockHeld, ManifestError
from mirror.layout import InstanceEntry, SeriesSidecar
from mirror.sync.ledger import Ledger
from mirror.sync.lock import RunLock
from mirror.sync.manifest import format_manifest, parse_manifest, read_manifest, write_manifest
from mirror.sync.report import RunSummary, read_last_success, write_metrics, write_summary

UID = "1.2.840.1"


def record(uid: str = UID, count: int = 1) -> SeriesRecord:
    return SeriesRecord(uid, "1.2.9", "P1", "COLL", modality="CT", image_count=count, file_size=10)


def sidecar(r: SeriesRecord, version: int = 1) -> SeriesSidecar:
    return SeriesSidecar(
        series_uid=r.series_uid, study_uid=r.study_uid, patient_id=r.patient_id,
        collection=r.collection, modality=r.modality, path=f"COLL/P1/1.2.9/{r.series_uid}",
        instances=(InstanceEntry("1.dcm", "0" * 32, 10),), fingerprint=r.fingerprint,
        series_version=version, run_id="r1", synced_at="2024-01-01T00:00:00+00:00",
        tool_version="t",
    )


def test_series_lifecycle_and_events(tmp_path: Path) -> None:
    with Ledger.open(tmp_path / "l.sqlite") as led:
        r = record()
        led.mark_in_progress([(r, "COLL/P1/1.2.9/" + UID)], "r1")
        e = led.entry(UID)
        assert e is not None and e.state == "in_progress" and e.attempts == 1
        assert e.fingerprint == (0, 0, "", ""), "fingerprint only lands on commit"
        led.record_failed(r, e.path, "r1", "ArchiveUnavailable", "503")
        assert led.entry(UID).state == "failed"  # type: ignore[union-attr]
        led.record_committed(r, sidecar(r), "r2", changed=True)
        e = led.entry(UID)
        assert e is not None and e.state == "present" and e.fingerprint == r.fingerprint
        assert e.attempts == 0 and e.content_hash == sidecar(r).content_hash and e.n_instances == 1
        led.record_withdrawn(UID, "r3", "tombstone")
        assert led.counts_by_state() == {"withdrawn": 1}
        assert [ev[1] for ev in led.events(UID)] == ["added", "failed", "updated", "withdrawn"]


def test_crash_mid_transaction_leaves_previous_state(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    with Ledger.open(path) as led:
        led.mark_in_progress([(record(), "p")], "r1")
    # A second connection that dies inside a write transaction must not leave half a row.
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("UPDATE series SET state='present', content_hash='x'")
    conn.close()  # closed without COMMIT, as a killed process would
    with Ledger.open(path) as led:
        e = led.entry(UID)
        assert e is not None and e.state == "in_progress" and e.content_hash == ""
        assert led.conn_pragmas() == ("wal", 2)


def test_watermark_only_advances_on_exit_zero(tmp_path: Path) -> None:
    with Ledger.open(tmp_path / "l.sqlite") as led:
        led.begin_run("r1", "sync", "2024-03-01T00:00:00")
        got = led.finish_run(
            "r1", exit_code=1, counts={}, watermark_before=None, advance=["A"], run_date=date(2024, 3, 1)
        )
        assert got is None and led.watermarks() == {}
        led.begin_run("r2", "sync", "2024-03-02T00:00:00")
        got = led.finish_run(
            "r2", exit_code=0, counts={"new": 2}, watermark_before=None, advance=["A"],
            run_date=date(2024, 3, 2),
        )
        assert got == date(2024, 3, 2) and led.watermarks() == {"A": date(2024, 3, 2)}
        led.begin_run("r3", "sync", "2024-03-03T00:00:00")
        led.finish_run("r3", exit_code=130, counts={}, watermark_before=got, advance=["A"], run_date=date(2024, 3, 3))
        assert led.watermarks() == {"A": date(2024, 3, 2)}
        last_ok = led.last_run(successful=True)
        assert last_ok is not None and last_ok.run_id == "r2" and last_ok.counts == {"new": 2}
        assert led.last_run().run_id == "r3"  # type: ignore[union-attr]


def test_rebuild_upsert_from_sidecar(tmp_path: Path) -> None:
    with Ledger.open(tmp_path / "l.sqlite") as led:
        sc = sidecar(record(count=1), version=3)
        led.upsert_from_sidecar(sc)
        e = led.entry(UID)
        assert e is not None and e.state == "present" and e.series_version == 3
        assert e.fingerprint == sc.fingerprint and led.mirrored_collections() == ["COLL"]


# --- manifests ----------------------------------------------------------------------------

NBIA = """downloadServerUrl=https://nbia.cancerimagingarchive.net/nbia-download/servlet/DownloadServlet
includeAnnotation=true
noOfrRetry=4
databasketId=manifest-1664554157579.tcia
manifestVersion=3.0
ListOfSeriesToDownload=
1.3.6.1.4.1.14519.5.2.1.1
1.3.6.1.4.1.14519.5.2.1.2
1.3.6.1.4.1.14519.5.2.1.1
"""


def test_manifest_nbia_format_and_plain_list() -> None:
    assert parse_manifest(NBIA) == ["1.3.6.1.4.1.14519.5.2.1.1", "1.3.6.1.4.1.14519.5.2.1.2"]
    assert parse_manifest("# mine\n1.2.3\n\n1.2.4\r\n") == ["1.2.3", "1.2.4"]


@pytest.mark.parametrize(
    "text",
    [
        "",
        "downloadServerUrl=x\nincludeAnnotation=true\n1.2.3\n",  # header never ends
        "downloadServerUrl=x\nListOfSeriesToDownload=\n",  # no UIDs
        "1.2.3\nnot-a-uid\n",
        "1.2.3\n../../etc/passwd\n",
        "downloadServerUrl=x\njunk line\nListOfSeriesToDownload=\n1.2.3\n",
    ],
)
def test_malformed_manifests_are_rejected(text: str) -> None:
    with pytest.raises(ManifestError):
        parse_manifest(text)


def test_manifest_round_trip_and_io_errors(tmp_path: Path) -> None:
    path = write_manifest(["1.2.3", "1.2.4"], tmp_path / "out.tcia")
    text = path.read_text()
    assert text.splitlines()[3] == "databasketId=out.tcia" and text.endswith("1.2.4\n")
    assert read_manifest(path) == ["1.2.3", "1.2.4"]
    assert format_manifest(["1.2.3"]).count("\n") == 7
    with pytest.raises(ManifestError, match="cannot read"):
        read_manifest(tmp_path / "missing.tcia")
    (tmp_path / "bin.tcia").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ManifestError):
        read_manifest(tmp_path / "bin.tcia")


# --- lock ---------------------------------------------------------------------------------


def _try_lock(state_dir: str, queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    try:
        with RunLock(state_dir, "other"):
            queue.put("acquired")
    except LockHeld as exc:
        queue.put(f"held: {exc}")


def test_lock_excludes_other_processes_and_is_released(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    with RunLock(tmp_path, "run-1"):
        info = json.loads((tmp_path / "sync.lock").read_text())
        assert info["run_id"] == "run-1"
        q = ctx.Queue()
        p = ctx.Process(target=_try_lock, args=(str(tmp_path), q))
        p.start()
        p.join(60)
        msg = q.get(timeout=5)
        assert msg.startswith("held:") and "run-1" in msg
    p = ctx.Process(target=_try_lock, args=(str(tmp_path), q))
    p.start()
    p.join(60)
    assert q.get(timeout=5) == "acquired"


# --- report -------------------------------------------------------------------------------


def summary(exit_code: int) -> RunSummary:
    return RunSummary(
        run_id="r", tool_version="t", started_at="s", finished_at="f", duration_s=1.5,
        mode="sync", source={"api_base": "http://x"}, destination="file:///d",
        cluster={"kind": "local"}, exit_code=exit_code, watermark={"before": None, "after": None},
        counts={"downloaded": 3, "failed": 1}, bytes={"downloaded": 99},
    )


def test_summary_json_atomic(tmp_path: Path) -> None:
    write_summary(summary(1), tmp_path / "s.json")
    data = json.loads((tmp_path / "s.json").read_text())
    assert data["status"] == "partial" and data["counts"]["downloaded"] == 3
    assert [p.name for p in tmp_path.iterdir()] == ["s.json"]


def test_metrics_keep_last_success_after_a_failed_run(tmp_path: Path) -> None:
    prom = tmp_path / "m.prom"
    write_metrics(prom, summary(0), {"present": 4}, now=1000.0)
    assert read_last_success(prom) == 1000.0
    write_metrics(prom, summary(5), {"present": 4}, now=2000.0)
    text = prom.read_text()
    assert read_last_success(prom) == 1000.0
    assert "tcia_mirror_last_exit_code 5.0" in text
    assert "tcia_mirror_last_run_timestamp_seconds 2000.0" in text
    assert 'tcia_mirror_series{state="present"} 4.0' in text
    assert 'tcia_mirror_run_series_total{outcome="downloaded"} 3.0' in text
