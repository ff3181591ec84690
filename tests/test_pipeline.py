"""The streaming pipeline: order, errors, batches."""

from __future__ import annotations

import shutil
from pathlib import Path

from fastsam.pipeline import segment_stream


def test_stream_keeps_order_and_reports_bad_images(tmp_path: Path, tiny_model, photo_path: Path) -> None:
    names = ["1.jpg", "bad.jpg", "2.jpg", "3.jpg", "missing.jpg", "4.jpg"]
    for name in names:
        if name == "bad.jpg":
            (tmp_path / name).write_text("not an image")
        elif name != "missing.jpg":
            shutil.copy(photo_path, tmp_path / name)
    outcomes = list(segment_stream([tmp_path / n for n in names], tiny_model, batch_size=2, imgsz=64))
    assert [o.path.name for o in outcomes] == names
    assert [o.error is None for o in outcomes] == [True, False, True, True, False, True]
    good = [o.result for o in outcomes if o.result is not None]
    assert all(r.file_name.endswith(".jpg") and r.image_size == (534, 800) for r in good)
    assert all(len(r) == len(good[0]) for r in good)  # the same photo gives the same masks in every batch
