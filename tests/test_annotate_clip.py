"""fastsam annotate --classes through the real open_clip code path, with a tiny random CLIP saved in open_clip's format
(CLIP weights cannot be downloaded here)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import numpy as np
import pytest

open_clip = pytest.importorskip("open_clip")
torch = pytest.importorskip("torch")

from fastsam.cli import annotate as annotate_cli
from fastsam.cli.main import main
from fastsam.labelling.classes import BACKGROUND_PROMPTS
from fastsam.ops.rle import rle_to_mask
from fastsam.predictor import FastSAMPredictor
from fastsam.prompts.text import ClipScorer, mask_crops

TINY_CLIP_CFG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "patch_size": 16, "width": 32, "head_width": 16, "layers": 1},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
CLASSES = ["dog", "grass", "person", "car"]


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """A tiny random CLIP registered with open_clip (its name) and saved as a checkpoint file (its path)."""
    folder = tmp_path_factory.mktemp("tiny_clip")
    name = f"fastsam-test-annotate-clip-{uuid.uuid4().hex[:8]}"
    (folder / f"{name}.json").write_text(json.dumps(TINY_CLIP_CFG))
    open_clip.add_model_config(folder)
    torch.manual_seed(1)
    model, _, _ = open_clip.create_model_and_transforms(name, pretrained=None)
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim >= 2:
                p.normal_(0.0, 0.2)
    path = folder / "tiny_clip.pt"
    torch.save(model.state_dict(), path)
    return name, path


def _expected_classes(name: str, path: Path, image: np.ndarray, masks: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Each mask's class straight from open_clip: cosine similarities, CLIP's scale 100, softmax, background drops."""
    from PIL import Image

    model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=str(path))
    model.eval()
    tokenizer = open_clip.get_tokenizer(name)
    texts = [f"a photo of a {c}." for c in CLASSES] + list(BACKGROUND_PROMPTS)
    crops = mask_crops(image, masks, boxes)
    with torch.no_grad():
        t = torch.nn.functional.normalize(model.encode_text(tokenizer(texts)).float(), dim=-1)
        i = torch.nn.functional.normalize(model.encode_image(torch.stack([preprocess(Image.fromarray(c)) for c in crops])).float(), dim=-1)
        probs = torch.softmax(100.0 * (i @ t.T).double(), dim=1).numpy()  # (crops, texts)
    winner = probs.argmax(1)
    return np.where(winner < len(CLASSES), winner, -1)


def test_annotate_classes_with_open_clip(tmp_path: Path, shared_images_dir: Path, tiny_weights: Path, tiny_model,
                                         tiny_clip, monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    name, path = tiny_clip
    loaded: list[str] = []

    def tiny_scorer(args, device):  # the CLI's CLIP, loaded through open_clip from the tiny checkpoint file
        loaded.append(device)
        return ClipScorer(name, pretrained=str(path), device=device).load()

    monkeypatch.setattr(annotate_cli, "_text_scorer", tiny_scorer)
    photo = shared_images_dir / "segment-anything" / "dog.jpg"
    out = tmp_path / "ds"
    code = main(["annotate", str(photo), "-o", str(out), "--classes", ",".join(CLASSES), "--text-threshold", "0",
                 "--overlap", "keep", "--model", str(tiny_weights), "--device", "cpu", "--precision", "fp32",
                 "--imgsz", "256", "--max-det", "20", "--quiet"])  # fmt: skip
    assert code == 0 and loaded == ["cpu"]
    data = json.loads((out / "annotations.json").read_text())
    assert [c["name"] for c in data["categories"]] == CLASSES

    result = FastSAMPredictor(tiny_model, imgsz=256, max_det=20).set_image(photo).everything()
    keep = result.masks.reshape(len(result), -1).sum(1) >= 100
    masks, boxes = result.masks[keep], result.boxes[keep]
    classes = _expected_classes(name, path, result.image, masks, boxes)
    expected = [(CLASSES[c], m) for c, m in zip(classes, masks) if c >= 0]
    assert 0 < len(expected) < len(masks)  # some masks are dropped as background, some kept
    got = sorted((data["categories"][a["category_id"] - 1]["name"], rle_to_mask([a["segmentation"]])[0].tobytes())
                  for a in data["annotations"])  # fmt: skip
    assert got == sorted((n, m.tobytes()) for n, m in expected)
