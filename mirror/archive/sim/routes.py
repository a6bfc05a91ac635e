"""Routing, parameter validation, tokens and download faults of the simulated archive."""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from mirror.archive.sim import api
from mirror.archive.sim.api import Params, Reply, ZipPlan
from mirror.archive.sim.model import SimArchive

Handler = Callable[[SimArchive, Params], Reply]
API_PREFIXES = ("/nbia-api/services/v4/", "/nbia-api/v4/")
TOKEN_PATHS = ("/nbia-api/oauth/token", "/nbia-api/services/oauth/token")
GUEST = "nbia_guest"


@dataclass(frozen=True, slots=True)
class Endpoint:
    method: str
    allowed: tuple[str, ...]
    handler: Handler | None  # None: a download, handled by :func:`download`
    secured: bool = False  # resolves the user itself: a bad token is 401, not 200-empty


_SERIES_FILTERS = (
    "Collection",
    "PatientID",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "Modality",
    "BodyPartExamined",
    "Manufacturer",
    "ManufacturerModelName",
    "format",
)

ENDPOINTS: dict[str, Endpoint] = {
    "getCollectionValues": Endpoint("GET", ("format",), api.get_collection_values),
    "getPatient": Endpoint("GET", ("Collection", "PatientId", "format"), api.get_patient),
    "getPatientStudy": Endpoint(
        "GET",
        ("Collection", "PatientID", "StudyInstanceUID", "format"),
        api.get_patient_study,
    ),
    "getSeries": Endpoint("GET", _SERIES_FILTERS, api.get_series),
    "getUpdatedSeries": Endpoint("GET", ("fromDate", "format"), api.get_updated_series),
    "NewPatientsInCollection": Endpoint(
        "GET", ("Collection", "fromDate", "format"), api.new_patients
    ),
    "NewStudiesInPatientCollection": Endpoint(
        "GET", ("Collection", "fromDate", "PatientID", "format"), api.new_studies
    ),
    "getSeriesSize": Endpoint("GET", ("SeriesInstanceUID", "format"), api.get_series_size),
    "getSOPInstanceUIDs": Endpoint(
        "GET", ("SeriesInstanceUID", "format"), api.get_sop_instance_uids
    ),
    "getMD5HashForImage": Endpoint("GET", ("SOPInstanceUID",), api.get_md5_for_image),
    "getMD5Hierarchy": Endpoint(
        "POST",
        ("SeriesInstanceUID", "StudyInstanceUID", "PatientID", "Collection"),
        api.md5_hierarchy,
    ),
    "getSeriesMetadata": Endpoint("POST", ("list", "format"), api.series_metadata, secured=True),
    "getSingleImage": Endpoint(
        "GET", ("SeriesInstanceUID", "SOPInstanceUID"), api.get_single_image, secured=True
    ),
    "getImage": Endpoint(
        "GET", ("SeriesInstanceUID", "NewFileNames", "IncludeMD5"), None, secured=True
    ),
    "getImageWithMD5Hash": Endpoint("GET", ("SeriesInstanceUID",), None, secured=True),
}


class TokenStore:
    """Issued bearer tokens and their expiry on the archive's clock."""

    def __init__(self, sim: SimArchive) -> None:
        self.sim = sim
        self._expiry: dict[str, float] = {}
        self._refresh: dict[str, str] = {}
        self._lock = threading.Lock()

    def issue(self, username: str) -> dict[str, Any]:
        ttl = self.sim.faults.token_ttl or self.sim.token_ttl
        access, refresh = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        with self._lock:
            self._expiry[access] = self.sim.clock() + ttl
            self._refresh[refresh] = username
        return {
            "access_token": access,
            "expires_in": int(ttl),
            "refresh_expires_in": int(ttl) * 2,
            "refresh_token": refresh,
            "token_type": "Bearer",
            "not-before-policy": 0,
            "session_state": secrets.token_hex(8),
            "scope": "openid email profile",
        }

    def valid(self, token: str) -> bool:
        with self._lock:
            expiry = self._expiry.get(token)
        return expiry is not None and self.sim.clock() < expiry

    def user_for_refresh(self, refresh: str) -> str | None:
        with self._lock:
            return self._refresh.pop(refresh, None)


def token_endpoint(sim: SimArchive, tokens: TokenStore, form: Params) -> Reply:
    grant = form.get("grant_type", "")
    if grant == "password":
        user, password = form.get("username", ""), form.get("password", "")
        if user != GUEST and sim.users.get(user) != password:
            return _json(
                401, {"error": "invalid_grant", "error_description": "Invalid user credentials"}
            )
        return _json(200, tokens.issue(user))
    if grant == "refresh_token":
        owner = tokens.user_for_refresh(form.get("refresh_token", ""))
        if owner is None:
            return _json(
                400, {"error": "invalid_grant", "error_description": "Invalid refresh token"}
            )
        return _json(200, tokens.issue(owner))
    return api.text(400, "Wrong grant_type entered. Please use password or refresh_token.")


def _json(status: int, data: Mapping[str, Any]) -> Reply:
    return Reply(status, json.dumps(data).encode())


def bearer_state(authorization: str | None, tokens: TokenStore) -> bool:
    """True if the request may proceed (guest or a live token)."""
    if not authorization or authorization.strip() in ("Bearer undefined", "Bearer"):
        return True
    scheme, _, token = authorization.partition(" ")
    return scheme.lower() == "bearer" and tokens.valid(token.strip())


def check_params(name: str, endpoint: Endpoint, params: Params, sim: SimArchive) -> Reply | None:
    allowed = endpoint.allowed
    if name == "getImage" and not sim.supports_include_md5:
        allowed = tuple(a for a in allowed if a != "IncludeMD5")
    for key in params:
        if key not in allowed:
            kind = "form" if endpoint.method == "POST" else "query"
            listed = ", ".join(allowed)
            return api.text(
                400, f"Invalid {kind} parameter: '{key}'. Allowed parameters are: [{listed}]"
            )
    return None


def metadata_fault(sim: SimArchive) -> Reply | None:
    state = sim.fault_state
    if state.take("metadata_fail_next"):
        return api.text(500, f"{api.SERVER_ERROR}\nnull")
    if state.take("metadata_rate_limit_next"):
        return rate_limited(sim, 429)
    return None


def rate_limited(sim: SimArchive, status: int) -> Reply:
    reply = api.text(status, "Too Many Requests" if status == 429 else "Service Unavailable")
    if sim.faults.retry_after is not None:
        reply.headers["Retry-After"] = f"{sim.faults.retry_after:g}"
    return reply


def download(sim: SimArchive, name: str, params: Params) -> Reply:
    uid = params.get("SeriesInstanceUID")
    if not uid:
        return api.missing("SeriesInstanceUID", comma=True)
    state = sim.fault_state
    if state.targets(uid):
        early = _early_fault(sim, uid)
        if early is not None:
            return early
    if sim.get_series(uid) is None:
        return api.not_granted(uid)
    reply = api.zip_reply(sim, _plan(sim, name, uid, params))
    if state.targets(uid) and state.take("truncate_next"):
        reply.truncate_after = sim.faults.truncate_after
    return reply


def _early_fault(sim: SimArchive, uid: str) -> Reply | None:
    state, config = sim.fault_state, sim.faults
    if state.take("fail_next") or state.roll(config.error_rate):
        return api.text(500, f"{api.SERVER_ERROR}\nnull")
    if state.take("rate_limit_next") or state.roll(config.rate_limit_rate):
        return rate_limited(sim, 429)
    if sim.get_series(uid) is not None and state.take("withdraw_next"):
        sim.withdraw_series(uid)
    return None


def _plan(sim: SimArchive, name: str, uid: str, params: Params) -> ZipPlan:
    state = sim.fault_state
    targeted = state.targets(uid)
    skip = _skipped(sim, uid) if targeted else frozenset()
    hostile = sim.faults.hostile_name if targeted and state.take("hostile_name_next") else None
    if name == "getImageWithMD5Hash":
        return ZipPlan(uid, False, new_names=False, md5=True, skip=skip, hostile_name=hostile)
    return ZipPlan(
        uid,
        license=True,
        new_names=api.is_yes(params.get("NewFileNames")),
        md5=api.is_yes(params.get("IncludeMD5")),
        skip=skip,
        hostile_name=hostile,
    )


def _skipped(sim: SimArchive, uid: str) -> frozenset[int]:
    """Images a short or LICENSE-only fault leaves out (the server's FileNotFound path)."""
    series = sim.get_series(uid)
    count = len(series.instances) if series else 0
    if sim.fault_state.take("license_only_next"):
        return frozenset(range(count))
    if sim.fault_state.take("short_next"):
        return frozenset(range(max(0, count - sim.faults.short_missing), count))
    return frozenset()
