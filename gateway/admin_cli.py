"""`pd-gateway models ...`: the operator CLI, a thin client of the gateway's /v1/models API.

    pd-gateway models list
    pd-gateway models show pd_unet1d
    pd-gateway models deploy pd_unet1d model.onnx --processing p.json [--card c.json] [--no-load]
    pd-gateway models load pd_unet1d --versions 1,2
    pd-gateway models unload pd_unet1d [--versions 1]

--url (env PDGW_URL) and --api-key (env PDGW_API_KEY; prefer the variable, arguments show in `ps`).
Exit status: 0 done, 1 the gateway refused or could not be reached, 2 bad local input.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

DEFAULT_URL = "http://127.0.0.1:8000"


class CliError(Exception):
    """A failure to report on stderr; `status` is the exit status."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> str:
    """Plain-text columns, two spaces apart; None shows as '-'."""
    cells = [[str(h) for h in headers]] + [["-" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells)


def _versions_table(versions: list[dict[str, Any]]) -> str:
    rows = [
        [
            v["version"],
            v["state"],
            v.get("window"),
            "yes" if v.get("in_repository") else "no",
            v.get("reason"),
        ]
        for v in versions
    ]
    return table(rows, ["VERSION", "STATE", "WINDOW", "ON DISK", "REASON"])


def _serving_line(body: dict[str, Any]) -> str:
    served = ", ".join(body.get("served") or []) or "nothing"
    return f"{body['name']}: serving {served} (unpinned requests go to {body.get('serving_version') or '-'})"


def _parse_versions(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        versions = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise CliError(f"--versions must be comma-separated integers, got {text!r}", 2) from None
    if not versions or any(v < 1 for v in versions):
        raise CliError("--versions needs at least one positive version", 2)
    return versions


def _read_json_file(path: Path | None, what: str) -> str | None:
    if path is None:
        return None
    try:
        text = path.read_text(encoding="utf-8")
        json.loads(text)
    except OSError as e:
        raise CliError(f"cannot read {what} file {path}: {e.strerror}", 2) from None
    except ValueError as e:
        raise CliError(f"{what} file {path} is not valid JSON: {e}", 2) from None
    return text


class Gateway:
    """One httpx client, the API key in a header, errors turned into CliError with the server's words."""

    def __init__(self, url: str, api_key: str | None, timeout_s: float) -> None:
        headers = {"X-API-Key": api_key} if api_key else {}
        self.url = url
        self._client = httpx.Client(
            base_url=url, headers=headers, timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 10.0))
        )

    def __enter__(self) -> Gateway:
        return self

    def __exit__(self, *exc: object) -> None:
        self._client.close()

    def call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            resp = self._client.request(method, path, **kwargs)
        except httpx.TimeoutException:
            raise CliError(f"the gateway at {self.url} did not answer in time (--timeout-s)") from None
        except httpx.HTTPError as e:
            raise CliError(f"cannot reach the gateway at {self.url}: {type(e).__name__}: {e}") from None
        try:
            body = resp.json()
        except ValueError:
            body = None
        if resp.is_success and isinstance(body, dict):
            return body
        err = body.get("error") if isinstance(body, dict) else None
        if isinstance(err, dict):
            rid = f" (request id {err['request_id']})" if err.get("request_id") else ""
            raise CliError(f"{resp.status_code} {err.get('code')}: {err.get('message')}{rid}")
        raise CliError(f"{resp.status_code} from {resp.request.url}: {resp.text[:200]}")


def _list(gw: Gateway, args: argparse.Namespace) -> str | dict[str, Any]:
    body = gw.call("GET", "/v1/models")
    if args.json:
        return body
    rows = [
        [
            m["name"],
            "yes" if m.get("default") else "",
            m.get("serving_version"),
            ", ".join(f"{v['version']} {v['state']}" for v in m.get("versions", [])),
        ]
        for m in body["models"]
    ]
    return table(rows, ["MODEL", "DEFAULT", "SERVING", "VERSIONS"])


def _threshold(processing: dict[str, Any]) -> Any:
    """A version's threshold, and its long-signal one when it has one: "0.5 (0.95 from 100000 samples)"."""
    long = processing.get("long_signal_threshold")
    if long is None:
        return processing.get("threshold")
    return f"{processing.get('threshold')} ({long} from {processing.get('long_signal_samples')} samples)"


def _show(gw: Gateway, args: argparse.Namespace) -> str | dict[str, Any]:
    body = gw.call("GET", f"/v1/models/{args.name}")
    if args.json:
        return body
    lines = [_serving_line(body)]
    cfg = body.get("config") or {}
    for t in (*cfg.get("inputs", []), *cfg.get("outputs", [])):
        lines.append(f"  tensor {t['name']} {t['data_type']} {t['dims']}")
    if cfg:
        groups = ", ".join(f"{g['count']} x {g['kind']}" for g in cfg.get("instance_group", []))
        lines.append(
            f"  backend {cfg.get('backend')}, max batch {cfg.get('max_batch_size')}, instances {groups}"
        )
        lines.append(f"  version policy {json.dumps(cfg.get('version_policy'))}")
    rows = []
    for v in body["versions"]:
        p = v.get("processing") or {}
        card = v.get("model_card") or {}
        rows.append(
            [
                v["version"],
                v["state"],
                p.get("window"),
                p.get("hop"),
                _threshold(p),
                p.get("normalisation"),
                "yes" if v.get("in_repository") else "no",
                card.get("created"),
                v.get("reason"),
            ]
        )
    headers = [
        "VERSION",
        "STATE",
        "WINDOW",
        "HOP",
        "THRESHOLD",
        "NORMALISATION",
        "ON DISK",
        "CREATED",
        "REASON",
    ]
    return "\n".join([*lines, "", table(rows, headers)])


def _load(gw: Gateway, args: argparse.Namespace) -> str | dict[str, Any]:
    versions = _parse_versions(args.versions)
    body = gw.call("POST", f"/v1/models/{args.name}/load", json={"versions": versions})
    return body if args.json else f"loaded {_serving_line(body)}\n\n{_versions_table(body['versions'])}"


def _unload(gw: Gateway, args: argparse.Namespace) -> str | dict[str, Any]:
    versions = _parse_versions(args.versions)
    body = gw.call("POST", f"/v1/models/{args.name}/unload", json={"versions": versions})
    return body if args.json else f"unloaded {_serving_line(body)}\n\n{_versions_table(body['versions'])}"


def _deploy(gw: Gateway, args: argparse.Namespace) -> str | dict[str, Any]:
    try:
        model = args.model.read_bytes()
    except OSError as e:
        raise CliError(f"cannot read model file {args.model}: {e.strerror}", 2) from None
    data = {"load": "false" if args.no_load else "true"}
    for field, path in (("processing", args.processing), ("card", args.card)):
        text = _read_json_file(path, field)
        if text is not None:
            data[field] = text
    if args.version is not None:
        data["version"] = str(args.version)
    files = {"model": (args.model.name, model, "application/octet-stream")}
    body = gw.call("POST", f"/v1/models/{args.name}/versions", data=data, files=files)
    if args.json:
        return body
    dry = body["validation"]["dry_run"]
    state = "loaded" if body["loaded"] else "written, not loaded"
    window = body["processing"]["window"]
    return "\n".join(
        [
            f"deployed {body['name']} version {body['version']} (window {window}, {state})",
            f"validated: {body['validation']['total_parameters']:,} parameters, opset "
            f"{body['validation']['opset']}, dry run on {dry['windows']} windows -> [{dry['min']:.3f}, "
            f"{dry['max']:.3f}]",
            _serving_line(body),
            "",
            _versions_table(body["versions"]),
        ]
    )


def add_models_parser(sub: Any) -> None:
    """Register `models` and its subcommands on the top-level CLI's subparsers."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", default=os.environ.get("PDGW_URL", DEFAULT_URL), help="gateway base URL")
    common.add_argument(
        "--api-key", default=os.environ.get("PDGW_API_KEY"), help="operator key (PDGW_API_KEY)"
    )
    common.add_argument(
        "--timeout-s", type=float, default=300.0, help="per request (a load can take minutes)"
    )
    common.add_argument("--json", action="store_true", help="print the API's JSON instead of tables")
    models = sub.add_parser("models", help="list, show, load, unload and deploy model versions")
    msub = models.add_subparsers(dest="models_command", required=True)
    msub.add_parser("list", parents=[common], help="models and version states").set_defaults(action=_list)
    show = msub.add_parser("show", parents=[common], help="config, versions, processing, model cards")
    show.add_argument("name")
    show.set_defaults(action=_show)
    load = msub.add_parser("load", parents=[common], help="serve exactly these versions")
    load.add_argument("name")
    load.add_argument("--versions", help="comma-separated, e.g. 1,2 (default: the persisted policy)")
    load.set_defaults(action=_load)
    unload = msub.add_parser("unload", parents=[common], help="stop serving versions, or the whole model")
    unload.add_argument("name")
    unload.add_argument("--versions", help="comma-separated (default: every version)")
    unload.set_defaults(action=_unload)
    deploy = msub.add_parser("deploy", parents=[common], help="upload an ONNX file as a new version")
    deploy.add_argument("name")
    deploy.add_argument("model", type=Path, help=".onnx file")
    deploy.add_argument("--processing", type=Path, help="JSON file; keys override the latest version's")
    deploy.add_argument("--card", type=Path, help="model card JSON file (default: generated)")
    deploy.add_argument("--version", type=int, help="default: the next free version")
    deploy.add_argument("--no-load", action="store_true", help="write the version without serving it")
    deploy.set_defaults(action=_deploy)
    models.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run one `models` subcommand; errors go to stderr with a non-zero status."""
    try:
        with Gateway(args.url, args.api_key, args.timeout_s) as gw:
            out = args.action(gw, args)
    except CliError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.status
    print(json.dumps(out, indent=2) if isinstance(out, dict) else out)
    return 0
