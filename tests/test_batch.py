"""``fastsam batch``: SA-1B records in Parquet/JSON lines, local engine and Ray Data engine, resume, bad images.

The Ray tests share one local Ray instance (``ray.init(num_cpus=2)``, started here, shut down at the end of the
module). Masks are compared exactly with single-process ``FastSAM.predict``: both sides run torch with 1 thread and
the photos have pairwise different network input shapes, so every forward pass is the same computation.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from fastsam.cli.main import main
from fastsam.ops.rle import rle_to_mask

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

# Four photos whose letterboxed inputs at imgsz 320 all differ in shape (so batching cannot change the arithmetic).
PHOTOS = ("segment-anything/dog.jpg", "segment-anything/dogs.jpg", "fastsam/cat.jpg", "fastsam/examples/sa_10039.jpg")
SETTINGS = ["--imgsz", "320", "--max-det", "20", "--device", "cpu", "--precision", "fp32", "--quiet"]


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory, shared_images_dir: Path) -> Path:
    """A folder of 4 real photos, a truncated JPEG, a text file named .png, and a .txt that is not picked up."""
    folder = tmp_path_factory.mktemp("batch") / "in"
    folder.mkdir()
    for name in PHOTOS:
        shutil.copy(shared_images_dir / name, folder / Path(name).name)
    (folder / "corrupt.jpg").write_bytes((shared_images_dir / PHOTOS[0]).read_bytes()[:3000])
    (folder / "fake.png").write_text("this is not an image")
    (folder / "notes.txt").write_text("ignored: not an image extension")
    return folder


@pytest.fixture(scope="module")
def reference(source: Path, tiny_model) -> dict[str, np.ndarray]:
    """Masks of each photo from single-process ``FastSAM.predict`` (one image at a time, 1 torch thread)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = {}
        for name in PHOTOS:
            path = source / Path(name).name
            [result] = tiny_model.predict(str(path), imgsz=320, max_det=20)
            out[os.path.abspath(path)] = result.masks
        return out
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def ray_cluster():
    """One local Ray instance for the module (Ray's start-up is slow on 2 cores)."""
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()


def read_records(dest: Path) -> list[dict]:
    """Every record of the readable partition files in ``dest`` (Parquet or JSON lines), sorted by path."""
    rows = []
    for file in sorted(dest.iterdir()):
        if file.name.startswith("_"):
            continue
        if file.suffix == ".parquet":
            rows.extend(pq.read_table(file).to_pylist())
        elif file.suffix == ".jsonl":
            rows.extend(json.loads(line) for line in file.read_text().splitlines() if line)
    return sorted(rows, key=lambda r: r["path"])


def assert_matches_reference(records: list[dict], source: Path, reference: dict[str, np.ndarray]) -> None:
    by_name = {r["file_name"]: r for r in records}
    assert sorted(by_name) == sorted([Path(n).name for n in PHOTOS] + ["corrupt.jpg", "fake.png"])
    for name in ("corrupt.jpg", "fake.png"):
        row = by_name[name]
        assert row["error"].startswith("load: ") and "not a readable image" in row["error"]
        assert row["annotations"] is None and row["height"] is None
    for key, masks in reference.items():
        row = next(r for r in records if r["path"] == key)
        assert row["error"] is None and (row["height"], row["width"]) == masks.shape[1:]
        decoded = rle_to_mask([a["segmentation"] for a in row["annotations"]], masks.shape[1:])
        assert decoded.shape == masks.shape and masks.shape[0] > 0
        assert np.array_equal(decoded, masks), f"{row['file_name']}: masks differ from FastSAM.predict"
        assert [a["area"] for a in row["annotations"]] == masks.sum(axis=(1, 2)).tolist()
        assert all(len(a["bbox"]) == 4 and 0 <= a["predicted_iou"] <= 1 for a in row["annotations"])


def batch(args: list[str], weights: Path) -> int:
    return main(["batch", *args, "--model", str(weights), *SETTINGS])


# ---------------------------------------------------------------- local engine (no Ray)


def test_local_engine_records_masks_errors_and_resume(
    tmp_path: Path, source: Path, reference: dict, tiny_weights: Path, capsys
) -> None:
    import torch

    threads = torch.get_num_threads()
    out = tmp_path / "out"
    try:
        assert batch([str(source), "--out", str(out), "--threads", "1", "--batch-size", "2"], tiny_weights) == 1
    finally:
        torch.set_num_threads(threads)
    err = capsys.readouterr().err
    assert "6 image(s) (2 failed" in err and "failed: 2 of 6 image(s): 2 recorded with an error" in err
    records = read_records(out)
    assert_matches_reference(records, source, reference)
    files = sorted(out.iterdir())
    assert batch([str(source), "--out", str(out)], tiny_weights) == 0  # bad images are recorded: done
    assert "nothing to do: all 6 image(s)" in capsys.readouterr().err
    assert sorted(out.iterdir()) == files


def test_local_engine_remote_uris_and_jsonl(tmp_path: Path, source: Path, tiny_weights: Path, capsys) -> None:
    """Inputs and output on a non-local filesystem (fsspec's in-memory one stands in for s3:// here)."""
    fsspec = pytest.importorskip("fsspec")
    memory = fsspec.filesystem("memory")
    memory.pipe("/bucket/photos/a/dog.jpg", (source / "dog.jpg").read_bytes())
    memory.pipe("/bucket/photos/b/fake.png", b"not an image")
    args = ["memory://bucket/photos/**/*", "--out", "memory://bucket/out", "--format", "jsonl", "--imgsz", "64"]
    try:
        assert main(["batch", *args, "--model", str(tiny_weights), "--device", "cpu", "--quiet"]) == 1  # fake.png
        [name] = memory.ls("/bucket/out", detail=False)
        rows = sorted((json.loads(line) for line in memory.cat(name).decode().splitlines()), key=lambda r: r["path"])
        assert [r["path"] for r in rows] == ["memory://bucket/photos/a/dog.jpg", "memory://bucket/photos/b/fake.png"]
        assert rows[0]["error"] is None and (rows[0]["height"], rows[0]["width"]) == (534, 800)
        assert rows[1]["error"].startswith("load: ") and rows[1]["file_name"] == "fake.png"
        assert main(["batch", *args, "--model", str(tiny_weights), "--quiet"]) == 0
        assert "nothing to do" in capsys.readouterr().err
    finally:
        memory.rm("/bucket", recursive=True)


def test_half_written_partition_is_set_aside_and_redone(tmp_path: Path) -> None:
    from fastsam.batch.records import error_record
    from fastsam.batch.resume import pending
    from fastsam.batch.writer import PartitionWriter

    with PartitionWriter(str(tmp_path), "parquet", rows_per_file=2) as writer:
        for key in ("a", "b", "c"):
            writer.add(error_record(key, "load: test"))
    first, second = (tmp_path / name for name in writer.written)
    second.write_bytes(second.read_bytes()[:20])  # as if the run had been killed while writing it
    todo, held = pending(["a", "b", "c", "d"], str(tmp_path))
    assert todo == ["c", "d"] and held.keys == ["a", "b"] and held.quarantined == [second.name]
    assert not second.exists() and (tmp_path / f"_{second.name}.incomplete").exists() and first.exists()


def test_glob_patterns_for_remote_sources() -> None:
    from fastsam.batch.sources import _glob_regex

    assert _glob_regex("*.jpg").fullmatch("a.jpg") and not _glob_regex("*.jpg").fullmatch("x/a.jpg")
    assert _glob_regex("**/*.jpg").fullmatch("a.jpg") and _glob_regex("**/*.jpg").fullmatch("x/y/a.jpg")
    assert _glob_regex("img_[0-9]?.png").fullmatch("img_12.png") and not _glob_regex("[!a]*").fullmatch("abc")


def test_ray_missing_gives_install_hint(tmp_path: Path, source: Path, tiny_weights: Path, monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    code = batch([str(source), "--out", str(tmp_path / "out"), "--engine", "ray"], tiny_weights)
    assert code == 1
    assert 'pip install "fastsam[ray]"' in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_importing_the_package_and_cli_does_not_import_ray() -> None:
    code = (
        "import sys, fastsam, fastsam.batch.ray_engine, fastsam.batch.local, fastsam.cli.main as m;"
        "m.build_parser().parse_args(['batch', 'x', '--output', 'y']);"
        "bad = [n for n in ('ray', 'pyarrow') if n in sys.modules]; assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# ---------------------------------------------------------------- Ray engine


@pytest.mark.slow
def test_ray_engine_matches_single_process_and_local_engine(
    tmp_path: Path, ray_cluster, source: Path, reference: dict, tiny_weights: Path, capsys
) -> None:
    import torch

    out = tmp_path / "ray"
    assert batch([str(source), "--out", str(out), "--engine", "ray", "--batch-size", "2"], tiny_weights) == 1
    err = capsys.readouterr().err
    assert "[ray] segmented 6 image(s) (2 failed" in err and "failed: 2 of 6 image(s)" in err
    ray_records = read_records(out)
    assert_matches_reference(ray_records, source, reference)

    threads = torch.get_num_threads()
    try:  # the local engine writes the same records (same arithmetic: 1 torch thread, as in the actors)
        local_out = tmp_path / "local"
        assert batch([str(source), "--out", str(local_out), "--threads", "1"], tiny_weights) == 1
    finally:
        torch.set_num_threads(threads)
    assert read_records(local_out) == ray_records

    jsonl_out = tmp_path / "jsonl"  # the JSON-lines datasink writes the same records too
    args = [str(source), "--out", str(jsonl_out), "--engine", "ray", "--format", "jsonl", "--rows-per-file", "2"]
    assert batch(args, tiny_weights) == 1
    assert all(f.suffix == ".jsonl" for f in jsonl_out.iterdir())
    assert read_records(jsonl_out) == ray_records


@pytest.mark.slow
def test_ray_engine_resumes_without_duplicates(
    tmp_path: Path, ray_cluster, source: Path, tiny_weights: Path, capsys
) -> None:
    out = tmp_path / "out"
    subset = [str(source / "dog.jpg"), str(source / "fake.png"), str(source / "cat.jpg")]
    args = ["--out", str(out), "--engine", "ray", "--rows-per-file", "2", "--batch-size", "1"]
    assert batch([*subset, *args], tiny_weights) == 1  # an "interrupted" run: only part of the source (fake.png)
    parts = sorted(out.glob("*.parquet"))
    assert len(read_records(out)) == 3 and len(parts) >= 2
    killed = parts[-1]  # one partition left half-written, as by a kill during the write
    lost = len(pq.read_table(killed))
    killed.write_bytes(killed.read_bytes()[: killed.stat().st_size // 2])
    capsys.readouterr()

    assert batch([str(source), *args], tiny_weights) == 1  # corrupt.jpg
    err = capsys.readouterr().err
    assert f"resuming: {3 - lost} of 6 image(s)" in err and f"[ray] segmented {3 + lost} image(s)" in err
    records = read_records(out)
    counts = Counter(r["path"] for r in records)
    assert len(counts) == 6 and set(counts.values()) == {1}, counts

    before = sorted(p.name for p in out.iterdir())
    assert batch([str(source), *args], tiny_weights) == 0  # a second full run does no work
    assert "nothing to do: all 6 image(s)" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == before


@pytest.mark.slow
def test_ray_engine_killed_driver_then_rerun(
    tmp_path: Path, ray_cluster, source: Path, tiny_weights: Path, capsys
) -> None:
    """Kill a ``fastsam batch --engine ray`` process (joined to the test's Ray) mid-run; the re-run completes it."""
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(3):  # 12 photos + 2 bad files: long enough to be killed half-way
        for name in PHOTOS:
            shutil.copy(source / Path(name).name, folder / f"{i}_{Path(name).name}")
    shutil.copy(source / "corrupt.jpg", folder / "corrupt.jpg")
    shutil.copy(source / "fake.png", folder / "fake.png")
    out = tmp_path / "out"
    address = ray_cluster.get_runtime_context().gcs_address
    args = [str(folder), "--out", str(out), "--engine", "ray", "--ray-address", address,
            "--rows-per-file", "1", "--batch-size", "1", "--model", str(tiny_weights), *SETTINGS]  # fmt: skip
    cmd = [sys.executable, "-m", "fastsam.cli.main", "batch", *args]
    process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None and not list(out.glob("*.parquet")):
        time.sleep(0.2)
    assert process.poll() is None, "the run ended before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    done = {Path(r["path"]).name for r in read_records_safely(out)}
    interrupted = len(read_records_safely(out))
    assert 0 < interrupted < 14
    capsys.readouterr()
    assert main(["batch", *args]) == (0 if {"corrupt.jpg", "fake.png"} <= done else 1)  # 1: a bad image redone
    assert f"[ray] segmented {14 - interrupted} image(s)" in capsys.readouterr().err
    counts = Counter(r["path"] for r in read_records(out))
    assert len(counts) == 14 and set(counts.values()) == {1}, counts


def read_records_safely(dest: Path) -> list[dict]:
    """Records of the partition files that can be read (a killed writer may leave a broken one)."""
    rows = []
    for file in dest.glob("*.parquet") if dest.exists() else []:
        try:
            rows.extend(pq.read_table(file, columns=["path"]).to_pylist())
        except (OSError, pa.ArrowInvalid):
            pass
    return rows
