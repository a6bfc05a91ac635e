"""The browsable catalogue: collections at ``/``, their series with thumbnails, a cine page.

Plain server-rendered HTML from the same snapshot the DICOMweb answers come from; images are
the ``/dicomweb`` thumbnail and rendered resources, so the page costs nothing to precompute.
Every value is HTML-escaped (descriptions and patient IDs are free text from the archive).
"""

from __future__ import annotations

from collections.abc import Iterator
from html import escape
from typing import Any, BinaryIO
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response, StreamingResponse
from starlette.routing import Route

from mirror.errors import BadRequest, NotFoundError
from mirror.serve.dicomweb import ROOT, Service
from mirror.serve.qido import check_uid
from mirror.storage.keys import check_key

PAGE = 200  # series per collection page
_STYLE = """body{font-family:sans-serif;margin:1.5em;background:#111;color:#ddd}
a{color:#8cf}table{border-collapse:collapse}td,th{padding:.3em .8em;border-bottom:1px solid #333}
.grid{display:flex;flex-wrap:wrap;gap:12px}.card{width:180px;font-size:12px}
.card img{width:180px;height:180px;object-fit:contain;background:#000}
.strip{display:flex;overflow-x:auto;gap:2px}.strip img{height:96px}
#cine{width:512px;height:512px;object-fit:contain;background:#000}"""


def _page(title: str, body: str) -> HTMLResponse:
    return HTMLResponse(f"<!doctype html><html><head><meta charset='utf-8'><title>"
                        f"{escape(title)}</title><style>{_STYLE}</style></head><body>"
                        f"<h1>{escape(title)}</h1>{body}</body></html>")


def collections_page(svc: Service) -> Any:
    def endpoint(_: Request) -> Response:
        rows = svc.snapshots.current().rows(
            "SELECT collection_id, min(Collection) AS name, count(DISTINCT PatientID) AS "
            "subjects, count(DISTINCT StudyInstanceUID) AS studies, count(DISTINCT "
            "SeriesInstanceUID) AS series, count(*) AS instances FROM inst GROUP BY ALL "
            "ORDER BY name")
        cells = "".join(
            f"<tr><td><a href='/collections/{quote(r['collection_id'])}'>{escape(r['name'])}"
            f"</a></td><td>{r['subjects']}</td><td>{r['studies']}</td><td>{r['series']}</td>"
            f"<td>{r['instances']}</td></tr>" for r in rows)
        return _page("Mirror catalogue", "<table><tr><th>collection</th><th>subjects</th>"
                     "<th>studies</th><th>series</th><th>instances</th></tr>"
                     f"{cells}</table><p>DICOMweb root: <code>{ROOT}</code></p>")
    return endpoint


def collection_page(svc: Service, viewer: bool) -> Any:
    def endpoint(request: Request) -> Response:
        cid = request.path_params["cid"]
        offset = _offset(request.query_params.get("offset", "0"))
        rows = svc.snapshots.current().rows(
            "SELECT se.*, st.PatientID, st.StudyDate, v.store_path FROM ser se "
            "JOIN stu st USING (StudyInstanceUID) LEFT JOIN vol v USING (SeriesInstanceUID) "
            "WHERE se.collection_id = ? ORDER BY st.PatientID, se.StudyInstanceUID, "
            "se.SeriesNumber NULLS LAST, se.SeriesInstanceUID LIMIT ? OFFSET ?",
            [cid, PAGE + 1, offset])
        if not rows and offset == 0:
            raise NotFoundError(f"no collection {cid!r} in this mirror")
        cards = "".join(_card(r, viewer) for r in rows[:PAGE])
        more = (f"<p><a href='?offset={offset + PAGE}'>next {PAGE}</a></p>"
                if len(rows) > PAGE else "")
        return _page(str(rows[0]["Collection"]) if rows else cid,
                     f"<p><a href='/'>all collections</a></p><div class='grid'>{cards}</div>"
                     + more)
    return endpoint


def _card(row: dict[str, Any], viewer: bool) -> str:
    study, series = row["StudyInstanceUID"], row["SeriesInstanceUID"]
    thumb = f"{ROOT}/studies/{study}/series/{series}/thumbnail"
    links = [f"<a href='/cine/{study}/{series}'>cine</a>"]
    if viewer:
        links.append(f"<a href='/viewer?StudyInstanceUIDs={study}'>viewer</a>")
    if row.get("store_path"):
        links.append(f"<a href='/zarr/{quote(row['store_path'])}/zarr.json'>OME-Zarr</a>")
    return (f"<div class='card'><img loading='lazy' alt='' src='{thumb}'><br>"
            f"{escape(str(row['PatientID']))} · {escape(str(row['Modality'] or ''))} "
            f"#{escape(str(row['SeriesNumber'] or ''))} ({row['n_instances']})<br>"
            f"{escape(str(row['SeriesDescription'] or ''))}<br>{' · '.join(links)}</div>")


def _offset(text: str) -> int:
    if not text.isdigit() or len(text) > 9:
        raise BadRequest("offset must be a non-negative integer")
    return int(text)


def cine_page(svc: Service) -> Any:
    def endpoint(request: Request) -> Response:
        study = check_uid(request.path_params["study"], "study")
        series = check_uid(request.path_params["series"], "series")
        rows = svc.snapshots.current().rows(
            "SELECT SOPInstanceUID, coalesce(NumberOfFrames, 1) AS frames FROM inst "
            "WHERE StudyInstanceUID = ? AND SeriesInstanceUID = ? "
            "ORDER BY InstanceNumber NULLS LAST, SOPInstanceUID", [study, series])
        if not rows:
            raise NotFoundError(f"series {series} is not in this mirror")
        base = f"{ROOT}/studies/{study}/series/{series}/instances"
        urls = [f"{base}/{r['SOPInstanceUID']}/frames/{f}/rendered?viewport=512,512"
                for r in rows for f in range(1, int(r["frames"]) + 1)][:2000]
        strip = "".join(f"<img loading='lazy' alt='' src='{u.replace('512,512', '96,96')}'>"
                        for u in urls)
        script = (f"<script>const f={urls!r};let i=0;const im=document.getElementById('cine');"
                  "setInterval(()=>{i=(i+1)%f.length;im.src=f[i];},100);</script>")
        return _page(f"Series {series}", f"<img id='cine' alt='' src='{urls[0]}'>"
                     f"<div class='strip'>{strip}</div>{script}")
    return endpoint


def zarr_object(svc: Service) -> Any:
    """Objects of converted OME-Zarr stores, for zarr-aware viewers (vizarr, neuroglancer)."""
    def endpoint(request: Request) -> Response:
        key = check_key(request.path_params["key"])
        inside = svc.snapshots.current().rows(
            "SELECT 1 FROM vol WHERE starts_with(?, store_path || '/') LIMIT 1", [key])
        if not inside:
            raise NotFoundError("not an object of a converted volume")
        try:
            fh = svc.files.store.open_read(key)
        except FileNotFoundError as exc:
            raise NotFoundError(f"no object {key}") from exc
        kind = "application/json" if key.endswith(".json") else "application/octet-stream"
        return StreamingResponse(_chunks(fh), media_type=kind)
    return endpoint


def _chunks(fh: BinaryIO) -> Iterator[bytes]:
    """Shards can be large: stream them instead of reading them whole."""
    with fh:
        while chunk := fh.read(1 << 20):
            yield chunk


def routes(svc: Service, viewer: bool) -> list[Route]:
    get = ["GET", "HEAD"]
    return [
        Route("/", collections_page(svc), methods=get),
        Route("/collections/{cid}", collection_page(svc, viewer), methods=get),
        Route("/cine/{study}/{series}", cine_page(svc), methods=get),
        Route("/zarr/{key:path}", zarr_object(svc), methods=get),
    ]
