"""Embedded Triton: the tritonserver binary from nvidia-pytriton plus a Python-based onnxruntime backend."""

from gateway.embedded.process import free_port, pytriton_server_dir
from gateway.embedded.server import EmbeddedTriton, EmbeddedTritonError

__all__ = ["EmbeddedTriton", "EmbeddedTritonError", "free_port", "pytriton_server_dir"]
