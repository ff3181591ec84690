"""A constant-velocity Kalman filter over boxes, batched over tracks with numpy.

State per track: ``cx, cy, w, h`` (box centre and size, pixels) and their velocities (pixels per frame). The
process and measurement noise scale with the box size (a large box may move and grow more pixels per frame than a
small one), as in SORT/ByteTrack. With diagonal noise and a transition that never mixes coordinates, each of the four
coordinates is an independent (position, velocity) filter: the covariance of a track is four 2x2 blocks, stored as
``(pp, pv, vv)`` per coordinate, and every step is a few element-wise operations over all tracks at once.
"""

from __future__ import annotations

import numpy as np


def xyxy_to_cxcywh(boxes: np.ndarray) -> np.ndarray:
    """``(N, 4)`` x1, y1, x2, y2 -> ``(N, 4)`` centre x, centre y, width, height (float64)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    size = boxes[:, 2:] - boxes[:, :2]
    return np.concatenate([boxes[:, :2] + size / 2, size], axis=1)


def cxcywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    """``(N, 4)`` centre x, centre y, width, height -> ``(N, 4)`` x1, y1, x2, y2 (float64)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    half = boxes[:, 2:] / 2
    return np.concatenate([boxes[:, :2] - half, boxes[:, :2] + half], axis=1)


class BoxKalman:
    """Kalman filter for boxes moving at constant velocity.

    Args:
        position_std: process/measurement noise of the position, as a fraction of the box size per frame.
        velocity_std: process noise of the velocity, as a fraction of the box size per frame.

    Means are ``(T, 8)`` (``cx, cy, w, h, vcx, vcy, vw, vh``); covariances ``(T, 4, 3)``: for each coordinate the
    variance of its position, the position-velocity covariance and the variance of its velocity.
    """

    def __init__(self, position_std: float = 1.0 / 20, velocity_std: float = 1.0 / 160) -> None:
        self.position_std = float(position_std)
        self.velocity_std = float(velocity_std)

    @staticmethod
    def _scale(mean: np.ndarray) -> np.ndarray:
        """``(T, 4)`` size behind each coordinate's noise: the box width for x and w, the height for y and h."""
        size = np.maximum(mean[:, 2:4], 1.0)
        return np.concatenate([size, size], axis=1)

    def initiate(self, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """New tracks at ``(T, 4)`` xyxy boxes, at rest: returns ``(T, 8)`` means and ``(T, 4, 3)`` covariances."""
        z = xyxy_to_cxcywh(boxes)
        mean = np.concatenate([z, np.zeros_like(z)], axis=1)
        scale = self._scale(mean)
        cov = np.zeros((len(z), 4, 3))
        cov[:, :, 0] = (2 * self.position_std * scale) ** 2
        cov[:, :, 2] = (10 * self.velocity_std * scale) ** 2
        return mean, cov

    def predict(self, mean: np.ndarray, cov: np.ndarray, steps: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        """The state ``steps`` frames later (``steps`` > 1 when frames were dropped); returns new arrays."""
        scale = self._scale(mean)
        mean = mean.copy()
        mean[:, :4] += steps * mean[:, 4:]
        mean[:, 2:4] = np.maximum(mean[:, 2:4], 1.0)  # a shrinking box (leaving the image) stops at one pixel
        pp, pv, vv = cov[:, :, 0], cov[:, :, 1], cov[:, :, 2]
        out = np.empty_like(cov)
        out[:, :, 0] = pp + 2 * steps * pv + steps * steps * vv + steps * (self.position_std * scale) ** 2
        out[:, :, 1] = pv + steps * vv
        out[:, :, 2] = vv + steps * (self.velocity_std * scale) ** 2
        return mean, out

    def update(self, mean: np.ndarray, cov: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Correct ``(T, 8)`` means and ``(T, 4, 3)`` covariances with ``(T, 4)`` measured xyxy boxes."""
        z = xyxy_to_cxcywh(boxes)
        pp, pv, vv = cov[:, :, 0], cov[:, :, 1], cov[:, :, 2]
        innovation = pp + (self.position_std * self._scale(mean)) ** 2
        gain_p, gain_v = pp / innovation, pv / innovation
        residual = z - mean[:, :4]
        mean = mean.copy()
        mean[:, :4] += gain_p * residual
        mean[:, 4:] += gain_v * residual
        out = np.empty_like(cov)
        out[:, :, 0] = (1.0 - gain_p) * pp
        out[:, :, 1] = (1.0 - gain_p) * pv
        out[:, :, 2] = vv - gain_v * pv
        return mean, out
