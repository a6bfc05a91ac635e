"""OHIF Viewer (the stock @ohif/app dist) in headless Debian Chromium opens a CT study from
the mirror: every viewport reports rendered, the canvas is not black, no /dicomweb request
fails (dicomweb.md section 6, check 16)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from servedeps import chromium, ohif_dist

from mirror.serve import ServeConfig
from mirror.serve.server import Running, serve_in_thread

pytestmark = pytest.mark.slow

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
RENDERED = """() => { const cs = window.cornerstone;
  const vps = cs?.getRenderingEngines?.().flatMap(e => e.getViewports()) ?? [];
  return vps.length > 0 && vps.every(v => v.viewportStatus === 'rendered'); }"""
CANVAS = """() => { const vp = window.services.cornerstoneViewportService
    .getCornerstoneViewport('default');
  const src = vp.getCanvas(); const c = document.createElement('canvas');
  c.width = src.width; c.height = src.height;
  const ctx = c.getContext('2d'); ctx.drawImage(src, 0, 0);
  const d = ctx.getImageData(0, 0, c.width, c.height).data; let n = 0, nb = 0;
  for (let i = 0; i < d.length; i += 16) { n++;
    if (0.2126 * d[i] + 0.7152 * d[i + 1] + 0.0722 * d[i + 2] > 16) nb++; }
  return { w: c.width, h: c.height, nonBlack: nb / n }; }"""


@pytest.fixture(scope="module")
def viewer_server(mirror_dir) -> Iterator[Running]:
    store, _ = mirror_dir
    config = ServeConfig(dest=store.url, port=0, viewer=ohif_dist())
    with serve_in_thread(store, config) as running:
        yield running


def test_app_config_points_at_this_origin(viewer_server):
    script = httpx.get(viewer_server.base_url + "/app-config.js").text
    assert 'window.location.origin + "/dicomweb"' in script
    assert '"staticWado": false' in script and '"imageRendering": "wadors"' in script
    page = httpx.get(viewer_server.base_url + "/viewer?StudyInstanceUIDs=1.2.3")
    assert page.status_code == 200 and "app-config.js" in page.text
    assert httpx.get(viewer_server.base_url + "/viewer/mirror/x").status_code == 200
    assert httpx.get(viewer_server.base_url + "/no-such.js").status_code == 404


@pytest.mark.parametrize("case", ["ct", "j2k"])
def test_ohif_opens_a_study(viewer_server, tree, case):
    """The CT study; and a JPEG 2000 multi-frame whose frames reach cornerstone's decoder
    exactly as stored (passthrough labelled with its transfer syntax)."""
    from playwright.sync_api import sync_playwright

    series = tree.series[case]
    query = f"StudyInstanceUIDs={series.study.uid}"
    if case != "ct":
        query += f"&SeriesInstanceUIDs={series.uid}"
    statuses: list[tuple[int, str]] = []
    failed: list[str] = []
    errors: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium(), args=FLAGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("response", lambda r: statuses.append((r.status, r.url))
                    if "/dicomweb" in r.url else None)
            page.on("requestfailed", lambda r: failed.append(r.url)
                    if "/dicomweb" in r.url else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"{viewer_server.base_url}/viewer?{query}")
            page.wait_for_function(RENDERED, timeout=90_000)
            stats = page.evaluate(CANVAS)
            if stats["nonBlack"] <= 0.05:  # CPU rendering may not read back: use pixels
                stats["nonBlack"] = _screenshot_non_black(page)
        finally:
            browser.close()
    assert stats["nonBlack"] > 0.05, stats
    assert not failed, failed
    bad = [(s, u) for s, u in statuses if s >= 400]
    assert not bad, bad
    urls = [u for _, u in statuses]
    assert any("/metadata" in u for u in urls)
    assert any(f"/series/{series.uid}/instances/" in u and "/frames/" in u for u in urls)
    assert not errors, errors


def _screenshot_non_black(page) -> float:
    import io

    import numpy as np
    from PIL import Image

    box = page.locator("canvas").first.bounding_box()
    shot = Image.open(io.BytesIO(page.screenshot(clip=box))).convert("L")
    return float((np.asarray(shot) > 16).mean())
