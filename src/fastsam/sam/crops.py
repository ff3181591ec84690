"""SAM's crop layers and point grids for the automatic mask generator.

With ``crop_n_layers = L`` SAM also segments crops of the image: layer ``i`` (1..L) tiles it with ``2^i x 2^i``
crops that overlap by ``int(crop_overlap_ratio * short_side * 2 / 2^i)`` pixels, each crop
``ceil((overlap * (n - 1) + side) / n)`` long (``n = 2^i`` crops per side), the ``k``-th starting at
``int(k * (length - overlap))``. Layer 0 is the whole image. A mask whose box comes within 20 px of a crop edge
that is not an image edge is dropped (it is probably cut), and duplicates across crops are removed by box NMS
that prefers the smaller crop. Layer ``i`` samples ``int(points_per_side / downscale^i)`` points per side.
"""

from __future__ import annotations

import math
from itertools import product

import numpy as np
import torch

from ..ops.sam_records import point_grid

CROP_EDGE_TOLERANCE = 20.0  # pixels


def crop_boxes(image_size: tuple[int, int], n_layers: int, overlap_ratio: float) -> tuple[list[list[int]], list[int]]:
    """SAM's crop boxes: ``[x0, y0, x1, y1]`` int lists (the whole image first) and the layer of each."""
    height, width = (int(v) for v in image_size)
    boxes, layers = [[0, 0, width, height]], [0]
    short_side = min(height, width)
    for layer in range(1, n_layers + 1):
        n = 2**layer
        overlap = int(overlap_ratio * short_side * (2 / n))
        crop_w = math.ceil((overlap * (n - 1) + width) / n)
        crop_h = math.ceil((overlap * (n - 1) + height) / n)
        xs = [int((crop_w - overlap) * k) for k in range(n)]
        ys = [int((crop_h - overlap) * k) for k in range(n)]
        for x0, y0 in product(xs, ys):
            boxes.append([x0, y0, min(x0 + crop_w, width), min(y0 + crop_h, height)])
            layers.append(layer)
    return boxes, layers


def layer_point_grids(points_per_side: int, n_layers: int, downscale: int) -> list[np.ndarray]:
    """The normalised ``(G, 2)`` point grid of each layer 0..n_layers."""
    return [point_grid(int(points_per_side / downscale**layer)) for layer in range(n_layers + 1)]


def near_crop_edge(boxes: np.ndarray, crop_box: list[int], image_size: tuple[int, int]) -> np.ndarray:
    """``(N,)`` bool: boxes (xyxy, image frame, SAM's inclusive convention) within 20 px of an edge of
    ``crop_box`` that is not within 20 px of the same image edge."""
    boxes = torch.as_tensor(np.asarray(boxes, dtype=np.float32)).reshape(-1, 4)
    crop = torch.tensor(crop_box, dtype=torch.float32)[None]
    height, width = image_size
    whole = torch.tensor([[0, 0, width, height]], dtype=torch.float32)
    near_crop = torch.isclose(boxes, crop, atol=CROP_EDGE_TOLERANCE, rtol=0)
    near_image = torch.isclose(boxes, whole, atol=CROP_EDGE_TOLERANCE, rtol=0)
    return (near_crop & ~near_image).any(1).numpy()
