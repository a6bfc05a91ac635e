"""``NbiaArchive``: the Archive port over the NBIA v4 REST API (TCIA or the simulator).

Downloads ask for ``getImage?IncludeMD5=Yes&NewFileNames=Yes``. ``NewFileNames`` is used
because the default ``%08d`` names follow unspecified database order, while the new names
sort by InstanceNumber and so stay stable across downloads. Servers that predate
``IncludeMD5`` answer 400 "Invalid query parameter"; the client then remembers to use
``getImageWithMD5Hash`` (``%08d`` names, no LICENSE) for the rest of its life.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from typing import Any

import urllib3

from mirror.archive import parse
from mirror.archive.auth import TokenManager, token_url_for
from mirror.archive.http import Body, InvalidParameter, RetryPolicy, Sleep, Transport
from mirror.archive.nbiazip import ZipSeriesSource
from mirror.archive.port import (
    CollectionRecord,
    HashNode,
    PatientRecord,
    SeriesRecord,
    StudyRecord,
)
from mirror.errors import TruncatedDownload
from mirror.layout import check_uid

log = logging.getLogger(__name__)

DEFAULT_URL = "https://nbia.cancerimagingarchive.net/nbia-api/services/v4/"
URL_ENV = "MIRROR_ARCHIVE_URL"


def default_url() -> str:
    return os.environ.get(URL_ENV) or DEFAULT_URL


class NbiaArchive(ZipSeriesSource):
    """The NBIA v4 API as an :class:`~mirror.archive.port.Archive`.

    ``url`` defaults to ``$MIRROR_ARCHIVE_URL`` or TCIA's public v4 root. Credentials are
    optional (guest sends no Authorization header). ``sleep`` replaces the retry backoff
    wait (tests); it must be picklable if the archive travels to Dask workers.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        username: str | None = None,
        password: str | None = None,
        client_id: str = "NBIA",
        read_timeout: float = 300.0,
        connect_timeout: float = 30.0,
        max_connections: int = 16,
        attempts: int = 6,
        sleep: Sleep | None = None,
        new_file_names: bool = True,
    ) -> None:
        base = url or default_url()
        self._tokens = (
            TokenManager(token_url_for(base), username, password or "", client_id=client_id)
            if username
            else None
        )
        self._http = Transport(
            base,
            read_timeout=read_timeout,
            connect_timeout=connect_timeout,
            max_connections=max_connections,
            retry=RetryPolicy(attempts=attempts),
            sleep=sleep,
            headers=self._tokens.headers if self._tokens else None,
        )
        self.new_file_names = new_file_names
        self.legacy_download = False  # set once the server rejected IncludeMD5

    @property
    def url(self) -> str:
        return self._http.base_url

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> NbiaArchive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"NbiaArchive({self.url!r})"

    def _rows(self, endpoint: str, params: dict[str, str] | None = None) -> list[dict[str, Any]]:
        return parse.parse_rows(self._http.call("GET", endpoint, params))

    # --- listings ---------------------------------------------------------------------------

    def collections(self) -> list[CollectionRecord]:
        return [parse.collection_record(r) for r in self._rows("getCollectionValues")]

    def patients(self, collection: str) -> list[PatientRecord]:
        rows = self._rows("getPatient", {"Collection": collection})
        return [parse.patient_record(r, collection) for r in rows]

    def studies(self, collection: str, patient_id: str | None = None) -> list[StudyRecord]:
        params = {"Collection": collection}
        if patient_id is not None:
            params["PatientID"] = patient_id
        return [parse.study_record(r, collection) for r in self._rows("getPatientStudy", params)]

    def series(
        self,
        collection: str | None = None,
        *,
        patient_id: str | None = None,
        study_uid: str | None = None,
        series_uid: str | None = None,
        modality: str | None = None,
    ) -> list[SeriesRecord]:
        filters = {
            "Collection": collection,
            "PatientID": patient_id,
            "StudyInstanceUID": study_uid,
            "SeriesInstanceUID": series_uid,
            "Modality": modality,
        }
        params = {k: v for k, v in filters.items() if v is not None}
        return [parse.series_record(r) for r in self._rows("getSeries", params)]

    def updated_series(self, since: date) -> list[SeriesRecord]:
        rows = self._rows("getUpdatedSeries", {"fromDate": since.strftime("%m-%d-%Y")})
        return [parse.series_record(r) for r in rows]

    def sop_instance_uids(self, series_uid: str) -> list[str]:
        rows = self._rows("getSOPInstanceUIDs", {"SeriesInstanceUID": check_uid(series_uid)})
        return [parse.sop_uid(r) for r in rows]

    def series_size(self, series_uid: str) -> tuple[int, int]:
        """``(TotalSizeInBytes, ObjectCount)``; ``(0, 0)`` for an unknown series."""
        rows = self._rows("getSeriesSize", {"SeriesInstanceUID": check_uid(series_uid)})
        if not rows:
            return 0, 0
        row = rows[0]
        size = parse.to_int(row.get("TotalSizeInBytes")) or 0
        return size, parse.to_int(row.get("ObjectCount")) or 0

    def md5_hierarchy(self, series_uid: str) -> str:
        """The server's series hash: md5 of its sorted, concatenated stored digests."""
        return self.hierarchy_md5(HashNode("", series_uid=series_uid))

    def hierarchy_md5(self, node: HashNode) -> str:
        """``POST getMD5Hierarchy`` for one level (nbia-api.md 5.13); "" if unknown."""
        form: dict[str, str]
        if node.series_uid:
            form = {"SeriesInstanceUID": check_uid(node.series_uid)}
        elif node.study_uid:
            form = {"StudyInstanceUID": check_uid(node.study_uid)}
        elif node.patient_id:
            form = {"PatientID": node.patient_id, "Collection": node.collection}
        else:
            form = {"Collection": node.collection}
        return self._http.call("POST", "getMD5Hierarchy", form).strip().lower()

    # --- downloads --------------------------------------------------------------------------

    @contextmanager
    def stream_series(self, series_uid: str) -> Iterator[Iterator[bytes]]:
        check_uid(series_uid)
        if not self.legacy_download:
            try:
                with self._http.stream("getImage", self._image_params(series_uid)) as resp:
                    yield _chunks(resp, series_uid)
                    return
            except InvalidParameter:
                log.info("archive rejects IncludeMD5; using getImageWithMD5Hash from now on")
                self.legacy_download = True
        params = {"SeriesInstanceUID": series_uid}
        with self._http.stream("getImageWithMD5Hash", params) as resp:
            yield _chunks(resp, series_uid)

    def _image_params(self, series_uid: str) -> dict[str, str]:
        params = {"SeriesInstanceUID": series_uid, "IncludeMD5": "Yes"}
        if self.new_file_names:
            params["NewFileNames"] = "Yes"
        return params


def _chunks(resp: Body, series_uid: str) -> Iterator[bytes]:
    """The body as chunks; a connection that dies mid-body is a :class:`TruncatedDownload`."""
    received = 0
    try:
        # Chunks of at most 1 MiB as they arrive: progress stays visible on throttled
        # links and memory stays flat.
        for chunk in resp.stream(_READ_BYTES, decode_content=False):
            received += len(chunk)
            yield chunk
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise TruncatedDownload(
            f"series {series_uid}: stream ended after {received} bytes ({type(exc).__name__})"
        ) from exc


_READ_BYTES = 1 << 20
