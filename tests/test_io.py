"""Tests for fastsam.io: load_image and list_images."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fastsam.errors import ImageLoadError
from fastsam.io import IMAGE_EXTENSIONS, list_images, load_image


def _gradient(height: int = 20, width: int = 30) -> np.ndarray:
    """A deterministic (H, W, 3) uint8 RGB test image."""
    yy, xx = np.mgrid[:height, :width]
    return np.stack([xx * 8 % 256, yy * 12 % 256, (xx + yy) * 5 % 256], axis=2).astype(np.uint8)


def _assert_rgb(arr: np.ndarray, shape: tuple[int, int]) -> None:
    assert arr.dtype == np.uint8
    assert arr.shape == (*shape, 3)
    assert arr.flags.c_contiguous


# --- files ---------------------------------------------------------------------------------------


def test_png_rgb_roundtrip(tmp_path: Path) -> None:
    img = _gradient()
    path = tmp_path / "a.png"
    Image.fromarray(img).save(path)
    out = load_image(path)
    _assert_rgb(out, (20, 30))
    np.testing.assert_array_equal(out, img)
    np.testing.assert_array_equal(load_image(str(path)), img)


def test_exif_orientation_applied(tmp_path: Path) -> None:
    path = tmp_path / "rot.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    Image.fromarray(_gradient(20, 30)).save(path, exif=exif.tobytes())
    with Image.open(path) as raw:
        assert raw.size == (30, 20)  # stored landscape
    out = load_image(path)
    _assert_rgb(out, (30, 20))  # displayed portrait


def test_sixteen_bit_png(tmp_path: Path) -> None:
    values = (np.arange(16 * 16, dtype=np.uint32).reshape(16, 16) * 256).astype(np.uint16)
    path = tmp_path / "g16.png"
    Image.fromarray(values).save(path)
    out = load_image(path)
    _assert_rgb(out, (16, 16))
    expected = (values >> 8).astype(np.uint8)
    for c in range(3):
        np.testing.assert_array_equal(out[:, :, c], expected)


def test_palette_png_with_transparency(tmp_path: Path) -> None:
    pixels = np.zeros((6, 8), np.uint8)
    pixels[:, 4:] = 1
    pal_img = Image.new("P", (8, 6))
    pal_img.putpalette([255, 0, 0, 0, 255, 0] + [0] * (256 * 3 - 6))
    pal_img.frombytes(pixels.tobytes())
    path = tmp_path / "pal.png"
    pal_img.save(path, transparency=0)
    with Image.open(path) as check:
        assert check.mode == "P" and "transparency" in check.info
    out = load_image(path)
    _assert_rgb(out, (6, 8))
    np.testing.assert_array_equal(out[0, 0], [255, 0, 0])  # alpha dropped, colour kept
    np.testing.assert_array_equal(out[0, 7], [0, 255, 0])


def test_rgba_and_la_drop_alpha(tmp_path: Path) -> None:
    rgba = np.dstack([_gradient(), np.full((20, 30), 7, np.uint8)])
    path = tmp_path / "rgba.png"
    Image.fromarray(rgba).save(path)
    np.testing.assert_array_equal(load_image(path), rgba[:, :, :3])
    la = Image.fromarray(np.full((5, 4), 99, np.uint8)).convert("LA")
    np.testing.assert_array_equal(load_image(la), np.full((5, 4, 3), 99, np.uint8))


def test_grayscale_and_bilevel(tmp_path: Path) -> None:
    gray = _gradient()[:, :, 0]
    path = tmp_path / "g.png"
    Image.fromarray(gray).save(path)
    out = load_image(path)
    np.testing.assert_array_equal(out, np.repeat(gray[:, :, None], 3, axis=2))
    bilevel = Image.fromarray(gray > 100).convert("1")
    out1 = load_image(bilevel)
    np.testing.assert_array_equal(out1[:, :, 1], np.where(gray > 100, 255, 0))


def test_cmyk_jpeg(tmp_path: Path) -> None:
    path = tmp_path / "cmyk.jpg"
    Image.fromarray(_gradient()).convert("CMYK").save(path)
    out = load_image(path)
    _assert_rgb(out, (20, 30))


def test_pil_int32_and_float_modes() -> None:
    i32 = Image.fromarray(np.array([[0, 256, 65535, 70000, -5]], dtype=np.int32))
    assert i32.mode == "I"
    np.testing.assert_array_equal(load_image(i32)[0, :, 0], [0, 1, 255, 255, 0])
    f_unit = Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32))
    assert f_unit.mode == "F"
    np.testing.assert_array_equal(load_image(f_unit)[0, :, 0], [0, 128, 255])
    f_wide = Image.fromarray(np.array([[-3.0, 10.0, 300.0]], dtype=np.float32))
    np.testing.assert_array_equal(load_image(f_wide)[0, :, 0], [0, 10, 255])


def test_missing_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.jpg"
    with pytest.raises(ImageLoadError, match="not found") as info:
        load_image(missing)
    assert str(missing) in str(info.value)


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(ImageLoadError, match="directory"):
        load_image(tmp_path)


def test_corrupt_file(tmp_path: Path) -> None:
    path = tmp_path / "noise.jpg"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(ImageLoadError, match="not a readable image") as info:
        load_image(path)
    assert "noise.jpg" in str(info.value)


def test_text_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello, not an image\n")
    with pytest.raises(ImageLoadError, match="not a readable image"):
        load_image(path)


def test_truncated_jpeg(tmp_path: Path) -> None:
    buf = io.BytesIO()
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buf, format="JPEG")
    data = buf.getvalue()
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageLoadError, match="not a readable image"):
        load_image(path)


def test_decompression_bomb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "big.png"
    Image.fromarray(np.zeros((100, 100), np.uint8)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 10000 px > 2 x limit -> error
    with pytest.raises(ImageLoadError, match="MAX_IMAGE_PIXELS"):
        load_image(path)


def test_real_photo_loads(shared_images_dir: Path) -> None:
    path = shared_images_dir / "segment-anything" / "dog.jpg"
    if not path.is_file():
        pytest.skip(f"{path} not present")
    out = load_image(path)
    assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3


# --- in-memory inputs ----------------------------------------------------------------------------


def test_pil_image_input_is_not_modified() -> None:
    pil = Image.fromarray(_gradient())
    out = load_image(pil)
    np.testing.assert_array_equal(out, _gradient())
    assert pil.mode == "RGB" and pil.size == (30, 20)


@pytest.mark.parametrize(
    ("array", "expected"),
    [
        (np.full((4, 5), 9, np.uint8), np.full((4, 5, 3), 9, np.uint8)),
        (np.full((4, 5, 1), 9, np.uint8), np.full((4, 5, 3), 9, np.uint8)),
        (np.full((4, 5, 4), 9, np.uint8), np.full((4, 5, 3), 9, np.uint8)),
        (np.full((4, 5, 3), 65535, np.uint16), np.full((4, 5, 3), 255, np.uint8)),
        (np.full((4, 5, 3), 257 * 10, np.uint16), np.full((4, 5, 3), 10, np.uint8)),
        (np.full((4, 5), 0.5, np.float32), np.full((4, 5, 3), 128, np.uint8)),
        (np.ones((4, 5, 3), np.float64), np.full((4, 5, 3), 255, np.uint8)),
        (np.ones((4, 5), bool), np.full((4, 5, 3), 255, np.uint8)),
    ],
)
def test_array_inputs(array: np.ndarray, expected: np.ndarray) -> None:
    out = load_image(array)
    _assert_rgb(out, expected.shape[:2])
    np.testing.assert_array_equal(out, expected)


def test_array_output_is_a_copy() -> None:
    src = _gradient()
    out = load_image(src)
    out[...] = 0
    np.testing.assert_array_equal(src, _gradient())
    noncontig = load_image(np.asfortranarray(_gradient()))
    assert noncontig.flags.c_contiguous


@pytest.mark.parametrize("shape", [(4,), (4, 5, 2), (4, 5, 5), (2, 4, 5, 3), (0, 5, 3)])
def test_array_bad_shape(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="shape"):
        load_image(np.zeros(shape, np.uint8))


@pytest.mark.parametrize("dtype", [np.int64, np.int8, np.int32, np.complex64])
def test_array_bad_dtype(dtype: type) -> None:
    with pytest.raises(ValueError, match=np.dtype(dtype).name):
        load_image(np.zeros((4, 5, 3), dtype))


def test_array_float_out_of_range() -> None:
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        load_image(np.full((4, 5, 3), 200.0))
    with pytest.raises(ValueError, match="NaN"):
        load_image(np.full((4, 5, 3), np.nan))


def test_bad_type() -> None:
    with pytest.raises(TypeError):
        load_image(123)  # type: ignore[arg-type]


# --- list_images ---------------------------------------------------------------------------------


def _touch_images(folder: Path, names: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"x")


def test_extensions_are_lowercase_with_dot() -> None:
    assert ".jpg" in IMAGE_EXTENSIONS and ".webp" in IMAGE_EXTENSIONS
    assert all(e.startswith(".") and e == e.lower() for e in IMAGE_EXTENSIONS)


def test_list_images_folder(tmp_path: Path) -> None:
    _touch_images(tmp_path / "d", ["b.png", "a.JPG", "c.txt", "z.webp"])
    (tmp_path / "d" / "sub.png").mkdir()  # a folder with an image-like name is not a file
    _touch_images(tmp_path / "d" / "nested", ["n.png"])
    paths, problems = list_images([str(tmp_path / "d")])
    assert [p.name for p in paths] == ["a.JPG", "b.png", "z.webp"]
    assert problems == []


def test_list_images_glob_missing_and_dedup(tmp_path: Path) -> None:
    _touch_images(tmp_path, ["x1.png", "x2.png", "y.jpg", "notes.txt"])
    explicit = tmp_path / "notes.txt"
    paths, problems = list_images(
        [
            str(tmp_path / "y.jpg"),
            str(tmp_path / "x*.png"),
            str(tmp_path / "*"),
            str(explicit),
            str(tmp_path / "missing.png"),
            str(tmp_path / "q*.png"),
        ]
    )
    assert [p.name for p in paths] == ["y.jpg", "x1.png", "x2.png", "notes.txt"]
    assert len(problems) == 2
    assert "missing.png" in problems[0] and "no such file" in problems[0]
    assert "q*.png" in problems[1] and "matched no" in problems[1]


def test_list_images_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    paths, problems = list_images([str(tmp_path / "empty")])
    assert paths == [] and len(problems) == 1 and "no image" in problems[0]
