"""Zero-shot class assignment: score every mask against class prompts (and background prompts) with CLIP.

Every mask is cropped to its box on a black background (:func:`fastsam.prompts.text.mask_crops`) and all crops of
an image are scored against every prompt in ONE scorer call. The scores become probabilities with a softmax over
the prompts (CLIP's logit scale, 100); a mask takes the class whose prompt wins, unless a background prompt wins or
the winner's probability is below ``threshold``: then it matches no class and is dropped.

The scorer is pluggable: any :class:`~fastsam.prompts.text.TextScorer` (a callable ``(crops, texts) -> (T, C)``
similarities), e.g. :class:`~fastsam.prompts.text.ClipScorer`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..prompts.text import TextScorer, mask_crops

__all__ = ["BACKGROUND_PROMPTS", "TEMPLATE", "ClassAssignment", "assign_classes", "parse_classes"]

TEMPLATE = "a photo of a {}."
"""How a class name becomes a prompt (CLIP's own zero-shot template)."""

BACKGROUND_PROMPTS: tuple[str, ...] = (
    "a photo of the background.",
    "a photo of the ground.",
    "a photo of a floor.",
    "a photo of a wall.",
    "a photo of the sky.",
    "a photo of grass.",
    "a photo of a road.",
    "a close-up photo of a texture.",
    "a blurry photo of nothing in particular.",
)
"""Generic prompts for what is no object: a mask closest to one of these is dropped."""

LOGIT_SCALE = 100.0
"""CLIP's trained temperature: similarities are multiplied by it before the softmax."""


@dataclass(frozen=True)
class ClassAssignment:
    """The class of each mask.

    Attributes:
        class_ids: ``(N,)`` int64 index into the class list, ``-1`` for a mask that matches no class.
        scores: ``(N,)`` float32 softmax probability of the assigned class in [0, 1] (0 where ``-1``).
    """

    class_ids: np.ndarray
    scores: np.ndarray


def parse_classes(text: str) -> list[str]:
    """``"person, car,dog"`` -> ``["person", "car", "dog"]``.

    Raises:
        ValueError: no name, an empty name, or a name given twice (names are compared without case).
    """
    names = [n.strip() for n in text.split(",")]
    if not any(names):
        raise ValueError("--classes is empty: give comma-separated class names such as 'person,car,dog'")
    if not all(names):
        raise ValueError(f"--classes {text!r} has an empty name: remove the extra comma")
    seen: set[str] = set()
    for name in names:
        if name.lower() in seen:
            raise ValueError(f"--classes names {name!r} twice: give each class once")
        seen.add(name.lower())
    return names


def assign_classes(
    image: np.ndarray,
    masks: np.ndarray,
    boxes: np.ndarray,
    classes: Sequence[str],
    scorer: TextScorer,
    threshold: float = 0.25,
    background: Sequence[str] = BACKGROUND_PROMPTS,
    template: str = TEMPLATE,
) -> ClassAssignment:
    """Give each mask one of ``classes``, or none (-1).

    Args:
        image: ``(H, W, 3)`` uint8 RGB.
        masks: ``(N, H, W)`` bool.
        boxes: ``(N, 4)`` float xyxy pixels, one per mask (the crop of each mask).
        classes: ``K`` class names; each becomes ``template.format(name)``.
        scorer: scores ``C`` crops against ``T`` texts as a ``(T, C)`` matrix (higher: better match); called once.
        threshold: the least softmax probability, over the ``K`` class and the background prompts, that the
            winning class needs.
        background: prompts for "no object" (may be empty).
        template: a format string with one ``{}`` for the class name.

    Returns:
        A :class:`ClassAssignment`. With no masks the scorer is not called.

    Raises:
        ValueError: no classes, a threshold outside [0, 1], or a scorer answer that is not ``(K + B, N)``.
    """
    classes = list(classes)
    if not classes:
        raise ValueError("assign_classes needs at least one class name")
    if not 0.0 <= float(threshold) <= 1.0:
        raise ValueError(f"the text threshold is a probability in [0, 1], got {threshold}")
    n = int(np.asarray(masks).shape[0]) if np.asarray(masks).ndim == 3 else 0
    if n == 0:
        return ClassAssignment(np.zeros(0, np.int64), np.zeros(0, np.float32))
    texts = [template.format(name) for name in classes] + list(background)
    crops = mask_crops(image, masks, boxes)
    similarity = np.asarray(scorer(crops, texts), dtype=np.float64)
    if similarity.shape != (len(texts), n):
        raise ValueError(
            f"the text scorer returned a {similarity.shape} matrix for {len(texts)} prompt(s) and {n} crop(s); "
            f"expected ({len(texts)}, {n})"
        )
    logits = LOGIT_SCALE * similarity
    logits -= logits.max(axis=0, keepdims=True)
    probs = np.exp(logits)
    probs /= probs.sum(axis=0, keepdims=True)
    winner = probs.argmax(axis=0)  # ties: the first prompt, i.e. classes before background
    best = probs[winner, np.arange(n)]
    keep = (winner < len(classes)) & (best >= threshold)
    class_ids = np.where(keep, winner, -1).astype(np.int64)
    scores = np.where(keep, best, 0.0).astype(np.float32)
    return ClassAssignment(class_ids, scores)
