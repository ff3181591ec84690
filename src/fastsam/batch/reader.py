"""Reading one image by its key (local path or URI) into the package's canonical RGB uint8 array.

Reading the bytes and decoding them are kept apart: a failure to read is a storage failure
(:class:`fastsam.batch.storage.StorageError`, retried and not recorded), a failure to decode bytes that were read
makes the image bad (:class:`fastsam.errors.ImageLoadError`, recorded in the output).
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import ImageLoadError
from ..io import load_image
from .storage import StorageReader

_DECODE_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)


def read_image(key: str, reader: StorageReader | None = None) -> np.ndarray:
    """Read and decode the image named by ``key``.

    Args:
        key: an absolute local path or a URI.
        reader: reads the bytes, with retries (default: a new :class:`StorageReader` with the default policy).

    Returns:
        ``(H, W, 3)`` uint8 RGB, EXIF orientation applied (see :func:`fastsam.io.load_image`).

    Raises:
        StorageError: the bytes could not be read (missing, permission denied, network, credentials).
        ImageLoadError: the bytes are not a decodable image.
    """
    data = (reader or StorageReader())(key)
    return decode_image(data, key)


def decode_image(data: bytes, key: str) -> np.ndarray:
    """Decode an encoded image (JPEG, PNG, ...) to ``(H, W, 3)`` uint8 RGB; ``key`` names it in errors.

    Raises:
        ImageLoadError: not a readable image (corrupt, truncated, unsupported, or too large for Pillow's guard).
    """
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            return load_image(image)
    except ImageLoadError as err:
        raise ImageLoadError(f"{key}: {err}") from None
    except _DECODE_ERRORS as err:
        detail = "unknown image format" if isinstance(err, UnidentifiedImageError) else str(err)
        message = f"{key} is not a readable image (corrupt, truncated or unsupported format): {detail}"
        raise ImageLoadError(message) from None
