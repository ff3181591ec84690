"""The output record of ``fastsam batch``: one row per image, in the SA-1B annotation schema.

A row is a plain dict (JSON-serialisable) with these keys, in this order:

* ``path`` (str): the input's key, an absolute local path or a URI such as ``s3://bucket/key``; resuming a run
  skips the keys the output already holds.
* ``file_name`` (str): the last component of ``path``.
* ``image_id`` (int): a stable 63-bit id, the first 8 bytes of SHA-1 of ``path`` (the same on every run).
* ``height``, ``width`` (int, pixels of the original image; ``None`` when the image failed).
* ``annotations`` (list, ``None`` when the image failed): one SA-1B annotation per mask, as
  :meth:`fastsam.results.SegmentationResult.to_sa1b` makes them: ``id``, ``segmentation`` (COCO RLE
  ``{"size": [H, W], "counts": str}``), ``bbox`` (``[x, y, w, h]`` float pixels of the original image),
  ``area`` (int pixels), ``predicted_iou`` (float, the mask's confidence score), ``point_coords`` (``[]``) and
  ``crop_box`` (``[0, 0, W, H]``).
* ``error`` (str or ``None``): why the image has no annotations (``"load: ..."`` its bytes are not a decodable
  image, ``"segment: ..."`` the network failed on its batch). An image whose bytes could not be *read* (storage
  failure) gets a ``"storage: ..."`` record from :func:`fastsam.batch.worker.segment_records` that is never
  written (:func:`is_left_out`): it is not done, and the next run reads it again.

:func:`arrow_schema` is the same schema for pyarrow (Parquet), so that every partition file has identical types,
including files that hold only failed images.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from ..results import SegmentationResult

COLUMNS: tuple[str, ...] = ("path", "file_name", "image_id", "height", "width", "annotations", "error")
"""The record's keys, in column order."""

STORAGE_STAGE = "storage"
"""The ``error`` prefix of a record whose image could not be read from storage (never written: see above)."""


def file_name_of(key: str) -> str:
    """The last path component of a local path or URI (``"s3://b/x/a.jpg"`` -> ``"a.jpg"``)."""
    return key.rstrip("/").replace("\\", "/").rsplit("/", 1)[-1]


def image_id_of(key: str) -> int:
    """A stable non-negative 63-bit integer id for an input key (first 8 bytes of its SHA-1, shifted right by 1)."""
    return int.from_bytes(hashlib.sha1(key.encode("utf-8")).digest()[:8], "big") >> 1


def image_record(key: str, result: SegmentationResult) -> dict[str, Any]:
    """The record of a segmented image (``result.masks`` ``(N, H, W)`` bool at the original resolution)."""
    sa1b = result.to_sa1b()
    height, width = (int(v) for v in result.image_size)
    return {
        "path": key,
        "file_name": file_name_of(key),
        "image_id": image_id_of(key),
        "height": height,
        "width": width,
        "annotations": sa1b["annotations"],
        "error": None,
    }


def error_record(key: str, error: str) -> dict[str, Any]:
    """The record of an image that could not be segmented: no size, no annotations, the reason in ``error``."""
    return {
        "path": key,
        "file_name": file_name_of(key),
        "image_id": image_id_of(key),
        "height": None,
        "width": None,
        "annotations": None,
        "error": error,
    }


def is_left_out(record: dict[str, Any]) -> bool:
    """Whether a record stands for an image whose bytes could not be read: it is not written, so it stays to do."""
    error = record.get("error")
    return error is not None and error.startswith(f"{STORAGE_STAGE}: ")


def left_out_reason(record: dict[str, Any]) -> str:
    """Why a left-out record's image could not be read (its ``error`` without the ``"storage: "`` prefix)."""
    return record["error"][len(STORAGE_STAGE) + 2 :]


def arrow_schema() -> Any:
    """The records' ``pyarrow.Schema`` (imports pyarrow; see :func:`require_pyarrow`)."""
    pa = require_pyarrow()
    rle = pa.struct([("size", pa.list_(pa.int64())), ("counts", pa.string())])
    annotation = pa.struct(
        [
            ("id", pa.int64()),
            ("segmentation", rle),
            ("bbox", pa.list_(pa.float64())),
            ("area", pa.int64()),
            ("predicted_iou", pa.float64()),
            ("point_coords", pa.list_(pa.list_(pa.float64()))),
            ("crop_box", pa.list_(pa.int64())),
        ]
    )
    return pa.schema(
        [
            ("path", pa.string()),
            ("file_name", pa.string()),
            ("image_id", pa.int64()),
            ("height", pa.int64()),
            ("width", pa.int64()),
            ("annotations", pa.list_(annotation)),
            ("error", pa.string()),
        ]
    )


def to_table(records: Sequence[dict[str, Any]]) -> Any:
    """Records as a ``pyarrow.Table`` with :func:`arrow_schema` (also when ``records`` is empty)."""
    pa = require_pyarrow()
    return pa.Table.from_pylist(list(records), schema=arrow_schema())


def require_pyarrow() -> Any:
    """Import and return ``pyarrow``, or raise an ImportError that says how to install it."""
    try:
        import pyarrow
    except ImportError:
        raise ImportError(
            'Parquet output needs pyarrow: pip install "fastsam[ray]" (or pip install pyarrow), '
            "or write JSON lines with --format jsonl"
        ) from None
    return pyarrow
