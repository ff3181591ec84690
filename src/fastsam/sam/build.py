"""``sam_model_registry`` and SAM 2's ``build_sam2``, building FastSAM models.

SAM code builds its model with ``sam_model_registry[model_type](checkpoint=path)``; here every model type builds a
:class:`~fastsam.sam.model.SamModel` from FastSAM weights: ``checkpoint`` is a FastSAM file (or None for the named
weights, downloaded on first use). SAM's ViT-H / ViT-L / default map to FastSAM-x, ViT-B to FastSAM-s. Keyword
arguments go to :class:`SamModel` (``device``, ``imgsz``, ``conf``, ``iou``, ``max_det``, ``precision``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from .model import SamModel
from .options import warn_once

Checkpoint = str | os.PathLike | None


def _builder(weights: str) -> Callable[..., SamModel]:
    def build(checkpoint: Checkpoint = None, **settings: Any) -> SamModel:
        return SamModel(checkpoint if checkpoint is not None else weights, **settings)

    build.__doc__ = f"A :class:`SamModel` with ``checkpoint`` (a FastSAM weights file), else {weights}."
    return build


build_sam_vit_h = _builder("FastSAM-x")
build_sam_vit_l = _builder("FastSAM-x")
build_sam_vit_b = _builder("FastSAM-s")
build_sam = build_sam_vit_h

sam_model_registry: dict[str, Callable[..., SamModel]] = {
    "default": build_sam,
    "vit_h": build_sam_vit_h,
    "vit_l": build_sam_vit_l,
    "vit_b": build_sam_vit_b,
    "FastSAM-x": _builder("FastSAM-x"),
    "FastSAM-s": _builder("FastSAM-s"),
}


def _sam2_weights(name: str) -> str:
    """SAM 2 config or hub names -> FastSAM weights: tiny / small to FastSAM-s, others (base+, large) to FastSAM-x."""
    lowered = name.lower()
    return "FastSAM-s" if any(size in lowered for size in ("tiny", "small", "_t.", "_s.")) else "FastSAM-x"


def build_sam2(
    config_file: str = "",
    ckpt_path: Checkpoint = None,
    device: str = "cuda",
    mode: str = "eval",
    hydra_overrides_extra: list[str] | None = None,
    apply_postprocessing: bool = True,
    **settings: Any,
) -> SamModel:
    """SAM 2's builder: ``ckpt_path`` is a FastSAM weights file; without it the config's size picks FastSAM-s
    (tiny, small) or FastSAM-x (base+, large). ``mode``, ``hydra_overrides_extra`` and ``apply_postprocessing``
    have no FastSAM meaning (warned once)."""
    if mode != "eval":
        warn_once("build_sam2(mode)", "fastsam.sam is for inference: build_sam2(mode=...) is ignored")
    if hydra_overrides_extra:
        warn_once("build_sam2(hydra_overrides_extra)", "build_sam2(hydra_overrides_extra=...) has no FastSAM meaning")
    if not apply_postprocessing:
        warn_once("build_sam2(apply_postprocessing)", "build_sam2(apply_postprocessing=False) has no FastSAM meaning")
    weights = ckpt_path if ckpt_path is not None else _sam2_weights(str(config_file))
    return SamModel(weights, device=device, **settings)


def build_sam2_hf(model_id: str, **settings: Any) -> SamModel:
    """SAM 2's hub builder: ``facebook/sam2-hiera-{tiny,small}`` give FastSAM-s, the others FastSAM-x."""
    device = settings.pop("device", "auto")
    for ignored in ("mode", "hydra_overrides_extra", "apply_postprocessing"):
        settings.pop(ignored, None)
    return SamModel(_sam2_weights(model_id), device=device, **settings)
