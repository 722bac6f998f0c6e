"""gateway.seed: fill an empty model repository from the shipped one, never touching what is there."""

from __future__ import annotations

import filecmp
from pathlib import Path

import pytest

from gateway.seed import main, seed_repository

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "model_repository"


def test_seeds_an_empty_repository(tmp_path: Path) -> None:
    dest = tmp_path / "models"
    assert seed_repository(SHIPPED, dest) == ["pd_unet1d"]
    cmp = filecmp.dircmp(SHIPPED / "pd_unet1d", dest / "pd_unet1d")
    assert not cmp.left_only and not cmp.right_only and not cmp.diff_files
    assert filecmp.cmp(SHIPPED / "pd_unet1d/1/model.onnx", dest / "pd_unet1d/1/model.onnx", shallow=False)
    assert sorted(p.name for p in dest.iterdir()) == ["pd_unet1d"], "no staging directory left behind"


def test_leaves_deployed_models_alone(tmp_path: Path) -> None:
    dest = tmp_path / "models"
    (dest / "pd_unet1d" / "7").mkdir(parents=True)
    (dest / "pd_unet1d" / "config.pbtxt").write_text("operator's config")
    (dest / "other").mkdir()
    assert seed_repository(SHIPPED, dest) == []
    assert (dest / "pd_unet1d" / "config.pbtxt").read_text() == "operator's config"
    assert not (dest / "pd_unet1d" / "1").exists()


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--source", str(SHIPPED), "--dest", str(tmp_path / "m")]) == 0
    assert "copied ['pd_unet1d']" in capsys.readouterr().out
    assert main(["--source", str(SHIPPED), "--dest", str(tmp_path / "m")]) == 0
    assert "copied nothing" in capsys.readouterr().out
    assert main(["--source", str(tmp_path / "absent"), "--dest", str(tmp_path / "m")]) == 1
    assert "does not exist" in capsys.readouterr().err
