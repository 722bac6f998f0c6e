"""Page and seed 000 helpers: Accept negotiation, examples, /test-text shape, seed 000's env vars."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import structlog

from gateway import examples as ex
from gateway.errors import ExampleNotFound
from gateway.routes.ui import prefers_html, vendor_files
from gateway.schemas import parse_options
from gateway.seed000 import log_seed000_env, seed000_env_notes, seed_test_text_body
from gateway.settings import Settings


@pytest.mark.parametrize(
    ("accept", "html"),
    [
        ("text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,*/*;q=0.8", True),  # Chromium
        ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", True),  # Firefox
        ("*/*", False),  # curl
        (None, False),  # python clients without a header
        ("application/json", False),
        ("application/json, text/html;q=0.5", False),
        ("text/html;q=0.9, application/json;q=0.5", True),
        ("text/html;q=bad", False),
    ],
)
def test_prefers_html(accept: str | None, html: bool) -> None:
    assert prefers_html(accept) is html


def test_vendor_assets_come_from_installed_packages() -> None:
    files = vendor_files()
    assert all(path.is_file() for path in files.values())
    assert all(files[n].stat().st_size > 10_000 for n in ("plotly.min.js", "redoc.standalone.js"))
    assert "site-packages" in str(files["plotly.min.js"])


def test_examples_are_deterministic_and_of_both_regimes(tmp_path: Path) -> None:
    examples = ex.Examples(tmp_path / "absent.npy")
    names = [e.name for e in examples.all()]
    assert names == ["seed-regime", "vsb-800k", "vsb-slices"]
    seed = ex.array(examples.get("seed-regime"))
    assert seed.shape == (7, 7920) and seed.dtype == np.float32
    again = ex._SIMULATED[0].make()  # a fresh generation, not the cached copy
    np.testing.assert_array_equal(seed, again)
    vsb = ex.array(examples.get("vsb-800k"))
    assert (
        vsb.shape == (1, 800_000) and np.all(vsb == np.round(vsb)) and vsb.min() >= -128 and vsb.max() <= 127
    )
    assert examples.describe(examples.get("vsb-800k"))["sampling_rate_hz"] == 40e6
    assert examples.test_data().name == "seed-regime"
    with pytest.raises(ExampleNotFound):
        examples.get("../etc/passwd")


def test_seed_file_is_listed_first_when_present(tmp_path: Path) -> None:
    path = tmp_path / "seed.npy"
    np.save(path, np.arange(14.0).reshape(2, 7))
    examples = ex.Examples(path)
    assert examples.all()[0].name == ex.SEED_FILE_EXAMPLE == examples.test_data().name
    arr = np.load(io.BytesIO(ex.npy_bytes(examples.test_data())))
    np.testing.assert_array_equal(arr, np.arange(14.0).reshape(2, 7))


def test_seed_test_text_body_lists_valid_samples_with_seed_fields_only() -> None:
    stats = {"max_amplitude": 1.0, "mean_amplitude": 0.1, "std_amplitude": 0.2}
    region = {"start": 3, "end": 9, "duration": 6, "peak_index": 4, "peak_amplitude": 2.0, "phase_deg": None}
    detect = {
        "model": "m",
        "version": "1",
        "total_samples_processed": 2,
        "valid_samples_found": 1,
        "results": [
            {
                "sample_index": 0,
                "valid": False,
                "num_regions_detected": 0,
                "regions": [],
                "signal_stats": stats,
            },
            {
                "sample_index": 1,
                "valid": True,
                "num_regions_detected": 1,
                "regions": [region],
                "signal_stats": stats,
            },
        ],
    }
    body = seed_test_text_body(detect, "file", "seed")
    assert body["results"] == [
        {
            "sample_index": 1,
            "num_regions_detected": 1,
            "regions": [{"start": 3, "end": 9, "duration": 6}],
            "signal_stats": stats,
        }
    ]
    assert (body["total_samples_processed"], body["valid_samples_found"], body["profile"]) == (2, 1, "seed")


def test_include_preprocessed_is_an_opt_in_option() -> None:
    assert parse_options({}).include_preprocessed is False
    assert parse_options({"include_preprocessed": "true"}).include_preprocessed is True
    assert parse_options({"include_preprocessed": False}).include_preprocessed is False


def test_seed000_env_vars_are_named_with_their_replacement() -> None:
    env = {"WORKER_THREADS": "4", "MAX_BATCH_SIZE": "8", "TORCH_NUM_THREADS": "4", "OMP_NUM_THREADS": "4"}
    notes = dict(seed000_env_notes(env))
    assert set(notes) == set(env)
    assert "MAX_CONCURRENT_TRITON_CALLS" in notes["WORKER_THREADS"]
    assert "max_batch_size" in notes["MAX_BATCH_SIZE"]
    assert seed000_env_notes({"OMP_NUM_THREADS": " "}) == []
    with structlog.testing.capture_logs() as logs:
        log_seed000_env(env)
    assert [e["variable"] for e in logs if e["event"] == "seed000_env_var_deprecated"] == list(env)
    assert all(e["log_level"] == "warning" for e in logs)


def test_worker_threads_maps_to_concurrent_triton_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MAX_CONCURRENT_TRITON_CALLS", raising=False)
    monkeypatch.setenv("WORKER_THREADS", "3")
    assert Settings().MAX_CONCURRENT_TRITON_CALLS == 3
    monkeypatch.setenv("MAX_CONCURRENT_TRITON_CALLS", "5")  # the new name wins
    assert Settings().MAX_CONCURRENT_TRITON_CALLS == 5
    monkeypatch.setenv("SEED_TEST_DATA", "")
    assert Settings().SEED_TEST_DATA is None
