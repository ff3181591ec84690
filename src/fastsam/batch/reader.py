"""Reading one image by its key (local path or URI) into the package's canonical RGB uint8 array."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import ImageLoadError
from ..io import load_image
from .filesystems import local_path, read_bytes, scheme_of


def read_image(key: str) -> np.ndarray:
    """Read and decode the image named by ``key``.

    Returns:
        ``(H, W, 3)`` uint8 RGB, EXIF orientation applied (see :func:`fastsam.io.load_image`).

    Raises:
        ImageLoadError: the file or object is missing, unreadable, or not a decodable image.
    """
    if scheme_of(key) is None:
        return load_image(Path(local_path(key)))
    try:
        data = read_bytes(key)
    except Exception as err:  # noqa: BLE001 - any storage error (missing object, permissions, network)
        raise ImageLoadError(f"cannot read {key}: {type(err).__name__}: {err}") from None
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            return load_image(image)
    except ImageLoadError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as err:
        detail = "unknown image format" if isinstance(err, UnidentifiedImageError) else str(err)
        message = f"{key} is not a readable image (corrupt, truncated or unsupported format): {detail}"
        raise ImageLoadError(message) from None
