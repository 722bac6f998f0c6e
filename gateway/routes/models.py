"""GET /v1/models: what the model repository holds and which versions Triton serves."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from gateway.deps import SettingsDep, TritonDep

router = APIRouter(tags=["models"])


@router.get("/v1/models")
async def list_models(triton: TritonDep, settings: SettingsDep) -> dict[str, Any]:
    """Every model in the repository with its versions and their states (asked from Triton, uncached)."""
    models: dict[str, dict[str, Any]] = {}
    for row in await triton.repository_index():
        name = row.get("name", "")
        entry = models.setdefault(
            name, {"name": name, "default": name == settings.DEFAULT_MODEL, "versions": []}
        )
        if row.get("version"):
            entry["versions"].append(
                {
                    "version": row["version"],
                    "state": row.get("state", "UNKNOWN"),
                    "reason": row.get("reason", ""),
                }
            )
        elif row.get("state"):
            entry["state"] = row["state"]
    for entry in models.values():
        entry["versions"].sort(key=lambda v: int(v["version"]) if v["version"].isdigit() else -1)
        ready = [v["version"] for v in entry["versions"] if v["state"] == "READY"]
        entry["serving_version"] = ready[-1] if ready else None
    return {"models": sorted(models.values(), key=lambda m: m["name"])}
