"""``mirror serve``: a read-only DICOMweb origin over the mirror, read in place.

QIDO-RS answers from the Parquet index (DuckDB), WADO-RS from the committed series files
through the Store port; an optional OHIF Viewer and a catalogue page share the origin.
Starlette and uvicorn are imported only when a server is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mirror.serve.config import AuthConfig, Limits, ServeConfig, auth_from_env

if TYPE_CHECKING:
    from mirror.storage.port import Store

__all__ = ["AuthConfig", "Limits", "ServeConfig", "auth_from_env", "serve"]


def serve(config: ServeConfig, store: Store | None = None) -> None:
    """Serve ``config.dest`` until interrupted."""
    from mirror.index.views import open_dest
    from mirror.serve.server import serve_forever

    serve_forever(store or open_dest(config.dest), config)
