"""A real Triton (from nvidia-pytriton) serving a tiny ONNX model through our Python onnxruntime backend."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as aioclient
from onnx import TensorProto, helper
from tritonclient.utils import InferenceServerException

from gateway.embedded import EmbeddedTriton, EmbeddedTritonError

pytestmark = pytest.mark.integration

W = 64
MODEL = "tiny"
VAR_MODEL = "tiny_var"  # config accepts any width, the ONNX only 64: ORT errors reach the client


def tiny_onnx(path: Path, width: int = W) -> None:
    """probability = Sigmoid(signal * 0.5), signal/probability [N, 1, width]."""
    graph = helper.make_graph(
        [
            helper.make_node("Mul", ["signal", "half"], ["scaled"]),
            helper.make_node("Sigmoid", ["scaled"], ["probability"]),
        ],
        "tiny",
        [helper.make_tensor_value_info("signal", TensorProto.FLOAT, ["N", 1, width])],
        [helper.make_tensor_value_info("probability", TensorProto.FLOAT, ["N", 1, width])],
        [helper.make_tensor("half", TensorProto.FLOAT, [], [0.5])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9  # readable by older onnxruntime too
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, path)


def write_model(repo: Path, name: str, dims: str, extra: str = "") -> None:
    tiny_onnx(repo / name / "1" / "model.onnx")
    (repo / name / "config.pbtxt").write_text(
        f'name: "{name}"\nbackend: "onnxruntime"\nmax_batch_size: 8\n'
        f'input [{{ name: "signal" data_type: TYPE_FP32 dims: {dims} }}]\n'
        f'output [{{ name: "probability" data_type: TYPE_FP32 dims: {dims} }}]\n'
        "dynamic_batching { max_queue_delay_microseconds: 2000 }\n"
        f"instance_group [{{ kind: KIND_CPU }}]\n{extra}"
    )


def expected(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-0.5 * x.astype(np.float64)))


def make_input(x: np.ndarray, module: object = grpcclient) -> object:
    inp = module.InferInput("signal", list(x.shape), "FP32" if x.dtype == np.float32 else "FP64")  # type: ignore[attr-defined]
    inp.set_data_from_numpy(x)
    return inp


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("model_repository")
    write_model(root, MODEL, "[1, 64]")
    write_model(
        root,
        VAR_MODEL,
        "[1, -1]",
        'parameters { key: "intra_op_thread_count" value: { string_value: "1" } }\n',
    )
    return root


@pytest.fixture(scope="module")
def server(repo: Path) -> Iterator[EmbeddedTriton]:
    triton = EmbeddedTriton(repo, [MODEL], startup_timeout_s=45, stop_grace_s=10)
    with triton:
        yield triton


@pytest.fixture(scope="module")
def client(server: EmbeddedTriton) -> Iterator[grpcclient.InferenceServerClient]:
    c = grpcclient.InferenceServerClient(server.grpc_url)
    yield c
    c.close()


def infer(client: grpcclient.InferenceServerClient, x: np.ndarray, model: str = MODEL) -> np.ndarray:
    result = client.infer(model, [make_input(x)], client_timeout=10)
    return result.as_numpy("probability")


def test_server_live_and_model_ready(
    server: EmbeddedTriton, client: grpcclient.InferenceServerClient
) -> None:
    assert server.is_running()
    assert client.is_server_live(client_timeout=5)
    assert client.is_model_ready(MODEL, client_timeout=5)
    assert not client.is_model_ready(VAR_MODEL, client_timeout=5)  # explicit mode: only what we asked


@pytest.mark.parametrize("batch", [1, 5])
def test_inference_matches_sigmoid(client: grpcclient.InferenceServerClient, batch: int) -> None:
    x = np.random.default_rng(batch).normal(0, 3, (batch, 1, W)).astype(np.float32)
    y = infer(client, x)
    assert y.shape == (batch, 1, W) and y.dtype == np.float32
    np.testing.assert_allclose(y, expected(x), atol=1e-6, rtol=0)


async def _burst(url: str, inputs: list[np.ndarray], model: str = MODEL) -> list[np.ndarray | Exception]:
    """Fire all requests at once from one aio client created inside this loop."""
    async with aioclient.InferenceServerClient(url) as c:

        async def one(x: np.ndarray) -> np.ndarray:
            result = await c.infer(model, [make_input(x, aioclient)], client_timeout=20)
            return result.as_numpy("probability")

        return await asyncio.gather(*(one(x) for x in inputs), return_exceptions=True)


def _max_batch_seen(client: grpcclient.InferenceServerClient) -> int:
    stats = client.get_inference_statistics(MODEL, as_json=True)["model_stats"][0]
    sizes = [int(b["batch_size"]) for b in stats.get("batch_stats", []) if int(b["compute_infer"]["count"])]
    return max(sizes, default=0)


def test_concurrent_requests_are_correct_and_batched(
    server: EmbeddedTriton, client: grpcclient.InferenceServerClient
) -> None:
    rng = np.random.default_rng(7)
    # Up to 3 bursts: one burst nearly always forms batches; a server that never batches still fails.
    for _ in range(3):
        inputs = [rng.normal(0, 2, (1, 1, W)).astype(np.float32) for _ in range(64)]
        outputs = asyncio.run(_burst(server.grpc_url, inputs))
        for x, y in zip(inputs, outputs, strict=True):
            assert not isinstance(y, Exception), y
            np.testing.assert_allclose(y, expected(x), atol=1e-6, rtol=0)
        if _max_batch_seen(client) > 1:
            break
    assert 1 < _max_batch_seen(client) <= 8


def test_bad_request_fails_alone(server: EmbeddedTriton) -> None:
    rng = np.random.default_rng(3)
    good = [rng.normal(size=(1, 1, W)).astype(np.float32) for _ in range(6)]
    wrong_shape = np.zeros((1, 1, W // 2), np.float32)
    wrong_dtype = np.zeros((1, 1, W), np.float64)
    outputs = asyncio.run(_burst(server.grpc_url, [*good[:3], wrong_shape, wrong_dtype, *good[3:]]))
    assert isinstance(outputs[3], InferenceServerException)
    assert isinstance(outputs[4], InferenceServerException)
    for x, y in zip(good, outputs[:3] + outputs[5:], strict=True):
        assert not isinstance(y, Exception), y
        np.testing.assert_allclose(y, expected(x), atol=1e-6, rtol=0)


def test_load_unload_and_ort_error(server: EmbeddedTriton, client: grpcclient.InferenceServerClient) -> None:
    client.load_model(VAR_MODEL, client_timeout=30)
    assert client.is_model_ready(VAR_MODEL, client_timeout=5)
    x = np.ones((2, 1, W), np.float32)
    np.testing.assert_allclose(infer(client, x, VAR_MODEL), expected(x), atol=1e-6, rtol=0)
    # Triton accepts width 32 (dims [1, -1]); onnxruntime rejects it: an error response, not a crash.
    with pytest.raises(InferenceServerException, match="onnxruntime failed"):
        infer(client, np.ones((1, 1, 32), np.float32), VAR_MODEL)
    np.testing.assert_allclose(infer(client, x, VAR_MODEL), expected(x), atol=1e-6, rtol=0)
    client.unload_model(VAR_MODEL, client_timeout=30)
    assert not client.is_model_ready(VAR_MODEL, client_timeout=5)
    with pytest.raises(InferenceServerException):
        infer(client, x, VAR_MODEL)
    assert client.is_model_ready(MODEL, client_timeout=5)


def test_stop_is_idempotent_and_restart_keeps_ports(server: EmbeddedTriton) -> None:
    """Runs last among the tests that share `server`: it leaves it stopped (teardown copes)."""
    pid, url = server.pid, server.grpc_url
    assert pid is not None
    server.stop()
    assert not server.is_running()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    server.stop()  # second call is a no-op
    with grpcclient.InferenceServerClient(url) as c, pytest.raises(InferenceServerException):
        c.is_server_live(client_timeout=2)

    # Started from a thread that then ends (like asyncio.to_thread): the parent-death signal is
    # per thread, so without the launcher's spawner thread Triton would get SIGTERM right here.
    starter = threading.Thread(target=server.start)
    starter.start()
    starter.join()
    assert server.is_running() and server.grpc_url == url and server.pid != pid
    with grpcclient.InferenceServerClient(url) as c:
        x = np.linspace(-5, 5, W, dtype=np.float32).reshape(1, 1, W)
        np.testing.assert_allclose(infer(c, x), expected(x), atol=1e-6, rtol=0)
    server.stop()
    # Triton logs each signal it gets: only our SIGINT (2), never a parent-death SIGTERM (15).
    last_run = server.log_path.read_text().rsplit("=== start", 1)[1]
    assert "Signal (2) received" in last_run and "Signal (15)" not in last_run


def test_failed_start_raises_with_log_tail(tmp_path: Path) -> None:
    # Config fine, model.onnx missing: our backend's initialize fails and Triton exits.
    write_model(tmp_path, "broken", "[1, 64]")
    (tmp_path / "broken" / "1" / "model.onnx").unlink()
    broken = EmbeddedTriton(tmp_path, ["broken"], startup_timeout_s=30)
    try:
        with pytest.raises(EmbeddedTritonError, match=r"(?s)exited.*no model\.onnx for version 1"):
            broken.start()
        assert not broken.is_running()
    finally:
        broken.close()
    assert not broken.work_dir.exists()
