"""The fastsam command line."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from fastsam.cli.main import main
from fastsam.ops.rle import rle_to_mask


def test_segment_folder_with_bad_files(tmp_path: Path, tiny_weights: Path, photo_path: Path, capsys) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(photo_path, folder / "dog.jpg")
    Image.open(photo_path).convert("L").save(folder / "gray.png")
    (folder / "corrupt.jpg").write_bytes(photo_path.read_bytes()[:3000])
    (folder / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    code = main(
        [
            "segment", str(folder), str(folder / "notes.txt"), "--model", str(tiny_weights), "--device", "cpu",
            "--imgsz", "256", "--out", str(out), "--format", "overlay,json,png,polygons", "--quiet",
        ]
    )
    assert code == 1
    err = capsys.readouterr().err
    assert "corrupt.jpg" in err and "notes.txt" in err and "2 failed" in err
    for stem in ("dog", "gray"):
        record = json.loads((out / f"{stem}.json").read_text())
        n = len(record["annotations"])
        assert n > 0 and record["image"]["width"] == 800
        assert len(list((out / stem).glob("*.png"))) == n
        assert Image.open(out / f"{stem}.png").size == (800, 534)
        polygons = json.loads((out / f"{stem}_polygons.json").read_text())["polygons"]
        assert len(polygons) == n
        first = rle_to_mask([record["annotations"][0]["segmentation"]])[0]
        assert first.sum() == record["annotations"][0]["area"]
    assert not (out / "corrupt.json").exists()


def test_segment_all_good_exits_zero(tmp_path: Path, tiny_weights: Path, photo_path: Path) -> None:
    code = main(["segment", str(photo_path), "--model", str(tiny_weights), "--device", "cpu", "--imgsz", "128",
                 "--out", str(tmp_path), "--no-retina", "--no-contours", "--quiet"])
    assert code == 0 and (tmp_path / "dog.json").is_file() and (tmp_path / "dog.png").is_file()


def test_user_errors_have_no_traceback(tmp_path: Path, photo_path: Path, capsys) -> None:
    code = main(["segment", str(photo_path), "--model", str(tmp_path / "nope.pt"), "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("error: weights not found") and "Traceback" not in err
    assert main(["segment", str(tmp_path / "missing.jpg"), "--model", "x", "--out", str(tmp_path)]) == 1


def test_bad_format_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as info:
        main(["segment", "x.jpg", "--format", "overlay,gif"])
    assert info.value.code == 2


def test_convert_command(tmp_path: Path, capsys) -> None:
    import torch

    from model_factory import random_network

    src = tmp_path / "FastSAM-s.pt"
    torch.save(random_network("s").state_dict(), src)
    assert main(["convert", str(src)]) == 0
    assert (tmp_path / "FastSAM-s.safetensors").is_file()
    assert "YOLOv8-seg-s" in capsys.readouterr().out


def test_console_script_help() -> None:
    result = subprocess.run([sys.executable, "-m", "fastsam.cli.main", "segment", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "--max-det" in result.stdout and "--no-retina" in result.stdout


def test_segment_with_prompts(tmp_path: Path, tiny_weights: Path, photo_path: Path) -> None:
    common = ["--model", str(tiny_weights), "--device", "cpu", "--imgsz", "256", "--quiet", "--format", "json"]
    assert main(["segment", str(photo_path), "--out", str(tmp_path / "a"), "--points", "400,300;50,50",
                 "--labels", "1,0", "--boxes", "100,100,500,400;0,0,800,534", *common]) == 0  # fmt: skip
    record = json.loads((tmp_path / "a" / "dog.json").read_text())
    assert len(record["annotations"]) == 3  # two boxes, then one foreground point
    # xywh boxes as the official CLI writes them select the same masks as the equivalent xyxy boxes
    assert main(["segment", str(photo_path), "--out", str(tmp_path / "b"), "--boxes", "100,100,400,300",
                 "--box-format", "xywh", *common]) == 0  # fmt: skip
    assert main(["segment", str(photo_path), "--out", str(tmp_path / "c"), "--boxes", "100,100,500,400", *common]) == 0
    b = json.loads((tmp_path / "b" / "dog.json").read_text())["annotations"]
    c = json.loads((tmp_path / "c" / "dog.json").read_text())["annotations"]
    assert b == c and len(b) == 1


def test_prompt_outside_an_image_skips_that_image(tmp_path: Path, tiny_weights: Path, photo_path: Path, capsys) -> None:
    code = main(["segment", str(photo_path), "--model", str(tiny_weights), "--device", "cpu", "--imgsz", "128",
                 "--quiet", "--out", str(tmp_path), "--points", "5000,10"])  # fmt: skip
    assert code == 1 and "outside the 800x534 image" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["segment", str(photo_path), "--labels", "1,2"])


def test_folder_run_logs_errors_and_resumes(tmp_path: Path, tiny_weights: Path, photo_path: Path, capsys) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        shutil.copy(photo_path, folder / name)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 50)
    out = tmp_path / "out"
    args = ["segment", str(folder), "--model", str(tiny_weights), "--device", "cpu", "--imgsz", "128", "--out",
            str(out), "--quiet", "--batch-size", "2"]  # fmt: skip
    assert main(args) == 1
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    assert [Path(e["path"]).name for e in errors] == ["broken.png"] and errors[0]["stage"] == "load"
    assert all((out / f"{s}.json").is_file() and (out / f"{s}.png").is_file() for s in "abc")
    capsys.readouterr()
    (folder / "broken.png").unlink()
    before = {p: p.stat().st_mtime_ns for p in out.glob("*.json")}
    assert main([*args, "--skip-existing"]) == 0
    assert "nothing to do" in capsys.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in out.glob("*.json")} == before
