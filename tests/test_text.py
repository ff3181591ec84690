"""Text prompts: mask crops, CLIP scoring (a tiny random open_clip model built here) and selection by text."""

from __future__ import annotations

import json
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

open_clip = pytest.importorskip("open_clip")
torch = pytest.importorskip("torch")

from fastsam.errors import FastSAMError  # noqa: E402
from fastsam.prompts.text import (  # noqa: E402
    ClipScorer,
    ClipUnavailableError,
    TextScorer,
    clear_clip_cache,
    mask_crops,
    select_by_text,
)

TINY_CLIP_CFG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "patch_size": 16, "width": 32, "head_width": 16, "layers": 1},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


class TinyClip:
    """A tiny random CLIP registered with open_clip and saved as a checkpoint file."""

    def __init__(self, name: str, path: Path, state: dict[str, torch.Tensor]) -> None:
        self.name = name
        self.path = path
        self.state = state


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> TinyClip:
    """Register a tiny ViT/transformer CLIP config, build it randomly through open_clip and save its state dict."""
    folder = tmp_path_factory.mktemp("tiny_clip")
    name = f"fastsam-test-tiny-clip-{uuid.uuid4().hex[:8]}"
    (folder / f"{name}.json").write_text(json.dumps(TINY_CLIP_CFG))
    open_clip.add_model_config(folder)
    torch.manual_seed(0)
    model, _, _ = open_clip.create_model_and_transforms(name, pretrained=None)
    # Make the random weights less degenerate so similarities differ clearly between crops.
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim >= 2:
                p.normal_(0.0, 0.2)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    path = folder / "tiny_clip.pt"
    torch.save(state, path)
    return TinyClip(name, path, state)


@pytest.fixture(scope="session")
def tiny_scorer(tiny_clip: TinyClip) -> ClipScorer:
    """A ClipScorer loading the tiny checkpoint through open_clip's `pretrained=<file>` path."""
    scorer = ClipScorer(tiny_clip.name, pretrained=str(tiny_clip.path), batch_size=64).load()
    return scorer


def _scene(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A 64x80 random image with 5 rectangle/disc masks of various sizes and their (float) boxes."""
    rng = np.random.default_rng(seed)
    h, w = 64, 80
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    yy, xx = np.mgrid[:h, :w]
    masks = np.zeros((5, h, w), dtype=bool)
    masks[0, 5:25, 5:30] = True  # 500 px
    masks[1] = (yy - 40) ** 2 + (xx - 55) ** 2 <= 12**2  # disc
    masks[2, 30:60, 2:20] = True  # 540 px
    masks[3, 2:10, 60:75] = True  # 120 px
    masks[4, 50:55, 40:45] = True  # 25 px (not a candidate at min_area 100)
    boxes = []
    for m in masks:
        ys, xs = np.nonzero(m)
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    return image, masks, np.asarray(boxes, dtype=np.float32)


class FixedScorer:
    """A fake scorer returning a fixed (T, C) matrix; records its calls."""

    def __init__(self, matrix: np.ndarray) -> None:
        self.matrix = np.asarray(matrix, dtype=np.float32)
        self.calls: list[tuple[list[np.ndarray], list[str]]] = []

    def __call__(self, crops: list[np.ndarray], texts: list[str]) -> np.ndarray:
        self.calls.append((crops, texts))
        assert self.matrix.shape == (len(texts), len(crops))
        return self.matrix


class CountingScorer:
    """Wraps a scorer, counting calls and keeping the last similarity matrix."""

    def __init__(self, inner: TextScorer) -> None:
        self.inner = inner
        self.calls = 0
        self.last: np.ndarray | None = None

    def __call__(self, crops: list[np.ndarray], texts: list[str]) -> np.ndarray:
        self.calls += 1
        self.last = self.inner(crops, texts)
        return self.last


# ---------------------------------------------------------------------------------------------------------------
# Loading the tiny CLIP through open_clip's real code path
# ---------------------------------------------------------------------------------------------------------------


def test_tiny_checkpoint_loaded_through_open_clip(tiny_clip: TinyClip, tiny_scorer: ClipScorer) -> None:
    loaded = tiny_scorer.model.state_dict()
    assert set(loaded) == set(tiny_clip.state)
    for key, value in tiny_clip.state.items():
        assert torch.equal(loaded[key].cpu(), value), key
    assert not tiny_scorer.model.training
    assert isinstance(tiny_scorer, TextScorer)


def test_clip_scorer_output(tiny_scorer: ClipScorer) -> None:
    rng = np.random.default_rng(1)
    crops = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in [(10, 20), (33, 7), (1, 1), (64, 64)]]
    sim = tiny_scorer(crops, ["a red apple", "a dog", "sky"])
    assert sim.shape == (3, 4) and sim.dtype == np.float32
    assert np.all(np.isfinite(sim)) and np.all(np.abs(sim) <= 1.0 + 1e-5)
    assert np.ptp(sim) > 1e-4  # not degenerate
    # Cosine similarity of L2-normalised features, recomputed by hand.
    from PIL import Image

    model = tiny_scorer.model
    with torch.inference_mode():
        img = torch.stack([tiny_scorer.preprocess(Image.fromarray(c)) for c in crops])
        fi = torch.nn.functional.normalize(model.encode_image(img), dim=-1)
        tokens = tiny_scorer.tokenizer(["a red apple", "a dog", "sky"])
        ft = torch.nn.functional.normalize(model.encode_text(tokens), dim=-1)
    np.testing.assert_allclose(sim, (ft @ fi.T).numpy(), atol=1e-5)


def test_clip_scorer_batches(tiny_scorer: ClipScorer, tiny_clip: TinyClip) -> None:
    rng = np.random.default_rng(2)
    crops = [rng.integers(0, 256, (12, 9, 3), dtype=np.uint8) for _ in range(5)]
    texts = ["cat", "car"]
    full = tiny_scorer(crops, texts)
    small = ClipScorer(tiny_clip.name, pretrained=str(tiny_clip.path), batch_size=2)
    batch_sizes: list[int] = []
    handle = small.model.visual.register_forward_pre_hook(lambda _m, args: batch_sizes.append(args[0].shape[0]))
    try:
        chunked = small(crops, texts)
    finally:
        handle.remove()
    assert batch_sizes == [2, 2, 1]
    np.testing.assert_allclose(chunked, full, atol=1e-5)
    # Typical counts: every crop in one batch.
    batch_sizes.clear()
    handle = tiny_scorer.model.visual.register_forward_pre_hook(lambda _m, args: batch_sizes.append(args[0].shape[0]))
    try:
        tiny_scorer(crops, texts)
    finally:
        handle.remove()
    assert batch_sizes == [5]


def test_clip_scorer_empty_inputs_do_not_load() -> None:
    scorer = ClipScorer("no-such-clip-model", "no-such-tag")
    assert scorer([], ["a"]).shape == (1, 0)
    assert scorer([np.zeros((2, 2, 3), np.uint8)], []).shape == (0, 1)


def test_clip_scorer_rejects_bad_crops(tiny_scorer: ClipScorer) -> None:
    with pytest.raises(ValueError, match="crop 1"):
        tiny_scorer([np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4, 3), np.float32)], ["x"])
    with pytest.raises(ValueError, match="crop 0"):
        tiny_scorer([np.zeros((4, 4), np.uint8)], ["x"])


def test_model_loaded_once(tiny_clip: TinyClip, monkeypatch: pytest.MonkeyPatch) -> None:
    loads: list[str] = []
    original = open_clip.create_model_and_transforms

    def spy(*args, **kwargs):
        loads.append(args[0])
        return original(*args, **kwargs)

    monkeypatch.setattr(open_clip, "create_model_and_transforms", spy)
    clear_clip_cache()
    crops = [np.full((8, 8, 3), 40, np.uint8), np.full((5, 9, 3), 200, np.uint8)]
    a = ClipScorer(tiny_clip.name, pretrained=str(tiny_clip.path))
    b = ClipScorer(tiny_clip.name, pretrained=str(tiny_clip.path))
    assert loads == []  # lazy: nothing loaded at construction
    first = a(crops, ["one"])
    for _ in range(3):
        np.testing.assert_allclose(a(crops, ["one"]), first)
        np.testing.assert_allclose(b(crops, ["one"]), first)
    image, masks, boxes = _scene()
    select_by_text(image, masks, boxes, ["x", "y"], a)
    select_by_text(image, masks, boxes, ["x"], b, top_k=2)
    assert loads == [tiny_clip.name]
    assert a.model is b.model


# ---------------------------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------------------------


def test_offline_error_is_clear(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants as hf_constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    # huggingface_hub reads these at import time: patch the live values too (an empty cache, offline).
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    start = time.perf_counter()
    with pytest.raises(FastSAMError) as info:
        ClipScorer("ViT-B-32", "openai").load()
    assert time.perf_counter() - start < 15
    assert isinstance(info.value, ClipUnavailableError)
    message = str(info.value)
    assert "ViT-B-32" in message and "openai" in message and "HF_HUB_OFFLINE" in message
    assert "could not be found" in message and "downloaded" in message
    # the file expected, where it goes, and the flag that takes it instead
    assert "open_clip_model.safetensors" in message and "timm/vit_base_patch32_clip_224.openai" in message
    assert str(tmp_path / "hf" / "hub" / "models--timm--vit_base_patch32_clip_224.openai") in message
    assert "--clip-checkpoint PATH" in message and "ClipScorer(checkpoint=PATH)" in message
    assert "\n" not in message
    assert info.value.__context__ is None or info.value.__suppress_context__  # no chained traceback


def test_offline_error_also_on_first_call(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    scorer = ClipScorer("ViT-B-32", "openai")
    with pytest.raises(FastSAMError, match="ViT-B-32"):
        scorer([np.zeros((4, 4, 3), np.uint8)], ["a dog"])


def test_unknown_model_name() -> None:
    with pytest.raises(FastSAMError, match="unknown CLIP model name 'ViT-B-23'.*'ViT-B-32'"):
        ClipScorer("ViT-B-23", "openai").load()


def test_missing_weights_file(tmp_path: Path, tiny_clip: TinyClip) -> None:
    missing = tmp_path / "nope.pt"
    with pytest.raises(FastSAMError, match="neither an open_clip pretrained tag") as info:
        ClipScorer(tiny_clip.name, pretrained=str(missing)).load()
    assert tiny_clip.name in str(info.value) and str(missing) in str(info.value)


def test_wrong_checkpoint_file(tmp_path: Path, tiny_clip: TinyClip) -> None:
    bad = tmp_path / "bad.pt"
    torch.save({"visual.proj": torch.zeros(3, 3)}, bad)
    with pytest.raises(FastSAMError, match="could not load the checkpoint file"):
        ClipScorer(tiny_clip.name, pretrained=str(bad)).load()


def test_open_clip_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "open_clip", None)  # makes `import open_clip` raise ImportError
    clear_clip_cache()
    with pytest.raises(FastSAMError, match="pip install open_clip_torch"):
        ClipScorer("ViT-B-32", "openai").load()


def test_constructor_validation() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        ClipScorer(batch_size=0)
    with pytest.raises(ValueError, match="model_name"):
        ClipScorer("")


# ---------------------------------------------------------------------------------------------------------------
# Crops: RGB, background, box rounding
# ---------------------------------------------------------------------------------------------------------------


def _red_blue_scene() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Grey 60x60 image with a pure red disc (left) and a pure blue disc (right); masks are the discs."""
    h, w = 60, 60
    image = np.full((h, w, 3), 128, dtype=np.uint8)
    yy, xx = np.mgrid[:h, :w]
    red = (yy - 20) ** 2 + (xx - 15) ** 2 <= 10**2
    blue = (yy - 40) ** 2 + (xx - 45) ** 2 <= 10**2
    image[red] = (255, 0, 0)
    image[blue] = (0, 0, 255)
    boxes = np.array([[5, 10, 26, 31], [35, 30, 56, 51]], dtype=np.float32)
    return image, np.stack([red, blue]), boxes


def test_crops_are_rgb_with_background() -> None:
    image, masks, boxes = _red_blue_scene()
    seen: list[list[np.ndarray]] = []

    def spy(crops: list[np.ndarray], texts: list[str]) -> np.ndarray:
        seen.append(crops)
        return np.array([[1.0, 0.0]], dtype=np.float32)

    indices, _ = select_by_text(image, masks, boxes, ["red"], spy)
    assert indices.tolist() == [[0]]
    assert len(seen) == 1
    red_crop, blue_crop = seen[0]
    assert red_crop.shape == (21, 21, 3) and red_crop.dtype == np.uint8
    red_inside = masks[0, 10:31, 5:26]
    assert np.all(red_crop[red_inside] == (255, 0, 0))  # R = 255, B = 0: channels not swapped
    assert np.all(red_crop[~red_inside] == 0)  # black background outside the mask (the grey is gone)
    blue_inside = masks[1, 30:51, 35:56]
    assert np.all(blue_crop[blue_inside] == (0, 0, 255))
    assert np.all(blue_crop[~blue_inside] == 0)


def test_preprocessed_red_crop_keeps_red_channel(tiny_scorer: ClipScorer) -> None:
    image, masks, boxes = _red_blue_scene()
    inputs: list[torch.Tensor] = []
    handle = tiny_scorer.model.visual.register_forward_pre_hook(lambda _m, args: inputs.append(args[0].clone()))
    try:
        tiny_scorer([np.full((20, 20, 3), (255, 0, 0), np.uint8)], ["red"])
        select_by_text(image, masks, boxes, ["red", "blue"], tiny_scorer, min_area=0)
    finally:
        handle.remove()
    pure_red = inputs[0][0]  # (3, S, S) normalised
    means = pure_red.mean(dim=(1, 2))
    assert means[0] > means[1] and means[0] > means[2]
    assert means[0] > 1.5 and means[2] < -1.0  # (1 - 0.48) / 0.27 and (0 - 0.41) / 0.28
    red_disc, blue_disc = inputs[1]
    centre = slice(12, 20)
    red_c = red_disc[:, centre, centre].mean(dim=(1, 2))
    blue_c = blue_disc[:, centre, centre].mean(dim=(1, 2))
    assert red_c.argmax().item() == 0 and blue_c.argmax().item() == 2


def test_mask_crops_box_rounding_and_clipping() -> None:
    image = np.arange(10 * 12 * 3, dtype=np.uint16).reshape(10, 12, 3).astype(np.uint8)
    masks = np.ones((4, 10, 12), dtype=bool)
    boxes = np.array(
        [
            [1.5, 2.2, 4.1, 5.0],  # -> x 1..5, y 2..5
            [-3.0, -1.0, 20.0, 30.0],  # clipped to the whole image
            [5.0, 5.0, 5.0, 5.0],  # empty -> 1x1
            [50.0, 50.0, 60.0, 60.0],  # outside -> 1x1 at the bottom-right pixel
        ],
        dtype=np.float32,
    )
    crops = mask_crops(image, masks, boxes)
    assert crops[0].shape == (3, 4, 3)
    np.testing.assert_array_equal(crops[0], image[2:5, 1:5])
    np.testing.assert_array_equal(crops[1], image)
    np.testing.assert_array_equal(crops[2], image[5:6, 5:6])
    np.testing.assert_array_equal(crops[3], image[9:10, 11:12])
    crops[1][...] = 0
    assert image.any()  # crops are copies


def test_mask_crops_background_colour_and_validation() -> None:
    image = np.full((4, 4, 3), 9, np.uint8)
    masks = np.zeros((1, 4, 4), bool)
    masks[0, 1, 1] = True
    [crop] = mask_crops(image, masks, np.array([[0, 0, 3, 3]], np.float32), background=(1, 2, 3))
    assert crop[1, 1].tolist() == [9, 9, 9] and crop[0, 0].tolist() == [1, 2, 3]
    [crop] = mask_crops(image, masks, np.array([[0, 0, 3, 3]], np.float32), background=255)
    assert crop[0, 0].tolist() == [255, 255, 255]
    with pytest.raises(ValueError, match="background"):
        mask_crops(image, masks, np.array([[0, 0, 3, 3]]), background=300)
    with pytest.raises(ValueError, match="one box per mask"):
        mask_crops(image, masks, np.zeros((2, 4)))
    with pytest.raises(ValueError, match="finite"):
        mask_crops(image, masks, np.array([[0, 0, np.nan, 3]]))
    with pytest.raises(ValueError, match="RGB uint8"):
        mask_crops(image.astype(np.float32), masks, np.array([[0, 0, 3, 3]]))
    assert mask_crops(image, np.zeros((0, 4, 4), bool), np.zeros((0, 4))) == []


# ---------------------------------------------------------------------------------------------------------------
# Selection
# ---------------------------------------------------------------------------------------------------------------


def test_one_row_per_query_argmax_over_candidates(tiny_scorer: ClipScorer) -> None:
    image, masks, boxes = _scene()
    texts = ["a photo of a cat", "a red car", "the sky", "grass"]
    counting = CountingScorer(tiny_scorer)
    indices, scores = select_by_text(image, masks, boxes, texts, counting)
    assert counting.calls == 1  # one scorer call for all texts and crops
    assert indices.shape == (4, 1) and indices.dtype == np.int64
    assert scores.shape == (4, 1) and scores.dtype == np.float32
    candidates = np.flatnonzero(masks.reshape(5, -1).sum(1) > 100)
    assert candidates.tolist() == [0, 1, 2, 3]
    sim = counting.last
    assert sim is not None and sim.shape == (4, 4)
    np.testing.assert_array_equal(indices[:, 0], candidates[sim.argmax(axis=1)])
    np.testing.assert_allclose(scores[:, 0], sim.max(axis=1))
    # Each row is the answer for its own query (same as asking alone).
    for t, text in enumerate(texts):
        alone, alone_scores = select_by_text(image, masks, boxes, [text], tiny_scorer)
        assert alone[0, 0] == indices[t, 0]
        np.testing.assert_allclose(alone_scores[0, 0], scores[t, 0], atol=1e-5)


def test_top_k_ordering_real_clip(tiny_scorer: ClipScorer) -> None:
    image, masks, boxes = _scene(3)
    indices, scores = select_by_text(image, masks, boxes, ["a", "b b"], tiny_scorer, top_k=3)
    assert indices.shape == scores.shape == (2, 3)
    assert np.all(np.diff(scores, axis=1) <= 0)
    assert len(set(indices[0].tolist())) == 3 and np.all(indices >= 0) and 4 not in indices


def test_selection_with_fixed_matrix_and_ties() -> None:
    image, masks, boxes = _scene()
    # Candidates (area > 100) are masks 0, 1, 2, 3 -> matrix columns 0..3.
    matrix = [
        [0.5, 0.9, 0.9, 0.1],  # tie between masks 1 and 2: lower index first
        [0.2, 0.2, 0.2, 0.2],  # all tied -> mask order
        [-0.3, 0.0, 0.7, 0.6],
    ]
    scorer = FixedScorer(matrix)
    indices, scores = select_by_text(image, masks, boxes, ["p", "q", "r"], scorer, top_k=3)
    assert len(scorer.calls) == 1 and scorer.calls[0][1] == ["p", "q", "r"]
    assert indices.tolist() == [[1, 2, 0], [0, 1, 2], [2, 3, 1]]
    np.testing.assert_allclose(scores, [[0.9, 0.9, 0.5], [0.2, 0.2, 0.2], [0.7, 0.6, 0.0]])


def test_candidate_columns_map_back_to_mask_indices() -> None:
    image, masks, boxes = _scene()
    masks = np.concatenate([masks[4:5], masks])  # a small mask first: candidates are masks 1..4
    boxes = np.concatenate([boxes[4:5], boxes])
    scorer = FixedScorer([[0.1, 0.2, 0.3, 0.9]])
    indices, scores = select_by_text(image, masks, boxes, ["x"], scorer, top_k=2)
    assert indices.tolist() == [[4, 3]]
    np.testing.assert_allclose(scores, [[0.9, 0.3]])


def test_top_k_larger_than_candidates_pads() -> None:
    image, masks, boxes = _scene()
    scorer = FixedScorer([[0.1, 0.4, 0.3, 0.2]])
    indices, scores = select_by_text(image, masks, boxes, ["x"], scorer, top_k=6)
    assert indices.tolist() == [[1, 2, 3, 0, -1, -1]]
    assert np.all(np.isnan(scores[0, 4:])) and np.all(np.isfinite(scores[0, :4]))


def test_min_area_masks_never_selected() -> None:
    image, masks, boxes = _scene()
    areas = masks.reshape(5, -1).sum(1)
    min_area = int(areas[3])  # mask 3 has exactly min_area pixels: not a candidate (area <= min_area)
    seen: list[int] = []

    def favour_last(crops: list[np.ndarray], texts: list[str]) -> np.ndarray:
        seen.append(len(crops))
        return np.tile(np.arange(len(crops), dtype=np.float32), (len(texts), 1))

    indices, _ = select_by_text(image, masks, boxes, ["x", "y"], favour_last, top_k=5, min_area=min_area)
    assert seen == [int((areas > min_area).sum())]
    selected = set(indices[indices >= 0].tolist())
    assert selected == {i for i in range(5) if areas[i] > min_area}
    assert 3 not in selected and 4 not in selected


def test_no_candidates() -> None:
    image, masks, boxes = _scene()

    def must_not_be_called(crops: list[np.ndarray], texts: list[str]) -> np.ndarray:
        raise AssertionError("scorer called without candidates")

    indices, scores = select_by_text(image, masks, boxes, ["a", "b"], must_not_be_called, top_k=2, min_area=10**6)
    assert indices.tolist() == [[-1, -1], [-1, -1]] and indices.dtype == np.int64
    assert scores.shape == (2, 2) and scores.dtype == np.float32 and np.all(np.isnan(scores))
    empty_masks = np.zeros((0, 64, 80), bool)
    indices, scores = select_by_text(image, empty_masks, np.zeros((0, 4)), ["a"], must_not_be_called)
    assert indices.tolist() == [[-1]] and np.isnan(scores[0, 0])


def test_no_texts() -> None:
    image, masks, boxes = _scene()

    def must_not_be_called(crops: list[np.ndarray], texts: list[str]) -> np.ndarray:
        raise AssertionError("scorer called without texts")

    indices, scores = select_by_text(image, masks, boxes, [], must_not_be_called, top_k=3)
    assert indices.shape == (0, 3) and indices.dtype == np.int64
    assert scores.shape == (0, 3) and scores.dtype == np.float32


def test_validation() -> None:
    image, masks, boxes = _scene()
    scorer = FixedScorer(np.zeros((1, 4)))
    with pytest.raises(ValueError, match=r"texts\[1\] = ''"):
        select_by_text(image, masks, boxes, ["ok", ""], scorer)
    with pytest.raises(ValueError, match=r"texts\[0\] = '   '"):
        select_by_text(image, masks, boxes, ["   "], scorer)
    with pytest.raises(ValueError, match=r"texts\[2\] = None"):
        select_by_text(image, masks, boxes, ["a", "b", None], scorer)  # type: ignore[list-item]
    with pytest.raises(ValueError, match="single string"):
        select_by_text(image, masks, boxes, "a dog", scorer)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="top_k"):
            select_by_text(image, masks, boxes, ["a"], scorer, top_k=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"masks must be \(N, H, W\)"):
        select_by_text(image, masks[:, :10], boxes, ["a"], scorer)
    with pytest.raises(ValueError, match="expected"):
        select_by_text(image, masks, boxes, ["a"], lambda crops, texts: np.zeros((1, 3), np.float32))
    assert scorer.calls == []


def test_repr_and_defaults() -> None:
    scorer = ClipScorer()
    assert (scorer.model_name, scorer.pretrained, str(scorer.device), scorer.batch_size) == (
        "ViT-B-32",
        "openai",
        "cpu",
        64,
    )
    assert "ViT-B-32" in repr(scorer)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_clip_scorer_on_cuda_matches_cpu(tiny_clip: TinyClip, tiny_scorer: ClipScorer) -> None:
    rng = np.random.default_rng(4)
    crops = [rng.integers(0, 256, (16, 24, 3), dtype=np.uint8) for _ in range(3)]
    gpu = ClipScorer(tiny_clip.name, pretrained=str(tiny_clip.path), device="cuda")
    np.testing.assert_allclose(gpu(crops, ["a", "b"]), tiny_scorer(crops, ["a", "b"]), atol=1e-3)
