"""The Label Studio ML backend's logic, without HTTP: ``/setup`` and ``/predict`` requests in, answers out.

Label Studio's protocol (facts from Label Studio's own code): ``GET /health`` before anything; ``POST /setup`` with
``{"project": "<id>.<created>", "schema": <labelling config XML>, "hostname", "access_token"}`` answered with
``{"model_version"}``; ``POST /predict`` with ``{"tasks": [{"id", "data": {...}}, ...], "project", "label_config",
"params": {"context": ...}}`` answered with ``{"results": [{"result": [regions], "score", "model_version"}, ...]}``,
one entry per task (an empty list for a task with no prediction). ``params.context`` holds the regions an
annotator just drew (interactive labelling, see :mod:`.regions`); without it the request asks for pre-annotations.

Each image is segmented once (everything mode) and kept in a small LRU cache, so that later clicks on the same task
only select among its masks (milliseconds).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...engine import FastSAM
from ...errors import FastSAMError
from ...ops.rle import rle_to_mask
from ...predictor import SegmentedImage
from ...prompts.text import TextScorer
from ..annotate import AnnotateSettings, label_result
from .brush import brush_encoder, brush_region
from .config import LabelConfig, parse_label_config
from .errors import LabelStudioError
from .images import ImageFetcher, LabelStudioAccess
from .regions import prompt_from_context

__all__ = ["BackendSettings", "FastSAMBackend"]

LOGGER = logging.getLogger("fastsam.label_studio")
PRELABEL_MODES = ("everything", "classes", "off")


@dataclass(frozen=True)
class BackendSettings:
    """Settings of the backend.

    Attributes:
        prelabel: what a pre-annotation request gets: ``everything`` (every mask, labelled with the BrushLabels
            label named "object" in any case, else its first label), ``classes`` (masks scored with CLIP against the
            BrushLabels label names; masks matching none are dropped) or ``off`` (no pre-annotations).
        min_area, text_threshold, overlap: as in ``fastsam annotate`` (:class:`~fastsam.labelling.annotate.AnnotateSettings`).
        cache_images: segmented images kept for later clicks (least recently used dropped).
        imgsz, conf, iou, max_det, retina: everything mode (see :meth:`FastSAM.predict`).
        batch_size: images per forward pass when one request asks for several tasks' pre-annotations.
    """

    prelabel: str = "everything"
    min_area: int = 100
    text_threshold: float = 0.25
    overlap: str = "auto"
    cache_images: int = 32
    imgsz: int = 1024
    conf: float = 0.4
    iou: float = 0.9
    max_det: int = 300
    retina: bool = True
    batch_size: int = 1

    def __post_init__(self) -> None:
        if self.prelabel not in PRELABEL_MODES:
            raise ValueError(f"prelabel must be one of {', '.join(PRELABEL_MODES)}, got {self.prelabel!r}")
        if self.cache_images < 1:
            raise ValueError(f"cache_images must be at least 1, got {self.cache_images}")

    @property
    def inference(self) -> dict[str, Any]:
        return {"imgsz": self.imgsz, "conf": self.conf, "iou": self.iou, "max_det": self.max_det, "retina": self.retina}


class FastSAMBackend:
    """Answers Label Studio's ML backend requests with FastSAM masks as BrushLabels regions.

    Args:
        model: the network.
        settings: :class:`BackendSettings`.
        model_name: shown in the model version (default: the model's file or name).
        text_scorer: scores crops against the label names for ``prelabel="classes"`` (default: CLIP ViT-B/32,
            loaded on first use).
        fetcher: fetches task images (default: :class:`ImageFetcher` with ``LABEL_STUDIO_URL`` /
            ``LABEL_STUDIO_API_KEY``).
    """

    def __init__(
        self,
        model: FastSAM,
        settings: BackendSettings | None = None,
        model_name: str | None = None,
        text_scorer: TextScorer | None = None,
        fetcher: ImageFetcher | None = None,
    ) -> None:
        from ... import __version__

        self.model = model
        self.settings = settings or BackendSettings()
        self.encoder = brush_encoder()  # fails now, not at the first click, when Label Studio's encoder is missing
        self.text_scorer = text_scorer
        self.fetcher = fetcher or ImageFetcher()
        name = Path(str(model_name or getattr(model, "name", None) or "FastSAM")).name
        self.model_version = f"fastsam-{__version__}-{name}-{self.settings.prelabel}"
        self._projects: dict[str, LabelStudioAccess] = {}
        self._schemas: dict[str, str] = {}
        self._cache: OrderedDict[str, SegmentedImage] = OrderedDict()
        self._cache_lock = threading.Lock()
        self._model_lock = threading.Lock()

    # ---------------------------------------------------------------------------------------------------- protocol

    def health(self) -> dict[str, Any]:
        return {"status": "UP", "model_class": "FastSAM", "model_version": self.model_version}

    def setup(self, body: dict[str, Any]) -> dict[str, Any]:
        """Check the project's labelling config and remember where its Label Studio is."""
        project = str(body.get("project", ""))
        schema = body.get("schema") or body.get("label_config") or ""
        parse_label_config(schema)  # a config without a BrushLabels tag is refused here, so Label Studio shows it
        self._schemas[project] = schema
        self._projects[project] = LabelStudioAccess(
            str(body["hostname"]).rstrip("/") if body.get("hostname") else None, body.get("access_token") or None
        )
        return {"model_version": self.model_version}

    def predict(self, body: dict[str, Any]) -> dict[str, Any]:
        """Predictions for the request's tasks (see the module docstring)."""
        tasks = body.get("tasks")
        if not isinstance(tasks, list) or not tasks:
            raise LabelStudioError("the /predict request holds no tasks")
        project = str(body.get("project", ""))
        config = parse_label_config(body.get("label_config") or self._schemas.get(project, ""))
        access = self._projects.get(project, LabelStudioAccess())
        params = body.get("params") if isinstance(body.get("params"), dict) else {}
        context = params.get("context")
        if context and isinstance(context, dict) and context.get("result"):
            return {"results": [self._interactive(tasks[0], context, config, access)]}
        if self.settings.prelabel == "off":
            return {"results": [[] for _ in tasks]}
        sessions = self._segment_tasks(tasks, config, access)
        results: list[Any] = []
        first_error: LabelStudioError | None = None
        for task, session in zip(tasks, sessions):
            try:
                if isinstance(session, LabelStudioError):
                    raise session
                results.append(self._prelabel(session, config))
            except LabelStudioError as err:
                LOGGER.warning("no prediction for task %s: %s", task.get("id") if isinstance(task, dict) else "?", err)
                first_error = first_error or err
                results.append([])  # no prediction stored for this task; Label Studio asks again later
        if first_error is not None and all(r == [] for r in results):
            raise first_error
        return {"results": results}

    # ------------------------------------------------------------------------------------------------ predictions

    def _interactive(self, task: dict, context: dict, config: LabelConfig, access: LabelStudioAccess) -> dict[str, Any]:
        start = time.perf_counter()
        session = self._segment_tasks([task], config, access)[0]
        if isinstance(session, LabelStudioError):
            raise session
        height, width = session.image_size
        prompt = prompt_from_context(context, config, height, width)
        assert prompt is not None  # the caller checked that the context holds regions
        try:
            answer = session.prompt(
                points=prompt.points if len(prompt.points) else None,
                labels=prompt.labels if len(prompt.points) else None,
                boxes=prompt.boxes if len(prompt.boxes) else None,
            )
        except ValueError as err:  # e.g. a click on the last pixel edge rounding outside
            raise LabelStudioError(f"task {task.get('id')}: the prompt does not fit the image ({err})") from None
        found = answer.indices >= 0
        regions, score = [], 0.0
        if found.any():
            mask = answer.masks[found].any(axis=0)
            score = float(answer.scores[found].max())
            regions.append(brush_region(mask, prompt.label, config.brush.name, config.image, score, self.encoder))
        LOGGER.info("task %s: interactive answer in %.1f ms", task.get("id"), 1000 * (time.perf_counter() - start))
        return {"result": regions, "score": round(score, 6), "model_version": self.model_version}

    def _prelabel(self, session: SegmentedImage, config: LabelConfig) -> dict[str, Any]:
        s = self.settings
        classes = config.brush.labels if s.prelabel == "classes" else ()
        if classes and self.text_scorer is None:
            from ...prompts.text import ClipScorer

            self.text_scorer = ClipScorer(device=str(self.model.device))
        settings = AnnotateSettings(classes=tuple(classes), text_threshold=s.text_threshold, min_area=s.min_area,
                                    overlap=s.overlap)  # fmt: skip
        try:
            instances = label_result(session.result, settings, self.text_scorer)
        except (ValueError, FastSAMError) as err:  # e.g. CLIP weights missing for --prelabel classes
            raise LabelStudioError(f"pre-annotation failed: {err}", status=500) from None
        everything_label = next((n for n in config.brush.labels if n.lower() == "object"), config.brush.labels[0])
        regions = []
        for inst in instances:
            mask = rle_to_mask([inst["segmentation"]])[0]
            label = inst["category"] if classes else everything_label
            regions.append(brush_region(mask, label, config.brush.name, config.image, inst["score"], self.encoder))
        score = float(np.mean([r["score"] for r in regions])) if regions else 0.0
        return {"result": regions, "score": round(score, 6), "model_version": self.model_version}

    # ----------------------------------------------------------------------------------------------------- images

    def _segment_tasks(
        self, tasks: list, config: LabelConfig, access: LabelStudioAccess
    ) -> list[SegmentedImage | LabelStudioError]:
        """One segmented image (or the error that stopped it) per task: from the cache, else fetched and segmented
        (the fetched images of one request in batches of ``settings.batch_size``)."""
        keys: list[str | LabelStudioError] = []
        for task in tasks:
            try:
                keys.append(self._image_key(task, config, access))
            except LabelStudioError as err:
                keys.append(err)
        found: dict[str, SegmentedImage | LabelStudioError] = {}
        with self._model_lock:  # one network run at a time; a second request for the same image waits, then hits
            missing: dict[str, np.ndarray] = {}
            for task, key in zip(tasks, keys):
                if not isinstance(key, str) or key in found or key in missing:
                    continue
                session = self._cached(key)
                if session is not None:
                    found[key] = session
                    continue
                try:
                    missing[key] = self.fetcher.fetch(key, task.get("id"), access)
                except LabelStudioError as err:
                    found[key] = err
            if missing:
                try:
                    results = self.model.predict(list(missing.values()), batch_size=self.settings.batch_size,
                                                 **self.settings.inference)  # fmt: skip
                except (RuntimeError, ValueError) as err:
                    raise LabelStudioError(f"segmenting the image failed: {type(err).__name__}: {err}", status=500) from None
                for key, result in zip(missing, results):
                    found[key] = SegmentedImage(result, self.text_scorer, str(self.model.device))
                    self._store(key, found[key])
        return [found[key] if isinstance(key, str) else key for key in keys]

    def _image_key(self, task: Any, config: LabelConfig, access: LabelStudioAccess) -> str:
        if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
            raise LabelStudioError("a task of the request has no data")
        url = task["data"].get(config.image_key)
        if url is None:
            raise LabelStudioError(f"task {task.get('id')} has no data field '{config.image_key}' (the "
                                   f"<Image value=\"${config.image_key}\"> of the labelling config)")  # fmt: skip
        return self.fetcher.resolve(str(url), task.get("id"), access)

    def _cached(self, key: str) -> SegmentedImage | None:
        with self._cache_lock:
            session = self._cache.get(key)
            if session is not None:
                self._cache.move_to_end(key)
            return session

    def _store(self, key: str, session: SegmentedImage) -> None:
        with self._cache_lock:
            self._cache[key] = session
            self._cache.move_to_end(key)
            while len(self._cache) > self.settings.cache_images:
                self._cache.popitem(last=False)

    def segmented(self, key: str) -> SegmentedImage | None:
        """The cached segmentation of an image URL (as :meth:`ImageFetcher.resolve` gives it), if held."""
        return self._cached(key)

