"""UNet1D: seed-compatible names/shapes, the 12.13 M parameter count, forward shapes, checkpoint loading."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from export.model import (  # noqa: E402  (after the importorskip guard)
    ProbabilityModel,
    SelfAttention1D,
    UNet1D,
    count_parameters,
    infer_architecture,
    load_checkpoint,
    save_checkpoint,
)

SMALL = {"widths": (8, 16, 32), "dilations": (1, 2, 4)}


def test_seed_width_parameter_count_matches_the_seed_readme() -> None:
    model = UNet1D()
    n = count_parameters(model)
    assert n == 12_130_242
    assert round(n * 4 / 1e6, 1) == 48.5  # "~48 MB best_model.pth", float32


def test_state_dict_names_and_shapes_follow_the_seed() -> None:
    shapes = {k: tuple(v.shape) for k, v in UNet1D().state_dict().items()}
    expected = {
        "downs.0.conv.0.weight": (64, 1, 3),
        "downs.0.conv.1.running_mean": (64,),
        "downs.0.conv.1.num_batches_tracked": (),
        "downs.3.conv.3.weight": (512, 512, 3),
        "bottleneck_conv.conv.0.weight": (1024, 512, 3),
        "bottleneck_conv.conv.4.running_var": (1024,),
        "attention.query.weight": (128, 1024, 1),
        "attention.key.bias": (128,),
        "attention.value.weight": (1024, 1024, 1),
        "attention.gamma": (1,),
        "ups.0.weight": (1024, 512, 2),
        "ups.1.conv.0.weight": (512, 1024, 3),
        "ups.6.weight": (128, 64, 2),
        "ups.7.conv.3.weight": (64, 64, 3),
        "final_conv.weight": (1, 64, 1),
        "final_conv.bias": (1,),
    }
    assert {k: shapes.get(k) for k in expected} == expected
    assert len(shapes) == 125
    assert not any(k.startswith(("conv.", "model.")) for k in shapes)


@pytest.mark.parametrize("length", [256, 1000, 1001, 37])
def test_forward_keeps_the_length_for_any_input(length: int) -> None:
    model = UNet1D(**SMALL).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 1, length))
    assert out.shape == (2, 1, length)


def test_probability_model_applies_a_sigmoid() -> None:
    model = UNet1D(**SMALL).eval()
    x = torch.randn(3, 1, 128)
    with torch.no_grad():
        logits, probs = model(x), ProbabilityModel(model)(x)
    torch.testing.assert_close(probs, torch.sigmoid(logits))
    assert float(probs.min()) >= 0.0 and float(probs.max()) <= 1.0


def test_attention_starts_as_identity_and_gamma_switches_it_on() -> None:
    attn = SelfAttention1D(16).eval()
    x = torch.randn(2, 16, 10)
    with torch.no_grad():
        torch.testing.assert_close(attn(x), x)
        attn.gamma.fill_(1.0)
        assert not torch.allclose(attn(x), x)


def test_dilations_change_the_receptive_field_not_the_shapes() -> None:
    a = UNet1D(widths=(8, 16), dilations=(1, 1))
    b = UNet1D(widths=(8, 16), dilations=(3, 5))
    b.load_state_dict(a.state_dict(), strict=True)
    x = torch.randn(1, 1, 64)
    with torch.no_grad():
        assert not torch.allclose(a.eval()(x), b.eval()(x))


def test_load_seed_state_dict_infers_widths_and_loads_strictly(tmp_path: Path) -> None:
    model = UNet1D(widths=(16, 32, 64, 128)).eval()
    path = tmp_path / "best_model.pth"
    torch.save({f"module.{k}": v for k, v in model.state_dict().items()}, path)  # DataParallel-style
    loaded, meta = load_checkpoint(path)
    assert meta["source"] == "seed"
    assert meta["widths"] == (16, 32, 64, 128) and meta["dilations"] == (1, 2, 4, 8)
    assert meta["total_parameters"] == count_parameters(model)
    assert not loaded.training
    x = torch.randn(1, 1, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))


def test_our_checkpoint_round_trips_with_metadata(tmp_path: Path) -> None:
    model = UNet1D(**SMALL).eval()
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, model, processing={"window": 256, "hop": 128}, metrics={"f1": 0.9}, epoch=3)
    loaded, meta = load_checkpoint(path)
    assert meta["source"] == "pd-gateway"
    assert meta["dilations"] == SMALL["dilations"] and meta["widths"] == SMALL["widths"]
    assert meta["processing"] == {"window": 256, "hop": 128}
    assert meta["metrics"] == {"f1": 0.9} and meta["epoch"] == 3
    x = torch.randn(2, 1, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))


@pytest.mark.parametrize("change", ["missing", "unexpected", "shape"])
def test_load_is_strict(tmp_path: Path, change: str) -> None:
    state = UNet1D(**SMALL).state_dict()
    if change == "missing":
        del state["attention.gamma"]
    elif change == "unexpected":
        state["attention.extra"] = torch.zeros(1)
    else:
        state["attention.value.weight"] = torch.zeros(1, 1, 1)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(RuntimeError):
        load_checkpoint(tmp_path / "bad.pth")


def test_infer_architecture_rejects_other_models() -> None:
    with pytest.raises(ValueError, match="not a UNet1D"):
        infer_architecture({"fc.weight": torch.zeros(2, 2)})


def test_optional_stem_round_trips_and_leaves_seed_keys_alone(tmp_path: Path) -> None:
    model = UNet1D(**SMALL, stem_kernel=9, stem_channels=6).eval()
    assert model.stem[0].weight.shape == (6, 1, 9)
    assert not any(k.startswith("stem.") for k in UNet1D(**SMALL).state_dict())
    save_checkpoint(tmp_path / "stem.pt", model)
    loaded, meta = load_checkpoint(tmp_path / "stem.pt")
    assert (meta["stem_kernel"], meta["stem_channels"]) == (9, 6)
    x = torch.randn(2, 1, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))
    for kernel, channels in [(8, 4), (9, 0), (0, 4), (0, -3)]:
        with pytest.raises(ValueError, match="stem"):
            UNet1D(**SMALL, stem_kernel=kernel, stem_channels=channels)
