"""Model repository writer: Triton-parsable config, per-version processing, atomic versions, safe names."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import json_format, text_format
from tritonclient.grpc import model_config_pb2 as mc

from gateway import repository as r
from gateway.dsp.params import DEFAULT_PARAMS, SEED_PARAMS
from gateway.model_card import model_card

ONNX = b"not really onnx, the writer does not parse it"


def _card() -> dict:
    return model_card(
        name="pd_unet1d",
        window=1024,
        total_parameters=12_130_242,
        framework_version="2.13.0",
        opset=17,
        processing=SEED_PARAMS.to_dict(),
        metrics={"f1": 0.5},
    )


def _write(model_dir: Path, **kw) -> int:
    kw.setdefault("card", _card())
    kw.setdefault("processing", SEED_PARAMS.to_dict())
    return r.write_version(model_dir, ONNX, **kw)


def _parse(model_dir: Path) -> mc.ModelConfig:
    """Parse config.pbtxt the way Triton does: text format into inference.ModelConfig."""
    return text_format.Parse((model_dir / "config.pbtxt").read_text(), mc.ModelConfig())


def test_repository_and_export_package_do_not_import_torch() -> None:
    code = "import sys, gateway.repository, export; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_config_parses_as_triton_model_config(tmp_path: Path) -> None:
    config = r.build_config(
        "pd_unet1d",
        window=1024,
        max_batch_size=32,
        preferred_batch_sizes=(16, 8),
        intra_op_threads=2,
        processing_by_version={1: SEED_PARAMS.to_dict(), 2: DEFAULT_PARAMS.to_dict()},
    )
    r.write_config(tmp_path, config)
    parsed = _parse(tmp_path)
    assert parsed == config
    assert parsed.name == "pd_unet1d" and parsed.backend == "onnxruntime"
    assert parsed.max_batch_size == 32
    assert [(t.name, t.data_type, list(t.dims)) for t in parsed.input] == [
        ("signal", mc.TYPE_FP32, [1, 1024])
    ]
    assert [(t.name, t.data_type, list(t.dims)) for t in parsed.output] == [
        ("probability", mc.TYPE_FP32, [1, 1024])
    ]
    assert parsed.HasField("dynamic_batching")
    assert list(parsed.dynamic_batching.preferred_batch_size) == [8, 16]
    assert parsed.dynamic_batching.max_queue_delay_microseconds == 2000
    assert [(g.kind, g.count) for g in parsed.instance_group] == [(mc.ModelInstanceGroup.KIND_CPU, 1)]
    assert parsed.parameters["intra_op_thread_count"].string_value == "2"
    assert "inter_op_thread_count" not in parsed.parameters
    assert parsed.parameters["session.intra_op.allow_spinning"].string_value == "0"  # the default: sleep
    assert r.processing_params_from_config(parsed, 1) == SEED_PARAMS.to_dict()
    assert r.processing_params_from_config(parsed, 2) == DEFAULT_PARAMS.to_dict()
    assert r.processing_params_from_config(parsed, 3) is None
    raw = parsed.parameters["pd_processing.v1"].string_value
    assert raw == json.dumps(SEED_PARAMS.to_dict(), sort_keys=True)


def test_version_override_json_keeps_the_whole_config() -> None:
    config = r.build_config(
        "m", window=512, processing_by_version={3: SEED_PARAMS.replace(window=512).to_dict()}
    )
    override = json_format.Parse(r.version_override_json(config, [3]), mc.ModelConfig())
    assert list(override.version_policy.specific.versions) == [3]
    override.ClearField("version_policy")
    assert override == config


def test_gpu_flag_and_instance_count(tmp_path: Path) -> None:
    config = r.build_config("m", window=256, instance_kind="KIND_GPU", instance_count=2)
    r.write_config(tmp_path, config)
    group = _parse(tmp_path).instance_group[0]
    assert (group.kind, group.count) == (mc.ModelInstanceGroup.KIND_GPU, 2)
    with pytest.raises(r.RepositoryError):
        r.build_config("m", window=256, instance_kind="GPU")
    with pytest.raises(r.RepositoryError):
        r.build_config("m", window=256, max_batch_size=8, preferred_batch_sizes=(16,))


def test_versions_with_different_windows_get_a_dynamic_length() -> None:
    config = r.build_config("m", window=1024, processing_by_version={1: SEED_PARAMS.to_dict()})
    assert list(config.input[0].dims) == [1, 1024]
    r.set_version_processing(config, 2, SEED_PARAMS.replace(window=2048).to_dict())
    assert list(config.input[0].dims) == [1, -1] and list(config.output[0].dims) == [1, -1]


def test_write_version_writes_files_config_and_card(tmp_path: Path) -> None:
    model_dir = tmp_path / "repo" / "pd_unet1d"
    assert r.next_version(model_dir) == 1
    assert _write(model_dir) == 1
    assert (model_dir / "1" / "model.onnx").read_bytes() == ONNX
    card = r.read_model_card(model_dir, 1)
    assert card["mlm:total_parameters"] == 12_130_242 and card["pd:version"] == 1
    assert card["mlm:framework"] == "pytorch" and card["mlm:input"][0]["input"]["shape"] == [-1, 1, 1024]
    assert len(card["pd:artifact"]["sha256"]) == 64
    assert (
        _write(model_dir, processing=DEFAULT_PARAMS.to_dict(), config_options={"instance_kind": "KIND_GPU"})
        == 2
    )
    parsed = _parse(model_dir)
    assert r.processing_params_from_config(parsed, 1) == SEED_PARAMS.to_dict()
    assert r.processing_params_from_config(parsed, 2) == DEFAULT_PARAMS.to_dict()
    assert parsed.instance_group[0].kind == mc.ModelInstanceGroup.KIND_GPU
    assert r.list_versions(model_dir) == [1, 2] and r.next_version(model_dir) == 3
    assert sorted(p.name for p in model_dir.iterdir()) == ["1", "2", "config.pbtxt"]


def test_existing_version_is_refused_unless_overwrite(tmp_path: Path) -> None:
    model_dir = tmp_path / "pd_unet1d"
    _write(model_dir, version=5)
    with pytest.raises(r.VersionExistsError):
        r.write_version(model_dir, b"new", version=5, card={}, processing=SEED_PARAMS.to_dict())
    assert (model_dir / "5" / "model.onnx").read_bytes() == ONNX
    r.write_version(model_dir, b"new", version=5, card={}, processing=SEED_PARAMS.to_dict(), overwrite=True)
    assert (model_dir / "5" / "model.onnx").read_bytes() == b"new"
    assert r.next_version(model_dir) == 6


def _boom(*args: object, **kwargs: object) -> None:
    raise OSError("disk full")


def test_failure_mid_write_leaves_no_version_and_the_config_untouched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model_dir = tmp_path / "pd_unet1d"
    _write(model_dir)
    before = (model_dir / "config.pbtxt").read_bytes()
    monkeypatch.setattr(r, "write_config", _boom)  # the version dir is already in place when this runs
    with pytest.raises(OSError, match="disk full"):
        _write(model_dir, processing=DEFAULT_PARAMS.to_dict())
    assert sorted(p.name for p in model_dir.iterdir()) == ["1", "config.pbtxt"]
    assert (model_dir / "config.pbtxt").read_bytes() == before


def test_failed_overwrite_restores_the_old_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model_dir = tmp_path / "pd_unet1d"
    _write(model_dir)
    monkeypatch.setattr(r, "write_config", _boom)
    with pytest.raises(OSError):
        r.write_version(
            model_dir, b"new", version=1, card={}, processing=SEED_PARAMS.to_dict(), overwrite=True
        )
    assert (model_dir / "1" / "model.onnx").read_bytes() == ONNX
    assert sorted(p.name for p in model_dir.iterdir()) == ["1", "config.pbtxt"]


def test_failed_rename_rolls_the_config_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model_dir = tmp_path / "pd_unet1d"
    _write(model_dir)
    before = (model_dir / "config.pbtxt").read_bytes()

    def rename(src: object, dst: object) -> None:
        # By now config.pbtxt already names version 2: the rollback must remove that again.
        assert "pd_processing.v2" in (model_dir / "config.pbtxt").read_text()
        raise OSError("rename failed")

    monkeypatch.setattr(r.os, "rename", rename)
    with pytest.raises(OSError, match="rename failed"):
        _write(model_dir)
    monkeypatch.undo()
    assert sorted(p.name for p in model_dir.iterdir()) == ["1", "config.pbtxt"]
    assert (model_dir / "config.pbtxt").read_bytes() == before


def test_a_version_moved_aside_by_a_crashed_overwrite_comes_back(tmp_path: Path) -> None:
    model_dir = tmp_path / "pd_unet1d"
    _write(model_dir, version=3)
    (model_dir / "3").rename(model_dir / ".tmp-old-3-0123abcd")  # as if killed mid-overwrite
    assert _write(model_dir) == 4
    assert (model_dir / "3" / "model.onnx").read_bytes() == ONNX
    assert r.list_versions(model_dir) == [3, 4]


def test_missing_onnx_file_leaves_nothing(tmp_path: Path) -> None:
    model_dir = tmp_path / "pd_unet1d"
    with pytest.raises(FileNotFoundError):
        r.write_version(model_dir, tmp_path / "nope.onnx", card={}, processing=SEED_PARAMS.to_dict())
    assert list(model_dir.iterdir()) == []


def test_only_names_triton_loads_count_as_versions(tmp_path: Path) -> None:
    model_dir = tmp_path / "pd_unet1d"
    for name in ("3", "01", "0", "abc", ".tmp-crashed", "7x"):
        (model_dir / name).mkdir(parents=True)
    (model_dir / "9").write_text("a file, not a version")
    assert r.list_versions(model_dir) == [3]
    assert _write(model_dir) == 4
    assert not (model_dir / ".tmp-crashed").exists()  # a crashed writer's leftovers are cleaned up


@pytest.mark.parametrize(
    "name", ["..", "../evil", "a/b", "", ".hidden", "-x", "a" * 65, "a\x00b", "x..y", " x", "x\n"]
)
def test_path_traversal_and_odd_model_names_are_rejected(tmp_path: Path, name: str) -> None:
    with pytest.raises(r.InvalidNameError):
        r.model_path(tmp_path, name)


@pytest.mark.parametrize("name", ["..", ".hidden", "a b"])
def test_write_version_checks_the_model_directory_name(tmp_path: Path, name: str) -> None:
    with pytest.raises(r.InvalidNameError):
        r.write_version(tmp_path / name, ONNX, card={}, processing=SEED_PARAMS.to_dict())
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("version", [0, -1, "01", "1/..", "../1", True, "1e3", 1.0, 10**19])
def test_bad_versions_are_rejected(tmp_path: Path, version: object) -> None:
    with pytest.raises(r.InvalidNameError):
        r.write_version(tmp_path / "m", ONNX, version=version, card={}, processing=SEED_PARAMS.to_dict())
    assert not (tmp_path / "m").exists()


def test_good_names_pass() -> None:
    assert r.validate_model_name("pd_unet1d.v2-canary") == "pd_unet1d.v2-canary"
    assert r.validate_version("12") == 12 and r.validate_version(3) == 3
