"""segment-anything's and SAM 2's image API on FastSAM: change the import, keep the code.

::

    # from segment_anything import SamAutomaticMaskGenerator, SamPredictor, sam_model_registry
    from fastsam.sam import SamAutomaticMaskGenerator, SamPredictor, sam_model_registry

    sam = sam_model_registry["vit_h"](checkpoint="FastSAM-x.pt")   # FastSAM weights (None: download FastSAM-x)
    predictor = SamPredictor(sam)
    predictor.set_image(image)
    masks, scores, logits = predictor.predict(point_coords=np.array([[500, 375]]), point_labels=np.array([1]))
    records = SamAutomaticMaskGenerator(sam).generate(image)

FastSAM segments everything once per image; prompts select among those masks (:mod:`fastsam.sam.selection`), the
generator turns them into SAM's records (:mod:`fastsam.sam.automatic` maps each option to its FastSAM meaning).
SAM 2: ``SAM2ImagePredictor``, ``SAM2AutomaticMaskGenerator``, ``build_sam2`` (:mod:`fastsam.sam.sam2`).
"""

from __future__ import annotations

from .automatic import SamAutomaticMaskGenerator
from .build import (
    build_sam,
    build_sam2,
    build_sam2_hf,
    build_sam_vit_b,
    build_sam_vit_h,
    build_sam_vit_l,
    sam_model_registry,
)
from .model import SamModel
from .options import FastSAMCompatibilityWarning
from .predictor import NotApplicableError, SamPredictor
from .regions import remove_small_regions
from .sam2 import SAM2AutomaticMaskGenerator, SAM2ImagePredictor
from .stability import calculate_stability_score
from .transforms import ResizeLongestSide

__all__ = [
    "FastSAMCompatibilityWarning",
    "NotApplicableError",
    "ResizeLongestSide",
    "SAM2AutomaticMaskGenerator",
    "SAM2ImagePredictor",
    "SamAutomaticMaskGenerator",
    "SamModel",
    "SamPredictor",
    "build_sam",
    "build_sam2",
    "build_sam2_hf",
    "build_sam_vit_b",
    "build_sam_vit_h",
    "build_sam_vit_l",
    "calculate_stability_score",
    "remove_small_regions",
    "sam_model_registry",
]
