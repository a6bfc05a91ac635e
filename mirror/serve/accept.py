"""``Accept`` negotiation for WADO-RS (PS3.18 8.7): media ranges, transfer syntaxes, 406.

Clients differ in quoting (``type="application/octet-stream"`` vs unquoted) and wildcards
(``*/*``, ``multipart/related; type="*/*"``, ``application/*``); all of these are accepted.
An ``accept=`` query parameter, when present, wins over the header (OHIF thumbnails rely on it).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from mirror.errors import BadRequest, NotAcceptable

EVRLE = "1.2.840.10008.1.2.1"
IVRLE = "1.2.840.10008.1.2"
EVRBE = "1.2.840.10008.1.2.2"
NATIVE_TS = frozenset({EVRLE, IVRLE, EVRBE})
OCTETS = "application/octet-stream"
DICOM = "application/dicom"

# Compressed pixel data: the bulk media type of each transfer syntax (PS3.18 Table 8.7.3-5).
MEDIA_FOR_TS: dict[str, str] = {
    "1.2.840.10008.1.2.4.50": "image/jpeg", "1.2.840.10008.1.2.4.51": "image/jpeg",
    "1.2.840.10008.1.2.4.57": "image/jpeg", "1.2.840.10008.1.2.4.70": "image/jpeg",
    "1.2.840.10008.1.2.4.80": "image/jls", "1.2.840.10008.1.2.4.81": "image/jls",
    "1.2.840.10008.1.2.4.90": "image/jp2", "1.2.840.10008.1.2.4.91": "image/jp2",
    "1.2.840.10008.1.2.4.92": "image/jpx", "1.2.840.10008.1.2.4.93": "image/jpx",
    "1.2.840.10008.1.2.4.201": "image/jphc", "1.2.840.10008.1.2.4.202": "image/jphc",
    "1.2.840.10008.1.2.4.203": "image/jphc", "1.2.840.10008.1.2.5": "image/dicom-rle",
}
_PARAM = re.compile(r'\s*([!#$%&\'*+.^_`|~0-9A-Za-z-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;,\s]*)\s*')
_MAX_ACCEPT = 4096


@dataclass(frozen=True, slots=True)
class MediaRange:
    media: str  # lower case, e.g. "multipart/related", "image/jpeg", "*/*"
    params: dict[str, str] = field(default_factory=dict)
    q: float = 1.0

    @property
    def part(self) -> str:
        """The media type of each part (``type=`` of a multipart range, else the range)."""
        if self.media == "multipart/related":
            return self.params.get("type", "*/*").lower()
        return self.media

    @property
    def transfer_syntax(self) -> str | None:
        return self.params.get("transfer-syntax") or None


@dataclass(frozen=True, slots=True)
class Choice:
    media: str  # the part's media type
    transfer_syntax: str


def parse_accept(header: str | None) -> list[MediaRange]:
    """Media ranges of an ``Accept`` value, highest ``q`` first (ties keep their order)."""
    if not header or not header.strip():
        return [MediaRange("*/*")]
    if len(header) > _MAX_ACCEPT:
        raise BadRequest("Accept header too long")
    ranges = [_parse_range(item) for item in _split(header) if item.strip()]
    ranges = [r for r in ranges if r.q > 0]
    if not ranges:
        raise NotAcceptable(f"nothing acceptable in Accept: {header[:200]!r}")
    return sorted(ranges, key=lambda r: -r.q)


def _split(header: str) -> list[str]:
    """Split on commas outside quoted strings."""
    items: list[str] = []
    current: list[str] = []
    quoted = False
    for ch in header:
        if ch == '"':
            quoted = not quoted
        if ch == "," and not quoted:
            items.append("".join(current))
            current = []
        else:
            current.append(ch)
    items.append("".join(current))
    return items


def _parse_range(item: str) -> MediaRange:
    media, _, rest = item.partition(";")
    params: dict[str, str] = {}
    for found in _PARAM.finditer(rest):
        params[found.group(1).lower()] = found.group(2).strip('"')
    try:
        q = float(params.pop("q", "1"))
    except ValueError as exc:
        raise BadRequest(f"bad q value in Accept: {item[:80]!r}") from exc
    return MediaRange(media.strip().lower(), params, q)


def media_matches(wanted: str, offered: str) -> bool:
    if wanted in ("*/*", "*", offered):
        return True
    major, _, minor = wanted.partition("/")
    return minor == "*" and offered.startswith(major + "/")


def frame_offers(stored_ts: str, decodable: bool) -> list[Choice]:
    """What a frame can be sent as: the stored bytes first, a decoded native copy second."""
    if stored_ts in NATIVE_TS:
        return [Choice(OCTETS, EVRLE)]
    offers = [Choice(MEDIA_FOR_TS.get(stored_ts, OCTETS), stored_ts)]
    if decodable:
        offers.append(Choice(OCTETS, EVRLE))
    return offers


def _frame_fits(want: MediaRange, offer: Choice) -> bool:
    part, ts = want.part, want.transfer_syntax
    if part == OCTETS and ts == "*":
        return True  # OHIF's default: "whatever you hold", compressed parts labelled as such
    if not media_matches(part, offer.media):
        return False
    if ts is None:
        return "*" in part or part != OCTETS or offer.transfer_syntax == EVRLE
    return ts in ("*", offer.transfer_syntax)


def choose_frame(ranges: Sequence[MediaRange], offers: Sequence[Choice]) -> Choice:
    for want in ranges:
        for offer in offers:
            if _frame_fits(want, offer):
                return offer
    held = ", ".join(f"{o.media}; transfer-syntax={o.transfer_syntax}" for o in offers)
    raise NotAcceptable(f"cannot produce any accepted frame type (can send: {held})")


def choose_instances(ranges: Sequence[MediaRange], stored: Sequence[str]) -> None:
    """Whole files are sent as stored; a request for another transfer syntax is a 406.

    Without ``transfer-syntax`` the stored syntax is sent and named in each part: the
    mirror holds the archive's bytes verbatim and does not transcode whole files.
    """
    for want in ranges:
        if not media_matches(want.part, DICOM):
            continue
        ts = want.transfer_syntax
        if ts in (None, "*") or all(s == ts for s in stored):
            return
    raise NotAcceptable("only application/dicom in the stored transfer syntax can be sent "
                        f"(stored: {', '.join(sorted(set(stored)))})")


def choose_image(ranges: Sequence[MediaRange]) -> str:
    """``image/jpeg`` or ``image/png`` for rendered and thumbnail resources."""
    for want in ranges:
        for media in ("image/jpeg", "image/png"):
            if media_matches(want.part, media):
                return media
    raise NotAcceptable("rendered images are available as image/jpeg or image/png")
