"""The DICOMweb resources under ``/dicomweb``: QIDO-RS search and WADO-RS retrieve.

Handlers are plain functions Starlette runs in its thread pool (DuckDB, pydicom and store
reads block). Each takes the snapshot current when it starts and reads through
:class:`~mirror.serve.files.Files`, which serves committed files only.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from mirror.errors import NotAcceptable, TooLarge
from mirror.serve import accept, metadata, multipart, pixels
from mirror.serve.attributes import Level
from mirror.serve.config import Limits
from mirror.serve.files import Files, InstanceRef, Lru, find_instances
from mirror.serve.pyramid import series_plane
from mirror.serve.qido import check_uid, parse_search, run_search
from mirror.serve.render import THUMBNAIL_SIDE, RenderParams, parse_render, render
from mirror.serve.snapshot import IndexView, Snapshots

log = logging.getLogger(__name__)
ROOT = "/dicomweb"
METADATA_THREADS = 8  # remote stores only: on local disk header parsing is GIL-bound
METADATA_BATCH = 64
DICOM_JSON = "application/dicom+json"
_HOST_RE = re.compile(r"[A-Za-z0-9.-]{1,253}(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]{2,45}\](:[0-9]{1,5})?")


@dataclass
class Service:
    snapshots: Snapshots
    files: Files
    limits: Limits
    meta_cache: Lru[tuple[str, str, str], bytes] = field(default_factory=lambda: Lru(4096))
    pixel_cache: Lru[tuple[str, str], pixels.PixelInfo] = field(
        default_factory=lambda: Lru(16384))
    public_url: str | None = None

    def base_url(self, request: Request) -> str:
        """Absolute ``/dicomweb`` URL for RetrieveURL and BulkDataURI values."""
        if self.public_url:
            return self.public_url.rstrip("/") + ROOT
        return origin(request) + ROOT


def origin(request: Request) -> str:
    """``scheme://host[:port]`` as the client addressed this server.

    dicomweb-client sends ``Host`` without the port; when no proxy forwarded the request, the
    port the connection arrived on is the one to hand back.
    """
    scheme, host = request.url.scheme, request.headers.get("host", "")
    server = request.scope.get("server") or ("127.0.0.1", 80)
    forwarded = any(h in request.headers for h in ("x-forwarded-for", "x-forwarded-proto",
                                                   "x-forwarded-host", "forwarded"))
    if not _HOST_RE.fullmatch(host):  # absent or hostile: name the socket instead
        host = f"{server[0]}:{server[1]}"
    elif ":" not in host.rsplit("]", 1)[-1] and not forwarded \
            and server[1] != (443 if scheme == "https" else 80):
        host = f"{host}:{server[1]}"
    return f"{scheme}://{host}"


def _uids(request: Request) -> tuple[str, str | None, str | None]:
    """The (validated) UIDs of a retrieve path; every retrieve path names a study."""
    p = request.path_params
    series, instance = (check_uid(p[k], k) if k in p else None for k in ("series", "instance"))
    return check_uid(p["study"], "study"), series, instance


def _json(body: bytes, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(body, status, headers, media_type=DICOM_JSON)


def _ranges(request: Request) -> list[accept.MediaRange]:
    return accept.parse_accept(request.query_params.get("accept")
                               or request.headers.get("accept"))


# --- QIDO-RS ------------------------------------------------------------------------------


def search(svc: Service, level: Level) -> Any:
    def endpoint(request: Request) -> Response:
        _check_json_accept(request)
        study, series = (check_uid(request.path_params[k], k) if k in request.path_params
                         else None for k in ("study", "series"))
        query = parse_search(level, request.query_params.multi_items(), study=study,
                             series=series, max_limit=svc.limits.max_limit)
        page = run_search(svc.snapshots.current(), query, svc.base_url(request))
        warnings = list(page.warnings)
        if page.more:
            warnings.append("There are additional results that can be requested.")
        # The agent is a fixed name: the Host header is the client's text, not ours to echo.
        headers = {"Warning": ", ".join(f'299 tcia-mirror: "{w}"' for w in warnings)} \
            if warnings else None
        if not page.items:
            return Response(status_code=204, headers=headers)
        return _json(metadata.dumps(page.items), headers=headers)
    return endpoint


def _check_json_accept(request: Request) -> None:
    ranges = _ranges(request)
    if not any(accept.media_matches(r.part, DICOM_JSON) or r.part == "application/json"
               for r in ranges):
        raise NotAcceptable("searches answer application/dicom+json only")


# --- WADO-RS: instances, metadata, bulk data ----------------------------------------------


def retrieve(svc: Service) -> Any:
    def endpoint(request: Request) -> Response:
        view = svc.snapshots.current()
        refs = find_instances(view, *_uids(request))
        accept.choose_instances(_ranges(request), [r.transfer_syntax for r in refs])
        _check_committed(svc, view, refs)
        boundary = multipart.new_boundary()
        parts = ((accept.DICOM, r.transfer_syntax or None, svc.files.chunks(r, view.snapshot_id))
                 for r in refs)
        return StreamingResponse(multipart.stream(boundary, parts),
                                 media_type=multipart.content_type(accept.DICOM, boundary))
    return endpoint


def retrieve_metadata(svc: Service) -> Any:
    def endpoint(request: Request) -> Response:
        _check_json_accept(request)
        view = svc.snapshots.current()
        refs = find_instances(view, *_uids(request))
        if len(refs) > svc.limits.max_metadata_instances:
            raise TooLarge(f"{len(refs)} instances: ask per series "
                           f"(limit {svc.limits.max_metadata_instances})")
        _check_committed(svc, view, refs)
        base = svc.base_url(request)
        return StreamingResponse(_metadata_array(svc, view, refs, base), media_type=DICOM_JSON)
    return endpoint


def _check_committed(svc: Service, view: IndexView, refs: list[InstanceRef]) -> None:
    """404 before the first byte: each series' commit marker is re-read once per request."""
    fresh = {r.series_path for r in refs}
    for ref in refs:
        svc.files.check(ref, view.snapshot_id, fresh=ref.series_path in fresh)
        fresh.discard(ref.series_path)


def _metadata_array(svc: Service, view: IndexView, refs: list[InstanceRef],
                    base: str) -> Iterator[bytes]:
    """The JSON array; on object stores headers are read a batch at a time by threads."""
    yield b"["
    if svc.files.store.capabilities.local:
        for n, ref in enumerate(refs):
            yield (b"," if n else b"") + instance_metadata(svc, view, ref, base)
        yield b"]"
        return
    with ThreadPoolExecutor(METADATA_THREADS, thread_name_prefix="metadata") as pool:
        for start in range(0, len(refs), METADATA_BATCH):
            batch = refs[start:start + METADATA_BATCH]
            items = pool.map(lambda r: instance_metadata(svc, view, r, base), batch)
            for n, item in enumerate(items, start):
                yield (b"," if n else b"") + item
    yield b"]"


def instance_url(base: str, ref: InstanceRef) -> str:
    return f"{base}/studies/{ref.study}/series/{ref.series}/instances/{ref.sop}"


def instance_metadata(svc: Service, view: IndexView, ref: InstanceRef, base: str) -> bytes:
    def make() -> bytes:
        with svc.files.open(ref, view.snapshot_id) as fh:
            return metadata.instance_json(fh, instance_url(base, ref))
    return svc.meta_cache.get_or((view.snapshot_id, ref.file_path, base), make)


def bulkdata(svc: Service) -> Any:
    def endpoint(request: Request) -> Response:
        view = svc.snapshots.current()
        ref = find_instances(view, *_uids(request))[0]
        path = metadata.check_bulk_path(request.path_params["path"])
        if path == metadata.PIXEL_TAG:
            return _pixel_bulk(svc, view, ref)
        with svc.files.open(ref, view.snapshot_id) as fh:
            value = metadata.bulk_value(fh, path)
        boundary = multipart.new_boundary()
        body = b"".join(multipart.stream(boundary, [(accept.OCTETS, None, [value])]))
        return Response(body, media_type=multipart.content_type(accept.OCTETS, boundary))
    return endpoint


def _pixel_bulk(svc: Service, view: IndexView, ref: InstanceRef) -> Response:
    info = _pixel_info(svc, view, ref)
    numbers = list(range(1, info.frames + 1))
    media, ts = (accept.MEDIA_FOR_TS.get(info.transfer_syntax, accept.OCTETS),
                 info.transfer_syntax) if info.encapsulated else (accept.OCTETS, accept.EVRLE)
    return _frames_response(svc, view, ref, numbers, accept.Choice(media, ts))


# --- WADO-RS: frames, rendered, thumbnail --------------------------------------------------


def _pixel_info(svc: Service, view: IndexView, ref: InstanceRef) -> pixels.PixelInfo:
    def make() -> pixels.PixelInfo:
        with svc.files.open(ref, view.snapshot_id) as fh:
            return pixels.pixel_info(fh)
    return svc.pixel_cache.get_or((view.snapshot_id, ref.file_path), make)


def frames(svc: Service) -> Any:
    def endpoint(request: Request) -> Response:
        uids = _uids(request)
        numbers = pixels.parse_frame_list(request.path_params["frames"], svc.limits.max_frames)
        view = svc.snapshots.current()
        ref = find_instances(view, *uids)[0]
        info = _pixel_info(svc, view, ref)
        pixels.check_frames(numbers, info)
        choice = accept.choose_frame(_ranges(request), accept.frame_offers(
            info.transfer_syntax, decodable=info.frame_bits // 8 <= svc.limits.max_pixels))
        return _frames_response(svc, view, ref, numbers, choice)
    return endpoint


def _frames_response(svc: Service, view: IndexView, ref: InstanceRef, numbers: list[int],
                     choice: accept.Choice) -> Response:
    info = _pixel_info(svc, view, ref)
    boundary = multipart.new_boundary()
    decode = info.encapsulated and choice.transfer_syntax == accept.EVRLE

    def parts() -> Iterator[tuple[str, str | None, list[bytes]]]:
        with svc.files.open(ref, view.snapshot_id) as fh:
            for n in numbers:
                data = pixels.native_bytes(pixels.decoded_frame(fh, n)) if decode \
                    else pixels.stored_frame(fh, info, n)
                yield choice.media, choice.transfer_syntax, [data]

    # Frames are small and requested one by one: build the body at once, so a bad frame
    # is a clean 4xx instead of a cut stream.
    body = b"".join(multipart.stream(boundary, parts()))
    return Response(body, media_type=multipart.content_type(choice.media, boundary,
                                                            choice.transfer_syntax))


def rendered(svc: Service, *, thumbnail: bool = False) -> Any:
    """Rendered instance/frame, thumbnails, and rendered series/study (one image per part)."""
    def endpoint(request: Request) -> Response:
        view = svc.snapshots.current()
        refs = find_instances(view, *_uids(request))
        media = accept.choose_image(_ranges(request))
        params = parse_render(request.query_params, media,
                              max_side=svc.limits.max_viewport, thumbnail=thumbnail)
        if not thumbnail and "instance" not in request.path_params:
            if len(refs) > svc.limits.max_frames:
                raise TooLarge(f"{len(refs)} instances: render at most "
                               f"{svc.limits.max_frames} at once (ask per series)")
            boundary = multipart.new_boundary()
            parts = ((media, None, [_render(svc, view, r, 1, params)]) for r in refs)
            return StreamingResponse(multipart.stream(boundary, parts),
                                     media_type=multipart.content_type(media, boundary))
        headers = {"Cache-Control": "max-age=3600"}
        if thumbnail and "series" in request.path_params and "instance" not in request.path_params:
            side = max(params.viewport or (THUMBNAIL_SIDE, THUMBNAIL_SIDE))
            found = series_plane(view, svc.files.store, refs[0].study, refs[0].series, side)
            if found is not None:
                headers["X-Rendered-From"] = "ome-zarr"
                return Response(render(found[0], found[1], params), media_type=media,
                                headers=headers)
        ref = refs[len(refs) // 2]  # a study/series thumbnail: its middle instance
        body = _render(svc, view, ref, _frame_number(request, ref), params)
        return Response(body, media_type=media, headers=headers)
    return endpoint


def _render(svc: Service, view: IndexView, ref: InstanceRef, number: int,
            params: RenderParams) -> bytes:
    info = _pixel_info(svc, view, ref)
    if info.frame_bits // 8 > svc.limits.max_pixels:
        raise TooLarge("the frame is too large to render")
    pixels.check_frames([number], info)
    with svc.files.open(ref, view.snapshot_id) as fh:
        return render(pixels.decoded_frame(fh, number), pixels.header(fh), params)


def _frame_number(request: Request, ref: InstanceRef) -> int:
    if "frames" in request.path_params:
        numbers = pixels.parse_frame_list(request.path_params["frames"], 1)
        return numbers[0]
    if "instance" in request.path_params:
        return max(1, (ref.frames + 1) // 2) if ref.frames > 1 else 1
    return 1


def routes(svc: Service) -> list[Route]:
    s, se, i = "/studies/{study}", "/series/{series}", "/instances/{instance}"
    table: list[tuple[str, Any]] = [
        ("/studies", search(svc, "study")),
        ("/series", search(svc, "series")),
        ("/instances", search(svc, "instance")),
        (s + "/series", search(svc, "series")),
        (s + "/instances", search(svc, "instance")),
        (s + se + "/instances", search(svc, "instance")),
        (s, retrieve(svc)), (s + se, retrieve(svc)), (s + se + i, retrieve(svc)),
        (s + "/metadata", retrieve_metadata(svc)), (s + se + "/metadata", retrieve_metadata(svc)),
        (s + se + i + "/metadata", retrieve_metadata(svc)),
        (s + se + i + "/frames/{frames}", frames(svc)),
        (s + se + i + "/frames/{frames}/rendered", rendered(svc)),
        (s + se + i + "/rendered", rendered(svc)),
        (s + se + "/rendered", rendered(svc)), (s + "/rendered", rendered(svc)),
        (s + se + i + "/frames/{frames}/thumbnail", rendered(svc, thumbnail=True)),
        (s + se + i + "/thumbnail", rendered(svc, thumbnail=True)),
        (s + se + "/thumbnail", rendered(svc, thumbnail=True)),
        (s + "/thumbnail", rendered(svc, thumbnail=True)),
        (s + se + i + "/bulkdata/{path:path}", bulkdata(svc)),
    ]
    return [Route(ROOT + path, endpoint, methods=["GET", "HEAD"]) for path, endpoint in table]
