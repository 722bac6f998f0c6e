"""`pd-gateway` console command: `serve` starts (embedded Triton +) the gateway; `models` manages it."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence

import structlog

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pd-gateway", description="Partial-discharge detection gateway")
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
