"""UNet1D: seed 000's architecture (dilated encoder, SAGAN bottleneck attention), state-dict compatible.

Submodule names and shapes reproduce the seed's `best_model.pth` keys exactly (`downs.0.conv.0.weight`,
`attention.gamma`, ...), so its weights load with strict=True. With the seed widths the model has
12,130,242 parameters (48.5 MB float32), the figure the seed's README publishes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

SEED_WIDTHS: tuple[int, ...] = (64, 128, 256, 512)
SEED_DILATIONS: tuple[int, ...] = (1, 2, 4, 8)
CHECKPOINT_FORMAT = "pd-gateway/unet1d-v1"


class DoubleConv(nn.Module):
    """(Conv1d k=3, no bias -> BatchNorm1d -> ReLU) twice; padding = dilation keeps the length."""

    def __init__(self, in_channels: int, out_channels: int, dilation: int = 1) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv1d(in_channels, out_channels, 3, padding=dilation, dilation=dilation, bias=False),
            nn.BatchNorm1d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv1d(out_channels, out_channels, 3, padding=dilation, dilation=dilation, bias=False),
            nn.BatchNorm1d(out_channels),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class SelfAttention1D(nn.Module):
    """SAGAN self-attention over positions; `gamma` starts at 0 so the block starts as the identity."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.query = nn.Conv1d(channels, channels // 8, 1)
        self.key = nn.Conv1d(channels, channels // 8, 1)
        self.value = nn.Conv1d(channels, channels, 1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = self.query(x).permute(0, 2, 1)  # (N, L, C/8)
        attn = torch.softmax(torch.bmm(q, self.key(x)), dim=-1)  # (N, L, L), rows sum to 1
        out = torch.bmm(self.value(x), attn.permute(0, 2, 1))  # (N, C, L)
        return self.gamma * out + x


class UNet1D(nn.Module):
    """Sample-wise PD segmentation; `forward` returns logits (N, out_channels, L).

    dilations default to the seed's (1, 2, 4, 8) for four levels, else 1, 2, 4, ...
    stem_kernel/stem_channels: an optional front end (not in the seed) of `stem_channels` long
    `stem_kernel`-tap filters + BatchNorm + ReLU at full resolution, before the first encoder block. A
    weak pulse is only separable from white noise by integrating it over its whole length (a matched
    filter); 3-tap convolutions followed by max-pooling cannot do that before their first nonlinearity.
    0 = off, which keeps the seed's state-dict keys.
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        widths: Sequence[int] = SEED_WIDTHS,
        dilations: Sequence[int] | None = None,
        stem_kernel: int = 0,
        stem_channels: int = 0,
    ) -> None:
        super().__init__()
        if (
            min(stem_kernel, stem_channels) < 0
            or (stem_kernel > 0) != (stem_channels > 0)
            or (stem_kernel and stem_kernel % 2 == 0)
        ):
            raise ValueError("stem_kernel (odd) and stem_channels must both be > 0, or both 0")
        dilations = _default_dilations(len(widths)) if dilations is None else dilations
        if len(widths) != len(dilations) or not widths:
            raise ValueError("widths and dilations must be non-empty and of equal length")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.widths, self.dilations = tuple(int(w) for w in widths), tuple(int(d) for d in dilations)
        self.stem_kernel, self.stem_channels = int(stem_kernel), int(stem_channels)
        ch = in_channels
        if self.stem_kernel:
            self.stem = nn.Sequential(
                nn.Conv1d(
                    ch, self.stem_channels, self.stem_kernel, padding=self.stem_kernel // 2, bias=False
                ),
                nn.BatchNorm1d(self.stem_channels),
                nn.ReLU(inplace=True),
            )
            ch = self.stem_channels
        self.downs = nn.ModuleList()
        for width, dilation in zip(self.widths, self.dilations, strict=True):
            self.downs.append(DoubleConv(ch, width, dilation))
            ch = width
        self.pool = nn.MaxPool1d(2)
        self.bottleneck_conv = DoubleConv(self.widths[-1], 2 * self.widths[-1])
        self.attention = SelfAttention1D(2 * self.widths[-1])
        self.ups = nn.ModuleList()
        for width in reversed(self.widths):
            self.ups.append(nn.ConvTranspose1d(2 * width, width, kernel_size=2, stride=2))
            self.ups.append(DoubleConv(2 * width, width))
        self.final_conv = nn.Conv1d(self.widths[0], out_channels, 1)

    @property
    def min_length(self) -> int:
        """Shortest input the pooling chain can take; export windows should be multiples of it."""
        return 2 ** len(self.widths)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stem_kernel:
            x = self.stem(x)
        skips = []
        for down in self.downs:
            x = down(x)
            skips.append(x)
            x = self.pool(x)
        x = self.attention(self.bottleneck_conv(x))
        for i, skip in enumerate(reversed(skips)):
            x = self.ups[2 * i](x)
            # Odd lengths lose a sample in MaxPool; pad the upsampled map back. Export traces a fixed
            # window that is a multiple of min_length, where this never applies, so skip the check
            # there (it would only bake a constant into the trace and warn).
            if not torch.jit.is_tracing() and x.shape[-1] != skip.shape[-1]:
                x = F.pad(x, (0, skip.shape[-1] - x.shape[-1]))
            x = self.ups[2 * i + 1](torch.cat((skip, x), dim=1))
        return self.final_conv(x)


class ProbabilityModel(nn.Module):
    """Wraps a logit model with a sigmoid: what the ONNX export (and Triton) serves."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.model(x))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def infer_architecture(state_dict: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """Channels and widths from tensor shapes (dilations do not change shapes, so they are not here)."""
    widths: list[int] = []
    while (key := f"downs.{len(widths)}.conv.0.weight") in state_dict:
        widths.append(int(state_dict[key].shape[0]))
    if not widths or "final_conv.weight" not in state_dict:
        raise ValueError("not a UNet1D state_dict: no downs.*.conv.0.weight / final_conv.weight")
    stem = state_dict.get("stem.0.weight")
    first = stem if stem is not None else state_dict["downs.0.conv.0.weight"]
    return {
        "in_channels": int(first.shape[1]),
        "out_channels": int(state_dict["final_conv.weight"].shape[0]),
        "widths": tuple(widths),
        "stem_kernel": int(stem.shape[2]) if stem is not None else 0,
        "stem_channels": int(stem.shape[0]) if stem is not None else 0,
    }


def _default_dilations(depth: int) -> tuple[int, ...]:
    return SEED_DILATIONS if depth == len(SEED_DILATIONS) else tuple(2**i for i in range(depth))


def _strip_prefix(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop a DataParallel `module.` prefix, which a seed-style save may carry."""
    if state_dict and all(k.startswith("module.") for k in state_dict):
        return {k[len("module.") :]: v for k, v in state_dict.items()}
    return dict(state_dict)


def load_checkpoint(path: str | Path) -> tuple[UNet1D, dict[str, Any]]:
    """Load a seed `best_model.pth` (raw state_dict) or our checkpoint dict; strict, eval mode.

    Returns the model and its metadata: source ("seed" or "pd-gateway"), architecture, and for our
    checkpoints every other stored key (processing, metrics, training data, ...).
    """
    obj = torch.load(Path(path), map_location="cpu", weights_only=True)
    if not isinstance(obj, Mapping):
        raise ValueError(f"{path}: expected a state_dict or a checkpoint dict, got {type(obj).__name__}")
    if isinstance(obj.get("model"), Mapping):
        state = _strip_prefix(obj["model"])
        meta: dict[str, Any] = {k: v for k, v in obj.items() if k != "model"}
        meta["source"] = "pd-gateway"
    else:
        nested = obj.get("state_dict", obj.get("model_state_dict", obj))
        state, meta = _strip_prefix(nested), {"source": "seed"}
    arch = infer_architecture(state)
    stored = meta.get("widths")
    if stored is not None and tuple(stored) != arch["widths"]:
        raise ValueError(
            f"{path}: stored widths {tuple(stored)} disagree with tensor shapes {arch['widths']}"
        )
    dilations = tuple(meta.get("dilations") or _default_dilations(len(arch["widths"])))
    model = UNet1D(
        arch["in_channels"],
        arch["out_channels"],
        arch["widths"],
        dilations,
        stem_kernel=arch["stem_kernel"],
        stem_channels=arch["stem_channels"],
    )
    model.load_state_dict(state, strict=True)
    model.eval()
    meta.update(arch, dilations=dilations, total_parameters=count_parameters(model))
    return model, meta


def save_checkpoint(
    path: str | Path, model: UNet1D, *, processing: Mapping[str, Any] | None = None, **extra: Any
) -> None:
    """Write our checkpoint dict (what `load_checkpoint` reads); `extra` holds metrics, epoch, etc.

    Values must be plain Python/tensors so the file loads with weights_only=True.
    """
    checkpoint = {
        "format": CHECKPOINT_FORMAT,
        "model": model.state_dict(),
        "in_channels": model.in_channels,
        "out_channels": model.out_channels,
        "widths": list(model.widths),
        "dilations": list(model.dilations),
        "stem_kernel": model.stem_kernel,
        "stem_channels": model.stem_channels,
        "processing": dict(processing) if processing is not None else None,
        **extra,
    }
    tmp = Path(path).with_name(Path(path).name + ".tmp")
    torch.save(checkpoint, tmp)
    tmp.replace(path)  # a crash mid-save never leaves a truncated checkpoint behind
