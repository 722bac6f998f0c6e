"""export.widen: a wider UNet1D that computes what the trained one computes, and whose copies learn apart."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from export.model import UNet1D
from export.widen import channel_map, widen


def _trained_like(widths: tuple[int, ...], seed: int) -> UNet1D:
    """A UNet1D with random weights, BN statistics and a non-zero attention gain (not the identity)."""
    torch.manual_seed(seed)
    model = UNet1D(1, 1, widths, (1, 2, 4, 8)[: len(widths)])
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.running_mean.normal_(0.0, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.2)
        model.attention.gamma.fill_(0.7)
    return model.eval()


def test_channel_map_keeps_the_old_channels_first() -> None:
    rng = np.random.default_rng(0)
    m = channel_map(8, 13, rng)
    assert list(m[:8]) == list(range(8)) and len(m) == 13 and m.max() < 8
    with pytest.raises(ValueError):
        channel_map(8, 4, rng)


def _activations(model: UNet1D, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every module's output, by module name (eval mode, no grad)."""
    out: dict[str, torch.Tensor] = {}
    hooks = [
        m.register_forward_hook(lambda _m, _i, y, name=name: out.__setitem__(name, y.detach().clone()))
        for name, m in model.named_modules()
        if name and not isinstance(m, torch.nn.ReLU)  # ReLU is in place: its input is the BN's output
    ]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return out


@pytest.mark.parametrize("new", [(8, 16, 32, 64), (10, 20, 40, 80), (16, 32, 64, 128)])
def test_every_layer_keeps_its_old_channels(new: tuple[int, ...]) -> None:
    """Layer by layer, not only at the output: the old channels come first in every widened feature map."""
    old = _trained_like((8, 16, 32, 64), seed=1)
    wide = widen(old, new, np.random.default_rng(2))
    assert wide.widths == new
    x = 3.0 * torch.randn(4, 1, 512)
    before, after = _activations(old, x), _activations(wide, x)
    assert before.keys() == after.keys() and len(before) > 40
    for name, ref in before.items():
        got = after[name][:, : ref.shape[1]]
        assert torch.allclose(ref, got, atol=1e-4, rtol=1e-4), (name, (ref - got).abs().max())


def test_a_wrong_widening_is_caught() -> None:
    """The layer-by-layer check can fail: a widened attention block with its gain changed is found."""
    old = _trained_like((8, 16, 32, 64), seed=1)
    wide = widen(old, (10, 20, 40, 80), np.random.default_rng(2))
    x = 3.0 * torch.randn(4, 1, 512)
    with torch.no_grad():
        wide.attention.gamma.fill_(0.0)
    before, after = _activations(old, x), _activations(wide, x)
    ref = before["attention"]
    assert not torch.allclose(ref, after["attention"][:, : ref.shape[1]], atol=1e-4, rtol=1e-4)


def test_copies_get_different_gradients() -> None:
    """An even split keeps a channel and its copy identical under Adam forever; a random one does not."""
    old = _trained_like((8, 16, 32, 64), seed=3)
    wide = widen(old, (10, 20, 40, 80), np.random.default_rng(4)).train()
    x, target = torch.randn(8, 1, 256), (torch.rand(8, 1, 256) > 0.9).float()
    torch.nn.functional.binary_cross_entropy_with_logits(wide(x), target).backward()
    grad = wide.downs[0].conv[0].weight.grad  # (10, 1, 3): channels 8, 9 copy two of the first 8
    assert grad is not None
    conv = wide.downs[0].conv[0].weight.detach()
    for copy in (8, 9):
        source = next(c for c in range(8) if torch.equal(conv[c], conv[copy]))
        assert not torch.allclose(grad[copy], grad[source])


def test_what_it_cannot_widen_is_refused() -> None:
    old = _trained_like((8, 16, 32, 64), seed=5)
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="same depth"):
        widen(old, (8, 16, 32), rng)
    with pytest.raises(ValueError, match="cannot narrow"):
        widen(old, (4, 8, 16, 32), rng)
    with pytest.raises(ValueError, match="double at each level"):
        widen(old, (9, 17, 33, 65), rng)
    stem = UNet1D(1, 1, (8, 16, 32, 64), stem_kernel=5, stem_channels=4).eval()
    with pytest.raises(ValueError, match="no stem"):
        widen(stem, (10, 20, 40, 80), rng)
