"""Random-weight FastSAM networks for tests (no download: weights the tests make themselves)."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

from fastsam.build import build_yolov8_seg
from fastsam.checkpoint import save_safetensors
from fastsam.modeling import YOLOv8Seg


@torch.no_grad()
def randomize_(model: YOLOv8Seg, seed: int = 0) -> YOLOv8Seg:
    """Give every layer random weights that keep activations O(1) and spread the scores over (0, 1)."""
    gen = torch.Generator().manual_seed(seed)
    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)) and not name.endswith("dfl.conv"):
            fan_in = module.weight[0].numel()
            module.weight.copy_(torch.randn(module.weight.shape, generator=gen) * (1.6 / math.sqrt(fan_in)))
            if module.bias is not None:
                module.bias.copy_(torch.randn(module.bias.shape, generator=gen) * 0.5)
        elif isinstance(module, nn.BatchNorm2d):
            n = module.num_features
            module.weight.copy_(torch.rand(n, generator=gen) * 0.8 + 0.6)
            module.bias.copy_(torch.randn(n, generator=gen) * 0.2)
    _calibrate_batchnorm(model, gen)
    _calibrate_class_logits(model, gen)
    return model.eval()


def synthetic_photos(n: int, size: int, gen: torch.Generator) -> torch.Tensor:
    """``(n, 3, size, size)`` images in [0, 1] of flat-coloured rectangles with mild noise, like photos' statistics."""
    x = torch.rand(n, 3, 1, 1, generator=gen).expand(n, 3, size, size).clone()
    for i in range(n):
        for _ in range(12):
            x0, y0 = torch.randint(0, size - 8, (2,), generator=gen).tolist()
            w, h = torch.randint(8, size // 2, (2,), generator=gen).tolist()
            x[i, :, y0 : y0 + h, x0 : x0 + w] = torch.rand(3, 1, 1, generator=gen)
    return (x + 0.05 * torch.randn(x.shape, generator=gen)).clamp(0, 1)


@torch.no_grad()
def _calibrate_class_logits(model: YOLOv8Seg, gen: torch.Generator, mean: float = -0.5, std: float = 1.5) -> None:
    """Rescale each level's final class convolution so its logits have the given mean and spread."""
    model.eval()
    feats = model.features(synthetic_photos(2, 256, gen))
    for branch, feat in zip(model.head.cv3, feats):
        hidden = branch[:-1](feat)
        final = branch[-1]
        logits = torch.nn.functional.conv2d(hidden, final.weight)
        scale = std / logits.std().clamp_min(1e-6)
        final.weight.mul_(scale)
        final.bias.fill_(mean - float(logits.mean() * scale))


@torch.no_grad()
def _calibrate_batchnorm(model: YOLOv8Seg, gen: torch.Generator) -> None:
    """Set BatchNorm statistics to those of a forward pass, so every normalised activation is O(1)."""
    x = synthetic_photos(2, 256, gen)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # cumulative average over the pass
    model.train()
    model(x)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.momentum = 0.03


def random_network(scale: str = "n", reg_max: int = 16, seed: int = 0) -> YOLOv8Seg:
    """An unfused random-weight YOLOv8-seg network in eval mode."""
    return randomize_(build_yolov8_seg(scale, nc=1, reg_max=reg_max), seed)


def save_random_weights(path: str | Path, scale: str = "n", reg_max: int = 16, seed: int = 0) -> Path:
    """Write a random-weight network as our ``.safetensors`` format (float16, like the released weights)."""
    net = random_network(scale, reg_max, seed)
    state = {k: (v.half() if v.is_floating_point() else v) for k, v in net.state_dict().items()}
    meta = {"format": "fastsam", "format_version": "1", "scale": scale, "nc": 1, "reg_max": reg_max, "imgsz": 1024}
    return save_safetensors(state, path, meta)
