"""Request and response bodies of the HTTP API (pydantic models; they make the OpenAPI schema)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


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


class PromptIn(BaseModel):
    points: list[list[float]] | None = Field(None, description="[[x, y], ...] pixels of the original image")
    labels: list[int] | None = Field(None, description="one per point: 1 foreground, 0 background")
    boxes: list[list[float]] | None = Field(None, description="[[x1, y1, x2, y2], ...] pixels of the original image")
    texts: list[str] | None = Field(None, description="text queries (CLIP)")
    multimask: bool = False
    mode: Literal["best", "official", "ultralytics"] = "best"
    top_k: int = Field(1, ge=1, le=20)


class OverlayIn(PromptIn):
    indices: list[int] | None = Field(None, description="render these everything-mode masks instead of a prompt")
    alpha: float = Field(0.5, ge=0.0, le=1.0)
    contours: bool = True
    random_colors: bool = True


class PromptOut(BaseModel):
    image_id: str
    masks: list[MaskOut]


class HealthOut(BaseModel):
    status: Literal["ok", "starting"]
    ready: bool
    model: str
    device: str
    precision: str
    queued: int
    cached_images: int
    cache_bytes: int
