"""Reading and writing weights safely.

Two formats are read:

* the official ultralytics ``.pt`` files (a ``torch.save`` zip archive holding a pickled module tree). They are
  read **without executing code from the file**: the pickle is interpreted by an allow-listing unpickler in
  which every module class becomes an inert stand-in, tensors are rebuilt from the archive's raw storages by our
  own code, and any other global (``os.system``, ``subprocess.Popen``, ...) is refused with an error naming it.
  ultralytics does not need to be installed.
* our own ``.safetensors`` files (tensors + string metadata), written by :func:`save_safetensors`.
"""

from __future__ import annotations

import collections
import hashlib
import io
import os
import pickle
import threading
import zipfile
from pathlib import Path
from typing import Any

import torch

from .errors import CheckpointError

_STORAGE_DTYPES: dict[str, torch.dtype] = {
    "HalfStorage": torch.float16,
    "FloatStorage": torch.float32,
    "DoubleStorage": torch.float64,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}

# Module prefixes whose classes become inert stand-ins: the module tree and the training objects that
# ultralytics pickles into its checkpoints. Nothing of these is imported or executed.
_STUB_PREFIXES = ("ultralytics.", "torch.nn.modules.")


class _Stub:
    """Inert stand-in for a pickled class instance: keeps its state dict, runs nothing."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.__dict__["_args"] = args

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2:  # (dict state, slot state)
            state = {**(state[0] or {}), **(state[1] or {})}
        if isinstance(state, dict):
            self.__dict__.update(state)

    def __call__(self, *args: Any, **kwargs: Any) -> "_Stub":
        return _Stub()


_stub_classes: dict[str, type] = {}


def _stub_class(qualified_name: str) -> type:
    if qualified_name not in _stub_classes:
        _stub_classes[qualified_name] = type(qualified_name.rsplit(".", 1)[-1], (_Stub,), {"_pickled_as": qualified_name})
    return _stub_classes[qualified_name]


def _safe_getattr(obj: Any, name: str, *default: Any) -> Any:
    # Old checkpoints pickle bound methods such as ``Detect.forward``; only stand-ins may be asked.
    if isinstance(obj, _Stub) or (isinstance(obj, type) and issubclass(obj, _Stub)):
        return _Stub()
    raise pickle.UnpicklingError(f"getattr on {type(obj).__name__!r} objects is not allowed")


def _rebuild_tensor(storage: torch.Tensor, offset: int, size: tuple, stride: tuple, *_: Any) -> torch.Tensor:
    if not isinstance(storage, torch.Tensor):
        raise pickle.UnpicklingError("tensor rebuilt from something that is not a storage")
    return torch.as_strided(storage, tuple(size), tuple(stride), int(offset))


def _rebuild_parameter(data: torch.Tensor, *_: Any) -> torch.Tensor:
    if not isinstance(data, torch.Tensor):
        raise pickle.UnpicklingError("parameter rebuilt from something that is not a tensor")
    return data


def _rebuild_from_type_v2(func: Any, new_type: Any, args: tuple, state: Any) -> Any:
    if func not in (_rebuild_tensor, _rebuild_parameter):
        raise pickle.UnpicklingError("unexpected tensor rebuild function")
    return func(*args)


def _codecs_encode(text: str, encoding: str = "utf-8") -> bytes:
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("only latin1 byte strings may be decoded")
    return text.encode(encoding)


def _numpy_scalar(dtype: Any, data: bytes | None = None) -> Any:
    import numpy as np

    if not isinstance(dtype, np.dtype) or dtype.hasobject or not isinstance(data, bytes):
        raise pickle.UnpicklingError("only plain numeric numpy scalars are allowed")
    return np.frombuffer(data, dtype=dtype)[0]


def _numpy_dtype(name: str, *args: Any) -> Any:
    import numpy as np

    dtype = np.dtype(name)
    if dtype.hasobject:
        raise pickle.UnpicklingError("numpy object dtypes are not allowed")
    return dtype


_ALLOWED: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "slice"): slice,
    ("builtins", "getattr"): _safe_getattr,
    ("torch", "Size"): torch.Size,
    ("torch", "device"): torch.device,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
    ("torch.nn.parameter", "Parameter"): _rebuild_parameter,
    ("_codecs", "encode"): _codecs_encode,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    ("numpy", "dtype"): _numpy_dtype,
}


class _StorageMarker:
    def __init__(self, dtype: torch.dtype) -> None:
        self.dtype = dtype


class _SafeUnpickler(pickle.Unpickler):
    def __init__(self, file: io.BufferedIOBase, archive: zipfile.ZipFile, prefix: str, source: str) -> None:
        super().__init__(file)
        self._archive = archive
        self._prefix = prefix
        self._source = source
        self._storages: dict[str, torch.Tensor] = {}

    def find_class(self, module: str, name: str) -> Any:
        if module == "__builtin__":  # Python 2 name, normally renamed by pickle itself
            module = "builtins"
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageMarker(_STORAGE_DTYPES[name])
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        if module.startswith(_STUB_PREFIXES):
            return _stub_class(f"{module}.{name}")
        raise CheckpointError(
            f"refusing to load {self._source}: it asks to run {module}.{name}, which a FastSAM checkpoint never "
            "needs (tensors and YOLOv8 module classes only). The file may be malicious or not a model checkpoint; "
            "nothing from it was executed."
        )

    def persistent_load(self, pid: Any) -> torch.Tensor:
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r:.80}")
        _, marker, key, _location, numel = pid[:5]
        dtype = marker.dtype if isinstance(marker, _StorageMarker) else marker
        if not isinstance(dtype, torch.dtype):
            raise pickle.UnpicklingError("storage without a dtype")
        if key not in self._storages:
            try:
                raw = self._archive.read(f"{self._prefix}data/{key}")
            except KeyError:
                raise pickle.UnpicklingError(f"storage {key!r} missing from the archive") from None
            flat = torch.frombuffer(bytearray(raw), dtype=dtype) if raw else torch.empty(0, dtype=dtype)
            if flat.numel() < int(numel):
                raise pickle.UnpicklingError(f"storage {key!r} is truncated")
            self._storages[key] = flat
        return self._storages[key]


def _read_torch_zip(path: Path) -> Any:
    """Unpickle the object of a ``torch.save`` zip archive with the allow-listing unpickler."""
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise CheckpointError(
            f"{path} is not a torch.save zip archive (corrupt, truncated, or the legacy pre-1.6 format). "
            "Re-download the file, or re-save it with a current torch."
        ) from None
    with archive:
        pickles = [n for n in archive.namelist() if n.endswith("data.pkl") and n.count("/") == 1]
        if not pickles:
            raise CheckpointError(f"{path} is a zip file but not a torch.save archive (no data.pkl inside)")
        prefix = pickles[0][: -len("data.pkl")]
        byteorder = archive.read(f"{prefix}byteorder").decode() if f"{prefix}byteorder" in archive.namelist() else "little"
        if byteorder != "little":
            raise CheckpointError(f"{path} was saved on a big-endian machine, which is not supported")
        with archive.open(pickles[0]) as handle:
            unpickler = _SafeUnpickler(io.BufferedReader(handle), archive, prefix, str(path))
            try:
                return unpickler.load()
            except CheckpointError:
                raise
            except Exception as err:  # malformed pickle stream
                raise CheckpointError(f"cannot read {path}: {type(err).__name__}: {err}") from None


def _module_state_dict(module: Any, prefix: str = "") -> dict[str, torch.Tensor]:
    """Walk a stand-in module tree (``_parameters``, ``_buffers``, ``_modules``) like ``nn.Module.state_dict``."""
    state = getattr(module, "__dict__", {})
    out: dict[str, torch.Tensor] = {}
    for name, tensor in (state.get("_parameters") or {}).items():
        if tensor is not None:
            out[prefix + name] = tensor
    non_persistent = state.get("_non_persistent_buffers_set") or set()
    for name, tensor in (state.get("_buffers") or {}).items():
        if tensor is not None and name not in non_persistent:
            out[prefix + name] = tensor
    for name, child in (state.get("_modules") or {}).items():
        if child is not None:
            out.update(_module_state_dict(child, f"{prefix}{name}."))
    return out


def _train_imgsz(train_args: Any) -> int | None:
    args = train_args.__dict__ if isinstance(train_args, _Stub) else train_args
    value = args.get("imgsz") if isinstance(args, dict) else None
    return int(value) if isinstance(value, int) else None


def load_ultralytics_checkpoint(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read the state dict of an ultralytics-format ``.pt`` checkpoint without executing its pickle code.

    Returns:
        ``(state_dict, metadata)``: tensors as stored (the released FastSAM files hold float16), and a dict with
        ``format``, ``version``, ``date`` and ``train_imgsz`` where the file records them.

    Raises:
        CheckpointError: unreadable file, unsafe content (names the refused global), or no model inside.
    """
    path = Path(path)
    obj = _read_torch_zip(path)
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return dict(obj), {"format": "state_dict"}
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a checkpoint dict")
    model = obj.get("ema") or obj.get("model")
    if model is None:
        raise CheckpointError(f"{path} holds no model (neither 'ema' nor 'model' is set); keys: {sorted(obj)}")
    if isinstance(model, dict):
        state_dict = {k: v for k, v in model.items() if isinstance(v, torch.Tensor)}
    else:
        state_dict = _module_state_dict(model)
    if not state_dict:
        raise CheckpointError(f"{path} holds a model without weights")
    meta = {
        "format": "ultralytics",
        "version": str(obj.get("version", "")),
        "date": str(obj.get("date", "")),
        "train_imgsz": _train_imgsz(obj.get("train_args")),
    }
    return state_dict, meta


def sha256_of(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def save_safetensors(
    state_dict: dict[str, torch.Tensor], path: str | os.PathLike, metadata: dict[str, Any]
) -> Path:
    """Write ``state_dict`` and string ``metadata`` to a ``.safetensors`` file, atomically.

    The file gets the usual permissions of a new file (``0o666`` less the umask, e.g. ``rw-r--r--``), like every
    other output: it is written through ``open`` (``safetensors.torch.save_file`` would make it owner-only).
    """
    from safetensors.torch import save

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous().clone() for k, v in state_dict.items()}
    data = save(tensors, metadata={k: "" if v is None else str(v) for k, v in metadata.items()})
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def load_safetensors(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a ``.safetensors`` file written by :func:`save_safetensors`: ``(state_dict, metadata)``."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = dict(handle.metadata() or {})
        return load_file(str(path)), metadata
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"cannot read {path} as safetensors: {err}") from None


def load_state_dict_from_file(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read weights from an official ``.pt`` checkpoint or one of our ``.safetensors`` files.

    Raises:
        CheckpointError: if the file is missing, unreadable, unsafe or not a checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file not found: {path}")
    with open(path, "rb") as handle:
        magic = handle.read(9)
    if magic[:2] == b"PK":
        return load_ultralytics_checkpoint(path)
    if path.suffix == ".safetensors" or magic[8:9] == b"{":
        return load_safetensors(path)
    if magic[:1] == b"\x80":
        raise CheckpointError(
            f"{path} is a bare pickle (legacy torch.save format). Only zip-format .pt files and .safetensors are "
            "read, because a bare pickle cannot be checked without running it. Re-save it with a current torch."
        )
    raise CheckpointError(f"{path} is neither a .pt (zip) checkpoint nor a .safetensors file")


def convert_checkpoint(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Convert an official ``.pt`` checkpoint to our ``.safetensors`` format (weights kept in their dtype).

    The metadata records the architecture (``scale``, ``nc``, ``reg_max``), the training image size and the
    source file's name and SHA-256.
    """
    from .build import infer_architecture

    state_dict, meta = load_state_dict_from_file(src)
    scale, nc, reg_max = infer_architecture(state_dict)
    metadata = {
        "format": "fastsam",
        "format_version": "1",
        "scale": scale,
        "nc": nc,
        "reg_max": reg_max,
        "imgsz": meta.get("train_imgsz") or meta.get("imgsz") or 1024,
        "source": Path(src).name,
        "source_sha256": sha256_of(src),
    }
    return save_safetensors(state_dict, dst, metadata)
