"""Where named weights live, and fetching them on first use.

``FastSAM-s`` / ``FastSAM-x`` resolve to ``$FASTSAM_HOME`` (default ``$XDG_CACHE_HOME/fastsam``, i.e.
``~/.cache/fastsam``). On first use the official ``.pt`` file is downloaded there (size checked, written
atomically) and converted once to ``.safetensors``, which is what later runs load.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from pathlib import Path

from .build import MODEL_REGISTRY, ModelSpec
from .errors import CheckpointError, WeightsNotFoundError


def cache_dir() -> Path:
    """The weights cache: ``$FASTSAM_HOME``, else ``$XDG_CACHE_HOME/fastsam``, else ``~/.cache/fastsam``."""
    if os.environ.get("FASTSAM_HOME"):
        return Path(os.environ["FASTSAM_HOME"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "fastsam"


def _download(url: str, dest: Path, expected_size: int | None, timeout: float = 30.0) -> None:
    """Download ``url`` to ``dest`` atomically with a progress bar; check the size when it is known."""
    from tqdm import tqdm

    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")
    request = urllib.request.Request(url, headers={"User-Agent": "fastsam"})
    with urllib.request.urlopen(request, timeout=timeout) as response, open(tmp, "wb") as handle:
        total = int(response.headers.get("Content-Length") or 0) or expected_size
        with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name) as bar:
            while block := response.read(1 << 20):
                handle.write(block)
                bar.update(len(block))
    size = tmp.stat().st_size
    if expected_size is not None and size != expected_size:
        tmp.unlink(missing_ok=True)
        raise OSError(f"downloaded {size} bytes, expected {expected_size}")
    os.replace(tmp, dest)


def resolve_weights(model: str | os.PathLike, download: bool = True) -> Path:
    """Turn a model argument into a weights file to load.

    Args:
        model: a registry name (``FastSAM-s``, ``FastSAM-x``; ``.pt`` suffix allowed), or a path to an
            official ``.pt`` file or one of our ``.safetensors`` files.
        download: fetch named weights that are not cached yet.

    Raises:
        WeightsNotFoundError: a path that does not exist, or named weights that are not cached and could not
            be downloaded (the message names the file, the address and where to put it).
    """
    text = os.fspath(model)
    name = text[:-3] if text.endswith(".pt") else text
    if name in MODEL_REGISTRY and not Path(text).exists():
        return _resolve_named(name, MODEL_REGISTRY[name], download)
    path = Path(text).expanduser()
    if path.is_file():
        return path
    known = ", ".join(MODEL_REGISTRY)
    raise WeightsNotFoundError(f"weights not found: {text} (not a file, and not one of the named models: {known})")


def _resolve_named(name: str, spec: ModelSpec, download: bool) -> Path:
    from .checkpoint import convert_checkpoint

    home = cache_dir()
    converted = home / f"{name}.safetensors"
    if converted.is_file():
        return converted
    original = home / spec.filename
    if not original.is_file():
        if not download:
            raise WeightsNotFoundError(_missing_message(spec, original, "downloads are disabled"))
        try:
            _download(spec.url, original, spec.size_bytes)
        except (urllib.error.URLError, OSError, ValueError) as err:
            raise WeightsNotFoundError(_missing_message(spec, original, str(err))) from None
    try:
        return convert_checkpoint(original, converted)
    except CheckpointError:
        raise
    except OSError:  # read-only cache: load the original directly
        return original


def _missing_message(spec: ModelSpec, target: Path, reason: str) -> str:
    return (
        f"{spec.filename} is not in {target.parent} and could not be downloaded from {spec.url} ({reason}). "
        f"Download it where you have internet access and put it at {target} "
        f"(or set FASTSAM_HOME to the folder holding it, or pass the file's path as the model)."
    )

