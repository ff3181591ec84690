"""Synthetic videos with known tracks, made of real photos, and a stand-in detector that sees them imperfectly.

Objects are cut out of coco128-seg photos along their annotated polygons and moved over another real photo: they
move at constant speeds, cross (one passes in front of another, hiding it for a few frames) and one leaves the frame
and comes back. The ground truth is each object's *visible* mask in every frame (what MOTS annotates: disjoint
masks, the front object wins).

:class:`StandInDetector` plays the network: it returns the true visible masks of a frame with one-pixel jitter
(shift, dilation or erosion), misses some, scores partly hidden objects low (so that they go through the tracker's
low-score stage) and adds false positives (blobs that last one frame).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from pycocotools import mask as mask_utils
from scipy import ndimage

from fastsam.ops.rle import mask_to_box
from fastsam.results import SegmentationResult

HEIGHT, WIDTH = 240, 320


@dataclass
class Sprite:
    rgb: np.ndarray  # (h, w, 3) uint8
    mask: np.ndarray  # (h, w) bool


def _polygons(label_file: Path) -> list[np.ndarray]:
    out = []
    for line in label_file.read_text().splitlines():
        values = line.split()
        if len(values) >= 7:
            out.append(np.array(values[1:], dtype=np.float64).reshape(-1, 2))
    return out


def load_sprites(coco_dir: Path, count: int = 4, size: int = 70) -> list[Sprite]:
    """``count`` whole objects (not touching their photo's border, 4-40 % of it) from different coco128-seg photos,
    scaled so that their long side is about ``size`` pixels."""
    sprites = []
    for label_file in sorted((coco_dir / "labels" / "train2017").glob("*.txt")):
        image_path = coco_dir / "images" / "train2017" / (label_file.stem + ".jpg")
        if not image_path.is_file():
            continue
        photo = Image.open(image_path).convert("RGB")
        w, h = photo.size
        for poly in _polygons(label_file):
            px = poly * [w, h]
            x1, y1 = px.min(0)
            x2, y2 = px.max(0)
            area = (x2 - x1) * (y2 - y1) / (w * h)
            if not (0.04 < area < 0.4) or x1 < 3 or y1 < 3 or x2 > w - 3 or y2 > h - 3:
                continue
            canvas = Image.new("L", (w, h), 0)
            ImageDraw.Draw(canvas).polygon([tuple(p) for p in px.tolist()], fill=1)
            box = (int(x1), int(y1), int(np.ceil(x2)), int(np.ceil(y2)))
            scale = size / max(box[2] - box[0], box[3] - box[1])
            new = (max(8, round((box[2] - box[0]) * scale)), max(8, round((box[3] - box[1]) * scale)))
            rgb = np.asarray(photo.crop(box).resize(new, Image.BILINEAR))
            mask = np.asarray(canvas.crop(box).resize(new, Image.NEAREST)).astype(bool)
            if mask.mean() > 0.3:
                sprites.append(Sprite(rgb, mask))
                break
        if len(sprites) == count:
            return sprites
    raise RuntimeError(f"found only {len(sprites)} usable objects in {coco_dir}")


def background(coco_dir: Path, name: str = "000000000025.jpg") -> np.ndarray:
    photo = Image.open(coco_dir / "images" / "train2017" / name).convert("RGB")
    return np.asarray(photo.resize((WIDTH, HEIGHT), Image.BILINEAR))


@dataclass
class Scene:
    frames: list[np.ndarray]  # (H, W, 3) uint8
    visible: list[dict[int, np.ndarray]]  # per frame: object id -> visible (H, W) bool mask (absent: not in view)
    full: list[dict[int, np.ndarray]]  # per frame: object id -> whole mask (before occlusion)


def _paste(frame: np.ndarray, sprite: Sprite, x: float, y: float) -> np.ndarray:
    """Draw ``sprite`` with its top-left corner at (x, y); returns its (H, W) mask in the frame."""
    h, w = sprite.mask.shape
    x, y = round(x), round(y)
    full = np.zeros(frame.shape[:2], bool)
    fx1, fy1, fx2, fy2 = max(x, 0), max(y, 0), min(x + w, frame.shape[1]), min(y + h, frame.shape[0])
    if fx2 <= fx1 or fy2 <= fy1:
        return full
    sub = sprite.mask[fy1 - y : fy2 - y, fx1 - x : fx2 - x]
    full[fy1:fy2, fx1:fx2] = sub
    frame[fy1:fy2, fx1:fx2][sub] = sprite.rgb[fy1 - y : fy2 - y, fx1 - x : fx2 - x][sub]
    return full


def crossing_scene(coco_dir: Path, frames: int = 48) -> Scene:
    """Four objects over a real photo (ids 1-4):

    * 1 moves right along the middle; 2 moves left behind it and crosses it around frame 22, hidden in large part
      for several frames;
    * 3 drifts slowly down-right in the top-left corner (nearly static);
    * 4 moves right, leaves the frame on the right around frame 14 and comes back from the right, moving left, from
      frame 30 on.
    """
    sprites = load_sprites(coco_dir, 4, size=64)
    base = background(coco_dir)
    paths = {
        1: lambda t: (10 + 5.6 * t, 100),
        2: lambda t: (250 - 5.6 * t, 92),
        3: lambda t: (8 + 0.5 * t, 6 + 0.3 * t),
        4: lambda t: (200 + 9.0 * t, 168) if t < 20 else (WIDTH + 40 - 6.0 * (t - 22), 165),
    }
    scene = Scene([], [], [])
    for t in range(frames):
        frame = base.copy()
        depth = (3, 2, 1, 4)  # back to front
        full = {k: _paste(frame, sprites[k - 1], *paths[k](t)) for k in depth}
        visible, above = {}, np.zeros((HEIGHT, WIDTH), bool)
        for k in reversed(depth):
            own = full[k] & ~above
            above |= full[k]
            if own.sum() >= 20:
                visible[k] = own
        scene.frames.append(frame)
        scene.visible.append(visible)
        scene.full.append({k: m for k, m in full.items() if m.any()})
    return scene


class StandInDetector:
    """Plays the segmentation network on a :class:`Scene`: called with frames in order, it returns each frame's true
    visible masks, disturbed (see the module docstring).

    Args:
        scene: the scene.
        miss: probability that an object is not detected in a frame.
        false_positives: probability of a one-frame false blob per frame.
        seed: random seed.
    """

    def __init__(self, scene: Scene, miss: float = 0.1, false_positives: float = 0.3, seed: int = 0) -> None:
        self.scene, self.miss, self.false_positives = scene, miss, false_positives
        self.rng = np.random.default_rng(seed)
        self.calls = 0
        self.truth: list[dict[int, int]] = []  # per frame: object id -> index of its mask in the result

    def _jitter(self, mask: np.ndarray) -> np.ndarray:
        dy, dx = (int(v) for v in self.rng.integers(-1, 2, 2))
        out = np.zeros_like(mask)  # shifted by (dy, dx), nothing wrapping around the border
        out[max(dy, 0) : HEIGHT + min(dy, 0), max(dx, 0) : WIDTH + min(dx, 0)] = mask[
            max(-dy, 0) : HEIGHT - max(dy, 0), max(-dx, 0) : WIDTH - max(dx, 0)
        ]
        roll = self.rng.random()
        if roll < 0.25:
            out = ndimage.binary_dilation(out)
        elif roll < 0.5:
            out = ndimage.binary_erosion(out)
        return out if out.sum() >= 10 else mask

    def __call__(self, image: np.ndarray) -> SegmentationResult:
        t = self.calls
        self.calls += 1
        visible, full = self.scene.visible[t], self.scene.full[t]
        masks, scores, truth = [], [], {}
        for k, mask in visible.items():
            if self.rng.random() < self.miss:
                continue
            shown = mask.sum() / max(1, full[k].sum())
            score = self.rng.uniform(0.6, 0.95) if shown > 0.5 else self.rng.uniform(0.2, 0.45)
            truth[k] = len(masks)
            masks.append(self._jitter(mask))
            scores.append(score)
        if self.rng.random() < self.false_positives:
            yy, xx = np.mgrid[:HEIGHT, :WIDTH]
            cx, cy, r = self.rng.uniform(20, WIDTH - 20), self.rng.uniform(20, HEIGHT - 20), self.rng.uniform(6, 14)
            masks.append((xx - cx) ** 2 + (yy - cy) ** 2 < r * r)
            scores.append(self.rng.uniform(0.5, 0.8))
        self.truth.append(truth)
        stack = np.array(masks, dtype=bool).reshape(-1, HEIGHT, WIDTH)
        order = np.argsort(-np.array(scores), kind="stable")  # a network lists masks by score
        self.truth[-1] = {k: int(np.flatnonzero(order == i)[0]) for k, i in truth.items()}
        stack = stack[order]
        return SegmentationResult(stack, mask_to_box(stack), np.array(scores, np.float32)[order], (HEIGHT, WIDTH),
                                  image=image)  # fmt: skip


def write_mots_truth(scene: Scene, path: Path) -> Path:
    """The scene's ground truth as a MOTSChallenge text file (class 2, frames from 1), encoded here with pycocotools
    directly (not with the package's writer)."""
    lines = []
    for t, visible in enumerate(scene.visible):
        for k, mask in sorted(visible.items()):
            rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
            lines.append(f"{t + 1} {2000 + k} 2 {HEIGHT} {WIDTH} {rle['counts'].decode('ascii')}")
    path.write_text("\n".join(lines) + "\n")
    return path
