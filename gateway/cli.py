"""`pd-gateway`, the one command line of the project.

    pd-gateway serve                       embedded Triton (unless TRITON_GRPC_URL) + the gateway
    pd-gateway models list|show|load|unload|deploy ...   operator client of /v1/models
    pd-gateway train|export|evaluate ...   training side (export/), needs the `train` extra
    pd-gateway seed ...                    fill an empty model repository (the chart's initContainer)
    pd-gateway version | --version

Every subcommand has --help. Training-side tools are rows of `TOOLS`: a module with
`main(argv: list[str] | None) -> int`, imported only when run; a missing optional dependency
(torch, PyWavelets, tqdm) prints how to install it instead of a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import platform
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import structlog

from gateway import __version__
from gateway.admin_cli import add_models_parser
from gateway.settings import get_settings

log = structlog.get_logger(__name__)


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from gateway.app import create_app
    from gateway.embedded.server import EmbeddedTriton, EmbeddedTritonError
    from gateway.embedded.supervisor import supervise
    from gateway.http_server import uvicorn_options
    from gateway.logging import configure_logging

    settings = get_settings()
    updates: dict[str, object] = {}
    if args.host:
        updates["HOST"] = args.host
    if args.port:
        updates["PORT"] = args.port
    if args.triton_url:
        updates["TRITON_GRPC_URL"] = args.triton_url
    settings = settings.model_copy(update=updates)
    configure_logging(settings.LOG_LEVEL, settings.LOG_JSON)

    triton = None
    if not settings.TRITON_GRPC_URL:
        triton = EmbeddedTriton(
            settings.MODEL_REPOSITORY,
            [settings.DEFAULT_MODEL],
            grpc_port=args.triton_grpc_port,
            http_port=args.triton_http_port,
            metrics_port=args.triton_metrics_port,
            startup_timeout_s=settings.TRITON_STARTUP_TIMEOUT_S,
        )
        log.info(
            "embedded_triton_starting", repository=str(settings.MODEL_REPOSITORY), log=str(triton.log_path)
        )
        try:
            triton.start(wait=True)
        except (EmbeddedTritonError, FileNotFoundError) as e:  # a failed start, or no nvidia-pytriton
            log.error("embedded_triton_failed", error=str(e))
            triton.close()
            return 1
        log.info("embedded_triton_ready", grpc=triton.grpc_url, metrics=triton.metrics_url, pid=triton.pid)
        settings = settings.model_copy(update={"TRITON_GRPC_URL": triton.grpc_url})
    supervisor = None
    try:
        app = create_app(settings)
        if triton is not None:  # restarts it if it dies; /healthz fails when it cannot
            supervisor = supervise(triton, app, settings.EMBEDDED_TRITON_MAX_RESTARTS)
        config = uvicorn.Config(
            app,
            host=settings.HOST,
            port=settings.PORT,
            log_config=None,  # structlog owns logging
            access_log=False,  # the request-id middleware logs one line per request
            timeout_graceful_shutdown=args.graceful_timeout_s,
            **uvicorn_options(settings),  # header/body deadlines, connection cap (gateway/http_server.py)
        )
        # uvicorn traps SIGINT/SIGTERM: stop accepting, let in-flight requests finish, run the lifespan
        # exit. Afterwards it re-raises the signal to the handler that was installed before it: make that
        # one a no-op so the `finally` below still stops Triton and the process exits 0.
        received: list[int] = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda signum, _frame: received.append(signum))
        uvicorn.Server(config).run()
        if received:
            log.info("gateway_stopped_by_signal", signal=signal.Signals(received[0]).name)
    finally:
        if supervisor is not None:
            supervisor.stop()
        if triton is not None:
            log.info("embedded_triton_stopping", pid=triton.pid)
            triton.close()
    return 0


@dataclass(frozen=True)
class Tool:
    """A subcommand that hands its arguments to `module.main(argv)`."""

    module: str
    help: str


# Adding a subcommand (e.g. "stream") is one row here.
TOOLS: dict[str, Tool] = {
    "train": Tool("export.train", "train the U-Net on simulated signals (seeded, resumable, progress bar)"),
    "export": Tool("export.export_onnx", "export a checkpoint to ONNX as a model version (parity-checked)"),
    "evaluate": Tool("export.evaluate", "score a model version on the held-out simulated set"),
    "sweep": Tool("export.sweep", "score region-stage variants (threshold, rejection rules) on validation"),
    "retune": Tool(
        "export.retune", "change a version's region stage without new weights (recorded in its card)"
    ),
    "seed": Tool("gateway.seed", "fill an empty model repository from the shipped one"),
    "bench": Tool("export.bench", "latency and throughput of the gateway side by side (export/bench.py)"),
    "stream": Tool("gateway.stream_client", "replay a .npy file into WS /v1/stream and print PD events"),
}
# Import name -> what to install. The server never needs these; torch first and pinned (CPU build).
_OPTIONAL = {
    "torch": "pip install torch==2.13.0 && pip install 'pd-gateway[train]'",
    "pywt": "pip install 'pd-gateway[train]'  (PyWavelets)",
    "matplotlib": "pip install 'pd-gateway[bench]'",
    "tqdm": "pip install 'pd-gateway[train]'",
}


def run_tool(name: str, argv: list[str]) -> int:
    """Run TOOLS[name] with `argv`; a missing optional dependency is a message and exit status 3."""
    try:
        module = importlib.import_module(TOOLS[name].module)
        return int(module.main(argv))
    except ModuleNotFoundError as e:
        missing = (e.name or "").split(".")[0]
        if missing not in _OPTIONAL:
            raise
        print(
            f"pd-gateway {name} needs {missing}, which the server does not install:\n"
            f"    {_OPTIONAL[missing]}\n(in a checkout: -e '.[train]' for 'pd-gateway[train]')",
            file=sys.stderr,
        )
        return 3


def _version(args: argparse.Namespace) -> int:
    print(f"pd-gateway {__version__} (Python {platform.python_version()})")
    for dist in ("numpy", "fastapi", "tritonclient", "onnxruntime", "torch"):
        try:
            version = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            version = "not installed"
        print(f"  {dist} {version}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pd-gateway", description="Partial-discharge detection gateway")
    parser.add_argument("--version", action="version", version=f"pd-gateway {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser(
        "serve", help="start the gateway (and an embedded Triton unless TRITON_GRPC_URL is set)"
    )
    serve.add_argument("--host", help="bind address (default: HOST)")
    serve.add_argument("--port", type=int, help="HTTP port (default: PORT)")
    serve.add_argument("--triton-url", help="use this Triton (host:port, gRPC) instead of starting one")
    serve.add_argument("--triton-grpc-port", type=int, help="embedded Triton gRPC port (default: a free one)")
    serve.add_argument("--triton-http-port", type=int, help="embedded Triton HTTP port (default: a free one)")
    serve.add_argument(
        "--triton-metrics-port", type=int, help="embedded Triton metrics port (default: a free one)"
    )
    serve.add_argument(
        "--graceful-timeout-s", type=float, default=30.0, help="wait this long for in-flight requests"
    )
    serve.set_defaults(func=_serve)
    add_models_parser(sub)
    for name, tool in TOOLS.items():  # listed for --help; main() hands their arguments over untouched
        sub.add_parser(name, help=tool.help, add_help=False)
    sub.add_parser("version", help="print the versions of pd-gateway and its main dependencies").set_defaults(
        func=_version
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list and args_list[0] in TOOLS:
        return run_tool(args_list[0], args_list[1:])
    args = build_parser().parse_args(args_list)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
