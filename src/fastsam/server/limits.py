"""What one request may ask of the server, checked before any work is done.

Counts (points, boxes, texts, ``top_k``, overlay indices) are part of the request schemas (``maxItems``,
``maximum``) and refused with 422; a JSON body larger than ``max_json_bytes`` is refused with 413 before it is
read; a prompt or overlay request whose estimated memory (:func:`estimate_prompt_bytes`) exceeds
``max_request_bytes`` is refused with 413. Every message names the limit and the ``fastsam serve`` option that
sets it.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from ..allocator import MiB

OPTION = {
    "max_points": "--max-points",
    "max_boxes": "--max-boxes",
    "max_texts": "--max-texts",
    "max_text_chars": "--max-text-chars",
    "max_top_k": "--max-top-k",
    "max_indices": "--max-indices",
    "max_json_bytes": "--max-json-kb",
    "max_request_bytes": "--max-request-mb",
    "max_imgsz": "--max-imgsz",
}
"""The ``fastsam serve`` option that sets each limit (error messages name it)."""


@dataclass(frozen=True)
class Limits:
    """Per-request limits of the HTTP API (defaults: what an annotation front-end needs, with room to spare).

    Attributes:
        max_points: point prompts per request.
        max_boxes: box prompts per request.
        max_texts: text queries per request.
        max_text_chars: characters per text query.
        max_top_k: masks per text query.
        max_indices: mask indices per overlay request.
        max_json_bytes: size of a JSON request body (prompt, overlay), in bytes.
        max_request_bytes: memory one prompt or overlay request may need, in bytes (see
            :func:`estimate_prompt_bytes`).
        max_imgsz: largest network input size an upload may ask for (``imgsz``, pixels, multiple of 32).
    """

    max_points: int = 1000
    max_boxes: int = 1000
    max_texts: int = 16
    max_text_chars: int = 500
    max_top_k: int = 20
    max_indices: int = 1000
    max_json_bytes: int = 1 * MiB
    max_request_bytes: int = 1024 * MiB
    max_imgsz: int = 4096

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{OPTION[f.name]} must be a positive whole number, got {value!r}")
        if self.max_imgsz < 32 or self.max_imgsz % 32:
            raise ValueError(f"--max-imgsz must be a multiple of 32 of at least 32, got {self.max_imgsz}")


def answer_count(
    n_points: int, n_boxes: int, n_texts: int, top_k: int, multimask: bool, mode: str, n_masks: int
) -> int:
    """How many masks a prompt request can answer at most (one per box, one or three per point, ``top_k`` per text)."""
    if mode == "official":
        per_points = 1 if n_points else 0
    elif mode == "ultralytics":
        per_points = min(n_points, n_masks)
    else:
        per_points = n_points * (3 if multimask else 1)
    total = n_boxes + per_points + n_texts * top_k
    return min(total, n_masks) if mode == "ultralytics" else total


def estimate_prompt_bytes(
    image_hw: tuple[int, int],
    n_masks: int,
    n_points: int = 0,
    n_boxes: int = 0,
    n_texts: int = 0,
    top_k: int = 1,
    multimask: bool = False,
    mode: str = "best",
    overlay: bool = False,
    n_indices: int = 0,
    held_as_runs: bool = False,
) -> int:
    """Memory a prompt (or overlay) request on one segmented image may need, in bytes: an upper-bound estimate.

    Counted: the distinct answer masks (a window is at most the image: ``H x W`` bytes each; repeated answers share
    theirs), one mask unpacked at a time, the ``(prompts, masks)`` selection tables of points and boxes, every mask
    laid out for text prompts (CLIP crops) and ``mode="official"`` (a merged mask), per-answer arrays and the JSON
    answer (a mask's RLE is taken as ``6 (H + W)`` bytes), and the rendered PNG for an overlay. Masks held as runs
    (``held_as_runs``, see :class:`~fastsam.masks.RunMasks`) are answered from the runs and decoded one window at a
    time (overlays, ``mode="official"``): one mask's window counts instead of every answer's.

    Args:
        image_hw: ``(H, W)`` of the image, pixels.
        n_masks: masks the image has (everything mode).
        n_points, n_boxes, n_texts, top_k, multimask, mode: the prompt (see :class:`~fastsam.predictor.SegmentedImage`).
        overlay: whether a PNG is rendered.
        n_indices: overlay ``indices`` given (then the prompt is ignored).
        held_as_runs: whether the image's masks are held as runs.
    """
    h, w = int(image_hw[0]), int(image_hw[1])
    pixels = h * w
    if n_indices:
        answers = n_indices
    elif n_points or n_boxes or n_texts:
        answers = answer_count(n_points, n_boxes, n_texts, top_k, multimask, mode, n_masks)
    else:
        answers = n_masks  # no prompt: every mask
    distinct = min(answers, n_masks) + (1 if mode == "official" and n_points else 0)
    total = (1 if held_as_runs else distinct) * pixels + 2 * pixels
    total += 24 * (n_points + n_boxes) * max(n_masks, 1)
    if n_texts or (mode == "official" and n_points and not held_as_runs):
        total += 4 * n_masks * pixels
    total += answers * (600 + 2 * 6 * (h + w))
    if overlay:  # the blend in float32 (12 bytes a pixel) and its palette lookup (12), labels (4), the RGB out (3)
        total += 32 * pixels
    return total


def describe_bytes(n: int) -> str:
    """``n`` bytes for a message: ``"12.3 MB"`` (MiB), ``"1.50 GB"`` (GiB), or bytes/kB below a MiB."""
    if n >= 1024 * MiB:
        return f"{n / (1024 * MiB):.2f} GB"
    if n >= MiB:
        return f"{n / MiB:.1f} MB"
    if n >= 1024:
        return f"{n / 1024:.0f} kB"
    return f"{n} bytes"
