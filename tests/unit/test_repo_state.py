"""Persisted version policy, byte-exact rollback and the cross-process management lock."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gateway import repository as r
from gateway.dsp.params import DEFAULT_PARAMS
from gateway.services import repo_state as rs


def _model(tmp_path: Path, versions: int = 2) -> Path:
    model_dir = tmp_path / "pd_unet1d"
    for _ in range(versions):
        r.write_version(model_dir, b"onnx", card={}, processing=DEFAULT_PARAMS.to_dict())
    return model_dir


def test_policy_versions_follow_triton_semantics(tmp_path: Path) -> None:
    config = r.read_config(_model(tmp_path))
    assert rs.policy_versions(config, [1, 2, 3]) == [3]  # no policy: Triton's default, latest 1
    config.version_policy.latest.num_versions = 2
    assert rs.policy_versions(config, [1, 2, 3]) == [2, 3]
    config.version_policy.all.SetInParent()
    assert rs.policy_versions(config, [1, 3]) == [1, 3]
    config.version_policy.specific.versions[:] = [1, 4]
    assert rs.policy_versions(config, [1, 2, 3]) == [1]  # only directories that exist


def test_persist_policy_then_rollback_restores_bytes(tmp_path: Path) -> None:
    model_dir = _model(tmp_path)
    snapshot = rs.snapshot_config(model_dir)
    new = r.write_version(
        model_dir, b"onnx", card={}, processing=DEFAULT_PARAMS.replace(window=2048).to_dict()
    )
    config = rs.persist_policy(model_dir, [2, new])
    assert (
        list(r.read_config(model_dir).version_policy.specific.versions)
        == [2, 3]
        == list(config.version_policy.specific.versions)
    )
    assert rs.config_summary(config)["version_policy"] == {"specific": [2, 3]}
    assert rs.config_summary(config)["inputs"][0]["dims"] == [1, -1]
    rs.rollback(model_dir, snapshot, new)
    assert rs.snapshot_config(model_dir) == snapshot
    assert r.list_versions(model_dir) == [1, 2]
    assert not [p for p in model_dir.iterdir() if p.name.startswith(".")]


def test_latest_processing_and_cards(tmp_path: Path) -> None:
    model_dir = _model(tmp_path, versions=1)
    r.write_version(
        model_dir, b"onnx", card={"k": 1}, processing=DEFAULT_PARAMS.replace(window=512, hop=384).to_dict()
    )
    assert rs.latest_processing(r.read_config(model_dir))["window"] == 512
    assert r.read_model_card(model_dir, 2)["k"] == 1 and r.read_model_card(model_dir, 9) is None


async def test_repository_lock_excludes_a_second_holder(tmp_path: Path) -> None:
    async with rs.repository_lock(tmp_path, timeout_s=1.0):
        with pytest.raises(rs.LockTimeout):
            async with rs.repository_lock(tmp_path, timeout_s=0.1):
                pass
    async with rs.repository_lock(tmp_path, timeout_s=0.1):  # released on exit
        await asyncio.sleep(0)
