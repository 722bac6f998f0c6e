"""Filesystem side of model management: locks, config snapshots, the persisted version policy, rollback.

Blocking functions (file I/O, flock on a model directory): call them through `asyncio.to_thread`.
The served version set is persisted in config.pbtxt as `version_policy { specific { versions } }`, so
a restarted Triton (`--load-model=<name>`) serves the same versions the operators chose.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from pathlib import Path
from typing import Any

from tritonclient.grpc import model_config_pb2 as mc

from gateway.errors import Conflict, VersionNotFound
from gateway.repository import (
    CONFIG_FILENAME,
    PROCESSING_KEY_PREFIX,
    list_versions,
    model_lock,
    processing_params_from_config,
    read_config,
    validate_version,
    write_atomic,
    write_config,
)

_ROLLBACK_PREFIX = ".tmp-rollback-"  # ".tmp-" dirs are swept by repository.write_version


class LockTimeout(TimeoutError):
    """Another model operation held the repository lock for too long."""


@contextlib.asynccontextmanager
async def repository_lock(repository: Path, timeout_s: float) -> AsyncIterator[None]:
    """Exclusive across processes (every gateway replica) for one management operation.

    flock on the repository directory itself: write_version locks the *model* directory, a different
    file, so an operation holding this lock can still write versions. Polled with LOCK_NB so the event
    loop never blocks and a cancelled waiter never ends up holding a lock.
    """
    fd = os.open(repository, os.O_RDONLY)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise LockTimeout(
                        f"another model operation held {repository} for {timeout_s:g} s"
                    ) from None
                await asyncio.sleep(0.05)
        yield
    finally:
        os.close(fd)  # releases the lock


def snapshot_config(model_dir: Path) -> bytes:
    return (model_dir / CONFIG_FILENAME).read_bytes()


def policy_versions(config: mc.ModelConfig, on_disk: Sequence[int]) -> list[int]:
    """The versions Triton would load for `config`'s version policy from these version directories."""
    disk = sorted(on_disk)
    choice = config.version_policy.WhichOneof("policy_choice") if config.HasField("version_policy") else None
    if choice == "specific":
        return sorted(v for v in set(config.version_policy.specific.versions) if v in disk)
    if choice == "all":
        return disk
    n = config.version_policy.latest.num_versions if choice == "latest" else 1
    return disk[-(n or 1) :] if disk else []


def persist_policy(model_dir: Path, versions: Sequence[int]) -> mc.ModelConfig:
    """Record `versions` as the config's specific version policy; returns the config now on disk."""
    with model_lock(model_dir):
        config = read_config(model_dir)
        config.version_policy.specific.versions[:] = sorted({validate_version(v) for v in versions})
        write_config(model_dir, config)
        return config


def rollback(model_dir: Path, config_snapshot: bytes, version: int | None = None) -> None:
    """Restore config.pbtxt byte for byte and remove the version directory a failed deploy wrote."""
    with model_lock(model_dir):
        if version is not None:
            target = model_dir / str(validate_version(version))
            if target.exists():
                aside = model_dir / f"{_ROLLBACK_PREFIX}{uuid.uuid4().hex}"
                os.rename(target, aside)  # atomic: Triton never sees a half-deleted version
                shutil.rmtree(aside, ignore_errors=True)
        write_atomic(model_dir / CONFIG_FILENAME, config_snapshot)


def latest_processing(config: mc.ModelConfig) -> dict[str, Any] | None:
    """Processing params of the highest version that has any (the default for an upload)."""
    versions = [
        int(k.removeprefix(PROCESSING_KEY_PREFIX))
        for k in config.parameters
        if k.startswith(PROCESSING_KEY_PREFIX) and k.removeprefix(PROCESSING_KEY_PREFIX).isdigit()
    ]
    return processing_params_from_config(config, max(versions)) if versions else None


def config_summary(config: mc.ModelConfig) -> dict[str, Any]:
    """The parts of a ModelConfig an operator reads (dims as ints, enums by name)."""

    def tensor(t: Any) -> dict[str, Any]:
        return {"name": t.name, "data_type": mc.DataType.Name(t.data_type), "dims": [int(d) for d in t.dims]}

    choice = config.version_policy.WhichOneof("policy_choice") if config.HasField("version_policy") else None
    if choice == "specific":
        policy: dict[str, Any] = {"specific": sorted(int(v) for v in config.version_policy.specific.versions)}
    elif choice == "all":
        policy = {"all": True}
    else:
        policy = {"latest": (config.version_policy.latest.num_versions if choice else 0) or 1}
    batching = None
    if config.HasField("dynamic_batching"):
        batching = {
            "max_queue_delay_us": int(config.dynamic_batching.max_queue_delay_microseconds),
            "preferred_batch_sizes": [int(b) for b in config.dynamic_batching.preferred_batch_size],
        }
    return {
        "backend": config.backend or None,
        "platform": config.platform or None,
        "max_batch_size": int(config.max_batch_size),
        "inputs": [tensor(t) for t in config.input],
        "outputs": [tensor(t) for t in config.output],
        "dynamic_batching": batching,
        "instance_group": [
            {"kind": mc.ModelInstanceGroup.Kind.Name(g.kind), "count": int(g.count)}
            for g in config.instance_group
        ],
        "version_policy": policy,
    }


def disk_state(model_dir: Path) -> tuple[mc.ModelConfig | None, list[int]]:
    """(config or None, version directories) of a model directory that may not exist."""
    if not (model_dir / CONFIG_FILENAME).is_file():
        return None, list_versions(model_dir)
    return read_config(model_dir), list_versions(model_dir)


def fmt_versions(versions: Iterable[int]) -> str:
    return ", ".join(str(v) for v in versions)


def check_loadable(name: str, config: mc.ModelConfig, disk: Sequence[int], target: Sequence[int]) -> None:
    """Refuse to serve versions that are missing or that the gateway could not preprocess for."""
    if not target:
        raise VersionNotFound(f"model '{name}' has no version to load")
    missing = [v for v in target if v not in disk]
    if missing:
        raise VersionNotFound(
            f"version(s) {fmt_versions(missing)} of model '{name}' are not in the model repository"
        )
    no_params = [v for v in target if processing_params_from_config(config, v) is None]
    if no_params:
        raise Conflict(
            f"version(s) {fmt_versions(no_params)} of model '{name}' have no processing parameters "
            "in config.pbtxt"
        )
