"""Segment once, prompt many times.

:class:`FastSAMPredictor` runs the network once per image (:meth:`~FastSAMPredictor.set_image`); every prompt
after that only selects among the cached masks (milliseconds, no network), through an index that answers point and
box queries. Masks held as column-major runs (what :meth:`FastSAM.predict` makes on a CPU,
:class:`~fastsam.masks.RunMasks`) stay runs, answers hold runs too (their RLE is read straight off them) and no
full-size mask is laid out unless ``masks`` is read; they are queried through a bit-packed
:class:`~fastsam.ops.mask_index.MaskIndex` while it stays small (:attr:`SegmentedImage.packed_index_max_bytes`: box
queries vectorised over the masks), else from the runs themselves (:class:`~fastsam.ops.mask_index.RunIndex`: 300
masks of a 36 MP photo hold about 50 MB instead of the 1.35 GB a bit-packed index would). Both give the same answers.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from .engine import FastSAM, ImageInput
from .masks import RunMasks, WindowedMasks
from .ops.mask_index import MaskIndex, RunIndex
from .ops.rle import tight_windows
from .prompts.boxes import select_by_boxes
from .prompts.points import POINT_MODES, PointMode, merge_official, select_best, select_ultralytics
from .prompts.validation import box_pixels, validate_boxes, validate_points
from .results import SegmentationResult

if TYPE_CHECKING:
    from .prompts.text import TextScorer

Points = Sequence[Sequence[float]] | np.ndarray
Boxes = Sequence[Sequence[float]] | np.ndarray


class SegmentedImage:
    """One image's everything-mode masks, ready for prompts.

    Every method returns a :class:`SegmentationResult` whose ``indices`` say which cached mask answers each
    prompt (-1: none, or a merged mask) and whose ``prompt_ids`` say which prompt each mask answers.
    Coordinates are pixels of the original image: points ``(P, 2)`` x, y; boxes ``(B, 4)`` x1, y1, x2, y2.
    """

    packed_index_max_bytes: int = 64 * 1024**2
    """Masks held as runs are queried through a bit-packed index up to this size (words and integral image), from
    the runs beyond (a run index answers boxes about 25x slower but holds nothing of its own)."""

    def __init__(self, result: SegmentationResult, text_scorer: TextScorer | None = None, device: str = "cpu") -> None:
        self.result = result
        self._text_scorer = text_scorer
        self._device = device
        self._index: MaskIndex | RunIndex | None = None

    @property
    def index(self) -> MaskIndex | RunIndex:
        """Point and box queries over the masks (made on first use): a bit-packed index, or the runs themselves
        (sharing them, nothing is copied) when the result holds runs and a bit-packed index would be larger than
        :attr:`packed_index_max_bytes`."""
        if self._index is None:
            runs = self.result.mask_runs()
            held = self.result.mask_windows()
            if runs is not None and _packed_index_bytes(runs.shape) > self.packed_index_max_bytes:
                self._index = runs.index()
            elif held is not None:  # packed from the box windows: the (N, H, W) array is never made
                self._index = MaskIndex.from_windows(held.windows, held.bounds, held.image_size)
            else:
                self._index = MaskIndex(self.result.masks)
        return self._index

    @property
    def image_size(self) -> tuple[int, int]:
        return self.result.image_size

    @property
    def masks(self) -> np.ndarray:
        """``(N, H, W)`` bool: the cached masks (unpacked from the index after :meth:`release_masks`; laid out anew
        from the runs at each read when held as runs, and not kept)."""
        runs = self.result.mask_runs()
        if runs is not None:
            return runs.numpy()
        if self.result.masks is None:
            return self.index.unpack(np.arange(len(self.index)))
        return self.result.masks

    def release_masks(self) -> int:
        """Keep the masks only in a compact form and return the bytes now held (masks, image, boxes, scores).

        Masks held as runs stay runs (with the bit-packed index made now when it is the one used); other masks are
        kept bit-packed in the index only (8x less than the bool array).
        """
        runs = self.result.mask_runs()
        if runs is not None:
            index = self.index
            packed = index.nbytes if isinstance(index, MaskIndex) else 0
            mask_bytes = runs.nbytes + _ARRAY_OVERHEAD * len(runs) + packed
        else:
            mask_bytes = self.index.nbytes
            self.result = dataclasses.replace(self.result, masks=None)
        image_bytes = self.result.image.nbytes if self.result.image is not None else 0
        return mask_bytes + image_bytes + self.result.boxes.nbytes + self.result.scores.nbytes

    def __len__(self) -> int:
        return len(self.result.boxes)

    def everything(self) -> SegmentationResult:
        """All masks, by decreasing score."""
        n = len(self)
        return self.pick(np.arange(n), np.full(n, -1))

    def points(
        self,
        coords: Points,
        labels: Sequence[int] | np.ndarray | None = None,
        multimask: bool = False,
        mode: PointMode = "best",
    ) -> SegmentationResult:
        """Masks for point prompts; see :mod:`fastsam.prompts.points` for the three ``mode`` semantics.

        Args:
            coords: ``(P, 2)`` x, y in pixels; points on the right/bottom edge count as the last pixel.
            labels: ``(P,)`` 1 foreground, 0 background (default: all foreground).
            multimask: with ``mode="best"``, up to three candidates per foreground point (part to whole).
            mode: ``"best"`` (one mask per foreground point), ``"official"`` (one merged mask) or
                ``"ultralytics"`` (every selected mask).

        Returns:
            ``"best"``: one entry per foreground point (an all-False mask with index -1 where no mask contains
            it), or up to three with ``multimask``. ``"official"``: one merged mask (index -1).
            ``"ultralytics"``: the selected masks in score order.
        """
        if mode not in POINT_MODES:
            raise ValueError(f"unknown point mode {mode!r}; choose one of {', '.join(POINT_MODES)}")
        pixels, label_arr = validate_points(coords, labels, self.image_size)
        if pixels.shape[0] == 0:
            return self.pick(np.zeros(0, np.int64), np.zeros(0, np.int64))
        if mode == "ultralytics":
            chosen = np.flatnonzero(select_ultralytics(self.index, pixels, label_arr))
            return self.pick(chosen, np.zeros(len(chosen), np.int64))
        if mode == "official":
            runs = self.result.mask_runs()
            masks = _RunWindowView(runs) if runs is not None else self.masks  # runs: one window decoded at a time
            merged = merge_official(masks, self.index, pixels, label_arr)
            used = self.index.contains(pixels).any(0)
            score = float(self.result.scores[used].max()) if used.any() else 0.0
            return self._merged(merged, score)
        picks = select_best(self.index, self.result.scores, pixels, label_arr, multimask)
        indices, prompt_ids = [], []
        for prompt_id, pick in enumerate(picks):
            chosen = pick if pick.size else np.array([-1])
            indices.extend(chosen.tolist())
            prompt_ids.extend([prompt_id] * len(chosen))
        return self.pick(np.array(indices, np.int64), np.array(prompt_ids, np.int64))

    def boxes(self, boxes: Boxes) -> SegmentationResult:
        """One mask per box: the highest box-region IoU (index -1 and an empty mask where none overlaps).

        Boxes may extend past the image (they are clipped) but must overlap it.
        """
        checked = validate_boxes(boxes, self.image_size)
        indices, _ = select_by_boxes(self.index, box_pixels(checked, self.image_size))
        return self.pick(indices, np.arange(len(indices)))

    def text(self, queries: str | Sequence[str], top_k: int = 1) -> SegmentationResult:
        """The ``top_k`` masks that best match each text query according to CLIP (best first per query)."""
        from .prompts.text import ClipScorer, select_by_text, validate_texts

        texts = validate_texts([queries] if isinstance(queries, str) else queries)
        if self.result.image is None:
            raise ValueError("text prompts need the image itself; this result was made without it")
        if self._text_scorer is None:  # CLIP is loaded once per process and shared
            self._text_scorer = ClipScorer(device=self._device)
        load = getattr(self._text_scorer, "load", None)
        if texts and callable(load):
            load()  # a CLIP that cannot be loaded fails now, before the masks are unpacked and cropped
        indices, _ = select_by_text(
            self.result.image, self.masks, self.result.boxes, texts, self._text_scorer, top_k=top_k
        )
        prompt_ids = np.repeat(np.arange(len(texts)), indices.shape[1] if indices.ndim == 2 else 0)
        return self.pick(indices.reshape(-1), prompt_ids)

    def prompt(
        self,
        points: Points | None = None,
        labels: Sequence[int] | np.ndarray | None = None,
        boxes: Boxes | None = None,
        texts: str | Sequence[str] | None = None,
        multimask: bool = False,
        mode: PointMode = "best",
        top_k: int = 1,
    ) -> SegmentationResult:
        """Several kinds of prompt at once.

        With ``mode="ultralytics"`` the selections are merged as ultralytics does (the union of the masks each
        prompt selects, in score order). Otherwise the answers are concatenated: boxes, then points, then texts;
        ``prompt_ids`` number the prompts in that order. No prompt at all gives everything.
        """
        if points is None and boxes is None and texts is None:
            return self.everything()
        parts = []
        if boxes is not None:
            parts.append(self.boxes(boxes))
        if points is not None:
            parts.append(self.points(points, labels, multimask=multimask, mode=mode))
        if texts is not None:
            parts.append(self.text(texts, top_k=top_k))
        if mode == "ultralytics":
            chosen = np.unique(np.concatenate([p.indices for p in parts]))
            chosen = chosen[chosen >= 0]
            return self.pick(chosen, np.zeros(len(chosen), np.int64))
        return _concatenate(parts, self.result)

    def pick(self, indices: np.ndarray, prompt_ids: np.ndarray | None = None) -> SegmentationResult:
        """Gather masks by index; -1 gives an all-False mask with a zero box and score.

        ``prompt_ids`` default to ``0, 1, 2, ...``. The answer holds its masks as box windows
        (:class:`~fastsam.masks.WindowedMasks`), or as runs (:class:`~fastsam.masks.RunMasks`) when the cached masks
        are runs: an index given many times shares one window (or one run array), so the memory follows the distinct
        masks picked, not the number of answers (50,000 boxes answered by 40 masks hold 40 windows).
        """
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        if prompt_ids is None:
            prompt_ids = np.arange(len(indices))
        r = self.result
        n = len(indices)
        valid = indices >= 0
        if not len(self):
            valid[:] = False
        boxes = np.zeros((n, 4), dtype=np.float32)
        scores = np.zeros(n, dtype=np.float32)
        if valid.any():
            boxes[valid] = r.boxes[indices[valid]]
            scores[valid] = r.scores[indices[valid]]
        runs = r.mask_runs()
        masks = _gather_runs(runs, indices, valid) if runs is not None else self._gather_windows(indices, valid)
        return SegmentationResult(
            masks, boxes, scores, r.image_size, r.file_name, r.image,
            indices=indices, prompt_ids=np.asarray(prompt_ids, dtype=np.int64).reshape(-1),
        )  # fmt: skip

    def _gather_windows(self, indices: np.ndarray, valid: np.ndarray) -> WindowedMasks:
        """The masks ``indices`` as windows (an all-False one where ``valid`` is False), each distinct mask once."""
        distinct = np.unique(indices[valid])
        distinct_windows, distinct_bounds = self._windows(distinct)
        slot = np.searchsorted(distinct, np.where(valid, indices, 0))
        empty = np.zeros((0, 0), dtype=bool)
        windows = [distinct_windows[s] if v else empty for s, v in zip(slot.tolist(), valid.tolist())]
        bounds = np.zeros((len(indices), 4), dtype=np.int64)
        if valid.any():
            bounds[valid] = distinct_bounds[slot[valid]]
        return WindowedMasks(windows, bounds, self.result.image_size)

    def _windows(self, chosen: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
        """Masks ``chosen`` (sorted distinct indices) cut to their boxes: shared with the result where it holds
        windows or the array, else unpacked from the index one mask at a time (one ``H x W`` at most at once)."""
        r = self.result
        held = r.mask_windows()
        if held is not None:
            return [held.windows[k] for k in chosen.tolist()], held.bounds[chosen]
        array = r.masks if r.masks_materialized else None  # None after release_masks, or a lazy form
        windows, bounds = [], np.zeros((len(chosen), 4), dtype=np.int64)
        for row, k in enumerate(chosen.tolist()):
            mask = array[k] if array is not None else self.index.unpack(np.array([k]))[0]
            [window], bounds[row] = tight_windows(mask[None])
            windows.append(window if array is not None else window.copy())  # a copy lets the unpacked mask go
        return windows, bounds

    def _merged(self, mask: np.ndarray, score: float) -> SegmentationResult:
        r = self.result
        windows, bounds = tight_windows(mask[None])
        masks: WindowedMasks | RunMasks = WindowedMasks(windows, bounds, r.image_size)
        if r.mask_runs() is not None:  # answers of masks held as runs are runs too
            masks = RunMasks.from_windows(masks)
        return SegmentationResult(
            masks, bounds.astype(np.float32), np.array([score], np.float32),
            r.image_size, r.file_name, r.image, indices=np.array([-1]), prompt_ids=np.array([0]),
        )  # fmt: skip


_ARRAY_OVERHEAD = 112
"""Bytes a numpy array object takes besides its data (one run array per mask), counted in the memory held."""


def _packed_index_bytes(shape: tuple[int, int, int]) -> int:
    """Size of a :class:`~fastsam.ops.mask_index.MaskIndex` of ``(N, H, W)`` masks: 64-bit words and their integral
    image."""
    n, h, w = shape
    words = (w + 63) // 64
    return 8 * n * (h * words + (h + 1) * (words + 1))


class _RunWindowView:
    """``masks[m, y1:y2, x1:x2]`` of masks held as runs, decoding mask ``m``'s window only: what
    :func:`~fastsam.prompts.points.merge_official` reads, without laying out the ``(N, H, W)`` array."""

    def __init__(self, runs: RunMasks) -> None:
        self.runs = runs
        self.shape = runs.shape

    def __getitem__(self, key: tuple[int, slice, slice]) -> np.ndarray:
        m, rows, cols = key
        r0, r1, _ = rows.indices(self.shape[1])
        c0, c1, _ = cols.indices(self.shape[2])
        x1, y1, x2, y2 = self.runs.bounds[int(m)].tolist()
        if (r0, r1, c0, c1) == (y1, y2, x1, x2):  # the mask's own box: its window as decoded
            return self.runs.window(int(m))
        out = np.zeros((max(r1 - r0, 0), max(c1 - c0, 0)), dtype=bool)
        ys, ye, xs, xe = max(r0, y1), min(r1, y2), max(c0, x1), min(c1, x2)
        if ye > ys and xe > xs:
            out[ys - r0 : ye - r0, xs - c0 : xe - c0] = self.runs.window(int(m))[ys - y1 : ye - y1, xs - x1 : xe - x1]
        return out


def _gather_runs(runs: RunMasks, indices: np.ndarray, valid: np.ndarray) -> RunMasks:
    """The masks ``indices`` of ``runs`` (an empty mask where ``valid`` is False), sharing the run arrays."""
    if valid.all():
        return runs.select(indices)
    distinct, slot = np.unique(indices[valid], return_inverse=True)
    empty = np.zeros(0, dtype=runs.runs[0].dtype if len(runs) else np.int64)
    base = RunMasks([*(runs.runs[k] for k in distinct.tolist()), empty], runs.image_size)
    positions = np.full(len(indices), len(distinct), dtype=np.int64)
    positions[valid] = slot.reshape(-1)
    return base.select(positions)


def _held_windows(result: SegmentationResult) -> tuple[list[np.ndarray], np.ndarray]:
    held = result.mask_windows()
    return (list(held.windows), held.bounds) if held is not None else tight_windows(result.masks)


def _concatenate(parts: list[SegmentationResult], base: SegmentationResult) -> SegmentationResult:
    if len(parts) == 1:
        return parts[0]
    runs = [part.mask_runs() for part in parts]
    offsets, prompt_ids, windows, bounds = 0, [], [], []
    for part in parts:
        prompt_ids.append(part.prompt_ids + offsets)
        offsets += int(part.prompt_ids.max()) + 1 if len(part) else 0
    if all(r is not None for r in runs):  # answers of masks held as runs: the runs, nothing decoded
        masks: WindowedMasks | RunMasks = RunMasks([a for r in runs for a in r.runs], base.image_size)
    else:
        for part in parts:
            part_windows, part_bounds = _held_windows(part)
            windows.extend(part_windows)
            bounds.append(np.asarray(part_bounds, dtype=np.int64).reshape(-1, 4))
        masks = WindowedMasks(windows, np.concatenate(bounds), base.image_size)
    return SegmentationResult(
        masks, np.concatenate([p.boxes for p in parts]),
        np.concatenate([p.scores for p in parts]), base.image_size, base.file_name, base.image,
        indices=np.concatenate([p.indices for p in parts]), prompt_ids=np.concatenate(prompt_ids),
    )  # fmt: skip


class FastSAMPredictor:
    """Run the network once per image, then answer any number of prompts from the cached masks.

    Example::

        predictor = FastSAMPredictor(FastSAM("FastSAM-x"))
        predictor.set_image("dog.jpg")
        dog = predictor.points([[420, 300]])            # one mask per foreground point
        parts = predictor.points([[420, 300]], multimask=True)
        crate = predictor.boxes([[10, 20, 300, 400]])   # xyxy pixels
        both = predictor.prompt(points=[[420, 300], [50, 50]], labels=[1, 0], boxes=[[10, 20, 300, 400]])

        predictor.set_images(["a.jpg", "b.jpg"])        # several images: say which one each prompt is for
        b = predictor.points([[10, 20]], image=1)

    The prompt methods answer for the image set last with :meth:`set_image` / :meth:`set_result`. After
    :meth:`set_images` with several images they need ``image=`` (a position in that list); without it they raise
    ``ValueError`` instead of guessing. The :class:`SegmentedImage` objects that :meth:`set_images` returns can be
    prompted directly too.

    Args:
        model: a :class:`FastSAM`, or anything :class:`FastSAM` accepts (a name or a weights path).
        imgsz, conf, iou, max_det, retina: everything-mode settings (see :meth:`FastSAM.predict`).
        text_scorer: scores crops against texts (default: CLIP ViT-B/32, loaded on the first text prompt; use
            ``ClipScorer(checkpoint=PATH)`` for a local weights file).
    """

    def __init__(
        self,
        model: FastSAM | str | os.PathLike = "FastSAM-x",
        imgsz: int = 1024,
        conf: float = 0.4,
        iou: float = 0.9,
        max_det: int = 300,
        retina: bool = True,
        text_scorer: TextScorer | None = None,
        device: str | None = "auto",
    ) -> None:
        self.model = model if isinstance(model, FastSAM) else FastSAM(model, device=device)
        self.settings = {"imgsz": imgsz, "conf": conf, "iou": iou, "max_det": max_det, "retina": retina}
        self.text_scorer = text_scorer
        self.images: list[SegmentedImage] = []

    @property
    def current(self) -> SegmentedImage | None:
        """The image the prompt methods answer for: the only one held, or None when none or several are held."""
        return self.images[0] if len(self.images) == 1 else None

    def set_image(self, image: ImageInput) -> SegmentedImage:
        """Segment one image (the slow step) and make it the target of the prompt methods."""
        [session] = self.set_images([image])
        return session

    def set_images(self, images: Sequence[ImageInput], batch_size: int = 8) -> list[SegmentedImage]:
        """Segment several images in batches; returns one :class:`SegmentedImage` each, in order.

        The predictor then holds all of them: with more than one, prompt methods need ``image=i``.
        """
        results = self.model.predict(list(images), batch_size=batch_size, **self.settings)
        self.images = [SegmentedImage(r, self.text_scorer, str(self.model.device)) for r in results]
        return list(self.images)

    def set_result(self, result: SegmentationResult) -> SegmentedImage:
        """Prompt an existing everything-mode result (no network run)."""
        self.images = [SegmentedImage(result, self.text_scorer, str(self.model.device))]
        return self.images[0]

    def _session(self, image: int | None) -> SegmentedImage:
        n = len(self.images)
        if n == 0:
            raise RuntimeError("call set_image(image) before prompting")
        if image is None:
            if n > 1:
                raise ValueError(
                    f"the predictor holds {n} images (from set_images): say which one this prompt is for with "
                    f"image=0..{n - 1}, or prompt the SegmentedImage that set_images returned for it"
                )
            return self.images[0]
        if isinstance(image, bool) or not isinstance(image, (int, np.integer)) or not -n <= image < n:
            raise ValueError(f"image={image!r} is not a position among the {n} image(s) held: use 0..{n - 1}")
        return self.images[int(image)]

    def everything(self, image: int | None = None) -> SegmentationResult:
        """All masks of the image (``image``: which one, after :meth:`set_images` with several)."""
        return self._session(image).everything()

    def points(self, coords: Points, labels: Sequence[int] | np.ndarray | None = None, multimask: bool = False,
               mode: PointMode = "best", image: int | None = None) -> SegmentationResult:  # fmt: skip
        """See :meth:`SegmentedImage.points`; ``image``: which image, after :meth:`set_images` with several."""
        return self._session(image).points(coords, labels, multimask, mode)

    def boxes(self, boxes: Boxes, image: int | None = None) -> SegmentationResult:
        """See :meth:`SegmentedImage.boxes`; ``image``: which image, after :meth:`set_images` with several."""
        return self._session(image).boxes(boxes)

    def text(self, queries: str | Sequence[str], top_k: int = 1, image: int | None = None) -> SegmentationResult:
        """See :meth:`SegmentedImage.text`; ``image``: which image, after :meth:`set_images` with several."""
        return self._session(image).text(queries, top_k)

    def prompt(self, image: int | None = None, **kwargs) -> SegmentationResult:
        """See :meth:`SegmentedImage.prompt`; ``image``: which image, after :meth:`set_images` with several."""
        return self._session(image).prompt(**kwargs)
