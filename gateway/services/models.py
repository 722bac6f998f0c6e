"""What Triton serves, read through its API once and cached: versions, batch size, processing params.

The model repository's config is the single source of truth for every processing parameter: each
version's `ProcessingParams` live in the config's `parameters` map under `pd_processing.v<version>`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from gateway.cache import MetadataCache
from gateway.dsp.params import ProcessingParams
from gateway.errors import ModelNotFound, UpstreamError, UpstreamUnavailable, VersionNotFound
from gateway.repository import processing_key
from gateway.triton_client import TritonClient


@dataclass(frozen=True)
class ModelVersion:
    """Everything the inference path needs about one served model version."""

    name: str
    version: str
    params: ProcessingParams
    max_batch_size: int
    input_name: str
    output_name: str


def _version_key(v: str) -> tuple[int, str]:
    return (int(v), v) if v.isdigit() else (-1, v)


class ModelRegistry:
    """Resolves (model, version) requests against cached Triton metadata; no Triton call on a cache hit."""

    def __init__(self, triton: TritonClient, cache: MetadataCache, default_model: str) -> None:
        self._triton = triton
        self._cache = cache
        self.default_model = default_model

    async def describe(self, name: str) -> dict[str, Any]:
        """{"name", "versions": {version: state}, "config": Triton's config JSON or None}."""
        return await self._cache.get_or_load(name, lambda: self._load(name))

    async def _load(self, name: str) -> dict[str, Any]:
        states = await self._triton.model_states(name)
        if states is None:
            raise ModelNotFound(f"model {name!r} is not in the model repository")
        versions = {str(v): state for v, (state, _) in states.items()}
        config = None
        if "READY" in versions.values():
            config = await self._triton.model_config(name)
        return {"name": name, "versions": versions, "config": config}

    async def resolve(self, name: str | None, version: str | None) -> ModelVersion:
        """The version to serve: the pinned one if given and ready, else the highest ready version."""
        name = name or self.default_model
        info = await self.describe(name)
        ready = sorted((v for v, s in info["versions"].items() if s == "READY"), key=_version_key)
        if version is not None:
            if version not in ready:
                state = info["versions"].get(version)
                known = f"it is {state}" if state else "it does not exist"
                raise VersionNotFound(f"version {version!r} of model {name!r} is not being served ({known})")
            chosen = version
        elif ready:
            chosen = ready[-1]
        else:
            raise UpstreamUnavailable(
                f"model {name!r} has no ready version (loading or unloaded)", retry_after_s=5
            )
        return self._version_from_config(name, chosen, info["config"] or {})

    @staticmethod
    def _version_from_config(name: str, version: str, config: dict[str, Any]) -> ModelVersion:
        params = config.get("parameters", {})
        raw = params.get(processing_key(int(version))) if version.isdigit() else None
        if raw is None:
            raise UpstreamError(
                f"model {name!r} version {version} has no processing parameters in its config"
            )
        try:
            processing = ProcessingParams.from_dict(json.loads(raw["string_value"]))
        except (KeyError, TypeError, ValueError) as e:
            raise UpstreamError(
                f"model {name!r} version {version} has invalid processing parameters: {e}"
            ) from e
        try:
            return ModelVersion(
                name=name,
                version=version,
                params=processing,
                max_batch_size=max(1, int(config.get("max_batch_size", 1))),
                input_name=config["input"][0]["name"],
                output_name=config["output"][0]["name"],
            )
        except (KeyError, IndexError, TypeError) as e:
            raise UpstreamError(f"model {name!r} config lacks input/output definitions") from e

    async def invalidate(self, name: str) -> None:
        await self._cache.invalidate(name)
