"""The everything-mode pipeline end to end with a random-weight network."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fastsam.engine import FastSAM
from fastsam.errors import ImageLoadError
from fastsam.io import load_image
from fastsam.ops.rle import rle_to_mask


def _check_result(result, hw: tuple[int, int]) -> None:
    n = len(result)
    assert result.masks.shape == (n, *hw) and result.masks.dtype == bool
    assert result.boxes.shape == (n, 4) and result.boxes.dtype == np.float32
    assert result.scores.shape == (n,)
    assert result.image_size == hw
    if n:
        assert np.all(result.boxes[:, 0] >= 0) and np.all(result.boxes[:, 2] <= hw[1])
        assert np.all(result.boxes[:, 1] >= 0) and np.all(result.boxes[:, 3] <= hw[0])
        assert np.all(np.diff(result.scores) <= 0)  # sorted by decreasing score
        assert result.masks.reshape(n, -1).any(1).all()  # no empty masks


def test_real_photo_everything(tiny_model: FastSAM, photo_path: Path) -> None:
    [result] = tiny_model.predict(photo_path, imgsz=320)
    image = load_image(photo_path)
    _check_result(result, image.shape[:2])
    assert len(result) > 0 and result.file_name == "dog.jpg"
    record = json.loads(json.dumps(result.to_sa1b()))
    assert record["image"]["width"] == image.shape[1]
    decoded = rle_to_mask([a["segmentation"] for a in record["annotations"]])
    assert np.array_equal(decoded, result.masks)


def test_batch_equals_single_images(tiny_model: FastSAM, photo_path: Path) -> None:
    photo = load_image(photo_path)
    wide = np.ascontiguousarray(photo[:200])
    small = np.asarray(Image.fromarray(photo).resize((400, 267)))
    singles = [tiny_model.predict(x, imgsz=256)[0] for x in (photo, wide, small)]
    batch = tiny_model.predict([photo, wide, small], imgsz=256, batch_size=3)
    assert len(batch) == 3
    # A batched convolution may round differently in the last float bit: same detections, masks equal up to a
    # few pixels whose logit is within rounding of the threshold.
    for a, b in zip(singles, batch):
        assert len(a) == len(b)
        assert np.allclose(a.boxes, b.boxes, atol=0.05) and np.allclose(a.scores, b.scores, atol=1e-5)
        inter = (a.masks & b.masks).sum((1, 2))
        union = (a.masks | b.masks).sum((1, 2))
        assert np.all(union - inter <= np.maximum(2, 0.001 * union))


def test_no_detections_gives_empty_result(tiny_model: FastSAM) -> None:
    image = np.full((50, 70, 3), 127, dtype=np.uint8)
    [result] = tiny_model.predict(image, imgsz=64, conf=1.0)
    assert len(result) == 0
    assert result.masks.shape == (0, 50, 70)
    assert result.to_sa1b()["annotations"] == []


@pytest.mark.parametrize("hw", [(1, 1), (7, 3), (12, 2000), (2000, 12)])
def test_extreme_shapes_run(tiny_model: FastSAM, hw: tuple[int, int]) -> None:
    image = np.random.default_rng(0).integers(0, 256, size=(*hw, 3), dtype=np.uint8)
    [result] = tiny_model.predict(image, imgsz=128)
    _check_result(result, hw)


@pytest.mark.parametrize("retina", [True, False])
def test_retina_and_network_resolution_masks_agree_roughly(tiny_model: FastSAM, photo_path: Path, retina: bool) -> None:
    [result] = tiny_model.predict(photo_path, imgsz=320, retina=retina)
    _check_result(result, load_image(photo_path).shape[:2])


def test_input_kinds(tiny_model: FastSAM, photo_path: Path, tmp_path: Path) -> None:
    pil = Image.open(photo_path)
    gray = tmp_path / "gray.png"
    pil.convert("L").save(gray)
    rgba = tmp_path / "rgba.png"
    pil.convert("RGBA").save(rgba)
    for item in (pil, str(photo_path), np.asarray(pil.convert("RGB")), gray, rgba):
        [result] = tiny_model.predict(item, imgsz=128)
        _check_result(result, (534, 800))


def test_bad_inputs(tiny_model: FastSAM, tmp_path: Path) -> None:
    with pytest.raises(ImageLoadError, match="not found"):
        tiny_model.predict(tmp_path / "missing.jpg")
    with pytest.raises(ValueError, match="conf"):
        tiny_model.predict(np.zeros((10, 10, 3), np.uint8), conf=1.5)
    with pytest.raises(ValueError, match="imgsz"):
        tiny_model.predict(np.zeros((10, 10, 3), np.uint8), imgsz=100)


def test_compiled_network_gives_the_same_masks(tiny_weights, tiny_model, photo_path):
    """The torch.compile option: same detections and masks (the 'eager' compile backend keeps the test fast;
    inductor, the default, needs a C++ compiler and minutes of compile time on 2 CPU cores)."""
    import numpy as np
    import torch

    from fastsam.engine import FastSAM

    compiled = FastSAM(tiny_weights, device="cpu", compile="eager", precision="fp32")
    assert compiled.network.nc == tiny_model.network.nc
    [want] = tiny_model.predict(photo_path, imgsz=256, conf=0.2)
    [got] = compiled.predict(photo_path, imgsz=256, conf=0.2)
    torch._dynamo.reset()
    assert len(want) > 0 and np.array_equal(got.masks, want.masks)
    np.testing.assert_allclose(got.boxes, want.boxes, atol=1e-3)


def test_cpu_results_answer_from_box_windows_until_masks_are_read(tiny_model: FastSAM, photo_path: Path) -> None:
    """RLE, areas, SA-1B and subsets come from the box windows; they equal the same from the laid-out array."""
    from fastsam.ops.rle import mask_area, mask_to_rle

    [result] = tiny_model.predict(photo_path, imgsz=256, conf=0.2)
    assert len(result) > 10 and not result.masks_materialized
    rles, areas, record = result.to_rle(), result.areas(), result.to_sa1b()
    sub = result.select(result.scores > float(np.median(result.scores)))
    sub_rles = sub.to_rle()
    assert not result.masks_materialized and not sub.masks_materialized
    masks = result.masks
    assert result.masks_materialized and masks.shape == (len(result), *result.image_size)
    assert rles == mask_to_rle(masks) and np.array_equal(areas, mask_area(masks))
    assert record == result.to_sa1b()
    assert sub_rles == mask_to_rle(masks[result.scores > float(np.median(result.scores))])
    assert np.array_equal(sub.masks, masks[result.scores > float(np.median(result.scores))])


def _synthetic_photo(seed: int = 0) -> np.ndarray:
    """A 900x1350 RGB image of coloured rectangles over a gradient (runs where the shared photos are absent)."""
    rng = np.random.default_rng(seed)
    image = np.zeros((900, 1350, 3), np.uint8)
    image[:] = np.linspace(0, 200, 1350, dtype=np.uint8)[None, :, None]
    for _ in range(12):
        y, x = rng.integers(0, 800), rng.integers(0, 1250)
        image[y : y + rng.integers(40, 300), x : x + rng.integers(40, 300)] = rng.integers(0, 256, 3)
    return image


def test_synthetic_photo_gives_masks(tiny_model: FastSAM) -> None:
    """The CPU side of the CUDA test below: the synthetic image does give masks (so that test compares some)."""
    [result] = tiny_model.predict(_synthetic_photo(), imgsz=256, conf=0.2)
    assert len(result) > 0


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA device")
def test_cuda_results_keep_masks_on_the_gpu_and_encode_there(tiny_weights) -> None:
    """On CUDA the last batch's masks stay on the device; RLE from there equals RLE of the host copy, and a
    second batch moves the first to the host. float32 on both devices: the masks agree with the CPU's."""
    image = _synthetic_photo()
    gpu = FastSAM(tiny_weights, device="cuda", half=False)
    first, second = gpu.predict([image, image], imgsz=256, conf=0.2, batch_size=1)
    assert first.masks_materialized and not second.masks_materialized
    rles = second.to_rle()
    assert not second.masks_materialized and rles == first.to_rle() and len(rles) > 0
    np.testing.assert_array_equal(rle_to_mask(rles), second.masks)
    [cpu] = FastSAM(tiny_weights, device="cpu", precision="fp32").predict(image, imgsz=256, conf=0.2)
    assert len(cpu) == len(first)
    inter, union = (cpu.masks & first.masks).sum((1, 2)), (cpu.masks | first.masks).sum((1, 2))
    assert np.all(inter / np.maximum(union, 1) > 0.99)
