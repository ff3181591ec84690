"""The FastSAM model: weights in, masks out (everything mode)."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Union

import numpy as np
import torch
from PIL import Image

from .backends import OnnxRuntimeNetwork
from .build import build_model_from_state_dict
from .checkpoint import load_state_dict_from_file
from .hub import resolve_weights
from .io import load_image
from .modeling import YOLOv8Seg
from .postprocess import Detections, postprocess
from .results import SegmentationResult
from .transforms import Letterbox, letterbox_geometry, letterbox_image

ImageInput = Union[str, os.PathLike, Image.Image, np.ndarray]


def select_device(device: str | torch.device | None = None) -> torch.device:
    """``None``/``"auto"``: CUDA if available, else Apple MPS, else CPU. Otherwise the device named."""
    if device is None or device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device} asked for, but CUDA is not available here; use --device cpu")
    return device


def load_model(model: str | os.PathLike, device: str | torch.device | None = "cpu", fuse: bool = True) -> YOLOv8Seg:
    """Build and load a YOLOv8-seg network from a name (``FastSAM-x``), an official ``.pt`` or a ``.safetensors``.

    The network is returned in eval mode, float32, BatchNorm folded when ``fuse``.
    """
    state_dict, _ = load_state_dict_from_file(resolve_weights(model))
    net = build_model_from_state_dict(state_dict)
    if fuse:
        net.fuse()
    return net.to(select_device(device))


class FastSAM:
    """Segment everything in images with a FastSAM network.

    Args:
        model: a named model (``"FastSAM-x"``, ``"FastSAM-s"``), a path to an official ``.pt`` checkpoint or to a
            ``.safetensors`` file written by ``fastsam convert``, or a loaded :class:`YOLOv8Seg`.
        device: ``"auto"`` (CUDA, then MPS, then CPU), or a torch device string.
        half: run the network in float16 (default: on CUDA only; torch backend only).
        backend: ``"torch"``, ``"onnxruntime"`` (``pip install 'fastsam[export]'``) or ``"auto"`` (ONNX Runtime
            for ``.onnx`` files, else torch). A static ONNX model takes square inputs of its exported size
            (letterboxed with full padding; ``imgsz`` is then ignored).
        threads: ONNX Runtime intra-op threads (default: its own choice).
        compile: compile the network with ``torch.compile`` (torch backend): True for the default backend
            (inductor: needs a C++ compiler on CPU, Triton on CUDA; the first call of each input shape takes
            seconds to minutes), or a ``torch.compile`` backend name. Default off.

    Example::

        model = FastSAM("FastSAM-x")
        [result] = model.predict("dog.jpg")
        result.masks  # (N, H, W) bool
    """

    def __init__(
        self,
        model: str | os.PathLike | YOLOv8Seg | OnnxRuntimeNetwork = "FastSAM-x",
        device: str | torch.device | None = "auto",
        half: bool | None = None,
        backend: str = "auto",
        threads: int | None = None,
        compile: bool | str = False,
    ) -> None:
        if backend not in ("auto", "torch", "onnxruntime"):
            raise ValueError(f"backend must be 'auto', 'torch' or 'onnxruntime', got {backend!r}")
        if backend == "auto":
            onnx_file = isinstance(model, (str, os.PathLike)) and str(model).lower().endswith(".onnx")
            backend = "onnxruntime" if onnx_file or isinstance(model, OnnxRuntimeNetwork) else "torch"
        self.backend = backend
        if backend == "onnxruntime":
            if not isinstance(model, OnnxRuntimeNetwork):
                model = OnnxRuntimeNetwork(model, device="auto" if device is None else device, threads=threads)
            self.network = model
            self.device = model.device  # outputs are moved here for post-processing
            self.half = False
            return
        self.device = select_device(device)
        if isinstance(model, YOLOv8Seg):
            self.network = model.eval().to(self.device)
        else:
            self.network = load_model(model, self.device)
        self.half = self.device.type == "cuda" if half is None else half
        if self.half:
            self.network.half()
        if self.device.type == "cpu":
            self.network = self.network.to(memory_format=torch.channels_last)
        if compile:
            if not hasattr(torch, "compile"):
                raise ValueError(f"compile=True needs torch >= 2.0; this is torch {torch.__version__}")
            kwargs = {} if compile is True else {"backend": compile}
            self.network = torch.compile(self.network, **kwargs)  # attributes (nc, ...) stay reachable

    def preprocess(self, images: Sequence[np.ndarray], imgsz: int) -> tuple[torch.Tensor, list[Letterbox]]:
        """Letterbox RGB uint8 images that share one input shape into a ``(B, 3, H_in, W_in)`` batch in [0, 1].

        With the torch backend on CUDA the resize runs on the GPU (the same integer arithmetic, the same bits):
        the uint8 rows go over, not a float32 batch, and the CPU is left to decoding and encoding.
        """
        on_gpu = self.backend == "torch" and self.device.type == "cuda"
        where = self.device if on_gpu else torch.device("cpu")
        geometries = [self.geometry(image.shape[:2], imgsz) for image in images]
        batch = torch.stack([letterbox_image(image, g, where) for image, g in zip(images, geometries)])
        return batch, geometries

    def geometry(self, orig_hw: tuple[int, int], imgsz: int) -> Letterbox:
        """Where an image goes in the network input: minimal padding, or the fixed square of a static ONNX model."""
        fixed = getattr(self.network, "fixed_input_hw", None)
        if fixed is None:
            return letterbox_geometry(orig_hw, imgsz)
        if fixed[0] != fixed[1]:
            raise ValueError(f"the ONNX model's input {fixed[0]}x{fixed[1]} is not square; export it with fastsam export")
        if imgsz != fixed[0]:
            warnings.warn(
                f"the ONNX model has a fixed {fixed[0]}x{fixed[1]} input: imgsz {imgsz} is ignored "
                "(export with --dynamic to choose the size at run time)",
                stacklevel=4,
            )
        return letterbox_geometry(orig_hw, fixed[0], rect=False)

    @torch.inference_mode()
    def infer(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the network on a ``(B, 3, H_in, W_in)`` float batch: ``(preds, protos)`` as float32."""
        if self.backend == "onnxruntime":
            preds, protos = self.network(batch)
            return preds.to(self.device), protos.to(self.device)
        if self.device.type == "cuda" and batch.device.type == "cpu" and not batch.is_pinned():
            batch = batch.pin_memory()  # page-locked: the copy below runs asynchronously
        x = batch.to(self.device, non_blocking=True)
        x = x.half() if self.half else x
        if self.device.type == "cpu":
            x = x.contiguous(memory_format=torch.channels_last)
        preds, protos = self.network(x)
        return preds.float(), protos.float()

    @torch.inference_mode()
    def predict(
        self,
        images: ImageInput | Sequence[ImageInput],
        imgsz: int = 1024,
        conf: float = 0.4,
        iou: float = 0.9,
        max_det: int = 300,
        retina: bool = True,
        batch_size: int = 8,
    ) -> list[SegmentationResult]:
        """Segment everything in one image or a list of images.

        Args:
            images: a path, PIL image or RGB uint8 ``(H, W, 3)`` array, or a list of them.
            imgsz: longest side of the network input (multiple of 32).
            conf: minimum confidence of a mask.
            iou: NMS IoU threshold.
            max_det: maximum masks per image.
            retina: full-resolution masks (True) or masks made at the network resolution (False).
            batch_size: images per forward pass (images whose inputs differ in shape run in separate passes).

        Returns:
            One :class:`SegmentationResult` per image, in input order. Masks are laid out as ``(N, H, W)`` arrays on
            first read (RLE and areas do not need that). On a GPU the masks of the last batch stay in device
            memory until then; earlier batches are moved to the host.

        Raises:
            ImageLoadError: an input is missing or not a readable image.
        """
        _check_thresholds(conf, iou, max_det, imgsz)
        single = isinstance(images, (str, os.PathLike, Image.Image, np.ndarray))
        items = [images] if single else list(images)
        results: list[SegmentationResult] = []
        for start in range(0, len(items), batch_size):
            if self.device.type != "cpu":
                for earlier in results:  # device memory holds the masks of one batch at a time
                    earlier.materialize_masks()
            chunk = items[start : start + batch_size]
            arrays = [load_image(item) for item in chunk]
            names = [_name_of(item) for item in chunk]
            results.extend(self._predict_arrays(arrays, names, imgsz, conf, iou, max_det, retina))
        return results

    __call__ = predict

    def _predict_arrays(
        self, arrays: list[np.ndarray], names: list[str], imgsz: int, conf: float, iou: float, max_det: int, retina: bool
    ) -> list[SegmentationResult]:
        groups: dict[tuple[int, int], list[int]] = {}
        for index, array in enumerate(arrays):
            groups.setdefault(self.geometry(array.shape[:2], imgsz).input_hw, []).append(index)
        out: list[SegmentationResult | None] = [None] * len(arrays)
        for input_hw, indices in groups.items():
            batch, geometries = self.preprocess([arrays[i] for i in indices], imgsz)
            preds, protos = self.infer(batch)
            detections = postprocess(
                preds,
                protos,
                input_hw,
                [g.orig_hw for g in geometries],
                conf,
                iou,
                max_det,
                retina,
                self.network.nc,
                geometries,
                windows=True,
            )
            for i, det in zip(indices, detections):
                out[i] = to_result(det, arrays[i], names[i])
        return out  # type: ignore[return-value]


def to_result(det: Detections, image: np.ndarray, file_name: str = "") -> SegmentationResult:
    """Convert one image's :class:`Detections` (torch) into a :class:`SegmentationResult`.

    Boxes and scores become numpy arrays. Masks stay as they came until first read (box windows from the CPU
    path, a tensor on its device from a GPU), so RLE and areas come from them directly (see
    :class:`SegmentationResult`); a CPU tensor becomes a numpy array.
    """
    masks = det.masks
    return SegmentationResult(
        masks=masks.numpy() if isinstance(masks, torch.Tensor) and masks.device.type == "cpu" else masks,
        boxes=det.boxes.float().cpu().numpy(),
        scores=det.scores.float().cpu().numpy(),
        image_size=(int(image.shape[0]), int(image.shape[1])),
        file_name=file_name,
        image=image,
    )


def _name_of(item: ImageInput) -> str:
    if isinstance(item, (str, os.PathLike)):
        return Path(item).name
    return getattr(item, "filename", "") and Path(item.filename).name if isinstance(item, Image.Image) else ""


def _check_thresholds(conf: float, iou: float, max_det: int, imgsz: int) -> None:
    if not 0.0 <= conf <= 1.0:
        raise ValueError(f"conf must be in [0, 1], got {conf}")
    if not 0.0 <= iou <= 1.0:
        raise ValueError(f"iou must be in [0, 1], got {iou}")
    if max_det < 1:
        raise ValueError(f"max_det must be at least 1, got {max_det}")
    if imgsz < 32 or imgsz % 32:
        raise ValueError(f"imgsz must be a positive multiple of 32, got {imgsz}")
