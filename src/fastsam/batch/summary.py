"""What a batch run did, for the command's last lines and for scripts."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class BatchSummary:
    """Counts and timing of one ``fastsam batch`` run.

    Attributes:
        engine: ``"local"`` or ``"ray"``.
        images: records written by this run (one per image, bad images included).
        failed: written records with an ``error`` (bad images: they count as done).
        seconds: wall time of the segmentation and writing (model loading and start-up included).
        files: partition files this run wrote (names inside the output folder).
        masks: masks written (None when not counted).
        left: images whose bytes could not be read (storage failures after retries): not written, so the next run
            reads them again.
        left_examples: up to a few ``(key, reason)`` of the left-out images.
    """

    engine: str
    images: int = 0
    failed: int = 0
    seconds: float = 0.0
    files: list[str] = field(default_factory=list)
    masks: int | None = None
    left: int = 0
    left_examples: list[tuple[str, str]] = field(default_factory=list)

    @property
    def images_per_second(self) -> float:
        """Images (failures included) per second of wall time."""
        return self.images / self.seconds if self.seconds > 0 else 0.0

    @property
    def ok(self) -> bool:
        """Whether every image of the run was segmented (no bad image, none left for the next run)."""
        return self.failed == 0 and self.left == 0

    def line(self) -> str:
        """One human-readable line: ``"segmented 10 image(s) (2 failed), 900 mask(s) in 5.0 s (2.00 images/s)..."``."""
        masks = f", {self.masks} mask(s)" if self.masks is not None else ""
        failed = f" ({self.failed} failed: see the error column)" if self.failed else ""
        left = f"; {self.left} image(s) not read (storage errors), left for the next run" if self.left else ""
        return (
            f"[{self.engine}] segmented {self.images} image(s){failed}{masks} in {self.seconds:.1f} s "
            f"({self.images_per_second:.2f} images/s), {len(self.files)} partition file(s) written{left}"
        )


class RunTally:
    """Masks written and images left out, added up across workers (in Ray: held by one actor).

    Args:
        keep: how many ``(key, reason)`` examples of left-out images to keep.
    """

    def __init__(self, keep: int = 5) -> None:
        self.masks = 0
        self.left = 0
        self.examples: list[tuple[str, str]] = []
        self.keep = keep

    def add(self, masks: int, left: list[tuple[str, str]]) -> None:
        """Count ``masks`` written and the ``(key, reason)`` of images left out."""
        self.masks += int(masks)
        self.left += len(left)
        self.examples.extend(left[: max(0, self.keep - len(self.examples))])

    def report(self) -> tuple[int, int, list[tuple[str, str]]]:
        """``(masks, left, examples)``."""
        return self.masks, self.left, list(self.examples)
