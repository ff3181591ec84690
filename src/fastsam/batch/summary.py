"""What a batch run did, for the command's last line and for scripts."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class BatchSummary:
    """Counts and timing of one ``fastsam batch`` run.

    Attributes:
        engine: ``"local"`` or ``"ray"``.
        images: records written by this run (one per image, failures included).
        failed: records with an ``error``.
        seconds: wall time of the segmentation and writing (model loading and start-up included).
        files: partition files this run wrote (names inside the output folder).
        masks: masks written, when the engine counts them (the local engine does; Ray does not).
    """

    engine: str
    images: int = 0
    failed: int = 0
    seconds: float = 0.0
    files: list[str] = field(default_factory=list)
    masks: int | None = None

    @property
    def images_per_second(self) -> float:
        """Images (failures included) per second of wall time."""
        return self.images / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        """One human-readable line: ``"segmented 10 image(s) (2 failed), 900 mask(s) in 5.0 s (2.00 images/s)..."``."""
        masks = f", {self.masks} mask(s)" if self.masks is not None else ""
        failed = f" ({self.failed} failed: see the error column)" if self.failed else ""
        return (
            f"[{self.engine}] segmented {self.images} image(s){failed}{masks} in {self.seconds:.1f} s "
            f"({self.images_per_second:.2f} images/s), {len(self.files)} partition file(s) written"
        )
