"""Text prompts: pick, among masks already found, the ones that best match a text query according to CLIP.

The selection logic (:func:`select_by_text`) is independent of CLIP: it takes any :class:`TextScorer`, a callable
mapping image crops and texts to a ``(T, C)`` similarity matrix. :class:`ClipScorer` is the open_clip-backed scorer
(optional extra ``text``: ``pip install open_clip_torch``). Its model is loaded lazily on first use and cached
process-wide, so creating several scorers with the same arguments, or calling one many times, loads CLIP once.

Crops are RGB uint8 throughout (the image convention of this package); they are handed to CLIP's preprocessing
as RGB PIL images, never channel-swapped.
"""

from __future__ import annotations

import difflib
import math
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Protocol, runtime_checkable

import numpy as np

from ..errors import FastSAMError

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = [
    "ClipScorer",
    "ClipUnavailableError",
    "TextScorer",
    "clear_clip_cache",
    "mask_crops",
    "select_by_text",
    "validate_texts",
]

_INSTALL_HINT = 'pip install open_clip_torch  (or: pip install "fastsam[text]")'


class ClipUnavailableError(FastSAMError):
    """CLIP cannot be used: open_clip is not installed, the model name is unknown, or its weights cannot be loaded."""


@runtime_checkable
class TextScorer(Protocol):
    """Anything that scores image crops against texts (higher = better match)."""

    def __call__(self, crops: list[np.ndarray], texts: list[str]) -> np.ndarray:
        """Score every crop against every text.

        Args:
            crops: ``C`` RGB uint8 arrays, each ``(h, w, 3)`` (sizes may differ).
            texts: ``T`` non-empty strings.

        Returns:
            ``(T, C)`` float32 similarity matrix; row ``t`` scores every crop against ``texts[t]``.
        """
        ...


# --------------------------------------------------------------------------------------------------------------
# CLIP loading (process-wide cache)
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _ClipBundle:
    """A loaded CLIP model in eval mode, its evaluation preprocessing transform and its tokenizer."""

    model: Any
    preprocess: Callable[[Any], Any]
    tokenizer: Callable[[list[str]], Any]
    device: Any


_CLIP_CACHE: dict[tuple[str, str, str | None, str], _ClipBundle] = {}
_CLIP_LOCK = threading.Lock()
_HUB_UNREACHABLE: str | None = None
"""Why the Hugging Face hub could not be reached, once it could not: later loads look in the local cache only."""

_PROBE_TIMEOUT_S = 5.0
"""Seconds to wait for the hub's first answer (``$HF_HUB_ETAG_TIMEOUT`` overrides it)."""


def clear_clip_cache() -> None:
    """Forget every CLIP model loaded by :class:`ClipScorer` in this process (frees their memory once unreferenced),
    and forget that the hub was unreachable (the next load tries the network again).

    Scorers that already used a model keep their reference to it; new scorers load again.
    """
    global _HUB_UNREACHABLE
    with _CLIP_LOCK:
        _CLIP_CACHE.clear()
        _HUB_UNREACHABLE = None


def _import_open_clip() -> Any:
    try:
        import open_clip
    except ImportError as err:
        raise ClipUnavailableError(
            f"text prompts need the open_clip package, which is not installed ({err}). Install it with: {_INSTALL_HINT}"
        ) from None
    return open_clip


def _hf_cache_location() -> str:
    """Where huggingface_hub (used by open_clip for downloads) caches files, for error messages."""
    try:
        from huggingface_hub import constants

        return str(constants.HF_HUB_CACHE)
    except Exception:  # pragma: no cover - huggingface_hub missing or changed
        home = os.environ.get("HF_HOME", os.path.join("~", ".cache", "huggingface"))
        return os.path.join(home, "hub")


def _hub_offline() -> bool:
    """True when huggingface_hub is in offline mode (``HF_HUB_OFFLINE=1``; read live, so tests can switch it)."""
    try:
        from huggingface_hub import constants
    except ImportError:  # pragma: no cover - open_clip depends on huggingface_hub
        return True
    return bool(getattr(constants, "HF_HUB_OFFLINE", False))


def _short(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    first = text[0] if text else ""
    if len(first) > 200:
        first = first[:200] + "..."
    return f"{type(err).__name__}: {first}" if first else type(err).__name__


@dataclass(frozen=True)
class _HubFiles:
    """Where a pretrained tag's weights live on the Hugging Face hub: the repository and its candidate files
    (safetensors first, as open_clip prefers them)."""

    repo_id: str
    names: tuple[str, ...]

    @property
    def cache_folder(self) -> str:
        return os.path.join(_hf_cache_location(), "models--" + self.repo_id.replace("/", "--"))

    def url(self) -> str:
        from huggingface_hub import constants

        return f"{constants.ENDPOINT.rstrip('/')}/{self.repo_id}"


def _hub_files(open_clip: Any, tag_cfg: dict) -> _HubFiles | None:
    """The hub files open_clip downloads for a tag, or None for a tag fetched from a plain URL."""
    hub = tag_cfg.get("hf_hub", "")
    if not hub or not open_clip.pretrained.has_hf_hub():
        return None
    repo_id, name = os.path.split(hub)
    name = name or "open_clip_pytorch_model.bin"
    names = []
    if name == "open_clip_pytorch_model.bin":
        names.append("open_clip_model.safetensors")
    elif name.endswith((".bin", ".pth")):
        names.append(name[:-4] + ".safetensors")
    return _HubFiles(repo_id, (*names, name))


def _cached(files: _HubFiles) -> str | None:
    """The tag's weights file in the local hub cache, if there (no network)."""
    from huggingface_hub import try_to_load_from_cache

    for name in files.names:
        found = try_to_load_from_cache(files.repo_id, name)
        if isinstance(found, str) and os.path.isfile(found):
            return found
    return None


def _probe(files: _HubFiles) -> str | None:
    """One quick request to the hub, without retries: None if it answers (any HTTP status), else why not."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    try:
        from huggingface_hub.errors import HfHubHTTPError
    except ImportError:  # pragma: no cover - older huggingface_hub
        from huggingface_hub.utils import HfHubHTTPError
    try:
        timeout = float(os.environ.get("HF_HUB_ETAG_TIMEOUT") or _PROBE_TIMEOUT_S)
    except ValueError:
        timeout = _PROBE_TIMEOUT_S
    try:
        get_hf_file_metadata(hf_hub_url(files.repo_id, files.names[-1]), timeout=timeout)
    except HfHubHTTPError:
        return None  # the hub answered (e.g. 404 for one candidate): open_clip's download handles it
    except Exception as err:  # connection refused, DNS failure, timeout, proxy: no answer
        return _short(err)
    return None


def _weights_missing_message(model_name: str, pretrained: str, detail: str, files: _HubFiles | None) -> str:
    """One line: what is missing, why, the file expected, where it goes, and how to pass it instead."""
    if files is None:
        where = (
            f"open_clip keeps weights fetched by URL in ~/.cache/clip and hub downloads in the Hugging Face hub "
            f"cache ({_hf_cache_location()}; $HF_HOME or $HF_HUB_CACHE move it)"
        )
        file_hint = "a local copy of these weights"
    else:
        alternatives = " or ".join(files.names)
        where = (
            f"the file expected is {alternatives} from {files.url()}, kept in the Hugging Face hub cache under "
            f"{files.cache_folder} ($HF_HOME or $HF_HUB_CACHE move the cache); to fill it, run "
            f"'hf download {files.repo_id} {files.names[0]}' on a machine with internet and copy its "
            f"models--{files.repo_id.replace('/', '--')} folder there"
        )
        file_hint = f"a downloaded {files.names[0]}"
    return (
        f"CLIP weights for model '{model_name}' with pretrained='{pretrained}' could not be found in the local cache "
        f"and could not be downloaded ({detail}); {where}. Or pass {file_hint} directly: --clip-checkpoint PATH "
        f"(fastsam segment / fastsam serve), or ClipScorer(checkpoint=PATH) in Python."
    )


def _tag_weights(open_clip: Any, model_name: str, pretrained: str, tag_cfg: dict) -> str:
    """The local weights file of a pretrained tag: from the cache, else downloaded. Raises ClipUnavailableError.

    Fails fast offline: with ``HF_HUB_OFFLINE`` set, or once the hub has not answered one quick request (no
    retries), only the local cache is looked at, for the rest of the process.
    """
    global _HUB_UNREACHABLE
    files = _hub_files(open_clip, tag_cfg)
    if files is not None:
        found = _cached(files)
        if found is not None:
            return found
        if _hub_offline():
            raise ClipUnavailableError(_weights_missing_message(model_name, pretrained, "HF_HUB_OFFLINE is set", files))
        if _HUB_UNREACHABLE is None:
            _HUB_UNREACHABLE = _probe(files)
        if _HUB_UNREACHABLE is not None:
            detail = f"the Hugging Face hub is unreachable: {_HUB_UNREACHABLE}"
            raise ClipUnavailableError(_weights_missing_message(model_name, pretrained, detail, files))
    try:
        return str(open_clip.download_pretrained(tag_cfg))
    except Exception as err:
        raise ClipUnavailableError(_weights_missing_message(model_name, pretrained, _short(err), files)) from None


def _load_clip(model_name: str, pretrained: str, checkpoint: str | None, device: torch.device) -> _ClipBundle:
    """Build the CLIP model, its eval transform and tokenizer through open_clip. Raises ClipUnavailableError."""
    open_clip = _import_open_clip()

    has_schema = model_name.startswith(("hf-hub:", "local-dir:"))
    weights: str | None = None  # the local file to load
    tag_cfg: dict = {}
    force_quick_gelu = False
    if not has_schema:
        clean_name = model_name.replace("/", "-")
        model_cfg = open_clip.get_model_config(clean_name)
        if model_cfg is None:
            close = difflib.get_close_matches(clean_name, open_clip.list_models(), n=3)
            hint = f"Did you mean {', '.join(repr(c) for c in close)}? " if close else ""
            raise ClipUnavailableError(
                f"unknown CLIP model name '{model_name}' (pretrained='{pretrained}'): open_clip has no config for it. "
                f"{hint}FastSAM uses 'ViT-B-32'; open_clip.list_models() lists every known name."
            )
        is_tag = bool(open_clip.is_pretrained_cfg(clean_name, pretrained))
        tags = ", ".join(open_clip.list_pretrained_tags_by_model(clean_name)) or "none"
        if checkpoint is not None:
            if not is_tag:
                raise ClipUnavailableError(
                    f"checkpoint={checkpoint} is loaded with the settings of an open_clip pretrained tag, and "
                    f"pretrained='{pretrained}' is not one for CLIP model '{model_name}' (known tags: {tags})"
                )
            if not os.path.isfile(checkpoint):
                raise ClipUnavailableError(
                    f"CLIP checkpoint file not found: {checkpoint} (given as --clip-checkpoint or checkpoint=): "
                    f"pass an existing open_clip weights file for '{model_name}' pretrained='{pretrained}'"
                )
            weights = checkpoint
        elif not is_tag and not os.path.isfile(pretrained):
            raise ClipUnavailableError(
                f"pretrained='{pretrained}' for CLIP model '{model_name}' is neither an open_clip pretrained tag "
                f"(known tags for this model: {tags}) nor an existing file: the weights could not be found. Pass a "
                f"known tag (downloaded into the Hugging Face hub cache, {_hf_cache_location()}) or a local "
                f"checkpoint as pretrained=/path/to/weights."
            )
        elif not is_tag:
            weights = pretrained
        if is_tag:
            tag_cfg = open_clip.get_pretrained_cfg(clean_name, pretrained)
            # Weights trained with QuickGELU (e.g. OpenAI's) must run with QuickGELU; open_clip only warns otherwise.
            force_quick_gelu = bool(tag_cfg.get("quick_gelu", False)) and not model_cfg.get("quick_gelu", False)
            if weights is None:
                weights = _tag_weights(open_clip, model_name, pretrained, tag_cfg)

    try:
        # A tag's weights are passed as their local file with the tag's preprocessing, so that open_clip does not
        # look them up on the hub again.
        model, _, preprocess = open_clip.create_model_and_transforms(
            model_name,
            pretrained=weights,
            device=device,
            force_quick_gelu=force_quick_gelu,
            image_mean=tag_cfg.get("mean"),
            image_std=tag_cfg.get("std"),
            image_interpolation=tag_cfg.get("interpolation"),
            image_resize_mode=tag_cfg.get("resize_mode"),
        )
    except Exception as err:
        if weights is not None:
            raise ClipUnavailableError(
                f"could not load the checkpoint file {weights} into CLIP model '{model_name}' "
                f"({_short(err)}). Check that the file holds weights for this architecture (an open_clip state "
                f"dict, .pt/.bin/.safetensors)."
            ) from None
        raise ClipUnavailableError(_weights_missing_message(model_name, pretrained, _short(err), None)) from None
    try:
        tokenizer = open_clip.get_tokenizer(model_name)
    except Exception as err:
        raise ClipUnavailableError(
            f"could not load the tokenizer of CLIP model '{model_name}' (pretrained='{pretrained}'): {_short(err)}"
        ) from None
    model.eval()
    return _ClipBundle(model=model, preprocess=preprocess, tokenizer=tokenizer, device=device)


def _get_clip(model_name: str, pretrained: str, checkpoint: str | None, device: torch.device) -> _ClipBundle:
    """The cached bundle for these arguments, loading it (once per process) if needed."""
    pretrained_key = os.path.abspath(pretrained) if os.path.isfile(pretrained) else pretrained
    checkpoint_key = os.path.abspath(checkpoint) if checkpoint is not None else None
    key = (model_name, pretrained_key, checkpoint_key, str(device))
    with _CLIP_LOCK:
        bundle = _CLIP_CACHE.get(key)
        if bundle is None:
            bundle = _load_clip(model_name, pretrained, checkpoint, device)
            _CLIP_CACHE[key] = bundle
    return bundle


def _check_crop(i: int, crop: np.ndarray) -> np.ndarray:
    arr = np.asarray(crop)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"crop {i} must be an RGB uint8 (h, w, 3) array with h, w >= 1, got {arr.dtype} {arr.shape}")
    return np.ascontiguousarray(arr)


class ClipScorer:
    """Scores RGB crops against texts with an open_clip CLIP model (cosine similarity of L2-normalised features).

    Args:
        model_name: open_clip architecture name, e.g. ``"ViT-B-32"`` (FastSAM's choice), or an ``hf-hub:`` /
            ``local-dir:`` identifier (then ``pretrained`` is ignored).
        pretrained: open_clip pretrained tag (e.g. ``"openai"``; downloaded into the Hugging Face hub cache
            when online) or a path to a local checkpoint file (open_clip state dict, ``.pt``/``.bin``/
            ``.safetensors``). For tags trained with QuickGELU (``openai``) QuickGELU is used, as in the original
            OpenAI model. A file given as ``pretrained`` gets the model's default settings (for OpenAI weights
            that means ``model_name="ViT-B-32-quickgelu"``); prefer ``checkpoint``.
        checkpoint: a local file holding the weights of the ``pretrained`` tag (an open_clip state dict,
            ``.safetensors``/``.bin``/``.pt``, e.g. the hub's ``open_clip_model.safetensors``): loaded with the tag's
            settings (QuickGELU, preprocessing) and without any network access. The CLI's ``--clip-checkpoint``.
        device: torch device the model runs on.
        batch_size: crops per image-encoder forward pass.

    Nothing is loaded at construction; the model, transform and tokenizer are loaded on first use and shared by
    every scorer with the same ``(model_name, pretrained, checkpoint, device)`` in the process.

    Offline, loading fails fast: the local Hugging Face hub cache is looked at first; with ``HF_HUB_OFFLINE`` set,
    or once the hub has not answered one quick request (``$HF_HUB_ETAG_TIMEOUT`` s, default 5), no download is
    tried again in this process, so every later load fails at once with the same message.

    Raises (on first use):
        ClipUnavailableError (a FastSAMError): open_clip missing, unknown model name, weights not found /
            not downloadable / not loadable (the message names the file expected and where it goes).
    """

    def __init__(
        self,
        model_name: str = "ViT-B-32",
        pretrained: str = "openai",
        device: str | torch.device = "cpu",
        batch_size: int = 64,
        checkpoint: str | os.PathLike | None = None,
    ) -> None:
        import torch

        if not isinstance(model_name, str) or not model_name:
            raise ValueError(f"model_name must be a non-empty string, got {model_name!r}")
        if not isinstance(pretrained, (str, os.PathLike)) or not str(pretrained):
            raise ValueError(f"pretrained must be an open_clip tag or a file path, got {pretrained!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        if checkpoint is not None and (not isinstance(checkpoint, (str, os.PathLike)) or not str(checkpoint)):
            raise ValueError(f"checkpoint must be a file path or None, got {checkpoint!r}")
        self.model_name = model_name
        self.pretrained = os.fspath(pretrained)
        self.checkpoint = os.fspath(os.path.expanduser(checkpoint)) if checkpoint is not None else None
        self.device = torch.device(device)
        self.batch_size = batch_size
        self._bundle: _ClipBundle | None = None

    def __repr__(self) -> str:
        return (
            f"ClipScorer(model_name={self.model_name!r}, pretrained={self.pretrained!r}, "
            f"checkpoint={self.checkpoint!r}, device={str(self.device)!r}, batch_size={self.batch_size})"
        )

    def _load(self) -> _ClipBundle:
        if self._bundle is None:
            self._bundle = _get_clip(self.model_name, self.pretrained, self.checkpoint, self.device)
        return self._bundle

    def load(self) -> ClipScorer:
        """Load (or fetch from the process-wide cache) the model now instead of on first use; returns ``self``.

        Useful to fail early: raises ClipUnavailableError exactly as the first call would.
        """
        self._load()
        return self

    @property
    def model(self) -> torch.nn.Module:
        """The CLIP model (eval mode, on ``device``); loads it on first access."""
        return self._load().model

    @property
    def preprocess(self) -> Callable[[Any], torch.Tensor]:
        """CLIP's evaluation transform: RGB PIL image -> ``(3, S, S)`` float32 normalised tensor."""
        return self._load().preprocess

    @property
    def tokenizer(self) -> Callable[[list[str]], torch.Tensor]:
        """CLIP's tokenizer: ``T`` strings -> ``(T, context_length)`` int64 token ids."""
        return self._load().tokenizer

    def __call__(self, crops: list[np.ndarray], texts: list[str]) -> np.ndarray:
        """Cosine similarity of every text with every crop.

        Args:
            crops: ``C`` RGB uint8 ``(h, w, 3)`` arrays.
            texts: ``T`` strings.

        Returns:
            ``(T, C)`` float32 cosine similarities in ``[-1, 1]``. With ``T == 0`` or ``C == 0`` an empty matrix
            is returned without loading CLIP.
        """
        import torch
        from PIL import Image

        crops = [_check_crop(i, c) for i, c in enumerate(crops)]
        texts = list(texts)
        if not crops or not texts:
            return np.zeros((len(texts), len(crops)), dtype=np.float32)
        bundle = self._load()
        model = bundle.model
        dtype = next(model.parameters()).dtype
        with torch.inference_mode():
            tokens = bundle.tokenizer(texts).to(bundle.device)
            text_features = model.encode_text(tokens).float()
            text_features = torch.nn.functional.normalize(text_features, dim=-1)
            image_features = []
            for start in range(0, len(crops), self.batch_size):
                batch = torch.stack(
                    [bundle.preprocess(Image.fromarray(crop)) for crop in crops[start : start + self.batch_size]]
                )
                features = model.encode_image(batch.to(device=bundle.device, dtype=dtype)).float()
                image_features.append(torch.nn.functional.normalize(features, dim=-1))
            similarity = text_features @ torch.cat(image_features).T
        return similarity.cpu().numpy().astype(np.float32, copy=False)


# --------------------------------------------------------------------------------------------------------------
# Crops and selection (pure numpy)
# --------------------------------------------------------------------------------------------------------------


def _check_image_masks_boxes(image: np.ndarray, masks: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, ...]:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be an RGB uint8 (H, W, 3) array, got {image.dtype} {image.shape}")
    masks = np.asarray(masks)
    if masks.ndim != 3 or masks.shape[1:] != image.shape[:2]:
        raise ValueError(f"masks must be (N, H, W) with (H, W) = {image.shape[:2]} of the image, got {masks.shape}")
    if masks.dtype != np.bool_:
        masks = masks != 0
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.size == 0:
        boxes = boxes.reshape(0, 4)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must be (N, 4) x1, y1, x2, y2, got shape {boxes.shape}")
    if boxes.shape[0] != masks.shape[0]:
        raise ValueError(f"{masks.shape[0]} mask(s) but {boxes.shape[0]} box(es): give one box per mask")
    if not np.all(np.isfinite(boxes)):
        bad = int(np.flatnonzero(~np.all(np.isfinite(boxes), axis=1))[0])
        raise ValueError(f"box {bad} {boxes[bad].tolist()} has a value that is not a finite number")
    return image, masks, boxes


def _pixel_bounds(box: np.ndarray, height: int, width: int) -> tuple[int, int, int, int]:
    """floor(x1, y1), ceil(x2, y2), clipped to the image, at least one pixel wide and high."""
    x1 = min(max(math.floor(box[0]), 0), width - 1)
    y1 = min(max(math.floor(box[1]), 0), height - 1)
    x2 = min(max(math.ceil(box[2]), x1 + 1), width)
    y2 = min(max(math.ceil(box[3]), y1 + 1), height)
    return x1, y1, x2, y2


def mask_crops(
    image: np.ndarray,
    masks: np.ndarray,
    boxes: np.ndarray,
    background: int | tuple[int, int, int] = 0,
) -> list[np.ndarray]:
    """Cut each mask's box out of the image, painting pixels outside the mask with ``background``.

    Args:
        image: ``(H, W, 3)`` uint8 RGB.
        masks: ``(N, H, W)`` bool (other dtypes: non-zero = inside).
        boxes: ``(N, 4)`` xyxy in pixels of ``image`` (float). Converted to integer pixel bounds
            ``floor(x1), floor(y1), ceil(x2), ceil(y2)`` (exclusive right/bottom), clipped to the image and
            enlarged to at least 1x1.
        background: grey level 0..255, or an ``(R, G, B)`` colour, for pixels outside the mask.

    Returns:
        ``N`` uint8 RGB arrays of shape ``(y2 - y1, x2 - x1, 3)`` (new arrays; ``image`` is not modified).

    Raises:
        ValueError: wrong shapes/dtypes, mask/box count mismatch, non-finite box, bad background.
    """
    image, masks, boxes = _check_image_masks_boxes(image, masks, boxes)
    fill = np.asarray(background)
    if fill.shape not in ((), (3,)) or not np.issubdtype(fill.dtype, np.integer) or fill.min() < 0 or fill.max() > 255:
        raise ValueError(f"background must be an int 0..255 or an (R, G, B) tuple of ints 0..255, got {background!r}")
    fill = np.broadcast_to(fill.astype(np.uint8), (3,))
    height, width = image.shape[:2]
    crops = []
    for mask, box in zip(masks, boxes):
        x1, y1, x2, y2 = _pixel_bounds(box, height, width)
        crop = image[y1:y2, x1:x2].copy()
        crop[~mask[y1:y2, x1:x2]] = fill
        crops.append(crop)
    return crops


def validate_texts(texts: Sequence[str]) -> list[str]:
    """The text queries as a list; ``ValueError`` naming the first one that is not a non-empty string."""
    if isinstance(texts, str):
        raise ValueError(f"texts must be a sequence of strings, not a single string: use [{texts!r}]")
    texts = list(texts)
    for i, text in enumerate(texts):
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"texts[{i}] = {text!r} is not a non-empty string: every text query must have words")
    return texts


def select_by_text(
    image: np.ndarray,
    masks: np.ndarray,
    boxes: np.ndarray,
    texts: Sequence[str],
    scorer: TextScorer,
    top_k: int = 1,
    min_area: int = 100,
) -> tuple[np.ndarray, np.ndarray]:
    """For each text, the ``top_k`` masks whose crops the scorer finds most similar to it.

    Candidates are the masks with more than ``min_area`` pixels. Each candidate is cropped to its box with a
    black background (:func:`mask_crops`) and every crop is scored against every text in ONE scorer call.

    Args:
        image: ``(H, W, 3)`` uint8 RGB.
        masks: ``(N, H, W)`` bool, at the image's resolution.
        boxes: ``(N, 4)`` float xyxy pixels, one per mask.
        texts: ``T`` non-empty strings (queries are independent: one result row each).
        scorer: a :class:`TextScorer`, e.g. :class:`ClipScorer`.
        top_k: results per text (>= 1).
        min_area: masks with area (pixel count) ``<= min_area`` are never selected.

    Returns:
        ``indices`` ``(T, top_k)`` int64 indices into ``masks``, best first, ``-1`` where there are fewer than
        ``top_k`` candidates; ``scores`` ``(T, top_k)`` float32 similarities, NaN where the index is ``-1``.
        Ties are broken towards the lower mask index. No texts -> ``(0, top_k)``; no candidate -> all ``-1``
        (the scorer is not called).

    Raises:
        ValueError: a text that is not a non-empty string (named), ``top_k < 1``, bad shapes, or a scorer result
            that is not ``(T, C)``.
    """
    texts = validate_texts(texts)
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1:
        raise ValueError(f"top_k must be an integer >= 1, got {top_k!r}")
    top_k = int(top_k)
    image, masks, boxes = _check_image_masks_boxes(image, masks, boxes)

    indices = np.full((len(texts), top_k), -1, dtype=np.int64)
    scores = np.full((len(texts), top_k), np.nan, dtype=np.float32)
    if not texts or masks.shape[0] == 0:
        return indices, scores
    areas = masks.reshape(masks.shape[0], -1).sum(axis=1)
    candidates = np.flatnonzero(areas > min_area)
    if candidates.size == 0:
        return indices, scores

    crops = mask_crops(image, masks[candidates], boxes[candidates])
    similarity = np.asarray(scorer(crops, texts), dtype=np.float32)
    if similarity.shape != (len(texts), candidates.size):
        raise ValueError(
            f"the scorer returned a {similarity.shape} matrix for {len(texts)} text(s) and {candidates.size} "
            f"crop(s); expected ({len(texts)}, {candidates.size})"
        )
    # Stable sort of the negated scores: equal scores keep candidate (= mask index) order; NaN scores sort last.
    order = np.argsort(-similarity, axis=1, kind="stable")[:, :top_k]
    k = order.shape[1]
    indices[:, :k] = candidates[order]
    scores[:, :k] = np.take_along_axis(similarity, order, axis=1)
    return indices, scores
