"""Torch side of pd-gateway: the UNet1D model, training, evaluation and ONNX export.

Importing this package must not import torch: the gateway image ships without it, and tools that only
need the package metadata (or `gateway.repository`) should not pay torch's import time.
"""
