"""Where the serving tests find what `.ci/serve-deps.sh` installs (not pip packages).

- OHIF Viewer dist: ``MIRROR_OHIF_DIST``, else ``~/.cache/tcia-mirror/ohif/<version>/dist``.
- Chromium: ``MIRROR_CHROMIUM``, else ``chromium`` on PATH (Debian's /usr/bin/chromium).
- Orthanc: ``MIRROR_ORTHANC`` (the binary), else ``Orthanc`` on PATH or /usr/sbin; the
  DICOMweb plugin from ``MIRROR_ORTHANC_PLUGINS``, else /usr/share/orthanc/plugins.

Missing pieces skip the test on a developer machine and fail it when ``CI=true``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

HINT = "run .ci/serve-deps.sh (apt chromium orthanc orthanc-dicomweb, npm pack @ohif/app)"


def need(value: str | None, what: str) -> str:
    if value:
        return value
    message = f"{what} not found: {HINT}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


def ohif_dist() -> str:
    env = os.environ.get("MIRROR_OHIF_DIST")
    if env:
        return need(env if (Path(env) / "index.html").is_file() else None, f"OHIF dist {env}")
    cache = Path(os.environ.get("MIRROR_OHIF_CACHE", Path.home() / ".cache/tcia-mirror/ohif"))
    found = sorted(cache.glob("*/dist/index.html"))
    return need(str(found[-1].parent) if found else None, "OHIF Viewer dist")


def chromium() -> str:
    return need(os.environ.get("MIRROR_CHROMIUM") or shutil.which("chromium"), "chromium")


def orthanc() -> tuple[str, str]:
    binary = os.environ.get("MIRROR_ORTHANC") or shutil.which("Orthanc") or (
        "/usr/sbin/Orthanc" if Path("/usr/sbin/Orthanc").exists() else None)
    plugins = Path(os.environ.get("MIRROR_ORTHANC_PLUGINS", "/usr/share/orthanc/plugins"))
    plugin = plugins / "libOrthancDicomWeb.so"
    return need(binary, "Orthanc"), need(str(plugin) if plugin.exists() else None,
                                         "orthanc-dicomweb plugin")
