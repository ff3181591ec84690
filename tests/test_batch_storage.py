"""``fastsam batch`` against object storage: S3 through a local moto server, storage failures vs bad images,
retries, ``--retry-errors``, resuming across formats, exit codes, and Ray workers that need ``--env``.

No network: moto's S3 server runs in this process on a free local port; pyarrow's S3 filesystem reaches it through
``AWS_ENDPOINT_URL`` (which pyarrow honours, as these tests show). Unreachable endpoints are a local port nothing
listens on (refused at once).
"""

from __future__ import annotations

import io
import json
import logging
import os
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from fastsam.cli.main import main
from fastsam.ops.rle import rle_to_mask

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
moto_server = pytest.importorskip("moto.server")
boto3 = pytest.importorskip("boto3")

PHOTOS = {"dog.jpg": "segment-anything/dog.jpg", "cat.jpg": "fastsam/cat.jpg", "dogs.jpg": "segment-anything/dogs.jpg"}
IMGSZ, MAX_DET = 256, 10
SETTINGS = ["--imgsz", str(IMGSZ), "--max-det", str(MAX_DET), "--device", "cpu", "--precision", "fp32", "--quiet",
            "--threads", "1", "--batch-size", "1"]  # fmt: skip
# The output option as cli/batch.py spells it when these tests were written (--out is its coming new name).
OUT = "--out"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def moto_endpoint():
    """A moto S3 server on a free local port, for the module."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
    port = free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@dataclass
class Bucket:
    client: object
    name: str

    def put(self, key: str, data: bytes) -> str:
        self.client.put_object(Bucket=self.name, Key=key, Body=data)
        return f"s3://{self.name}/{key}"

    def records(self, prefix: str) -> list[dict]:
        """Every record of the partition files under ``prefix``, sorted by path."""
        rows = []
        for item in self.client.list_objects_v2(Bucket=self.name, Prefix=prefix).get("Contents", []):
            name = item["Key"].rsplit("/", 1)[-1]
            body = self.client.get_object(Bucket=self.name, Key=item["Key"])["Body"].read()
            if name.endswith(".parquet") and not name.startswith("_"):
                rows.extend(pq.read_table(io.BytesIO(body)).to_pylist())
            elif name.endswith(".jsonl") and not name.startswith("_"):
                rows.extend(json.loads(line) for line in body.decode().splitlines() if line)
        return sorted(rows, key=lambda r: r["path"])


def storage_env(monkeypatch: pytest.MonkeyPatch, endpoint: str) -> None:
    """Point pyarrow's S3 (and boto3) at ``endpoint`` with test credentials, and nothing else of the host's."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


@pytest.fixture
def bucket(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Bucket:
    """A new, empty bucket; the environment points pyarrow's S3 at the moto server."""
    storage_env(monkeypatch, moto_endpoint)
    client = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    name = f"fastsam-{uuid.uuid4().hex[:10]}"
    client.create_bucket(Bucket=name)
    return Bucket(client, name)


@pytest.fixture
def one_thread():
    """torch at 1 thread during the test (``--threads 1`` sets it process-wide), as it was afterwards."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def photos(shared_images_dir: Path) -> dict[str, bytes]:
    return {name: (shared_images_dir / rel).read_bytes() for name, rel in PHOTOS.items()}


@pytest.fixture(scope="module")
def reference(photos: dict[str, bytes], tiny_model) -> dict[str, np.ndarray]:
    """Masks of each photo from ``FastSAM.predict`` (one image at a time, 1 torch thread)."""
    import torch
    from PIL import Image

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = {}
        for name, data in photos.items():
            [result] = tiny_model.predict(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")), imgsz=IMGSZ,
                                          max_det=MAX_DET)  # fmt: skip
            out[name] = result.masks
        return out
    finally:
        torch.set_num_threads(threads)


def batch(args: list[str], weights: Path) -> int:
    return main(["batch", *args, "--model", str(weights), *SETTINGS])


def assert_masks(row: dict, masks: np.ndarray) -> None:
    assert row["error"] is None and (row["height"], row["width"]) == masks.shape[1:]
    decoded = rle_to_mask([a["segmentation"] for a in row["annotations"]], masks.shape[1:])
    assert masks.shape[0] > 0 and np.array_equal(decoded, masks), f"{row['file_name']}: masks differ"


# ---------------------------------------------------------------- local engine against S3


def test_s3_input_and_output_end_to_end(
    bucket: Bucket, photos: dict, reference: dict, tiny_weights: Path, one_thread, capsys
) -> None:
    for name in ("dog.jpg", "cat.jpg"):
        bucket.put(f"in/{name}", photos[name])
    bucket.put("in/fake.png", b"this is not an image")
    args = [f"s3://{bucket.name}/in/", OUT, f"s3://{bucket.name}/out"]
    assert batch(args, tiny_weights) == 1  # fake.png cannot be decoded
    err = capsys.readouterr().err
    rows = {r["file_name"]: r for r in bucket.records("out/")}
    assert sorted(rows) == ["cat.jpg", "dog.jpg", "fake.png"]
    assert rows["dog.jpg"]["path"] == f"s3://{bucket.name}/in/dog.jpg"
    for name in ("dog.jpg", "cat.jpg"):
        assert_masks(rows[name], reference[name])
    assert rows["fake.png"]["error"].startswith("load: ") and "not a readable image" in rows["fake.png"]["error"]
    masks = sum(len(r["annotations"] or []) for r in rows.values())
    assert f"segmented 3 image(s) (1 failed: see the error column), {masks} mask(s)" in err
    assert "failed: 1 of 3 image(s): 1 recorded with an error" in err

    assert batch(args, tiny_weights) == 0  # the bad image was recorded: it counts as done
    assert "nothing to do: all 3 image(s) are already in" in capsys.readouterr().err


def test_unreachable_endpoint_is_one_line_and_quick(
    bucket: Bucket, tmp_path: Path, photos: dict, tiny_weights: Path, monkeypatch, capsys
) -> None:
    bucket.put("in/dog.jpg", photos["dog.jpg"])
    dead = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", dead)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "dog.jpg").write_bytes(photos["dog.jpg"])
    expected = f"error: cannot reach s3://{bucket.name} (endpoint {dead}, check AWS_ENDPOINT_URL / credentials): "
    for args in (
        [f"s3://{bucket.name}/in/", OUT, str(tmp_path / "out")],  # listing the input
        [str(tmp_path / "in"), OUT, f"s3://{bucket.name}/out"],  # reading what the output holds
    ):
        start = time.monotonic()
        assert batch(args, tiny_weights) == 1
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(expected), lines
        assert time.monotonic() - start < 30
    assert not (tmp_path / "out").exists()
    assert batch([f"s3://{bucket.name}/in/", OUT, str(tmp_path / "out"), "--debug"], tiny_weights) == 1
    assert "Traceback" in capsys.readouterr().err


def test_missing_output_bucket_is_one_line(bucket: Bucket, photos: dict, tmp_path: Path, tiny_weights: Path, capsys):
    (tmp_path / "dog.jpg").write_bytes(photos["dog.jpg"])
    missing = f"s3://no-such-{bucket.name}"
    assert batch([str(tmp_path / "dog.jpg"), OUT, f"{missing}/out"], tiny_weights) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: cannot write to {missing} (endpoint "), lines


def test_unreadable_objects_are_left_for_the_next_run(
    bucket: Bucket, photos: dict, reference: dict, tiny_weights: Path, one_thread, monkeypatch, capsys
) -> None:
    """A denied object and one that vanished after listing are not recorded: the re-run still has them to do."""
    import fastsam.batch.filesystems as filesystems
    import fastsam.batch.sources as sources

    for name in photos:
        bucket.put(f"in/{name}", photos[name])
    denied, gone = f"s3://{bucket.name}/in/dog.jpg", f"s3://{bucket.name}/in/gone.jpg"
    real_read, real_list = filesystems.read_bytes, sources.list_sources
    attempts = Counter()

    def read(key: str) -> bytes:
        attempts[key] += 1
        if key == denied:
            raise PermissionError("When reading information for key 'in/dog.jpg': AWS Error ACCESS_DENIED")
        return real_read(key)

    def listed(inputs):  # as if gone.jpg had been deleted between listing and reading
        keys, problems = real_list(inputs)
        return [*keys, gone], problems

    monkeypatch.setattr(filesystems, "read_bytes", read)
    monkeypatch.setattr(sources, "list_sources", listed)
    args = [f"s3://{bucket.name}/in/", OUT, f"s3://{bucket.name}/out", "--retries", "2"]
    assert batch(args, tiny_weights) == 1
    err = capsys.readouterr().err
    assert attempts[denied] == 2 and attempts[gone] == 2  # retried, then given up
    assert "failed: 2 of 4 image(s): 2 not read from storage, left for the next run" in err
    assert f"not read, left for the next run: cannot read {denied}: PermissionError" in err
    assert f"cannot read {gone}: FileNotFoundError" in err
    assert sorted(r["file_name"] for r in bucket.records("out/")) == ["cat.jpg", "dogs.jpg"]
    assert all(r["error"] is None for r in bucket.records("out/"))

    monkeypatch.setattr(filesystems, "read_bytes", real_read)  # access granted again; gone.jpg is no longer listed
    monkeypatch.setattr(sources, "list_sources", real_list)
    assert batch(args, tiny_weights) == 0
    assert "resuming: 2 of 3 image(s)" in capsys.readouterr().err
    rows = bucket.records("out/")
    assert Counter(r["file_name"] for r in rows) == {"cat.jpg": 1, "dogs.jpg": 1, "dog.jpg": 1}
    assert_masks(next(r for r in rows if r["file_name"] == "dog.jpg"), reference["dog.jpg"])


def test_transient_read_failure_succeeds_on_retry(
    tmp_path: Path, photos: dict, tiny_weights: Path, monkeypatch, capsys
) -> None:
    import fastsam.batch.filesystems as filesystems

    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("dog.jpg", "cat.jpg"):
        (folder / name).write_bytes(photos[name])
    real_read, calls = filesystems.read_bytes, Counter()

    def flaky(key: str) -> bytes:
        calls[key] += 1
        if key.endswith("cat.jpg") and calls[key] == 1:
            raise ConnectionResetError(104, "Connection reset by peer")
        return real_read(key)

    monkeypatch.setattr(filesystems, "read_bytes", flaky)
    assert batch([str(folder), OUT, str(tmp_path / "out"), "--format", "jsonl"], tiny_weights) == 0
    assert "failed" not in capsys.readouterr().err
    assert calls[str(folder / "cat.jpg")] == 2
    rows = [json.loads(line) for f in (tmp_path / "out").glob("*.jsonl") for line in f.read_text().splitlines()]
    assert sorted(r["file_name"] for r in rows) == ["cat.jpg", "dog.jpg"] and all(r["error"] is None for r in rows)


def test_retry_errors_redoes_recorded_failures_once(
    tmp_path: Path, photos: dict, reference: dict, tiny_weights: Path, one_thread, capsys
) -> None:
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    (folder / "dog.jpg").write_bytes(photos["dog.jpg"])
    (folder / "cat.jpg").write_bytes(photos["cat.jpg"][:2000])  # truncated
    args = [str(folder), OUT, str(out), "--rows-per-file", "2"]
    assert batch(args, tiny_weights) == 1
    [first] = out.glob("*.parquet")
    assert {r["file_name"]: r["error"] is None for r in pq.read_table(first).to_pylist()} == {"cat.jpg": False,
                                                                                              "dog.jpg": True}
    capsys.readouterr()
    (folder / "cat.jpg").write_bytes(photos["cat.jpg"])  # the file is repaired
    assert batch(args, tiny_weights) == 0
    err = capsys.readouterr().err
    assert "nothing to do: all 2 image(s) are already in" in err and "(1 with an error: --retry-errors redoes" in err

    assert batch([*args, "--retry-errors"], tiny_weights) == 0
    assert "segmented 1 image(s)" in capsys.readouterr().err
    rows = sorted((r for f in out.glob("*.parquet") for r in pq.read_table(f).to_pylist()), key=lambda r: r["path"])
    assert [r["file_name"] for r in rows] == ["cat.jpg", "dog.jpg"]  # each once: the error row was removed
    assert_masks(rows[0], reference["cat.jpg"])
    assert_masks(rows[1], reference["dog.jpg"])  # kept from the first run's file, which was rewritten
    assert not list(out.glob("_*"))


def test_switching_format_does_not_segment_again(tmp_path: Path, photos: dict, tiny_weights: Path, capsys) -> None:
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    for name in ("dog.jpg", "cat.jpg"):
        (folder / name).write_bytes(photos[name])
    assert batch([str(folder / "dog.jpg"), OUT, str(out)], tiny_weights) == 0  # Parquet
    capsys.readouterr()
    assert batch([str(folder), OUT, str(out), "--format", "jsonl"], tiny_weights) == 0
    err = capsys.readouterr().err
    assert "also holds parquet partitions" in err and "resuming: 1 of 2 image(s)" in err
    paths = [r["path"] for r in pq.read_table(next(out.glob("*.parquet"))).to_pylist()]
    paths += [json.loads(line)["path"] for f in out.glob("*.jsonl") for line in f.read_text().splitlines()]
    assert Counter(Path(p).name for p in paths) == {"dog.jpg": 1, "cat.jpg": 1}
    assert batch([str(folder), OUT, str(out)], tiny_weights) == 0  # and back to Parquet: nothing to do
    assert "nothing to do: all 2 image(s)" in capsys.readouterr().err


# ---------------------------------------------------------------- building blocks


def test_retries_back_off_and_only_storage_errors_are_retried() -> None:
    botocore = pytest.importorskip("botocore.exceptions")
    from fastsam.batch.storage import RetryPolicy, StorageError, StorageReader, call_with_retries, is_storage_error

    waits, calls = [], Counter()

    def failing(kind: type[Exception]):
        def operation():
            calls[kind] += 1
            raise kind("boom")

        return operation

    with pytest.raises(TimeoutError):
        call_with_retries(failing(TimeoutError), RetryPolicy(attempts=3, delay=0.5), sleep=waits.append)
    assert waits == [0.5, 1.0] and calls[TimeoutError] == 3
    with pytest.raises(KeyError):  # a bug is not retried
        call_with_retries(failing(KeyError), RetryPolicy(attempts=3), sleep=waits.append)
    assert calls[KeyError] == 1
    assert is_storage_error(botocore.EndpointConnectionError(endpoint_url="http://x"))
    assert is_storage_error(PermissionError("denied")) and not is_storage_error(ValueError("bad"))

    reads = Counter()

    def down(key: str) -> bytes:
        reads[key] += 1
        raise ConnectionRefusedError(111, "Connection refused")

    reader = StorageReader(RetryPolicy(attempts=2, delay=0.0, trip_after=3, cooldown=60), read=down)
    for i in range(5):
        with pytest.raises(StorageError, match=f"cannot read k{i}"):
            reader(f"k{i}")
    # 3 failures in a row trip the reader: the next keys fail without a read, until the cooldown has passed
    assert [reads[f"k{i}"] for i in range(5)] == [2, 2, 2, 0, 0]


def test_runtime_env_and_env_options(tmp_path: Path, monkeypatch) -> None:
    from fastsam.cli.batch import runtime_env_of
    from fastsam.cli.common import UsageError

    monkeypatch.setenv("FASTSAM_TEST_SECRET", "s3cr3t")
    assert runtime_env_of(None, []) is None
    assert runtime_env_of('{"pip": ["x"]}', ["FASTSAM_TEST_SECRET", "B=2"]) == {
        "pip": ["x"], "env_vars": {"FASTSAM_TEST_SECRET": "s3cr3t", "B": "2"}}  # fmt: skip
    file = tmp_path / "env.yaml"
    file.write_text("env_vars:\n  A: '1'\nworking_dir: .\n")
    assert runtime_env_of(str(file), ["A=3"]) == {"env_vars": {"A": "3"}, "working_dir": "."}
    with pytest.raises(UsageError, match="--env FASTSAM_NOT_SET: not set in this environment"):
        runtime_env_of(None, ["FASTSAM_NOT_SET"])
    with pytest.raises(UsageError, match="not valid JSON"):
        runtime_env_of("{oops", [])
    (tmp_path / "bad.yaml").write_text("env_vars: [unclosed\n")
    with pytest.raises(UsageError, match="bad.yaml: not valid YAML"):
        runtime_env_of(str(tmp_path / "bad.yaml"), [])
    with pytest.raises(UsageError, match="neither JSON"):
        runtime_env_of(str(tmp_path / "missing.yaml"), [])


# ---------------------------------------------------------------- Ray workers


@pytest.fixture(scope="module")
def ray_without_endpoint():
    """A local Ray whose workers see a dead S3 endpoint: as on a cluster where only the driver is configured."""
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    with pytest.MonkeyPatch.context() as patch:  # the workers inherit the environment Ray starts in
        patch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
        for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                            ("AWS_DEFAULT_REGION", "us-east-1")):  # fmt: skip
            patch.setenv(name, value)
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()


@pytest.mark.slow
def test_ray_workers_get_the_storage_settings_with_env(
    ray_without_endpoint, bucket: Bucket, photos: dict, reference: dict, tiny_weights: Path, capsys
) -> None:
    for name in ("dog.jpg", "cat.jpg"):
        bucket.put(f"in/{name}", photos[name])
    args = [f"s3://{bucket.name}/in/", OUT, f"s3://{bucket.name}/out", "--engine", "ray", "--retries", "1",
            "--model", str(tiny_weights), *SETTINGS]  # fmt: skip
    # A driver process of its own (joining the cluster, as on a real one), so that everything it prints is seen.
    address = ray_without_endpoint.get_runtime_context().gcs_address
    cmd = [sys.executable, "-m", "fastsam.cli.main", "batch", *args, "--ray-address", address]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr  # the driver lists the images; the workers cannot read them
    lines = done.stderr.strip().splitlines()
    assert lines[-1] == ("failed: 2 of 2 image(s): 2 not read from storage, left for the next run (run the same "
                         "command again); if only the Ray workers cannot read them, give them the storage settings "
                         "with --env NAME")  # fmt: skip
    left = [line for line in lines if line.startswith("not read, left for the next run: ")]
    assert len(left) == 2 and all(f"cannot read s3://{bucket.name}/in/" in line for line in left), lines
    assert len(lines) == 4 and lines[0].startswith("[ray] segmented 0 image(s)"), lines  # nothing of Ray's own
    assert bucket.records("out/") == []

    # The same in this process, with the driver's endpoint given to the workers.
    assert main(["batch", *args, "--env", "AWS_ENDPOINT_URL"]) == 0
    err = capsys.readouterr().err
    rows = {r["file_name"]: r for r in bucket.records("out/")}  # written to S3 by the workers
    assert sorted(rows) == ["cat.jpg", "dog.jpg"]
    for name, row in rows.items():
        assert_masks(row, reference[name])
    masks = sum(len(r["annotations"]) for r in rows.values())
    assert f"[ray] segmented 2 image(s), {masks} mask(s)" in err and "failed" not in err
