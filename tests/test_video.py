"""Videos through `fastsam segment`: a generated clip of a moving disc goes in, an overlay video with the same
frame count and size and per-frame JSON lines come out; per-frame masks equal single-image predictions."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils

pytest.importorskip("av", reason="video tests need PyAV (the `video` extra)")

from fastsam.cli.main import main  # noqa: E402
from fastsam.errors import VideoError  # noqa: E402
from fastsam.video import Frame, FrameFeed, VideoReader, VideoWriter, is_video_source  # noqa: E402
from fastsam.video.writer import choose_codec  # noqa: E402


def disc_frame(index: int, height: int, width: int, radius: float = 14.0) -> tuple[np.ndarray, np.ndarray]:
    """Frame ``index`` of the test clip: a yellow disc moving right over a dark noisy background, and its mask."""
    rng = np.random.default_rng(index)
    cx, cy = 24.0 + 7.0 * index, height / 2
    yy, xx = np.mgrid[:height, :width]
    mask = (yy + 0.5 - cy) ** 2 + (xx + 0.5 - cx) ** 2 < radius**2
    image = np.full((height, width, 3), 40.0) + rng.normal(0, 4, (height, width, 3))
    image[mask] = (235, 200, 40)
    return np.clip(image, 0, 255).astype(np.uint8), mask


def write_clip(path: Path, frames: int, height: int, width: int, fps: int = 10) -> list[np.ndarray]:
    masks = []
    with VideoWriter(path, fps, width, height, crf=12) as writer:
        for i in range(frames):
            image, mask = disc_frame(i, height, width)
            writer.write(image)
            masks.append(mask)
    return masks


def read_all(path: Path) -> tuple[VideoReader, list[Frame]]:
    with VideoReader(path) as reader:
        return reader, list(reader)


@pytest.mark.parametrize(("height", "width", "suffix"), [(96, 128, ".mp4"), (75, 121, ".mp4"), (64, 96, ".avi"), (64, 80, ".webm")])
def test_writer_reader_round_trip_keeps_frames_size_and_rate(tmp_path: Path, height: int, width: int, suffix: str):
    path = tmp_path / f"clip{suffix}"
    write_clip(path, 9, height, width, fps=12)
    reader, frames = read_all(path)
    assert (reader.height, reader.width) == (height, width)
    assert float(reader.fps) == pytest.approx(12)
    assert len(frames) == 9
    assert [f.index for f in frames] == list(range(9))
    assert [f.time for f in frames] == pytest.approx([i / 12 for i in range(9)], abs=1e-3)
    original, _ = disc_frame(4, height, width)
    assert frames[4].image.shape == (height, width, 3) and frames[4].image.dtype == np.uint8
    assert np.abs(frames[4].image.astype(int) - original).mean() < 6  # lossy codec, same picture


def test_writer_rejects_a_frame_of_another_size(tmp_path: Path):
    with VideoWriter(tmp_path / "a.mp4", 10, 64, 48) as writer:
        with pytest.raises(ValueError, match=r"\(48, 64, 3\) uint8"):
            writer.write(np.zeros((50, 64, 3), np.uint8))


def test_codec_choice_and_missing_encoder():
    assert choose_codec("a.mp4", {"mpeg4", "libx264"}) == "libx264"
    assert choose_codec("a.MOV", {"mpeg4"}) == "mpeg4"
    assert choose_codec("a.webm", {"libvpx-vp9", "libx264"}) == "libvpx-vp9"
    with pytest.raises(VideoError, match="write .mp4 instead"):
        choose_codec("a.webm", {"libx264"})


def test_video_sources_are_recognised():
    assert is_video_source("clip.MP4") and is_video_source("webcam:0") and is_video_source("rtsp://cam/live")
    assert is_video_source("https://host/live.m3u8")
    assert not is_video_source("photo.jpg") and not is_video_source("anim.gif") and not is_video_source("folder")


def test_missing_and_corrupt_videos_give_one_clear_error(tmp_path: Path):
    with pytest.raises(VideoError, match="video not found"):
        VideoReader(tmp_path / "nope.mp4")
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00\x01 not a video" * 100)
    with pytest.raises(VideoError, match="cannot open video"):
        VideoReader(bad)


def test_missing_camera_is_a_clear_error():
    with pytest.raises(VideoError, match="webcam:97"):
        VideoReader("webcam:97")


def _frames(n: int, delay: float = 0.0):
    for i in range(n):
        if delay:
            time.sleep(delay)
        yield Frame(i, i / 10, np.zeros((2, 2, 3), np.uint8))


def test_feed_keeps_every_frame_of_a_file_in_order():
    feed = FrameFeed(_frames(50), capacity=2, live=False)
    got = []
    for frame in feed:
        time.sleep(0.002)  # a slow consumer: decoding waits, nothing is dropped
        got.append(frame.index)
    assert got == list(range(50)) and feed.dropped == 0


def test_live_feed_drops_the_oldest_frames_when_the_consumer_is_slow():
    feed = FrameFeed(_frames(60, delay=0.001), capacity=2, live=True)
    got = []
    for frame in feed:
        time.sleep(0.02)
        got.append(frame.index)
    assert feed.dropped > 0 and len(got) + feed.dropped == 60
    assert got == sorted(got) and got[-1] == 59  # in order, and the newest frame is never lost


def test_feed_stops_at_max_frames_and_reraises_decoding_errors():
    assert [f.index for f in FrameFeed(_frames(20), max_frames=5)] == [0, 1, 2, 3, 4]

    def broken():
        yield Frame(0, 0.0, np.zeros((2, 2, 3), np.uint8))
        raise VideoError("decoder died")

    feed = FrameFeed(broken())
    with pytest.raises(VideoError, match="decoder died"):
        list(feed)
    assert threading.active_count() >= 1


def test_segment_video_writes_same_frames_and_per_frame_masks_equal_image_predictions(tmp_path: Path, tiny_weights: Path, tiny_model, capsys):
    clip = tmp_path / "moving.mp4"
    write_clip(clip, 12, 96, 129)  # odd width: the output keeps it
    out = tmp_path / "out" / "seg.mp4"
    code = main(["segment", str(clip), "--model", str(tiny_weights), "--device", "cpu", "--precision", "fp32", "--imgsz", "128", "--conf", "0.2",
                 "--out", str(out), "--format", "overlay,json", "--batch-size", "5", "--quiet"])
    assert code == 0
    assert "12 frame(s)" in capsys.readouterr().err
    reader, written = read_all(out)
    assert (reader.height, reader.width, len(written)) == (96, 129, 12)
    lines = [json.loads(line) for line in (tmp_path / "out" / "seg.jsonl").read_text().splitlines()]
    assert [r["frame"] for r in lines] == list(range(12))
    _, decoded = read_all(clip)
    expected = tiny_model.predict([f.image for f in decoded], imgsz=128, conf=0.2)
    assert sum(len(r) for r in expected) > 0
    for record, result in zip(lines, expected):
        assert record["image"]["height"] == 96 and record["image"]["width"] == 129
        masks = [mask_utils.decode(a["segmentation"]).astype(bool) for a in record["annotations"]]
        assert len(masks) == len(result)
        for mask, want in zip(masks, result.masks):
            assert np.array_equal(mask, want)


def test_box_prompt_gives_one_mask_per_frame_and_max_frames_stops(tmp_path: Path, tiny_weights: Path):
    clip = tmp_path / "moving.mp4"
    write_clip(clip, 10, 64, 96)
    out = tmp_path / "o"
    code = main(["segment", str(clip), "--model", str(tiny_weights), "--device", "cpu", "--imgsz", "96", "--conf", "0.05",
                 "--out", str(out), "--format", "overlay,json", "--boxes", "10,10,60,50", "--max-frames", "6", "--quiet"])
    assert code == 0
    lines = [json.loads(line) for line in (out / "moving.jsonl").read_text().splitlines()]
    assert len(lines) == 6 and all(len(r["annotations"]) == 1 for r in lines)
    _, frames = read_all(out / "moving.mp4")
    assert len(frames) == 6


def test_a_bad_video_is_reported_and_the_images_still_segmented(tmp_path: Path, tiny_weights: Path, photo_path: Path, capsys):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"garbage" * 50)
    out = tmp_path / "o"
    code = main(["segment", str(bad), str(photo_path), "--model", str(tiny_weights), "--device", "cpu", "--imgsz", "128",
                 "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert code == 1
    assert "cannot open video" in err and "Traceback" not in err
    assert (out / f"{photo_path.stem}.png").exists() and (out / f"{photo_path.stem}.json").exists()


def test_http_stream_url_is_read_as_a_live_source(tmp_path: Path, tiny_weights: Path, capsys):
    import functools
    import http.server

    clip_dir = tmp_path / "served"
    clip_dir.mkdir()
    write_clip(clip_dir / "cam.mp4", 8, 64, 96)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(clip_dir))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/cam.mp4"
        out = tmp_path / "o"
        code = main(["segment", url, "--model", str(tiny_weights), "--device", "cpu", "--imgsz", "96", "--out", str(out),
                     "--format", "json", "--max-frames", "5", "--batch-size", "1", "--quiet"])
    finally:
        server.shutdown()
    assert code == 0
    lines = (out / "127.0.0.1_{}_cam.jsonl".format(server.server_address[1])).read_text().splitlines()
    frames = [json.loads(line)["frame"] for line in lines]
    # a live source may drop frames when the network is slower than decoding; those kept are in order
    assert 1 <= len(frames) <= 5 and frames == sorted(frames)
    assert "frame(s)" in capsys.readouterr().err


def test_a_point_outside_the_frames_is_one_clear_error(tmp_path: Path, tiny_weights: Path, capsys):
    clip = tmp_path / "small.mp4"
    write_clip(clip, 3, 64, 96)
    code = main(["segment", str(clip), "--model", str(tiny_weights), "--device", "cpu", "--imgsz", "96",
                 "--out", str(tmp_path / "o"), "--points", "500,20", "--quiet"])
    err = capsys.readouterr().err
    assert code == 1 and "500" in err and "Traceback" not in err


def shape_clip(path: Path, frames: int = 12, height: int = 64, width: int = 128) -> list[np.ndarray]:
    """A clip like the synthetic training images (tests/train_synth.py): a flat ellipse moving right by 6 px a
    frame over a flat noisy background. Returns the ellipse's mask in each frame."""
    rng = np.random.default_rng(7)
    background, colour = np.array([60.0, 110.0, 170.0]), np.array([230.0, 190.0, 60.0])
    yy, xx = np.mgrid[:height, :width]
    masks = []
    with VideoWriter(path, 10, width, height, crf=10) as writer:
        for i in range(frames):
            cx, cy = 22.0 + 6.0 * i, 32.0
            mask = ((xx + 0.5 - cx) / 17.0) ** 2 + ((yy + 0.5 - cy) / 13.0) ** 2 < 1
            image = background + rng.normal(0, 6, (height, width, 3))
            image[mask] = colour + rng.normal(0, 4, (int(mask.sum()), 3))
            writer.write(np.clip(image, 0, 255).astype(np.uint8))
            masks.append(mask)
    return masks


@pytest.mark.slow
def test_per_frame_masks_follow_the_moving_shape(tmp_path: Path, shapes_training: dict):
    """With a network trained on shapes (the session's 400-step run), each frame's JSON holds a mask that matches
    the moving ellipse and moves with it."""
    clip = tmp_path / "shape.mp4"
    truth = shape_clip(clip)
    out = tmp_path / "o"
    code = main(["segment", str(clip), "--model", str(shapes_training["weights"]), "--device", "cpu", "--imgsz", "128",
                 "--conf", "0.25", "--out", str(out), "--format", "overlay,json", "--quiet"])
    assert code == 0
    records = [json.loads(line) for line in (out / "shape.jsonl").read_text().splitlines()]
    assert len(records) == len(truth)
    ious, shifts = [], []
    for record, mask in zip(records, truth):
        masks = [mask_utils.decode(a["segmentation"]).astype(bool) for a in record["annotations"]]
        assert masks, f"frame {record['frame']}: no mask"
        overlaps = [(m & mask).sum() / (m | mask).sum() for m in masks]
        best = masks[int(np.argmax(overlaps))]
        ious.append(max(overlaps))
        shifts.append(np.nonzero(best)[1].mean() - np.nonzero(mask)[1].mean())  # centroid x error, pixels
    print({"ious": np.round(ious, 3).tolist(), "centroid_x_error": np.round(shifts, 2).tolist()})
    assert min(ious) > 0.6 and np.median(ious) > 0.8
    assert max(abs(s) for s in shifts) < 3  # the matched mask moves with the shape (66 px over the clip)
