"""Model management for operators: describe, load, unload, deploy. Knows nothing of HTTP.

Every operation validates names, runs exclusively per model in this process (asyncio.Lock) and across
processes (flock on the repository directory), persists the served version set in config.pbtxt, tells
Triton through its load API (the config override replaces the whole config, so it is built from the
file), waits for Triton's repository index to settle, and invalidates the metadata cache everywhere
(Redis keys + pub/sub to every replica). A failed load or deploy restores the files byte for byte.

Over 300 lines on purpose: the one management service owns every operator action and the views of a
model's state that go with them (the filesystem side is in repo_state.py, Triton's in triton_client.py).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import structlog
from tritonclient.grpc import model_config_pb2 as mc

from gateway import repository as repo
from gateway.dsp.params import ProcessingParams
from gateway.errors import (
    Conflict,
    InvalidInput,
    ModelNotFound,
    ModelRejected,
    RepositoryUnavailable,
    UpstreamError,
    VersionNotFound,
)
from gateway.services import repo_state as rs
from gateway.services.models import ModelRegistry
from gateway.services.validation import (
    Contract,
    ValidationReport,
    default_card,
    merge_processing,
    validate_onnx,
)
from gateway.triton_client import ModelStates, TritonClient, reason_line

log = structlog.get_logger(__name__)

Validator = Callable[[bytes, Contract, ProcessingParams], ValidationReport]


class ModelManager:
    """Operator actions on the model repository and Triton; one instance per gateway process."""

    def __init__(
        self,
        triton: TritonClient,
        registry: ModelRegistry,
        repository: Path,
        *,
        unload_timeout_s: float = 30.0,
        lock_timeout_s: float = 180.0,
        validator: Validator = validate_onnx,
    ) -> None:
        self._triton = triton
        self._registry = registry
        self.repository = Path(repository)
        self._unload_timeout_s = unload_timeout_s
        self._lock_timeout_s = lock_timeout_s
        self._validate = validator
        self._locks: dict[str, asyncio.Lock] = {}

    # -- reads ------------------------------------------------------------------------------------

    async def list_models(self) -> dict[str, Any]:
        """{"models": [{name, default, versions: [{version, state, reason}], serving_version}]}: every
        model in Triton's repository index (asked each time, uncached)."""
        models: dict[str, dict[str, Any]] = {}
        for row in await self._triton.repository_index():
            name = row.get("name", "")
            entry = models.setdefault(
                name, {"name": name, "default": name == self._registry.default_model, "versions": []}
            )
            if row.get("version"):
                state, reason = row.get("state", "UNKNOWN"), reason_line(row.get("reason"))
                entry["versions"].append({"version": row["version"], "state": state, "reason": reason})
            elif row.get("state"):
                entry["state"] = row["state"]
        for entry in models.values():
            entry["versions"].sort(key=lambda v: int(v["version"]) if v["version"].isdigit() else -1)
            ready = [v["version"] for v in entry["versions"] if v["state"] == "READY"]
            entry["serving_version"] = ready[-1] if ready else None
        return {"models": sorted(models.values(), key=lambda m: m["name"])}

    async def versions(self, name: str) -> dict[str, Any]:
        """{"name", "serving_version", "served", "versions": [{version, state, reason, in_repository,
        window}]}: Triton's live states merged with the version directories on disk."""
        model_dir = self._model_dir(name)
        states = await self._states(name)
        config, disk = await asyncio.to_thread(rs.disk_state, model_dir)
        return _listing(name, states, config, disk)

    async def describe(self, name: str) -> dict[str, Any]:
        """`versions()` plus the config summary and each version's processing params and model card."""
        model_dir = self._model_dir(name)
        states = await self._states(name)
        config, disk = await asyncio.to_thread(rs.disk_state, model_dir)  # None: not mounted here
        out = _listing(name, states, config, disk)
        out["default"] = name == self._registry.default_model
        out["config"] = rs.config_summary(config) if config is not None else None
        for item in out["versions"]:
            v = int(item["version"])
            item["processing"] = repo.processing_params_from_config(config, v) if config else None
            item["model_card"] = (
                await asyncio.to_thread(repo.read_model_card, model_dir, v) if v in disk else None
            )
        return out

    # -- operations -------------------------------------------------------------------------------

    async def load(
        self, name: str, versions: Sequence[int] | None = None, *, actor: str = ""
    ) -> dict[str, Any]:
        """Serve exactly `versions` (default: those the persisted policy names); others are unloaded."""
        model_dir = self._model_dir(name)
        wanted = self._versions(versions)
        async with self._exclusive(name):
            states = await self._require(name, model_dir)
            config, disk = await asyncio.to_thread(rs.disk_state, model_dir)
            assert config is not None  # _require checked the file
            target = wanted or rs.policy_versions(config, disk)
            rs.check_loadable(name, config, disk, target)
            try:
                await self._apply(name, model_dir, target, _ready(states))
            finally:
                await self._invalidate(name)
        log.info("model_loaded", model=name, versions=target, api_key=actor)
        return await self.versions(name)

    async def unload(
        self, name: str, versions: Sequence[int] | None = None, *, actor: str = ""
    ) -> dict[str, Any]:
        """Stop serving `versions` (reload with the rest), or the whole model when none are given."""
        model_dir = self._model_dir(name)
        unwanted = self._versions(versions)
        async with self._exclusive(name):
            states = await self._require(name, model_dir)
            served = _ready(states)
            missing = [v for v in unwanted if v not in served]
            if missing:
                raise VersionNotFound(
                    f"version(s) {rs.fmt_versions(missing)} of model '{name}' are not loaded"
                )
            keep = [v for v in served if v not in unwanted] if unwanted else []
            try:
                if keep:
                    await self._apply(name, model_dir, keep, served)
                else:
                    # The policy stays: a restarted Triton loading this model serves what it named.
                    await self._triton.unload_model(name)
                    await self._settle(name, [])
            finally:
                await self._invalidate(name)
        log.info("model_unloaded", model=name, versions=unwanted or "all", api_key=actor)
        return await self.versions(name)

    async def deploy(
        self,
        name: str,
        onnx: bytes,
        *,
        processing: Mapping[str, Any] | None = None,
        card: Mapping[str, Any] | None = None,
        version: int | str | None = None,
        load: bool = True,
        actor: str = "",
    ) -> dict[str, Any]:
        """Validate `onnx`, write it as a new version atomically, and (if `load`) serve it beside the
        versions served now. Any failure leaves the repository as it was."""
        model_dir = self._model_dir(name)
        pinned = self._versions([version])[0] if version is not None else None
        self._check_repository()
        if not (model_dir / repo.CONFIG_FILENAME).is_file():
            raise ModelNotFound(f"model '{name}' is not in the model repository; deploy adds versions to it")
        # Validation (seconds for a big model) runs before the lock: only names and params come from here.
        config = await asyncio.to_thread(repo.read_config, model_dir)
        params = merge_processing(processing, rs.latest_processing(config))
        report = await asyncio.to_thread(self._validate, onnx, Contract.from_config(config), params)
        async with self._exclusive(name):
            states = await self._require(name, model_dir)
            served = _ready(states)
            config, disk = await asyncio.to_thread(rs.disk_state, model_dir)
            assert config is not None
            new = pinned if pinned is not None else max(disk, default=0) + 1
            if new in disk:
                raise Conflict(f"version {new} of model '{name}' already exists; versions are immutable")
            snapshot = await asyncio.to_thread(rs.snapshot_config, model_dir)
            full_card = dict(card) if card else default_card(name, params, report)
            await asyncio.to_thread(
                repo.write_version, model_dir, onnx, version=new, card=full_card, processing=params.to_dict()
            )
            keep = sorted({*served, new}) if load else served or rs.policy_versions(config, disk)
            try:
                if load:
                    await self._apply(name, model_dir, keep, served, snapshot=snapshot, new_version=new)
                elif keep:
                    await asyncio.to_thread(rs.persist_policy, model_dir, keep)
            except BaseException:
                if not load:  # _apply rolls back itself
                    await asyncio.to_thread(rs.rollback, model_dir, snapshot, new)
                raise
            finally:
                await self._invalidate(name)
        log.info(
            "model_version_deployed",
            model=name,
            version=new,
            loaded=load,
            window=params.window,
            api_key=actor,
        )
        listing = await self.versions(name)
        return {
            **listing,
            "version": str(new),
            "loaded": load,
            "processing": params.to_dict(),
            "validation": report.to_dict(),
        }

    # -- internals --------------------------------------------------------------------------------

    def _model_dir(self, name: str) -> Path:
        try:
            return repo.model_path(self.repository, name)
        except repo.InvalidNameError as e:
            raise InvalidInput(str(e)) from None

    @staticmethod
    def _versions(versions: Sequence[int | str | None] | None) -> list[int]:
        try:
            return sorted({repo.validate_version(v) for v in versions or ()})  # type: ignore[arg-type]
        except repo.InvalidNameError as e:
            raise InvalidInput(str(e)) from None

    async def _states(self, name: str) -> ModelStates:
        """{version: (state, reason)} from Triton's repository index; 404 if Triton does not know it."""
        states = await self._triton.model_states(name)
        if states is None:
            raise ModelNotFound(f"model '{name}' is not in Triton's model repository")
        return states

    async def _require(self, name: str, model_dir: Path) -> ModelStates:
        states = await self._states(name)  # first: loading an unknown model is Triton's opaque INTERNAL
        if not (model_dir / repo.CONFIG_FILENAME).is_file():
            raise RepositoryUnavailable(
                f"model '{name}' is in Triton's repository but not under this gateway's MODEL_REPOSITORY "
                f"({self.repository}); management needs the same repository Triton serves"
            )
        return states

    def _check_repository(self) -> None:
        if not self.repository.is_dir():
            raise RepositoryUnavailable(
                f"MODEL_REPOSITORY {self.repository} is not a directory on this gateway; management "
                "needs the repository Triton serves"
            )

    @contextlib.asynccontextmanager
    async def _exclusive(self, name: str) -> AsyncIterator[None]:
        self._check_repository()
        async with self._locks.setdefault(name, asyncio.Lock()):
            try:
                async with rs.repository_lock(self.repository, self._lock_timeout_s):
                    yield
            except rs.LockTimeout as e:
                raise Conflict(f"another model operation is in progress: {e}") from None

    async def _apply(
        self,
        name: str,
        model_dir: Path,
        target: Sequence[int],
        served_before: Sequence[int],
        *,
        snapshot: bytes | None = None,
        new_version: int | None = None,
    ) -> None:
        """Persist `target` as the policy and load it; on failure restore the files (and Triton)."""
        if snapshot is None:
            snapshot = await asyncio.to_thread(rs.snapshot_config, model_dir)
        try:
            config = await asyncio.to_thread(rs.persist_policy, model_dir, target)
            await self._triton.load_model(name, repo.version_override_json(config, list(target)))
            await self._settle(name, target)
        except BaseException as e:
            await asyncio.to_thread(rs.rollback, model_dir, snapshot, new_version)
            await self._restore(name, model_dir, served_before)
            log.warning("model_operation_rolled_back", model=name, target=list(target), error=str(e)[:300])
            if new_version is not None and isinstance(e, UpstreamError):
                cause = e.__cause__
                status = cause.status() if cause is not None and hasattr(cause, "status") else ""
                cls = ModelRejected if status == "StatusCode.INVALID_ARGUMENT" else UpstreamError
                raise cls(f"{e.message}; version {new_version} was rolled back") from e
            raise

    async def _restore(self, name: str, model_dir: Path, served_before: Sequence[int]) -> None:
        """Triton keeps the old versions when a reload fails; reload them only if it did not."""
        try:
            if not served_before or _ready(await self._states(name)) == sorted(served_before):
                return
            config = await asyncio.to_thread(repo.read_config, model_dir)
            await self._triton.load_model(name, repo.version_override_json(config, list(served_before)))
        except Exception as e:  # best effort: the original error is what the operator must see
            log.error("model_restore_failed", model=name, versions=list(served_before), error=str(e)[:300])

    async def _settle(self, name: str, target: Sequence[int]) -> None:
        """Poll the index until no version is (un)loading and only `target` is READY (bounded)."""
        deadline = asyncio.get_running_loop().time() + self._unload_timeout_s
        while True:
            states = await self._states(name)
            busy = [v for v, (s, _) in states.items() if s in _BUSY or (s == "READY" and v not in target)]
            if not busy:
                return
            if asyncio.get_running_loop().time() > deadline:
                log.warning(
                    "model_states_not_settled", model=name, versions=busy, timeout_s=self._unload_timeout_s
                )
                return
            await asyncio.sleep(0.05)

    async def _invalidate(self, name: str) -> None:
        """Everywhere: this process, Redis, and (pub/sub) every replica. A replica load that straddles
        it cannot write the old state back to Redis (the cache checks the model's generation)."""
        await self._registry.invalidate(name)


_BUSY = ("LOADING", "UNLOADING")


def _ready(states: ModelStates) -> list[int]:
    return sorted(v for v, (s, _) in states.items() if s == "READY")


def _listing(
    name: str, states: ModelStates, config: mc.ModelConfig | None, disk: Sequence[int]
) -> dict[str, Any]:
    """{"name", "serving_version", "served", "versions": [{version, state, reason, in_repository,
    window}]}. Versions are strings, as in Triton's API and /v1/models."""
    # A version Triton failed to load and that a rollback removed stays in its index: hide it.
    shown = sorted({*disk, *(v for v, (s, _) in states.items() if s == "READY" or s in _BUSY)})
    items = []
    for v in shown:
        state, reason = states.get(v, ("UNAVAILABLE", "not loaded"))
        params = repo.processing_params_from_config(config, v) if config is not None else None
        window = int(params["window"]) if params and "window" in params else None
        items.append(
            {
                "version": str(v),
                "state": state,
                "reason": reason,
                "in_repository": v in disk,
                "window": window,
            }
        )
    served = [str(v) for v in _ready(states)]
    return {
        "name": name,
        "serving_version": served[-1] if served else None,
        "served": served,
        "versions": items,
    }
