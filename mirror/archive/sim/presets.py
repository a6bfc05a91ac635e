"""Ready-made simulated archives: ``tiny`` (tests), ``demo`` and ``tcga`` (real shape)."""

from __future__ import annotations

import os
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mirror.archive.sim.model import SimArchive
from mirror.errors import UsageError

CATALOG_NAME = "tcga_catalog.parquet"


def catalog_candidates() -> list[Path]:
    """Where the IDC series catalogue is looked for, in order: ``$MIRROR_CATALOG_DIR``, then
    ``shared/data`` beside the checkout (where CI and developers have it)."""
    places = []
    if os.environ.get("MIRROR_CATALOG_DIR"):
        places.append(Path(os.environ["MIRROR_CATALOG_DIR"]) / CATALOG_NAME)
    # mirror/archive/sim/presets.py -> the checkout's parent folder
    places.append(Path(__file__).resolve().parents[4] / "shared" / "data" / CATALOG_NAME)
    return places


def find_catalog() -> Path:
    """The first catalogue that exists; a usage error naming every place looked at if none."""
    places = catalog_candidates()
    found = next((p for p in places if p.is_file()), None)
    if found is None:
        looked = ", ".join(str(p) for p in places)
        raise UsageError(
            f"the tcga preset needs {CATALOG_NAME}: set MIRROR_CATALOG_DIR to its folder, "
            f"or pass --catalog FILE (looked in: {looked})"
        )
    return found


RADIOLOGY = ("CT", "MR", "PT", "CR", "DX", "MG", "NM", "OT")

# (collection, patient, modality, instances, size, extra add_series kwargs)
_TINY: tuple[tuple[str, str, str, int, int, dict[str, Any]], ...] = (
    ("Sim-Lung", "SL-001", "CT", 5, 32, {}),
    ("Sim-Lung", "SL-001", "PT", 3, 32, {}),
    ("Sim-Lung", "SL-002", "CT", 6, 64, {"acquisitions": 2}),
    ("Sim-Brain", "SB-001", "MR", 4, 32, {"body_part": "HEAD"}),
    ("Sim-Brain", "SB-001", "MR", 2, 64, {"body_part": "HEAD", "shuffle": True}),
    ("Sim-Brain", "SB-002", "CT", 3, 32, {"body_part": "HEAD"}),
)


def tiny(sim: SimArchive) -> SimArchive:
    """2 collections, 6 series of 2-6 small instances; lists and serves in milliseconds."""
    for collection, patient, modality, count, size, extra in _TINY:
        sim.add_series(
            collection,
            patient_id=patient,
            modality=modality,
            n_instances=count,
            rows=size,
            cols=size,
            **extra,
        )
    return sim


def demo(sim: SimArchive) -> SimArchive:
    """3 collections, about 50 series (CT, MR, PT, some SEG/RTSTRUCT), small images."""
    rng = random.Random(sim.seed)
    for collection in ("Demo-Lung-CT", "Demo-Brain-MR", "Demo-HeadNeck"):
        for p in range(1, 7):
            patient = f"{collection.split('-')[1][:2].upper()}-{p:03d}"
            for modality in rng.sample(["CT", "MR", "PT", "CT"], k=rng.randint(2, 3)):
                size = rng.choice((64, 96, 128))
                sim.add_series(
                    collection,
                    patient_id=patient,
                    modality=modality,
                    n_instances=rng.randint(5, 40),
                    rows=size,
                    cols=size,
                    shuffle=rng.random() < 0.3,
                )
            if rng.random() < 0.3:
                sim.add_series(collection, patient_id=patient, modality="RTSTRUCT", n_instances=1)
    return sim


def _tcga_name(collection_id: str) -> str:
    return collection_id.upper().replace("_", "-")


def tcga(
    sim: SimArchive,
    *,
    collections: Sequence[str] | None = None,
    max_series: int | None = 20,
    max_instances: int | None = 200,
    scale: int = 8,
    catalog: Path | str | None = None,
) -> SimArchive:
    """Series shaped like TCGA radiology in the IDC catalogue (real names, UIDs, counts).

    Pixel matrices are 512/``scale`` square; ``max_series`` caps series per collection and
    ``max_instances`` caps instances per series so the archive fits a laptop.
    """
    import pyarrow.compute as pc

    table = _read_catalog(Path(catalog) if catalog is not None else find_catalog())
    table = table.filter(pc.is_null(table["analysis_result_id"]))
    table = table.filter(pc.is_in(table["Modality"], value_set=_pa_strings(RADIOLOGY)))
    if collections:
        wanted = [c.lower().replace("-", "_") for c in collections]
        table = table.filter(pc.is_in(table["collection_id"], value_set=_pa_strings(wanted)))
    per_collection: dict[str, int] = {}
    size = max(8, 512 // max(1, scale))
    for row in table.to_pylist():
        cid = row["collection_id"]
        if max_series is not None and per_collection.get(cid, 0) >= max_series:
            continue
        per_collection[cid] = per_collection.get(cid, 0) + 1
        count = int(row["instanceCount"] or 1)
        sim.add_series(
            _tcga_name(cid),
            patient_id=row["PatientID"],
            modality=row["Modality"],
            n_instances=min(count, max_instances) if max_instances else count,
            rows=size,
            cols=size,
            study_uid=row["StudyInstanceUID"],
            series_uid=row["SeriesInstanceUID"],
            description=row["SeriesDescription"] or "",
            body_part=row["BodyPartExamined"] or "",
            manufacturer=row["Manufacturer"] or "",
            study_date=row["StudyDate"],
        )
    return sim


def _read_catalog(path: Path) -> Any:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise UsageError(f"cannot read the series catalogue {path}: {exc}") from exc


def _pa_strings(values: Sequence[str]) -> Any:
    import pyarrow as pa

    return pa.array(list(values), type=pa.string())


def build_preset(name: str, seed: int = 0, **kwargs: Any) -> SimArchive:
    builders = {"tiny": tiny, "demo": demo}
    preset_options = {k: kwargs.pop(k) for k in list(kwargs) if k in _TCGA_OPTIONS}
    sim = SimArchive(seed=seed, **kwargs)
    if name == "tcga":
        return tcga(sim, **preset_options)
    if name not in builders:
        raise UsageError(f"unknown preset {name!r}; choose tiny, demo or tcga")
    return builders[name](sim)


_TCGA_OPTIONS = frozenset({"collections", "max_series", "max_instances", "scale", "catalog"})
