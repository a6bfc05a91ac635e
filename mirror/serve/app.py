"""Assemble the ASGI application: DICOMweb, catalogue, optional viewer, guard, CORS."""

from __future__ import annotations

import logging
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from mirror.errors import MirrorError, RequestRefused, StoreError, UsageError
from mirror.serve import catalogue, dicomweb
from mirror.serve.config import ServeConfig
from mirror.serve.dicomweb import Service
from mirror.serve.files import Files
from mirror.serve.guard import Guard, request_id
from mirror.serve.snapshot import Snapshots
from mirror.serve.viewer import viewer_routes
from mirror.storage.port import Store

log = logging.getLogger(__name__)


def build_service(store: Store, config: ServeConfig) -> Service:
    """Load the current index snapshot of ``store`` (the only slow step of start-up)."""
    def exclude() -> frozenset[str]:
        if config.state_dir is None:
            return frozenset()
        from mirror.index.build import withdrawn_series

        return withdrawn_series(config.dest, config.state_dir)

    _preload()
    snapshots = Snapshots(store, refresh=config.refresh_seconds, exclude=exclude)
    return Service(snapshots, Files(store), config.limits, public_url=config.public_url)


def _preload() -> None:
    """Import the DICOM and image stacks now, not inside the first viewer's request."""
    import importlib

    for name in ("PIL.Image", "pydicom.encaps", "pydicom.pixels"):
        importlib.import_module(name)


def create_app(service: Service, config: ServeConfig) -> Starlette:
    def health(_: Request) -> Response:
        return JSONResponse({"status": "ok",
                             "snapshot": service.snapshots.current().snapshot_id})

    routes: list[BaseRoute] = [Route("/healthz", health, methods=["GET", "HEAD"])]
    routes += dicomweb.routes(service)
    routes += catalogue.routes(service, viewer=config.viewer is not None)
    if config.viewer is not None:
        routes += viewer_routes(config.viewer)
    middleware = [Middleware(Guard, limits=config.limits, auth=config.auth)]
    if config.cors_origins:
        # Outermost, so preflights are answered before authentication is asked for.
        middleware.insert(0, Middleware(
            CORSMiddleware, allow_origins=list(config.cors_origins),
            allow_methods=["GET", "HEAD", "OPTIONS"],
            allow_headers=["Accept", "Authorization", "Content-Type", "X-Request-ID"],
            expose_headers=["Warning", "X-Request-ID", "Content-Type"], max_age=600))
    return Starlette(routes=routes, middleware=middleware,
                     exception_handlers={MirrorError: _refused, HTTPException: _http_error})


def _http_error(request: Request, exc: Exception) -> Response:
    """Router refusals (no such route, method not allowed) in the same JSON shape, logged."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    rid = request_id(request.scope)
    log.warning("%s %s -> %d [request %s]", request.method, request.url.path[:200], status, rid)
    return JSONResponse({"error": str(getattr(exc, "detail", exc)), "request_id": rid},
                        status_code=status)


def _refused(request: Request, exc: Exception) -> Response:
    if isinstance(exc, RequestRefused):
        status = exc.status
    elif isinstance(exc, UsageError):
        status = 400  # e.g. an index row whose key the store adapter refuses
    elif isinstance(exc, StoreError):
        status = 503
    else:
        status = 500
    rid = request_id(request.scope)
    level = logging.ERROR if status >= 500 else logging.WARNING
    log.log(level, "%s %s -> %d %s [request %s]", request.method, request.url.path[:200],
            status, exc, rid)
    body: dict[str, Any] = {"error": str(exc)[:500], "request_id": rid}
    return JSONResponse(body, status_code=status)
