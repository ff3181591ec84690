"""Request and response bodies of the HTTP API (pydantic models; they make the OpenAPI schema).

The prompt bodies carry the server's limits (``maxItems``, ``maximum``), so they are made per app by
:func:`request_models`; :class:`PromptIn` and :class:`OverlayIn` here are the ones for the default limits.
Request bodies are strict (``"true"`` is not a boolean, ``"3"`` is not a number) and refuse unknown fields, so a
misspelt prompt is a 422 instead of a silent everything-mode answer.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from .limits import Limits

Coordinate = Annotated[float, Field(allow_inf_nan=False)]


def _integral(value: object) -> object:
    """JSON Schema counts ``3.0`` as an integer: take it as ``3`` (strict mode alone would refuse it)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


Integer = Annotated[int, BeforeValidator(_integral)]


class ErrorOut(BaseModel):
    """Every error answer (4xx, 5xx): one line saying what went wrong and what to do about it."""

    error: str = Field(description="what went wrong and what to do about it (limits name the serve option)")


class RLE(BaseModel):
    size: list[int] = Field(description="[H, W]")
    counts: str = Field(description="COCO compressed RLE (column-major), as pycocotools writes it")


class MaskOut(BaseModel):
    index: int = Field(description="index among the image's everything-mode masks (-1: none, or a merged mask)")
    prompt_id: int | None = Field(None, description="which prompt this mask answers (prompt responses only)")
    segmentation: RLE
    bbox: list[float] = Field(description="x1, y1, x2, y2 in pixels of the original image")
    score: float
    area: int


class ImageOut(BaseModel):
    image_id: str
    width: int
    height: int
    file_name: str
    masks: list[MaskOut]
    elapsed_ms: float = Field(0.0, description="server time to segment the image")


class PromptOut(BaseModel):
    image_id: str
    masks: list[MaskOut]


class LimitsOut(BaseModel):
    """The limits this server applies (see ``fastsam serve --help``)."""

    max_points: int
    max_boxes: int
    max_texts: int
    max_text_chars: int
    max_top_k: int
    max_indices: int
    max_json_bytes: int
    max_request_bytes: int = Field(description="memory budget of one prompt or overlay request (an estimate)")
    max_upload_bytes: int
    max_pixels: int
    max_imgsz: int


class HealthOut(BaseModel):
    status: Literal["ok", "starting"]
    ready: bool
    model: str
    device: str
    precision: str
    queued: int
    cached_images: int
    cache_bytes: int
    auth: bool = Field(False, description="whether API calls need a key (Authorization: Bearer KEY)")
    limits: LimitsOut | None = None


def request_models(limits: Limits) -> tuple[type[BaseModel], type[BaseModel]]:
    """The prompt and overlay request bodies with ``limits`` in their schema: ``(PromptIn, OverlayIn)``."""

    class PromptIn(BaseModel):
        model_config = ConfigDict(strict=True, extra="forbid")

        points: (
            list[Annotated[list[Coordinate], Field(min_length=2, max_length=2)]] | None
        ) = Field(None, max_length=limits.max_points, description="[[x, y], ...] pixels of the original image")
        labels: list[Annotated[Integer, Field(ge=0, le=1)]] | None = Field(
            None, max_length=limits.max_points, description="one per point: 1 foreground, 0 background"
        )
        boxes: list[Annotated[list[Coordinate], Field(min_length=4, max_length=4)]] | None = Field(
            None, max_length=limits.max_boxes, description="[[x1, y1, x2, y2], ...] pixels of the original image"
        )
        texts: list[Annotated[str, Field(min_length=1, max_length=limits.max_text_chars)]] | None = Field(
            None, max_length=limits.max_texts, description="text queries (CLIP)"
        )
        multimask: bool = Field(False, description="up to three masks per foreground point (part to whole)")
        mode: Literal["best", "official", "ultralytics"] = "best"
        top_k: Integer = Field(1, ge=1, le=limits.max_top_k, description="masks per text query")

    class OverlayIn(PromptIn):
        indices: list[Annotated[Integer, Field(ge=0)]] | None = Field(
            None, max_length=limits.max_indices, description="render these everything-mode masks instead of a prompt"
        )
        alpha: float = Field(0.5, ge=0.0, le=1.0)
        contours: bool = True
        random_colors: bool = True

    return PromptIn, OverlayIn


PromptIn, OverlayIn = request_models(Limits())
