"""Shared pytest fixtures."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/model_factory.py

import torch  # noqa: E402
from PIL import Image  # noqa: E402

_PIL_OPEN = Image.open
_TORCH_THREADS = torch.get_num_threads()
_THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_MAX_THREADS")
_THREAD_ENV_AS_SHIPPED = {name: os.environ.get(name) for name in _THREAD_ENV}


@pytest.fixture(autouse=True)
def _pillow_as_shipped():
    """Importing ultralytics (the test-only oracle, imported in-process by a few tests) replaces ``PIL.Image.open``
    process-wide with a version that tries to pip-install a HEIF plugin on any unidentified file, changes torch's
    thread count and sets ``OMP_NUM_THREADS=1`` in the environment, which every subprocess started later (a backend, a
    server) inherits, so it would compute with one thread where this process uses several and round differently; put
    all of them back after every test so that no later test runs under them."""
    yield
    if Image.open is not _PIL_OPEN:
        Image.open = _PIL_OPEN
    if torch.get_num_threads() != _TORCH_THREADS:  # ultralytics' import changes torch's thread count too
        torch.set_num_threads(_TORCH_THREADS)
    for name, value in _THREAD_ENV_AS_SHIPPED.items():
        if os.environ.get(name) != value:
            if value is None:
                del os.environ[name]
            else:
                os.environ[name] = value


SHARED_DIR = Path(os.environ.get("FASTSAM_SHARED", Path(__file__).resolve().parents[1] / ".." / "shared")).resolve()
"""Read-only project data (``$FASTSAM_SHARED``, default ``../shared`` next to the repository)."""


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The shared data folder; skips the test when it is absent."""
    if not SHARED_DIR.is_dir():
        pytest.skip(f"shared data folder not found at {SHARED_DIR} (set FASTSAM_SHARED to its location)")
    return SHARED_DIR


@pytest.fixture(scope="session")
def shared_images_dir(shared_dir: Path) -> Path:
    """``shared/data/images`` (real photos); skips the test when it is absent."""
    path = shared_dir / "data" / "images"
    if not path.is_dir():
        pytest.skip(f"real test images not found at {path}")
    return path


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight YOLOv8-seg-n network saved in our .safetensors format (float16)."""
    from model_factory import save_random_weights

    return save_random_weights(tmp_path_factory.mktemp("weights") / "tiny-n.safetensors", "n", 16, seed=0)


@pytest.fixture(scope="session")
def tiny_model(tiny_weights: Path):
    """A FastSAM on CPU with the random-weight n network."""
    from fastsam.engine import FastSAM

    return FastSAM(tiny_weights, device="cpu", precision="fp32")


@pytest.fixture(scope="session")
def photo_path(shared_images_dir: Path) -> Path:
    """A real photo (landscape, 800x534)."""
    return shared_images_dir / "segment-anything" / "dog.jpg"


@pytest.fixture(scope="session")
def shapes_training(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One real training run shared by the session: FastSAM-n, 400 steps on synthetic shapes (64 px), flips only
    (about 45 s on 2 CPU cores). Its numbers (see ``train_synth.converge``) and ``"weights"``: the EMA weights."""
    from train_synth import converge

    from fastsam.training.augment import Augment

    augment = Augment(mosaic=0.0, scale=0.0, translate=0.0, fliplr=0.5, hsv_h=0.0, hsv_s=0.0, hsv_v=0.0)
    return converge(tmp_path_factory.mktemp("shapes"), seed=0, epochs=50, augment=augment)  # 8 batches x 50 epochs
