"""``fastsam segment`` writes OUT/errors.jsonl afresh each run: this run's failures only, no file when none failed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from fastsam.cli.main import main


def segment(folder: Path, out: Path, weights: Path) -> int:
    args = [str(folder), "--out", str(out), "--format", "json", "--model", str(weights), "--imgsz", "64",
            "--device", "cpu", "--quiet"]  # fmt: skip
    return main(["segment", *args])


def test_errors_log_holds_this_runs_failures_only(tmp_path: Path, photo_path: Path, tiny_weights: Path) -> None:
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    shutil.copy(photo_path, folder / "dog.jpg")
    (folder / "broken.jpg").write_bytes(photo_path.read_bytes()[:2000])
    (folder / "fake.png").write_text("not an image")
    log = out / "errors.jsonl"
    for _ in range(2):  # a re-run does not append to the first run's list
        assert segment(folder, out, tiny_weights) == 1
        entries = [json.loads(line) for line in log.read_text().splitlines()]
        assert sorted(Path(e["path"]).name for e in entries) == ["broken.jpg", "fake.png"]
        assert all(e["stage"] == "load" and e["error"] for e in entries)
    (folder / "broken.jpg").unlink()
    (folder / "fake.png").unlink()
    assert segment(folder, out, tiny_weights) == 0
    assert not log.exists()  # nothing failed: no list, and not the previous run's
    assert (out / "dog.json").exists()
