"""One vocabulary, one set of exit codes and one error style for every command; usage errors before any input."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fastsam.cli.main import build_parser, main
from fastsam.cli.reference import END, START, reference_markdown

README = Path(__file__).resolve().parents[1] / "README.md"


def _leaf_parsers() -> dict[str, object]:
    from fastsam.cli.reference import _subcommands

    return {name: sub for name, _, sub in _subcommands(build_parser(), "fastsam")}


def test_readme_reference_is_the_parsers() -> None:
    text = README.read_text(encoding="utf-8")
    block = text[text.index(START) : text.index(END) + len(END)]
    assert block == reference_markdown(), "README out of date: run python -m fastsam.cli.reference README.md"


def test_one_name_per_concept() -> None:
    """No command spells a shared concept its own way; the old spellings are hidden aliases."""
    leaves = _leaf_parsers()
    assert {"fastsam segment", "fastsam batch", "fastsam train", "fastsam export", "fastsam data convert"} <= set(leaves)
    for name, parser in leaves.items():
        visible = {o for a in parser._actions if a.help != "==SUPPRESS==" for o in a.option_strings}
        assert not visible & {"--output", "--batch", "--no-progress"}, name
        if "--out" in visible:
            assert "-o" in visible, name
        if any(a.dest == "quiet" for a in parser._actions):
            assert "--quiet" in visible, name
    for command in ("segment", "batch", "train", "data convert"):
        workers = next(a for a in leaves[f"fastsam {command}"]._actions if a.dest == "workers")
        assert workers.help.startswith("parallel input workers")
        assert workers.default >= 1 if command != "train" else workers.default is None  # train: the run's own on --resume


@pytest.mark.parametrize(
    "argv, dest, value",
    [
        (["train", "--batch", "3"], "batch_size", 3),
        (["train", "--no-progress"], "quiet", True),
        (["export", "m.pt", "--batch", "2"], "batch_size", 2),
        (["data", "convert", "a", "b", "--no-progress"], "quiet", True),
        (["batch", "x.jpg", "--output", "there"], "out", "there"),
        (["segment", "x.jpg", "-o", "there"], "out", Path("there")),
    ],
)
def test_old_spellings_still_parse(argv: list[str], dest: str, value: object, capsys) -> None:
    args = build_parser().parse_args(argv)
    assert getattr(args, dest) == value
    if "-o" not in argv:
        assert "is now" in capsys.readouterr().err


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--boxes", "300,400,10,20"], "x2 must exceed x1"),
        (["--boxes", "10,10,0,5", "--box-format", "xywh"], "width and height must be positive"),
        (["--points", "10,10;20,20", "--labels", "1"], "1 label(s) for 2 point(s)"),
        (["--labels", "1"], "--labels needs --points"),
        (["--imgsz", "500"], "multiple of 32, got 500 (try 512)"),
        (["--conf", "1.5"], "conf must be in [0, 1]"),
        (["--batch-size", "0"], "--batch-size must be at least 1"),
        (["--top-k", "0"], "--top-k must be at least 1"),
        (["--alpha", "2"], "--alpha"),
    ],
)
def test_segment_usage_errors_come_first(tmp_path: Path, photo_path: Path, extra: list[str], message: str, capsys) -> None:
    """Exit 2, one line, before any image is read or any model loaded (the model named does not exist)."""
    out = tmp_path / "out"
    code = main(["segment", str(photo_path), "--model", str(tmp_path / "nope.pt"), "--out", str(out), *extra])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()  # no errors.jsonl, nothing written


@pytest.mark.parametrize(
    "argv, message",
    [
        (["export", "m.pt", "--format", "onnx", "--int8"], "for --format openvino"),
        (["export", "m.pt", "--format", "openvino", "--int8"], "--data FOLDER"),
        (["export", "m.pt", "--imgsz", "100"], "multiple of 32"),
        (["eval", "speed", "x.jpg", "--points", "1,a"], "comma-separated integers"),
        (["eval", "speed", "x.jpg", "--imgsz", "33"], "multiple of 32"),
        (["train"], "--data is required"),
        (["train", "--data", "d", "--mosaic", "2"], "--mosaic is a probability"),
        (["data", "convert", "a", "b", "--quality", "0"], "--quality"),
    ],
)
def test_other_commands_usage_errors(argv: list[str], message: str, capsys) -> None:
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_runtime_failures_are_one_line_and_exit_1(tmp_path: Path, capsys) -> None:
    """A missing model is exit 1 with one line in every command that loads one; --debug gives the traceback."""
    missing = str(tmp_path / "nope.pt")
    image = tmp_path / "a.png"
    from PIL import Image

    Image.new("RGB", (64, 48)).save(image)
    for argv in (
        ["segment", str(image), "--model", missing, "--out", str(tmp_path / "o")],
        ["export", missing, "--out", str(tmp_path / "m.onnx")],
        ["eval", "speed", str(image), "--model", missing, "--out", str(tmp_path / "e")],
        ["convert", missing],
        ["train", "--data", str(tmp_path / "no-data"), "--device", "cpu", "--out", str(tmp_path / "t")],
        ["data", "convert", str(tmp_path / "no-data"), str(tmp_path / "d")],
        ["batch", str(image), "--model", missing, "--out", str(tmp_path / "b")],
    ):
        code = main(argv)
        err = capsys.readouterr().err
        assert code == 1 and err.startswith("error: ") and len(err.strip().splitlines()) == 1, (argv, err)
    code = main(["segment", str(image), "--model", missing, "--out", str(tmp_path / "o"), "--debug"])
    assert code == 1 and "Traceback" in capsys.readouterr().err


def test_unexpected_exceptions_are_one_line(monkeypatch, capsys) -> None:
    import fastsam.cli.convert as convert

    def boom(args):
        raise RuntimeError("something broke\nsecond line")

    monkeypatch.setattr(convert, "run", boom)  # the parser binds the command's run when main() builds it
    assert main(["convert", "x.pt"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == "error: RuntimeError: something broke (run again with --debug for the traceback)"


def test_help_is_fast_and_imports_no_torch() -> None:
    code = "import sys, fastsam.cli.main as m; m.build_parser(); print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "fastsam.cli.main", "--help"], capture_output=True, check=True)
    assert time.perf_counter() - start < 1.5  # ~0.25 s here; 3.9 s when torch was imported eagerly


def test_package_names_still_import_lazily() -> None:
    import fastsam

    assert fastsam.FastSAM.__name__ == "FastSAM" and "FastSAM" in dir(fastsam)
    with pytest.raises(AttributeError):
        fastsam.no_such_name  # noqa: B018


def test_train_resume_keeps_the_runs_workers(tmp_path: Path, monkeypatch) -> None:
    """--resume without --workers uses the saved run's; given again, the new value."""
    import fastsam.training.trainer as trainer

    seen = []

    class Stop(Exception):
        pass

    def fake_from_dict(d):
        seen.append(d.get("workers"))
        raise Stop

    (tmp_path / "config.json").write_text(json.dumps({"data": "d", "workers": 0}))
    monkeypatch.setattr(trainer.TrainConfig, "from_dict", staticmethod(fake_from_dict))
    for workers in (None, 3):
        with pytest.raises(Stop):
            trainer.train(trainer.TrainConfig(data="", resume=str(tmp_path), workers=workers))
    assert seen == [0, 3]
