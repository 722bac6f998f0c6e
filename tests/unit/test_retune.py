"""export.retune: a version's region stage changes in config.pbtxt and its model card, nothing else does."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from export.retune import main
from gateway import repository

ROOT = Path(__file__).resolve().parents[2]


def _repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    shutil.copytree(ROOT / "model_repository" / "pd_unet1d", repo / "pd_unet1d")
    return repo


def _sweep(tmp_path: Path) -> Path:
    path = tmp_path / "sweep.json"
    path.write_text(json.dumps({"argv": [], "rows": [{"variant": {"threshold": 0.8}, "f1": 0.5}]}))
    return path


def test_retune_writes_the_region_stage_and_records_why(tmp_path: Path) -> None:
    repo, sweep = _repo(tmp_path), _sweep(tmp_path)
    model_dir = repo / "pd_unet1d"
    onnx_before = (model_dir / "1" / "model.onnx").read_bytes()
    before = repository.processing_params_from_config(repository.read_config(model_dir), 1)
    card_before = repository.read_model_card(model_dir, 1)
    assert before is not None and card_before is not None
    history_before = card_before.get("pd:retuned", [])
    argv = ["--repo", str(repo), "--version", "1", "--set", "threshold=0.8", "--set", "phase_window=[-5,95]"]
    assert main([*argv, "--chosen-by", str(sweep)]) == 0
    after = repository.processing_params_from_config(repository.read_config(model_dir), 1)
    assert after == {**before, "threshold": 0.8, "phase_window": [-5, 95]}
    card = repository.read_model_card(model_dir, 1)
    assert card is not None and card["pd:processing"] == after
    *earlier, entry = card["pd:retuned"]
    assert earlier == history_before
    assert entry["from"] == {"threshold": before["threshold"], "phase_window": before.get("phase_window")}
    assert entry["to"] == {"threshold": 0.8, "phase_window": [-5, 95]}
    assert entry["chosen_by"] == [str(sweep)]
    assert (model_dir / "1" / "model.onnx").read_bytes() == onnx_before  # the weights are untouched
    # the same values again (a run that refreshes the figures) add no history entry
    assert main([*argv, "--chosen-by", str(sweep)]) == 0
    again = repository.read_model_card(model_dir, 1)
    assert again is not None and again["pd:retuned"] == card["pd:retuned"]
    assert (
        main(["--repo", str(repo), "--version", "1", "--set", "threshold=0.80", "--chosen-by", str(sweep)])
        == 0
    )
    assert (
        main(
            [
                "--repo",
                str(repo),
                "--version",
                "1",
                "--set",
                "long_signal_samples=100000",
                "--chosen-by",
                str(sweep),
            ]
        )
        == 0
    )
    third = repository.read_model_card(model_dir, 1)
    assert third is not None and third["pd:retuned"] == card["pd:retuned"]  # 0.80 is 0.8; 100000 the default


def test_retune_needs_something_to_do_and_a_reason(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    for argv in ([], ["--set", "threshold=0.8"]):  # nothing to do; a change without --chosen-by
        with pytest.raises(SystemExit) as e:
            main(["--repo", str(repo), "--version", "1", *argv])
        assert e.value.code == 2


def test_retune_refuses_the_networks_input_and_writes_nothing(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    repo, sweep = _repo(tmp_path), _sweep(tmp_path)
    config = (repo / "pd_unet1d" / "config.pbtxt").read_bytes()
    card = (repo / "pd_unet1d" / "1" / "model_card.json").read_bytes()
    for bad in (
        ["--set", "mad_scale=2.0"],
        ["--set", "threshold=1.5"],
        ["--set", "nope=1"],
        ["--set", "max_input_block=8192"],  # would rescale short training signals
    ):
        assert main(["--repo", str(repo), "--version", "1", *bad, "--chosen-by", str(sweep)]) == 1
        assert "nothing written" in capsys.readouterr().err
    not_a_sweep = tmp_path / "x.json"
    not_a_sweep.write_text("{}")
    assert (
        main(
            ["--repo", str(repo), "--version", "1", "--set", "threshold=0.8", "--chosen-by", str(not_a_sweep)]
        )
        == 1
    )
    assert (repo / "pd_unet1d" / "config.pbtxt").read_bytes() == config
    assert (repo / "pd_unet1d" / "1" / "model_card.json").read_bytes() == card
