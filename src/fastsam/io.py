"""Image loading and input discovery.

:func:`load_image` turns a path, a Pillow image or a numpy array into the package's canonical
image: an RGB ``uint8`` array of shape ``(H, W, 3)``, C-contiguous, upright (EXIF orientation
applied). :func:`list_images` expands command-line style inputs (files, folders, glob patterns).
"""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from fastsam.errors import ImageLoadError

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm", ".pbm"}
)
"""Lower-case file suffixes (with the dot) that :func:`list_images` picks up from folders and globs."""

# Errors Pillow raises for unreadable, truncated or corrupt files while opening or decoding.
_DECODE_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError)


def load_image(source: str | os.PathLike[str] | Image.Image | np.ndarray) -> np.ndarray:
    """Load an image as an RGB uint8 array.

    Args:
        source: a file path, a ``PIL.Image.Image`` or a numpy array.

            * Files and Pillow images: EXIF orientation is applied; only the first frame of
              animated/multi-page files is used. Modes are converted as follows: ``1``/``L``
              grey is replicated to three channels; ``P`` (palette, with or without
              transparency), ``RGBA``, ``LA``, ``PA``, ``CMYK``, ``YCbCr`` etc. go through
              Pillow's RGB conversion, with alpha dropped (no compositing: transparent pixels keep
              their stored colour); ``I;16*`` (16-bit grey) is scaled by ``>> 8``; ``I`` (32-bit
              int, which Pillow uses for 16-bit data in some formats) is clipped to
              ``[0, 65535]`` then scaled by ``>> 8``; ``F`` (32-bit float) is multiplied by 255
              if all finite values lie in ``[0, 1]``, otherwise clipped to ``[0, 255]``
              (Pillow's own ``F -> L`` convention); NaN becomes 0.
            * Arrays: shape ``(H, W)`` grey, ``(H, W, 1)`` grey, ``(H, W, 3)`` RGB or
              ``(H, W, 4)`` RGBA (alpha dropped); dtype ``uint8`` (as is), ``uint16`` (divided by
              257 and rounded, so 65535 -> 255), ``bool`` (True -> 255) or floating point with
              values in ``[0, 1]`` (multiplied by 255 and rounded).

    Returns:
        ``(H, W, 3)`` uint8 RGB, C-contiguous, never sharing memory with ``source``.

    Raises:
        ImageLoadError: the path does not exist, is a directory, is not a readable image (corrupt,
            truncated, unknown format), or is too large for Pillow's decompression-bomb guard.
        ValueError: an array of unsupported shape or dtype, or float values outside ``[0, 1]``.
        TypeError: ``source`` is none of the accepted types.
    """
    if isinstance(source, np.ndarray):
        return _array_to_rgb(source)
    if isinstance(source, Image.Image):
        return _pil_to_rgb(source, "<PIL image>")
    if isinstance(source, (str, os.PathLike)):
        return _load_file(Path(os.fsdecode(source)).expanduser())
    raise TypeError(
        f"cannot load an image from {type(source).__name__}; pass a path, a PIL.Image.Image or a numpy array"
    )


def _load_file(path: Path) -> np.ndarray:
    """Open, fully decode and convert the image file at ``path``."""
    if not path.exists():
        raise ImageLoadError(f"Image file not found: {path}")
    if path.is_dir():
        raise ImageLoadError(f"{path} is a directory, not an image file (use list_images to expand folders)")
    try:
        with Image.open(path) as img:
            img.load()  # force the full decode now so truncated files fail here
            return _pil_to_rgb(img, str(path))
    except ImageLoadError:
        raise
    except PermissionError as exc:
        raise ImageLoadError(f"cannot read {path}: permission denied") from exc
    except Image.DecompressionBombError as exc:
        raise ImageLoadError(
            f"{path} is too large to load safely ({exc}). If you trust this file, raise the limit with "
            "`PIL.Image.MAX_IMAGE_PIXELS = <pixels>` (or None to disable the check) before loading, "
            "or downscale the image first."
        ) from exc
    except _DECODE_ERRORS as exc:
        raise ImageLoadError(f"{path} is not a readable image (corrupt, truncated or unsupported format): {exc}") from exc


def _pil_to_rgb(img: Image.Image, name: str) -> np.ndarray:
    """Apply EXIF orientation and convert a Pillow image of any mode to RGB uint8 ``(H, W, 3)``."""
    try:
        img.load()
        if img.getexif().get(ExifTags.Base.Orientation, 1) != 1:  # exif_transpose copies even an upright image
            img = ImageOps.exif_transpose(img) or img
        mode = img.mode
        if mode.startswith("I;16"):
            gray = (np.asarray(img).astype(np.uint16) >> 8).astype(np.uint8)
        elif mode == "I":
            gray = (np.clip(np.asarray(img), 0, 65535).astype(np.uint32) >> 8).astype(np.uint8)
        elif mode == "F":
            gray = _float_gray_to_uint8(np.asarray(img, dtype=np.float32))
        else:
            if mode in ("P", "PA") and (mode == "PA" or "transparency" in img.info):
                img = img.convert("RGBA")  # resolves palette transparency without Pillow warnings
            rgb = img if img.mode == "RGB" else img.convert("RGB")
            return np.array(rgb, dtype=np.uint8, order="C")
    except _DECODE_ERRORS as exc:
        raise ImageLoadError(f"{name} is not a readable image (mode {img.mode!r}): {exc}") from exc
    return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))


def _float_gray_to_uint8(values: np.ndarray) -> np.ndarray:
    """Map a float grey image to uint8: ``x255`` if it lies in ``[0, 1]``, else clip to ``[0, 255]``."""
    values = np.nan_to_num(values, nan=0.0, posinf=255.0, neginf=0.0)
    finite = values[np.isfinite(values)]
    if finite.size and finite.min() >= 0.0 and finite.max() <= 1.0:
        values = values * 255.0
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def _array_to_rgb(array: np.ndarray) -> np.ndarray:
    """Convert a supported numpy image (see :func:`load_image`) to RGB uint8 ``(H, W, 3)``."""
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise ValueError(
            f"unsupported image array shape {array.shape}; expected (H, W), (H, W, 1), (H, W, 3) or (H, W, 4)"
        )
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"image array has no pixels: shape {array.shape}")
    if array.dtype == np.uint8:
        out = array
    elif array.dtype == np.bool_:
        out = array.astype(np.uint8) * np.uint8(255)
    elif array.dtype == np.uint16:
        out = np.rint(array / 257.0).astype(np.uint8)
    elif np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise ValueError("float image array contains NaN or infinite values")
        lo, hi = float(array.min()), float(array.max())
        if lo < 0.0 or hi > 1.0:
            raise ValueError(
                f"float image arrays must have values in [0, 1]; got range [{lo:g}, {hi:g}] "
                f"(dtype {array.dtype}). For 0-255 data, convert with .astype(np.uint8) first."
            )
        out = np.rint(array.astype(np.float32) * 255.0).astype(np.uint8)
    else:
        raise ValueError(
            f"unsupported image array dtype {array.dtype}; expected uint8, uint16, bool or float in [0, 1]"
        )
    if out.shape[2] == 1:
        out = np.repeat(out, 3, axis=2)
    elif out.shape[2] == 4:
        out = out[:, :, :3]
    return np.array(out, dtype=np.uint8, order="C", copy=True)


def _has_glob_magic(text: str) -> bool:
    """True if ``text`` contains glob wildcards (``*``, ``?`` or ``[``)."""
    return any(ch in text for ch in "*?[")


def list_images(inputs: Sequence[str]) -> tuple[list[Path], list[str]]:
    """Expand image inputs given on a command line.

    Each input is, in this order of precedence:

    * an existing file: returned as given, whatever its extension (an unreadable one is reported
      later by :func:`load_image`);
    * an existing folder: its files (not sub-folders; non-recursive) whose lower-cased suffix is in
      :data:`IMAGE_EXTENSIONS`, sorted by name;
    * a glob pattern (``*``, ``?``, ``[...]``; ``**`` recurses): the matching *files* with an image
      extension, sorted.

    ``~`` is expanded. Duplicates (same resolved path) are dropped, keeping the first occurrence;
    otherwise the order of ``inputs`` is preserved.

    Args:
        inputs: paths, folder names or glob patterns.

    Returns:
        ``(paths, problems)``: the image paths found, and one human-readable message per input that
        does not exist or matched no image.
    """
    paths: list[Path] = []
    problems: list[str] = []
    seen: set[Path] = set()

    def add(path: Path) -> None:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            paths.append(path)

    for raw in inputs:
        text = os.path.expanduser(os.fspath(raw))
        path = Path(text)
        if path.is_file():
            add(path)
        elif path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
            if not found:
                problems.append(f"{raw}: folder contains no image files ({_extension_list()})")
            for p in found:
                add(p)
        elif _has_glob_magic(text):
            matches = sorted(glob.glob(text, recursive=True))
            found = [Path(m) for m in matches if Path(m).is_file() and Path(m).suffix.lower() in IMAGE_EXTENSIONS]
            if not found:
                problems.append(f"{raw}: pattern matched no image files ({_extension_list()})")
            for p in found:
                add(p)
        else:
            problems.append(f"{raw}: no such file or folder")
    return paths, problems


def _extension_list() -> str:
    """The supported extensions as a short comma-separated string."""
    return ", ".join(sorted(IMAGE_EXTENSIONS))
