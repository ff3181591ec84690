"""Export the network to an OpenVINO IR folder, optionally quantised to INT8 with NNCF.

The network goes through :func:`fastsam.export.export_onnx` (float32, dynamic batch/height/width unless static
is asked for), then OpenVINO's converter; fastsam's metadata (:mod:`fastsam.metadata`) is stored in the IR's
``rt_info`` under ``fastsam``. The folder holds ``<name>.xml`` and ``<name>.bin``; load it with
``FastSAM("<folder>")``.

INT8 (``int8=True``): NNCF's post-training quantisation, calibrated on letterboxed images from a folder. The
layers listed in :data:`INT8_IGNORED` stay in floating point (measured: see the README's precision table).
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ..backends.openvino import RT_INFO_SECTION, require_openvino
from ..io import load_image
from ..metadata import network_metadata, to_text
from ..modeling import YOLOv8Seg
from ..transforms import letterbox_geometry, letterbox_image
from .onnx import ExportError, export_onnx

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
#: Node-name patterns (regular expressions over the converted graph's names) that NNCF leaves in floating point:
#: the head's final convolutions (box distributions, scores, mask coefficients), the DFL and the box decoding.
INT8_IGNORED = (r".*model\.22/cv[234]\.\d+/cv[234]\.\d+\.2/.*", r".*model\.22/dfl/.*", r".*model\.22/(Sub|Add|Div|Mul|Concat|Sigmoid).*")


def _require_nncf() -> Any:
    try:
        import nncf
    except ImportError:
        raise ExportError("INT8 quantisation needs NNCF: pip install 'fastsam[openvino]'") from None
    return nncf


def calibration_images(folder: str | os.PathLike, limit: int) -> list[Path]:
    """Up to ``limit`` image files under ``folder`` (recursively, sorted).

    Raises:
        ExportError: the folder does not exist or holds no images.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ExportError(f"calibration folder not found: {folder}")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise ExportError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under {folder} to calibrate INT8 with")
    return files[:limit]


def _calibration_batches(files: Sequence[Path], imgsz: int, fixed: bool) -> Iterator[Any]:
    """Letterboxed ``(1, 3, H, W)`` float32 arrays, as the engine feeds the network; unreadable files skipped."""
    from ..errors import ImageLoadError

    for path in files:
        try:
            image = load_image(path)
        except ImageLoadError:
            continue
        geometry = letterbox_geometry(image.shape[:2], imgsz, rect=not fixed)
        yield letterbox_image(image, geometry).unsqueeze(0).numpy()


def export_openvino(
    model: YOLOv8Seg,
    folder: str | os.PathLike,
    imgsz: int = 1024,
    dynamic: bool = True,
    half: bool = False,
    int8: bool = False,
    data: str | os.PathLike | None = None,
    calibration_size: int = 128,
    name: str | None = None,
) -> Path:
    """Write ``model`` as an OpenVINO IR into ``folder``.

    Args:
        model: the network (fused or not; not modified).
        folder: the output folder (created); the IR is ``<name>.xml`` + ``<name>.bin`` inside it.
        imgsz: input side (static models) or the traced/recorded size (dynamic), multiple of 32; INT8
            calibration images are letterboxed to it.
        dynamic: dynamic batch, height and width (default).
        half: store the weights as float16 (half the file; computed in the precision chosen at load time).
        int8: quantise with NNCF on the images under ``data``.
        data: calibration image folder (required with ``int8``).
        calibration_size: at most this many calibration images.
        name: file stem (default: the folder's name).

    Returns:
        The ``.xml`` path.

    Raises:
        ExportError: bad settings, OpenVINO/NNCF missing, no calibration images, or conversion failed.
    """
    try:
        ov = require_openvino()
    except Exception as err:
        raise ExportError(str(err)) from None
    if int8 and data is None:
        raise ExportError("INT8 quantisation needs calibration images: --int8 --data FOLDER (a few hundred photos "
                          "like those you will segment)")  # fmt: skip
    files = calibration_images(data, calibration_size) if int8 else []
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    xml = folder / f"{name or folder.name}.xml"
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = export_onnx(model, Path(tmp) / "network.onnx", imgsz=imgsz, dynamic=dynamic)
        try:
            converted = ov.convert_model(str(onnx_path))
        except Exception as err:
            raise ExportError(f"OpenVINO could not convert the network: {err}") from err
    if int8:
        converted = _quantize(converted, files, imgsz, fixed=not dynamic)
    metadata = network_metadata(
        model, format="fastsam-openvino", format_version="1", imgsz=imgsz, batch=1, dynamic=dynamic, half=half,
        precision="int8" if int8 else ("fp16" if half else "fp32"), exporter="onnx", openvino_version=ov.__version__,
        calibration_images=len(files) if int8 else 0,
    )
    for key, value in metadata.items():
        converted.set_rt_info(to_text(value), [RT_INFO_SECTION, key])
    ov.save_model(converted, str(xml), compress_to_fp16=half)
    return xml


def _quantize(converted: Any, files: Sequence[Path], imgsz: int, fixed: bool) -> Any:
    nncf = _require_nncf()
    nncf.set_log_level(logging.WARNING)  # its INFO lines list every node it leaves alone
    batches = list(_calibration_batches(files, imgsz, fixed))
    if not batches:
        raise ExportError("none of the calibration images could be read")
    names = [op.get_friendly_name() for op in converted.get_ops()]
    ignored = [n for n in names if any(re.fullmatch(p, n) for p in INT8_IGNORED)]
    try:
        return nncf.quantize(
            converted,
            nncf.Dataset(batches),
            preset=nncf.QuantizationPreset.MIXED,
            subset_size=len(batches),
            ignored_scope=nncf.IgnoredScope(names=ignored, validate=False),
        )
    except Exception as err:
        raise ExportError(f"NNCF quantisation failed: {err}") from err
