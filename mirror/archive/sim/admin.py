"""``/admin/...``: JSON control of a running simulated archive (mutations and faults).

Lets tests and benchmarks that run the archive in another process (``mirror archive
serve``) change it: ``POST /admin/faults`` (FaultConfig fields), ``POST /admin/today``
(``{"date": "YYYY-MM-DD"}``), ``POST /admin/replace`` (``{"series_uid", "index",
"rerelease"}``; ``"rerelease": false`` is a silent same-size change), ``POST
/admin/rerelease`` (``{"series_uid"}``),
``POST /admin/withdraw`` / ``/admin/restore`` (``{"series_uid"}``), ``POST /admin/add_series``
(keyword arguments of :meth:`SimArchive.add_series`), ``GET /admin/state``.
"""

from __future__ import annotations

import json
from datetime import date
from typing import Any

from mirror.archive.sim.api import Reply
from mirror.archive.sim.faults import FaultConfig
from mirror.archive.sim.model import SimArchive
from mirror.errors import UsageError


def _ok(data: Any) -> Reply:
    return Reply(200, json.dumps(data).encode())


def _state(sim: SimArchive) -> dict[str, Any]:
    return {
        "today": sim.today.isoformat(),
        "series": len(sim.series_uids()),
        "faults": sim.faults.to_json(),
        "fault_counts": dict(sim.fault_state.counts),
    }


def _apply(sim: SimArchive, action: str, data: dict[str, Any]) -> Any:
    if action == "faults":
        sim.faults = FaultConfig.from_json(data)
    elif action == "today":
        sim.today = date.fromisoformat(str(data["date"]))
    elif action == "replace":
        sim.replace_instance(
            str(data["series_uid"]),
            int(data.get("index", 0)),
            rerelease=bool(data.get("rerelease", True)),
        )
    elif action == "rerelease":
        sim.rerelease_series(str(data["series_uid"]))
    elif action == "withdraw":
        sim.withdraw_series(str(data["series_uid"]))
    elif action == "restore":
        sim.restore_series(str(data["series_uid"]))
    elif action == "add_series":
        collection = str(data.pop("collection"))
        return {"series_uid": sim.add_series(collection, **data)}
    else:
        raise UsageError(f"unknown admin action {action!r}")
    return _state(sim)


def handle(sim: SimArchive, method: str, action: str, body: bytes) -> Reply:
    if method == "GET" and action == "state":
        return _ok(_state(sim))
    if method != "POST":
        return Reply(405, b"", "text/plain")
    try:
        data = json.loads(body or b"{}")
        if not isinstance(data, dict):
            raise UsageError("admin body must be a JSON object")
        return _ok(_apply(sim, action, data))
    except (UsageError, KeyError, TypeError, ValueError) as exc:
        return Reply(400, json.dumps({"error": str(exc)}).encode())
