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


@pytest.mark.parametrize("new", [(8, 16, 32, 64), (10, 20, 40, 80), (16, 32, 64, 128)])
def test_widened_network_gives_the_same_output(new: tuple[int, ...]) -> None:
    old = _trained_like((8, 16, 32, 64), seed=1)
    wide = widen(old, new, np.random.default_rng(2))
    assert wide.widths == new
    x = 3.0 * torch.randn(4, 1, 512)
    with torch.no_grad():
        ref, out = old(x), wide(x)
    assert ref.abs().max() > 0.1  # not a network that outputs ~0 everywhere
    assert torch.allclose(ref, out, atol=1e-4, rtol=1e-4), (ref - out).abs().max()


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


def test_narrowing_and_stems_are_refused() -> None:
    old = _trained_like((8, 16, 32, 64), seed=5)
    with pytest.raises(ValueError):
        widen(old, (8, 16, 32), np.random.default_rng(0))
    with pytest.raises(ValueError):
        widen(old, (8, 8, 32, 64), np.random.default_rng(0))
