"""Rendered and thumbnail images (PS3.18 8.3.5): VOI window, viewport, JPEG or PNG.

The modality LUT (rescale) and the window are applied as PS3.3 C.11.2 describes for the
``LINEAR`` function; ``window`` overrides the file's first WindowCenter/Width, and without
either the frame's own range is used. MONOCHROME1 is inverted so bright means dense.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from mirror.errors import BadRequest, TooLarge

Shape = Literal["linear", "linear-exact", "sigmoid"]
THUMBNAIL_SIDE = 256


@dataclass(frozen=True, slots=True)
class RenderParams:
    media: str  # image/jpeg or image/png
    viewport: tuple[int, int] | None = None
    crop: tuple[int, int, int, int] | None = None  # sx, sy, sw, sh in source pixels
    window: tuple[float, float, Shape] | None = None
    quality: int = 90


def parse_render(
    params: Mapping[str, str], media: str, *, max_side: int, thumbnail: bool = False
) -> RenderParams:
    viewport, crop = _viewport(params.get("viewport"), max_side)
    if thumbnail and viewport is None:
        viewport = (THUMBNAIL_SIDE, THUMBNAIL_SIDE)
    return RenderParams(media, viewport, crop, _window(params.get("window")),
                        _quality(params.get("quality")))


def _numbers(text: str, what: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError as exc:
        raise BadRequest(f"malformed {what}: {text[:60]!r}") from exc
    if not all(math.isfinite(v) for v in values):
        raise BadRequest(f"malformed {what}: {text[:60]!r}")
    return values


def _viewport(
    text: str | None, max_side: int
) -> tuple[tuple[int, int] | None, tuple[int, int, int, int] | None]:
    if not text:
        return None, None
    values = _numbers(text, "viewport")
    if len(values) not in (2, 6) or any(v != int(v) for v in values):
        raise BadRequest("viewport is vw,vh or vw,vh,sx,sy,sw,sh (integers)")
    vw, vh = int(values[0]), int(values[1])
    if not (1 <= vw <= max_side and 1 <= vh <= max_side):
        raise TooLarge(f"viewport sides must be between 1 and {max_side}")
    if len(values) == 2:
        return (vw, vh), None
    sx, sy, sw, sh = (int(v) for v in values[2:])
    if sx < 0 or sy < 0 or sw < 1 or sh < 1:
        raise BadRequest("viewport region must lie inside the image")
    return (vw, vh), (sx, sy, sw, sh)


def _window(text: str | None) -> tuple[float, float, Shape] | None:
    if not text:
        return None
    center, _, rest = text.partition(",")
    width, _, shape = rest.partition(",")
    values = _numbers(f"{center},{width}", "window")
    if values[1] <= 0:
        raise BadRequest("window width must be positive")
    shape = shape.strip().lower() or "linear"
    if shape not in ("linear", "linear-exact", "sigmoid"):
        raise BadRequest(f"unknown window function {shape[:20]!r}")
    return values[0], values[1], shape  # type: ignore[return-value]


def _quality(text: str | None) -> int:
    if not text:
        return 90
    if not text.isdigit() or not 1 <= int(text) <= 100:
        raise BadRequest("quality must be an integer from 1 to 100")
    return int(text)


def render(frame: Any, ds: Any, params: RenderParams) -> bytes:
    """Encode one decoded frame (numpy array) as the requested image."""
    from PIL import Image

    pixels = _to_8bit(frame, ds, params.window)
    image = Image.fromarray(pixels, "RGB" if pixels.ndim == 3 else "L")
    if params.crop is not None:
        sx, sy, sw, sh = params.crop
        if sx + sw > image.width or sy + sh > image.height:
            raise BadRequest("viewport region must lie inside the image")
        image = image.crop((sx, sy, sx + sw, sy + sh))
    if params.viewport is not None:
        image = _fit(image, params.viewport)
    out = io.BytesIO()
    if params.media == "image/png":
        image.save(out, "PNG")
    else:
        image.save(out, "JPEG", quality=params.quality)
    return out.getvalue()


def _fit(image: Any, viewport: tuple[int, int]) -> Any:
    from PIL import Image

    scale = min(viewport[0] / image.width, viewport[1] / image.height)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.BILINEAR)


def _to_8bit(frame: Any, ds: Any, window: tuple[float, float, Shape] | None) -> Any:
    import numpy as np

    if frame.ndim == 3 and frame.shape[-1] == 3:  # colour: scale to 8 bits, no VOI
        if frame.dtype == np.uint8:
            return frame
        top = float(2 ** int(ds.get("BitsStored", 8)) - 1)
        return np.clip(frame.astype(np.float64) / top * 255.0, 0, 255).astype(np.uint8)
    values = frame.astype(np.float64) * float(ds.get("RescaleSlope", 1) or 1) \
        + float(ds.get("RescaleIntercept", 0) or 0)
    center, width, shape = window or _file_window(ds) or _range_window(values)
    if shape == "sigmoid":
        out = 1.0 / (1.0 + np.exp(-4.0 * (values - center) / width))
    elif shape == "linear-exact":
        out = (values - (center - width / 2)) / width
    else:
        out = (values - (center - 0.5)) / max(width - 1, 1e-6) + 0.5
    gray = (np.clip(out, 0.0, 1.0) * 255.0).astype(np.uint8)
    if str(ds.get("PhotometricInterpretation", "")) == "MONOCHROME1":
        gray = 255 - gray
    return gray


def _file_window(ds: Any) -> tuple[float, float, Shape] | None:
    center, width = ds.get("WindowCenter"), ds.get("WindowWidth")
    if center is None or width is None:
        return None
    try:
        c = float(center[0] if _multi(center) else center)
        w = float(width[0] if _multi(width) else width)
    except (TypeError, ValueError):
        return None
    return (c, w, "linear") if w > 0 and math.isfinite(c) and math.isfinite(w) else None


def _multi(value: Any) -> bool:
    return not isinstance(value, str | bytes) and hasattr(value, "__getitem__")


def _range_window(values: Any) -> tuple[float, float, Shape]:
    lo, hi = float(values.min()), float(values.max())
    return (lo + hi) / 2, max(hi - lo, 1.0), "linear-exact"
