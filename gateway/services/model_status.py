"""Pure views of a model's state for operators: Triton's index rows merged with the repository on disk.

No I/O here: the manager fetches the index and reads the disk, these functions shape the answer.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from tritonclient.grpc import model_config_pb2 as mc

from gateway import repository as repo
from gateway.dsp.params import ProcessingParams
from gateway.errors import Conflict, VersionNotFound
from gateway.model_card import model_card
from gateway.services.validation import ValidationReport

States = Mapping[int, tuple[str, str]]  # version -> (Triton state, one-line reason)
BUSY = ("LOADING", "UNLOADING")
_MAX_REASON_CHARS = 300


def reason_line(text: str | None) -> str:
    """Triton's reasons carry the backend's Python stack: keep the first line only."""
    text = (text or "").strip()
    return text.splitlines()[0][:_MAX_REASON_CHARS] if text else ""


def fmt_versions(versions: Iterable[int]) -> str:
    return ", ".join(str(v) for v in versions)


def states_from_index(rows: Iterable[Mapping[str, Any]], name: str) -> dict[int, tuple[str, str]] | None:
    """{version: (state, reason)} of `name`, or None when the index does not list the model at all."""
    mine = [r for r in rows if r.get("name") == name]
    if not mine:
        return None
    return {
        int(r["version"]): (str(r.get("state", "UNKNOWN")), reason_line(r.get("reason")))
        for r in mine
        if str(r.get("version", "")).isdigit()
    }


def ready(states: States) -> list[int]:
    return sorted(v for v, (s, _) in states.items() if s == "READY")


def check_loadable(name: str, config: mc.ModelConfig, disk: Sequence[int], target: Sequence[int]) -> None:
    """Refuse to serve versions that are missing or that the gateway could not preprocess for."""
    if not target:
        raise VersionNotFound(f"model '{name}' has no version to load")
    missing = [v for v in target if v not in disk]
    if missing:
        raise VersionNotFound(
            f"version(s) {fmt_versions(missing)} of model '{name}' are not in the model repository"
        )
    no_params = [v for v in target if repo.processing_params_from_config(config, v) is None]
    if no_params:
        raise Conflict(
            f"version(s) {fmt_versions(no_params)} of model '{name}' have no processing parameters "
            "in config.pbtxt"
        )


def listing(name: str, states: States, config: mc.ModelConfig | None, disk: Sequence[int]) -> dict[str, Any]:
    """{"name", "serving_version", "served", "versions": [{version, state, reason, in_repository,
    window}]}. Versions are strings, as in Triton's API and /v1/models."""
    # A version Triton failed to load and that a rollback removed stays in its index: hide it.
    shown = sorted({*disk, *(v for v, (s, _) in states.items() if s == "READY" or s in BUSY)})
    items = []
    for v in shown:
        state, reason = states.get(v, ("UNAVAILABLE", "not loaded"))
        params = repo.processing_params_from_config(config, v) if config is not None else None
        items.append(
            {
                "version": str(v),
                "state": state,
                "reason": reason,
                "in_repository": v in disk,
                "window": int(params["window"]) if params and "window" in params else None,
            }
        )
    served = [str(v) for v in ready(states)]
    return {
        "name": name,
        "serving_version": served[-1] if served else None,
        "served": served,
        "versions": items,
    }


def default_card(name: str, params: ProcessingParams, report: ValidationReport) -> dict[str, Any]:
    """The card of an upload that came without one: what validation learned, and where it came from."""
    card = model_card(
        name=name,
        window=params.window,
        total_parameters=report.total_parameters,
        framework_version=report.producer or "unknown",
        opset=report.opset,
        processing=params.to_dict(),
    )
    card.update({"mlm:framework": "onnx", "pd:source": "upload", "pd:validation": report.to_dict()})
    card["description"] = "Uploaded through the gateway's model management API; no training record."
    return card
