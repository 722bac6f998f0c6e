"""The operator CLI's local parts: tables, argument checks, and a clear failure when nothing answers."""

from __future__ import annotations

import pytest

from gateway.admin_cli import _threshold, table
from gateway.cli import main
from gateway.embedded import free_port


def test_table_aligns_columns_and_shows_missing_values() -> None:
    text = table([["1", "READY", 1024], ["12", "UNAVAILABLE", None]], ["VERSION", "STATE", "WINDOW"])
    assert text.splitlines() == [
        "VERSION  STATE        WINDOW",
        "1        READY        1024",
        "12       UNAVAILABLE  -",
    ]


@pytest.mark.parametrize("versions", ["1,x", "0", ","])
def test_bad_versions_exit_2_before_any_request(versions: str, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    assert main(["models", "load", "pd_unet1d", "--versions", versions, "--url", url]) == 2
    assert "--versions" in capsys.readouterr().err


def test_missing_model_file_exits_2(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    assert main(["models", "deploy", "pd_unet1d", str(tmp_path / "none.onnx"), "--url", url]) == 2
    assert "cannot read model file" in capsys.readouterr().err


def test_unreachable_gateway_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    assert main(["models", "list", "--url", url, "--api-key", "k" * 20, "--timeout-s", "2"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: cannot reach the gateway") and "k" * 20 not in err


def test_the_threshold_column_shows_a_long_signal_threshold() -> None:
    assert _threshold({"threshold": 0.5, "long_signal_threshold": None}) == 0.5
    assert _threshold({"threshold": 0.5, "long_signal_threshold": 0.95, "long_signal_samples": 100000}) == (
        "0.5 (0.95 from 100000 samples)"
    )
