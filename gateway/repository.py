"""Triton model-repository writer (torch-free): config.pbtxt, per-version processing, atomic versions.

Layout of one model directory::

    <repo>/<name>/config.pbtxt         ModelConfig; parameters["pd_processing.v<N>"] = JSON of version N
    <repo>/<name>/<N>/model.onnx       input "signal" [N, 1, W] -> output "probability" [N, 1, W]
    <repo>/<name>/<N>/model_card.json  STAC MLM-style description of version N

A version directory is filled under a hidden temporary name (Triton ignores directories whose names
do not parse as integers) and renamed into place, so Triton and readers never see half a version.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from google.protobuf import json_format, text_format
from tritonclient.grpc import model_config_pb2 as mc

CONFIG_FILENAME = "config.pbtxt"
MODEL_FILENAME = "model.onnx"
CARD_FILENAME = "model_card.json"
INPUT_NAME = "signal"
OUTPUT_NAME = "probability"
PROCESSING_KEY_PREFIX = "pd_processing.v"
_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")
_VERSION_RE = re.compile(r"^[1-9][0-9]{0,17}$")  # Triton ignores "0"-prefixed names; keep within int64
_TMP_PREFIX = ".tmp-"
_KINDS = ("KIND_CPU", "KIND_GPU")


class RepositoryError(Exception):
    """A model repository operation was refused or failed."""


class InvalidNameError(RepositoryError, ValueError):
    """A model name or version that could escape the repository or that Triton would ignore."""


class VersionExistsError(RepositoryError, FileExistsError):
    """The version directory already exists and overwrite was not requested."""


def validate_model_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name) or ".." in name:
        raise InvalidNameError(f"invalid model name {name!r}: want {_NAME_RE.pattern} without '..'")
    return name


def validate_version(version: int | str) -> int:
    text = str(version) if isinstance(version, int) and not isinstance(version, bool) else version
    if not isinstance(text, str) or not _VERSION_RE.fullmatch(text):
        raise InvalidNameError(f"invalid model version {version!r}: want a positive integer")
    return int(text)


def model_path(repo: str | Path, name: str) -> Path:
    """`<repo>/<name>` after validating the name (uploads pass user-supplied names through here)."""
    return Path(repo) / validate_model_name(name)


def processing_key(version: int | str) -> str:
    return f"{PROCESSING_KEY_PREFIX}{validate_version(version)}"


def window_of(processing: Mapping[str, Any]) -> int:
    try:
        window = int(processing["window"])
    except (KeyError, TypeError, ValueError) as e:
        raise RepositoryError("processing params need an integer 'window'") from e
    if window < 1:
        raise RepositoryError(f"window must be positive, got {window}")
    return window


# --- config.pbtxt ---------------------------------------------------------------------------------


def set_serving_options(
    config: mc.ModelConfig,
    *,
    max_batch_size: int | None = None,
    preferred_batch_sizes: tuple[int, ...] | None = None,
    max_queue_delay_us: int | None = None,
    instance_kind: str | None = None,
    instance_count: int | None = None,
    intra_op_threads: int | None = None,
    inter_op_threads: int | None = None,
    allow_spinning: bool | None = None,
) -> mc.ModelConfig:
    """Change only the given serving knobs of `config` (in place) and return it.

    allow_spinning: ONNX Runtime's "session.intra_op.allow_spinning" (read by the embedded backend): idle
    intra-op threads spin-wait for work (ORT's default) or sleep; sleeping served 1.15x the signals/s at
    7,920 samples on 2 cores, where the spinning threads took CPU from the gateway (README, Performance).
    """
    if max_batch_size is not None:
        config.max_batch_size = max_batch_size
    batching = config.dynamic_batching
    batching.SetInParent()  # present even when every field keeps its default
    if preferred_batch_sizes is not None:
        del batching.preferred_batch_size[:]
        batching.preferred_batch_size.extend(sorted({int(b) for b in preferred_batch_sizes}))
    if max_queue_delay_us is not None:
        batching.max_queue_delay_microseconds = int(max_queue_delay_us)
    group = config.instance_group[0] if config.instance_group else config.instance_group.add(count=1)
    if instance_kind is not None:
        if instance_kind not in _KINDS:
            raise RepositoryError(f"instance_kind must be one of {_KINDS}")
        group.kind = mc.ModelInstanceGroup.Kind.Value(instance_kind)
    group.count = instance_count if instance_count is not None else group.count
    if config.max_batch_size < 1 or group.count < 1:
        raise RepositoryError("max_batch_size and instance_count must be >= 1")
    if any(b > config.max_batch_size for b in batching.preferred_batch_size):
        raise RepositoryError("preferred batch sizes must not exceed max_batch_size")
    threads = {"intra_op_thread_count": intra_op_threads, "inter_op_thread_count": inter_op_threads}
    for key, value in threads.items():
        if value is not None:  # read by the native ORT backend and by our shim; 0 = ORT's default
            config.parameters[key].string_value = str(int(value))
    if allow_spinning is not None:
        config.parameters[SPINNING_KEY].string_value = "1" if allow_spinning else "0"
    return config


def _sync_dims(config: mc.ModelConfig) -> None:
    """One window for every version -> fixed dims; otherwise -1 (the ONNX length axis is dynamic)."""
    windows = {
        window_of(json.loads(p.string_value))
        for k, p in config.parameters.items()
        if k.startswith(PROCESSING_KEY_PREFIX)
    }
    if not windows:
        return
    length = windows.pop() if len(windows) == 1 else -1
    for tensors in (config.input, config.output):
        for tensor in tensors:
            del tensor.dims[:]
            tensor.dims.extend([1, length])


def set_version_processing(config: mc.ModelConfig, version: int, processing: Mapping[str, Any]) -> None:
    """Store a version's processing params (sorted-key JSON) and re-derive the tensor dims."""
    window_of(processing)
    config.parameters[processing_key(version)].string_value = json.dumps(dict(processing), sort_keys=True)
    _sync_dims(config)


SERVING_DEFAULTS: dict[str, Any] = {
    "max_batch_size": 64,
    "preferred_batch_sizes": (),  # Triton's docs advise none unless a backend needs specific sizes
    "max_queue_delay_us": 2000,
    "instance_kind": "KIND_CPU",
    "instance_count": 1,
    "allow_spinning": False,
}
SPINNING_KEY = "session.intra_op.allow_spinning"


def build_config(
    name: str,
    *,
    window: int,
    processing_by_version: Mapping[int, Mapping[str, Any]] | None = None,
    **serving: Any,
) -> mc.ModelConfig:
    """A Triton ModelConfig: onnxruntime backend, FP32 "signal" -> "probability" [1, W], dynamic batching.

    `serving` takes the keywords of `set_serving_options` (max_batch_size, preferred_batch_sizes,
    max_queue_delay_us, instance_kind, instance_count, intra_op_threads, inter_op_threads,
    allow_spinning); unset
    ones come from SERVING_DEFAULTS. The version policy stays Triton's default (latest 1): the gateway
    loads specific versions through the load API's config override.
    """
    config = mc.ModelConfig(name=validate_model_name(name), backend="onnxruntime")
    config.default_model_filename = MODEL_FILENAME
    for tensors, tensor_name in ((config.input, INPUT_NAME), (config.output, OUTPUT_NAME)):
        tensors.add(name=tensor_name, data_type=mc.TYPE_FP32, dims=[1, int(window)])
    set_serving_options(config, **{**SERVING_DEFAULTS, **serving})
    for version, processing in sorted((processing_by_version or {}).items()):
        set_version_processing(config, version, processing)
    return config


def write_config(model_dir: str | Path, config: mc.ModelConfig) -> Path:
    """Write config.pbtxt atomically (temporary file in the same directory, fsync, os.replace)."""
    target = Path(model_dir) / CONFIG_FILENAME
    write_atomic(target, text_format.MessageToString(config).encode())
    return target


def read_config(model_dir: str | Path) -> mc.ModelConfig:
    return text_format.Parse((Path(model_dir) / CONFIG_FILENAME).read_text(), mc.ModelConfig())


def version_override_json(config: mc.ModelConfig, versions: list[int]) -> str:
    """Config JSON for Triton's load API that serves exactly `versions`.

    The load API's `config` replaces config.pbtxt wholesale (a bare version_policy fails to load),
    so this sends the full config with a `specific` policy.
    """
    override = mc.ModelConfig()
    override.CopyFrom(config)
    override.version_policy.specific.versions[:] = [validate_version(v) for v in versions]
    return json_format.MessageToJson(override, preserving_proto_field_name=True)


def processing_params_from_config(config: mc.ModelConfig, version: int) -> dict[str, Any] | None:
    param = config.parameters.get(processing_key(version))
    return json.loads(param.string_value) if param is not None and param.string_value else None


# --- version directories --------------------------------------------------------------------------


def list_versions(model_dir: str | Path) -> list[int]:
    """Version directories Triton would see (positive integers without leading zeros), ascending."""
    path = Path(model_dir)
    if not path.is_dir():
        return []
    return sorted(int(p.name) for p in path.iterdir() if p.is_dir() and _VERSION_RE.fullmatch(p.name))


def next_version(model_dir: str | Path) -> int:
    return max(list_versions(model_dir), default=0) + 1


def read_model_card(model_dir: str | Path, version: int) -> dict[str, Any] | None:
    """Version `version`'s model card, or None when it is missing or not a JSON object."""
    path = Path(model_dir) / str(validate_version(version)) / CARD_FILENAME
    try:
        card = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return card if isinstance(card, dict) else None


def model_card_bytes(card: Mapping[str, Any]) -> bytes:
    """A model card as written to model_card.json (indented, sorted keys, final newline)."""
    return (json.dumps(card, indent=2, sort_keys=True) + "\n").encode()


def _write_bytes(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def write_atomic(path: Path, data: bytes) -> None:
    """Replace `path` with `data` atomically (temporary file in the same directory, fsync, os.replace)."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        _write_bytes(tmp, data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def model_lock(model_dir: Path) -> Iterator[None]:
    """Serialise writers of one model (version numbering, config read-modify-write) across processes.

    The lock is taken on the directory itself, so no lock file lands in the repository.
    """
    fd = os.open(model_dir, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _remove_stale_temporaries(model_dir: Path) -> None:
    """Clear a crashed writer's leftovers (we hold the lock, so none is in use).

    A version moved aside by an interrupted overwrite is put back rather than deleted.
    """
    for p in model_dir.iterdir():
        if not (p.name.startswith(_TMP_PREFIX) and p.is_dir()):
            continue
        moved = re.fullmatch(rf"{re.escape(_TMP_PREFIX)}old-([1-9][0-9]*)-[0-9a-f]+", p.name)
        if moved and not (model_dir / moved.group(1)).exists():
            os.rename(p, model_dir / moved.group(1))
        else:
            shutil.rmtree(p, ignore_errors=True)


def _stage_version(tmp: Path, onnx: bytes | str | Path, card: Mapping[str, Any], version: int) -> None:
    """Fill a hidden directory with model.onnx and the card (plus the artifact's size and sha256)."""
    tmp.mkdir()
    data = onnx if isinstance(onnx, bytes) else Path(onnx).read_bytes()
    _write_bytes(tmp / MODEL_FILENAME, data)
    artifact = {"file": MODEL_FILENAME, "size_bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    full_card = {**card, "pd:version": version, "pd:artifact": artifact}
    _write_bytes(tmp / CARD_FILENAME, model_card_bytes(full_card))
    _fsync_dir(tmp)


def write_version(
    model_dir: str | Path,
    onnx: bytes | str | Path,
    *,
    version: int | None = None,
    card: Mapping[str, Any],
    processing: Mapping[str, Any],
    overwrite: bool = False,
    config_options: Mapping[str, Any] | None = None,
) -> int:
    """Add `<version>/model.onnx` + `model_card.json` atomically and register its processing params.

    Creates config.pbtxt when missing (window from `processing`, knobs from `config_options`, see
    `build_config`); otherwise only the given `config_options` change. On failure the version
    directory and config.pbtxt are as they were. Returns the version written.
    """
    model_dir = Path(model_dir)
    validate_model_name(model_dir.name)
    window_of(processing)
    if version is not None:
        validate_version(version)
    model_dir.mkdir(parents=True, exist_ok=True)
    with model_lock(model_dir):
        _remove_stale_temporaries(model_dir)
        version = validate_version(version if version is not None else next_version(model_dir))
        target = model_dir / str(version)
        if target.exists() and not overwrite:
            raise VersionExistsError(f"{target} exists (pass overwrite=True to replace it)")
        config_path = model_dir / CONFIG_FILENAME
        previous = config_path.read_bytes() if config_path.exists() else None
        if previous is not None:
            config = set_serving_options(read_config(model_dir), **(config_options or {}))
        else:
            config = build_config(model_dir.name, window=window_of(processing), **(config_options or {}))
        set_version_processing(config, version, processing)

        tmp = model_dir / f"{_TMP_PREFIX}{uuid.uuid4().hex}"
        old = model_dir / f"{_TMP_PREFIX}old-{version}-{uuid.uuid4().hex}"
        try:
            _stage_version(tmp, onnx, card, version)
            # Params before the directory: a crash in between leaves an unused config entry, never a
            # servable version without its processing params.
            write_config(model_dir, config)
            if target.exists():  # overwrite: move the old one aside, put back below on failure
                os.rename(target, old)
            os.rename(tmp, target)
        except BaseException:
            if old.exists() and not target.exists():
                os.rename(old, target)
            if previous is None:
                config_path.unlink(missing_ok=True)
            else:
                write_atomic(config_path, previous)
            raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.rmtree(old, ignore_errors=True)
        _fsync_dir(model_dir)
    return version
