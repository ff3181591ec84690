"""The FastSAM model: weights in, masks out (everything mode)."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np
import torch
from PIL import Image

from .allocator import trim_allocator
from .backends import OnnxRuntimeNetwork, OpenVINONetwork, detect_backend
from .build import build_model_from_state_dict
from .checkpoint import load_state_dict_from_file
from .checks import check_imgsz, check_thresholds
from .hub import resolve_weights
from .io import load_image
from .modeling import YOLOv8Seg
from .ops.tiles import check_tiling
from .postprocess import Detections, postprocess
from .precision import (
    DTYPES,
    PrecisionError,
    apply_precision,
    fuse_conv_silu,
    resolve_precision,
)
from .results import SegmentationResult
from .tiling import segment_tiled
from .transforms import Letterbox, letterbox_geometry, letterbox_image

ImageInput = Union[str, os.PathLike, Image.Image, np.ndarray]
BACKENDS = ("auto", "torch", "onnxruntime", "openvino")
LOGGER = logging.getLogger("fastsam")


TRIM_AFTER_PIXELS = 16_000_000
"""On a CPU, after the network pass over images of at least this many pixels in all, freed memory is handed back."""


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
        precision: ``"auto"`` (fp16 on CUDA, bf16 on CPUs with native bfloat16, else fp32), ``"fp32"`` (the
            reference's masks exactly), ``"bf16"``, ``"fp16"`` or ``"int8"`` (an OpenVINO model quantised by
            ``fastsam export --int8``). Reduced precision on the CPU is mixed: the head's outputs stay float32
            (see :mod:`fastsam.precision`). ONNX Runtime runs the precision its file was exported in.
        half: the older spelling: ``True`` is ``precision="fp16"``, ``False`` is ``"fp32"`` (overrides it).
        backend: ``"torch"``, ``"onnxruntime"`` (``pip install 'fastsam[export]'``), ``"openvino"``
            (``pip install 'fastsam[openvino]'``) or ``"auto"`` (ONNX Runtime for ``.onnx`` files, OpenVINO for
            an IR folder or ``.xml``, else torch). A static ONNX model takes square inputs of its exported size
            (letterboxed with full padding; ``imgsz`` is then ignored).
        threads: ONNX Runtime / OpenVINO inference threads (default: their own choice).
        performance: OpenVINO's performance hint, ``"latency"`` (one image at a time, the default) or
            ``"throughput"`` (several infer requests in flight: folders, batches, video).
        compile: compile the network with ``torch.compile`` (torch backend): True for the default backend
            (inductor: needs a C++ compiler on CPU, Triton on CUDA; the first call of each input shape takes
            seconds to minutes), or a ``torch.compile`` backend name. Default off.

    Example::

        model = FastSAM("FastSAM-x")
        [result] = model.predict("dog.jpg")
        result.masks  # (N, H, W) bool
    """

    _noted_imgsz: frozenset[int] = frozenset()  # imgsz values already reported as ignored by a fixed-size model

    def __init__(
        self,
        model: str | os.PathLike | YOLOv8Seg | OnnxRuntimeNetwork | OpenVINONetwork = "FastSAM-x",
        device: str | torch.device | None = "auto",
        half: bool | None = None,
        backend: str = "auto",
        threads: int | None = None,
        compile: bool | str = False,
        precision: str = "auto",
        performance: str = "latency",
    ) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        if half is not None:
            precision = "fp16" if half else "fp32"
        if backend == "auto":
            backend = detect_backend(model)
        self.backend = backend
        if backend in ("onnxruntime", "openvino"):
            if backend == "onnxruntime" and not isinstance(model, OnnxRuntimeNetwork):
                if precision not in ("auto", "fp32", "fp16"):
                    raise PrecisionError(f"ONNX Runtime runs the precision of the exported file; {precision} is "
                                         "not one (use --backend openvino or torch)")  # fmt: skip
                model = OnnxRuntimeNetwork(model, device="auto" if device is None else device, threads=threads)
            elif backend == "openvino" and not isinstance(model, OpenVINONetwork):
                model = OpenVINONetwork(model, device=device, precision=precision, threads=threads,
                                        performance=performance)  # fmt: skip
            self.network = model
            self.device = model.device  # outputs are moved here for post-processing
            self.precision = getattr(model, "precision", "fp16" if getattr(model, "input_dtype", None) == np.float16 else "fp32")
            self.input_dtype = torch.float32
            return
        self.device = select_device(device)
        self.precision = resolve_precision(precision, self.device, "torch")
        if isinstance(model, YOLOv8Seg):
            self.network = model.eval().to(self.device)
        else:
            self.network = load_model(model, self.device)
        # On CUDA fp16 casts the whole network (the tested GPU path); on the CPU reduced precision is mixed.
        apply_precision(self.network, self.precision, keep_float32=() if self.device.type == "cuda" else None)
        self.input_dtype = DTYPES[self.precision]
        if self.device.type == "cpu":
            self.network = self.network.to(memory_format=torch.channels_last)
            if self.precision != "fp32" and not compile:
                fuse_conv_silu(self.network)  # oneDNN applies each SiLU inside its convolution
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
        if imgsz != fixed[0] and imgsz not in self._noted_imgsz:  # said once per model and size, not per image
            self._noted_imgsz = self._noted_imgsz | {imgsz}
            kind = "OpenVINO" if self.backend == "openvino" else "ONNX"
            LOGGER.warning(
                "note: the %s model has a fixed %dx%d input, so imgsz %d is ignored (export with --dynamic to choose "
                "the size at run time)", kind, fixed[0], fixed[1], imgsz,
            )  # fmt: skip
        return letterbox_geometry(orig_hw, fixed[0], rect=False)

    @torch.inference_mode()
    def infer(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the network on a ``(B, 3, H_in, W_in)`` float batch: ``(preds, protos)`` as float32."""
        if self.backend == "openvino" and self.network.performance == "throughput" and batch.shape[0] > 1:
            # one infer request per image, all in flight: OpenVINO's streams run them side by side
            waits = [self.network.start(batch[i : i + 1]) for i in range(batch.shape[0])]
            outputs = [wait() for wait in waits]
            return torch.cat([p for p, _ in outputs]), torch.cat([q for _, q in outputs])
        if self.backend in ("onnxruntime", "openvino"):
            preds, protos = self.network(batch)
            return preds.to(self.device), protos.to(self.device)
        if self.device.type == "cuda" and batch.device.type == "cpu" and not batch.is_pinned():
            batch = batch.pin_memory()  # page-locked: the copy below runs asynchronously
        x = batch.to(self.device, non_blocking=True)
        x = x.to(self.input_dtype)
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
        tiles: int | str | None = None,
        tile_overlap: float = 0.2,
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
            tiles: also run the network on overlapping tiles of each image and combine the masks (small objects in
                big photos; see :mod:`fastsam.tiling`): tiles along the longer side, or ``"auto"`` (tiles of at
                most ``imgsz`` pixels, seen at full detail). None or 1: the whole image only.
            tile_overlap: fraction of a tile shared with its neighbour, in ``[0, 0.9)``.

        Returns:
            One :class:`SegmentationResult` per image, in input order. Masks are laid out as ``(N, H, W)`` arrays on
            first read (RLE and areas do not need that). On a GPU the masks of the last batch stay in device
            memory until then; earlier batches are moved to the host.

        Raises:
            ImageLoadError: an input is missing or not a readable image.
        """
        check_thresholds(conf, iou, max_det)
        check_imgsz(imgsz)
        check_tiling(tiles, tile_overlap)
        single = isinstance(images, (str, os.PathLike, Image.Image, np.ndarray))
        items = [images] if single else list(images)
        results: list[SegmentationResult] = []
        if tiles is not None and tiles != 1:  # one image at a time, its tiles batched
            for item in items:
                array, name = load_image(item), _name_of(item)

                def run(crops: Sequence[np.ndarray], name: str = name) -> list[SegmentationResult]:
                    return self._predict_arrays(list(crops), [name] * len(crops), imgsz, conf, iou, max_det, retina)

                results.append(segment_tiled(array, run, tiles, tile_overlap, imgsz, batch_size, name))
            return results
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
        return self.finish(self.forward_arrays(arrays, imgsz), arrays, names, conf, iou, max_det, retina)

    @torch.inference_mode()
    def forward_arrays(self, arrays: Sequence[np.ndarray], imgsz: int) -> list[Staged]:
        """The network stage of :meth:`predict` for decoded RGB uint8 images: letterbox, group by input shape, run.

        Returns one :class:`Staged` per input shape; :meth:`finish` turns them into results. Splitting the two lets
        a pipeline post-process one batch in a thread while the network runs the next (both release the GIL).
        """
        check_imgsz(imgsz)
        groups: dict[tuple[int, int], list[int]] = {}
        for index, array in enumerate(arrays):
            groups.setdefault(self.geometry(array.shape[:2], imgsz).input_hw, []).append(index)
        staged = []
        for input_hw, indices in groups.items():
            batch, geometries = self.preprocess([arrays[i] for i in indices], imgsz)
            preds, protos = self.infer(batch)
            staged.append(Staged(indices, input_hw, geometries, preds, protos))
        if self.device.type == "cpu" and sum(a.shape[0] * a.shape[1] for a in arrays) >= TRIM_AFTER_PIXELS:
            # big photos: the network's freed activations go back to the system before the masks are made, so the
            # peak is the decoding's, not activations + masks (36 MP: 1.25 -> 1.15 GB); small ones keep them for reuse
            trim_allocator()
        return staged

    @torch.inference_mode()
    def finish(
        self,
        staged: Sequence[Staged],
        arrays: Sequence[np.ndarray],
        names: Sequence[str],
        conf: float = 0.4,
        iou: float = 0.9,
        max_det: int = 300,
        retina: bool = True,
    ) -> list[SegmentationResult]:
        """The post-processing stage of :meth:`predict` (NMS, masks, results), in input order."""
        check_thresholds(conf, iou, max_det)
        out: list[SegmentationResult | None] = [None] * len(arrays)
        for stage in staged:
            detections = postprocess(
                stage.preds,
                stage.protos,
                stage.input_hw,
                [g.orig_hw for g in stage.geometries],
                conf,
                iou,
                max_det,
                retina,
                self.network.nc,
                stage.geometries,
                windows=True,
            )
            for i, det in zip(stage.indices, detections):
                out[i] = to_result(det, arrays[i], names[i])
        return out  # type: ignore[return-value]


@dataclass
class Staged:
    """Network outputs of the images at ``indices`` of a batch that share ``input_hw``.

    ``preds (B, 4 + nc + 32, A)`` and ``protos (B, 32, H / 4, W / 4)``, float32, on the model's device.
    """

    indices: list[int]
    input_hw: tuple[int, int]
    geometries: list[Letterbox]
    preds: torch.Tensor
    protos: torch.Tensor


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
