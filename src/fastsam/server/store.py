"""Where the server keeps segmented images between the upload and the prompts.

Two stores offer the same small interface (:class:`ImageStore`: ``get``/``put``/``pop``/``len``/``nbytes``):

* :class:`LocalStore` (the default): this process's memory, least recently used evicted past a byte budget;
* :class:`RedisStore` (``fastsam serve --cache redis://host:6379/0``): a Redis server shared by every replica, so
  that any replica answers the prompts for an image another one segmented. Each replica keeps a near cache of the
  images it used lately in its memory; Redis stays the truth (an image deleted or evicted there is gone for all).

Images go to Redis in a compact form that cannot carry code (:func:`encode_segmented`): an ``.npz`` container
(read with ``allow_pickle=False``) of the boxes, scores, each mask's bit-packed box window (zlib) and the image as a
PNG, with a small JSON header. Every field is checked when read back; bad data is refused, never executed. Both
ways go one mask window at a time, and an image is read back with its masks as runs
(:class:`~fastsam.masks.RunMasks`), so a big photo never lays out all its windows at once.
"""

from __future__ import annotations

import io
import json
import logging
import zlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from ..errors import FastSAMError
from ..masks import RunMasks
from ..ops.rle import tight_windows, window_toggles
from ..predictor import SegmentedImage
from ..results import SegmentationResult
from .cache import ByteLRU

if TYPE_CHECKING:
    from ..prompts.text import TextScorer

logger = logging.getLogger(__name__)

FORMAT = "fastsam.segmented-image"
VERSION = 1
_KEYS = {"meta", "boxes", "scores", "bounds", "bits"}
_MAX_PIXELS = 2**31 - 1  # toggles and index arithmetic stay in int64; a bigger header is refused
_MAX_MASKS = 100_000
_CHUNK_BYTES = 64 << 20  # masks unpacked at a time (bytes of bool) when an index has no packed words to read


class StoreUnavailableError(FastSAMError):
    """The shared image store cannot be reached (the server answers 503; retry when it is back)."""


class ImageStore(Protocol):
    """What the app needs from a store of segmented images, keyed by image id.

    A store may also offer ``resident_bytes`` (what it holds in this process's memory; default ``nbytes``) and
    ``shrink(nbytes) -> freed`` (evict from this process's memory to make room for work); the server's memory
    budget uses them when present.
    """

    def get(self, key: str) -> SegmentedImage | None: ...

    def put(self, key: str, value: SegmentedImage, nbytes: int) -> bool: ...

    def pop(self, key: str) -> bool: ...

    def __len__(self) -> int: ...

    @property
    def nbytes(self) -> int: ...


class LocalStore(ByteLRU[SegmentedImage]):
    """Segmented images in this process's memory, at most ``max_bytes`` (least recently used evicted).

    ``resident_bytes`` (what this process holds) is ``nbytes``; :meth:`~.cache.ByteLRU.shrink` evicts to make room.
    """

    @property
    def resident_bytes(self) -> int:
        return self.nbytes


# --------------------------------------------------------------------------------------------------- serialization


def _mask_windows(segmented: SegmentedImage) -> tuple[Iterator[np.ndarray], np.ndarray]:
    """Each mask's tight box window (made one at a time as the iterator is read) and the ``(N, 4)`` int64 bounds."""
    result = segmented.result
    held = result.mask_windows()  # masks held as runs give their windows decoded one at a time
    if held is not None:
        return (np.asarray(w, dtype=bool) for w in held.windows), held.bounds
    if result.masks_materialized and result.masks is not None:
        windows, bounds = tight_windows(result.masks)
        return iter(windows), bounds
    index = segmented.index  # masks released into the index (what the server keeps)
    words = getattr(index, "words", None)
    bounds = np.asarray(index.bboxes, dtype=np.int64)
    if isinstance(words, np.ndarray) and words.dtype == np.dtype("<u8") and words.ndim == 3:
        return _windows_from_words(words, bounds), bounds
    return _windows_from_index(index, bounds), bounds


def _windows_from_index(index: Any, bounds: np.ndarray) -> Iterator[np.ndarray]:
    """Windows of an index that has no packed words to read, unpacked ``_CHUNK_BYTES`` of masks at a time."""
    n, height, width = (int(v) for v in index.shape)
    step = max(1, _CHUNK_BYTES // max(1, height * width))
    for start in range(0, n, step):
        part = index.unpack(np.arange(start, min(n, start + step)))
        for mask, (x1, y1, x2, y2) in zip(part, bounds[start : start + step].tolist()):
            yield mask[y1:y2, x1:x2].copy()


def _windows_from_words(words: np.ndarray, bounds: np.ndarray) -> Iterator[np.ndarray]:
    """Windows read from a :class:`~fastsam.ops.mask_index.MaskIndex`'s ``(N, H, n_words)`` little-endian words."""
    for k, (x1, y1, x2, y2) in enumerate(bounds.tolist()):
        if x2 <= x1 or y2 <= y1:
            yield np.zeros((0, 0), dtype=bool)
            continue
        k1, k2 = x1 // 64, (x2 - 1) // 64 + 1
        row_words = np.ascontiguousarray(words[k, y1:y2, k1:k2])
        bits = np.unpackbits(row_words.view(np.uint8), axis=1, bitorder="little")
        yield bits[:, x1 - 64 * k1 : x2 - 64 * k1].astype(bool)


def _deflate_bits(windows: Iterator[np.ndarray]) -> tuple[bytes, int]:
    """zlib of the windows' pixels, row-major, one window after the other, bit-packed (the last byte padded with
    zeros); and how many bits that is. Packs one window at a time (a byte may hold the end of one and the start of
    the next)."""
    deflate = zlib.compressobj(1)
    chunks, carry, count = [], np.zeros(0, dtype=bool), 0
    for window in windows:
        flat = np.concatenate((carry, window.ravel()))
        whole = flat.size - flat.size % 8
        chunks.append(deflate.compress(np.packbits(flat[:whole]).tobytes()))
        carry, count = flat[whole:], count + window.size
    chunks.append(deflate.compress(np.packbits(carry).tobytes()))
    chunks.append(deflate.flush())
    return b"".join(chunks), count


def encode_segmented(segmented: SegmentedImage) -> bytes:
    """A segmented image as bytes that :func:`decode_segmented` reads back (no pickle anywhere).

    The ``.npz`` holds ``meta`` (UTF-8 JSON: format, version, ``height``, ``width``, ``n``, ``file_name``,
    ``bit_count``), ``boxes`` ``(N, 4)`` float32, ``scores`` ``(N,)`` float32, ``bounds`` ``(N, 4)`` int32 window
    boxes ``x1, y1, x2, y2``, ``bits`` (zlib of the windows' pixels, row-major, one after the other, bit-packed) and
    ``image`` (PNG bytes) when the result holds its image.
    """
    from PIL import Image

    result = segmented.result
    height, width = (int(v) for v in result.image_size)
    windows, bounds = _mask_windows(segmented)
    bits, bit_count = _deflate_bits(windows)
    meta = {
        "format": FORMAT, "version": VERSION, "height": height, "width": width, "n": len(bounds),
        "file_name": result.file_name or "", "bit_count": bit_count,
    }  # fmt: skip
    arrays: dict[str, np.ndarray] = {
        "meta": np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8),
        "boxes": np.asarray(result.boxes, dtype=np.float32).reshape(-1, 4),
        "scores": np.asarray(result.scores, dtype=np.float32).reshape(-1),
        "bounds": np.asarray(bounds, dtype=np.int32).reshape(-1, 4),
        "bits": np.frombuffer(bits, dtype=np.uint8),
    }
    if result.image is not None:
        png = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(result.image, dtype=np.uint8)).save(png, format="PNG", compress_level=1)
        arrays["image"] = np.frombuffer(png.getvalue(), dtype=np.uint8)
    out = io.BytesIO()
    np.savez(out, **arrays)
    return out.getvalue()


class StoredDataError(ValueError):
    """Bytes read from a store are not an image :func:`encode_segmented` wrote."""


def _refuse(why: str) -> StoredDataError:
    return StoredDataError(f"stored data is not a fastsam segmented image ({why}); upload the image again")


def _array(files: Any, name: str, dtype: Any, shape: tuple[int, ...]) -> np.ndarray:
    value = files[name]
    if value.dtype != np.dtype(dtype) or value.shape != shape:
        raise _refuse(f"{name} is {value.dtype}{list(value.shape)}, expected {np.dtype(dtype)}{list(shape)}")
    return value


def decode_segmented(data: bytes, text_scorer: TextScorer | None = None, device: str = "cpu") -> SegmentedImage:
    """Read :func:`encode_segmented`'s bytes back; refuses (``ValueError``) anything that is not exactly that.

    Nothing in ``data`` is executed: arrays are read with ``allow_pickle=False``, the header is JSON, the image a PNG
    whose size must match the header, and the compressed masks may not inflate past the size the header gives.
    The image comes back released, as the server keeps it: its masks as runs (:class:`~fastsam.masks.RunMasks`),
    inflated and converted one window at a time.
    """
    try:
        files = np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as err:  # noqa: BLE001 (untrusted bytes: any failure to read them means "not ours")
        raise _refuse(f"unreadable container: {type(err).__name__}") from None
    with files:
        names = set(files.files)
        if not _KEYS <= names or names - _KEYS - {"image"}:
            raise _refuse(f"members {sorted(names)}")
        try:
            raw_meta = files["meta"]
            meta = json.loads(bytes(raw_meta).decode("utf-8")) if raw_meta.dtype == np.uint8 else None
        except (ValueError, UnicodeDecodeError):
            meta = None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("version") != VERSION:
            raise _refuse("missing or unknown header")
        height, width, n, bit_count = (meta.get(k) for k in ("height", "width", "n", "bit_count"))
        name = meta.get("file_name")
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (height, width, n, bit_count)):
            raise _refuse("header sizes are not integers")
        if not (0 < height and 0 < width and height * width <= _MAX_PIXELS and 0 <= n <= _MAX_MASKS):
            raise _refuse(f"image {width}x{height} with {n} masks is out of range")
        if not isinstance(name, str):
            raise _refuse("file_name is not a string")
        boxes = _array(files, "boxes", np.float32, (n, 4))
        scores = _array(files, "scores", np.float32, (n,))
        bounds = files["bounds"]
        if bounds.dtype != np.int32 or bounds.shape != (n, 4):
            raise _refuse(f"bounds is {bounds.dtype}{list(bounds.shape)}")
        bounds = bounds.astype(np.int64)
        x1, y1, x2, y2 = bounds.T
        if n and not ((0 <= x1) & (x1 <= x2) & (x2 <= width) & (0 <= y1) & (y1 <= y2) & (y2 <= height)).all():
            raise _refuse("a mask window lies outside the image")
        sizes = (y2 - y1) * (x2 - x1)
        if int(sizes.sum()) != bit_count:
            raise _refuse("the windows do not add up to the header's bit count")
        packed = files["bits"]
        if packed.dtype != np.uint8 or packed.ndim != 1:
            raise _refuse("bits is not a byte string")
        runs = _inflate_runs(packed.tobytes(), bounds, height)
        image = _read_png(files["image"], height, width) if "image" in names else None
    result = SegmentationResult(
        RunMasks(runs, (height, width)), boxes.copy(), scores.copy(), (height, width), name, image
    )
    segmented = SegmentedImage(result, text_scorer, device=device)
    segmented.release_masks()
    return segmented


class _BitReader:
    """Reads bits off a zlib stream of packed bits, inflating only what is asked for (plus what one call gives)."""

    def __init__(self, compressed: bytes) -> None:
        self._inflate = zlib.decompressobj()
        self._tail = compressed
        self._buffer = b""
        self._start = 0  # bit position of the buffer's first byte

    def take(self, start: int, count: int) -> np.ndarray:
        """Bits ``start .. start + count - 1`` (calls go forwards) as bool."""
        drop = start // 8 * 8 - self._start
        self._buffer, self._start = self._buffer[drop // 8 :], self._start + drop
        stop = (start + count + 7) // 8 - self._start // 8  # bytes needed in the buffer
        while len(self._buffer) < stop and not self._inflate.eof:
            try:
                more = self._inflate.decompress(self._tail, max(stop - len(self._buffer), 1 << 16))
            except zlib.error:
                raise _refuse("corrupt mask bits") from None
            self._tail = self._inflate.unconsumed_tail
            if not more and not self._tail:
                break
            self._buffer += more
        if len(self._buffer) < stop:
            raise _refuse("the mask bits do not match the header")
        offset = start - self._start
        bits = np.unpackbits(np.frombuffer(self._buffer[:stop], dtype=np.uint8), count=offset + count)
        return bits[offset:].astype(bool)

    def finished(self, bit_count: int) -> bool:
        """Whether the stream ends exactly after ``bit_count`` bits (no byte more, and a complete zlib stream)."""
        try:
            rest = self._inflate.decompress(self._tail, 1)
        except zlib.error:
            return False
        used = (bit_count + 7) // 8 - self._start // 8
        return not rest and len(self._buffer) == used and self._inflate.eof


def _inflate_runs(compressed: bytes, bounds: np.ndarray, height: int) -> list[np.ndarray]:
    """Each mask's runs from :func:`_deflate_bits`'s stream: one window inflated and converted at a time."""
    reader, position, runs = _BitReader(compressed), 0, []
    for x1, y1, x2, y2 in bounds.tolist():
        size = (y2 - y1) * (x2 - x1)
        window = reader.take(position, size).reshape(y2 - y1, x2 - x1)
        runs.append(window_toggles(window, x1, y1, height))
        position += size
    if not reader.finished(position):
        raise _refuse("the mask bits do not match the header")
    return runs


def _read_png(stored: np.ndarray, height: int, width: int) -> np.ndarray:
    from PIL import Image

    if stored.dtype != np.uint8 or stored.ndim != 1:
        raise _refuse("image is not a byte string")
    try:
        with Image.open(io.BytesIO(stored.tobytes()), formats=["PNG"]) as picture:
            if picture.size != (width, height) or picture.mode != "RGB":
                raise _refuse(f"image is {picture.mode} {picture.size[0]}x{picture.size[1]}, header says RGB "
                              f"{width}x{height}")  # fmt: skip
            return np.asarray(picture, dtype=np.uint8).copy()
    except StoredDataError:
        raise
    except Exception as err:  # noqa: BLE001 (untrusted bytes: any failure to decode them means "not ours")
        raise _refuse(f"unreadable image: {type(err).__name__}") from None


# ----------------------------------------------------------------------------------------------------------- Redis

# KEYS: blob, lru, sizes, total, clock; ARGV: id, blob, size, max bytes, blob key prefix. Returns the evicted ids.
_PUT = """
local old = redis.call('HGET', KEYS[3], ARGV[1])
if old then redis.call('DECRBY', KEYS[4], old) end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[2], redis.call('INCR', KEYS[5]), ARGV[1])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[3])
local total = redis.call('INCRBY', KEYS[4], ARGV[3])
local evicted = {}
while total > tonumber(ARGV[4]) do
  local oldest = redis.call('ZRANGE', KEYS[2], 0, 0)[1]
  if (not oldest) or oldest == ARGV[1] then break end
  redis.call('ZREM', KEYS[2], oldest)
  redis.call('DEL', ARGV[5] .. oldest)
  local size = redis.call('HGET', KEYS[3], oldest)
  redis.call('HDEL', KEYS[3], oldest)
  if size then total = redis.call('DECRBY', KEYS[4], size) end
  table.insert(evicted, oldest)
end
return evicted
"""

# KEYS: blob, lru, sizes, total, clock; ARGV: id, "1" to return the blob. Marks the image used; false if gone (an
# entry whose blob Redis itself evicted is cleaned up).
_GET = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  if redis.call('ZREM', KEYS[2], ARGV[1]) == 1 then
    local size = redis.call('HGET', KEYS[3], ARGV[1])
    redis.call('HDEL', KEYS[3], ARGV[1])
    if size then redis.call('DECRBY', KEYS[4], size) end
  end
  return false
end
redis.call('ZADD', KEYS[2], redis.call('INCR', KEYS[5]), ARGV[1])
if ARGV[2] == '1' then return redis.call('GET', KEYS[1]) end
return 1
"""

# KEYS: blob, lru, sizes, total; ARGV: id. Returns 1 if the image was there.
_POP = """
local existed = redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
local size = redis.call('HGET', KEYS[3], ARGV[1])
if size then
  redis.call('HDEL', KEYS[3], ARGV[1])
  redis.call('DECRBY', KEYS[4], size)
end
return existed
"""


class RedisStore:
    """Segmented images in a Redis server shared by every replica, with a near cache in this process.

    Redis holds at most ``max_bytes`` of encoded images (:func:`encode_segmented`, several times smaller than in
    memory); past that the least recently used one, over all replicas, is evicted. Each replica also keeps up to
    ``local_bytes`` of decoded images it used lately; they are answered only while Redis still has the image (one
    round trip), so a delete or an eviction is seen by every replica at once. Needs a plain Redis server (not
    Redis Cluster) and the ``redis`` package (extra ``serve-ray``).

    Args:
        url: ``redis://[:password@]host:port/db``, ``rediss://...`` (TLS) or ``unix:///path/redis.sock``.
        max_bytes: budget of encoded images in Redis, shared by all replicas using the same ``prefix``.
        local_bytes: this process's near cache (default ``max_bytes``).
        prefix: key prefix, so that several services can share one Redis.
        text_scorer, device: given to the :class:`SegmentedImage` objects read back (text prompts).
        timeout_s: socket timeout of each Redis call; connection errors are retried three times with backoff.

    Raises:
        StoreUnavailableError: Redis cannot be reached (at construction, and from any method later).
    """

    def __init__(
        self,
        url: str,
        max_bytes: int = 2 * 1024**3,
        local_bytes: int | None = None,
        prefix: str = "fastsam:",
        text_scorer: TextScorer | None = None,
        device: str = "cpu",
        timeout_s: float = 5.0,
    ) -> None:
        try:
            import redis
            from redis.backoff import ExponentialBackoff
            from redis.retry import Retry
        except ImportError:
            raise ImportError("--cache redis://... needs the redis package: pip install 'fastsam[serve-ray]'") from None
        self._redis_errors = (redis.ConnectionError, redis.TimeoutError)
        self.max_bytes = int(max_bytes)
        self.prefix = prefix
        self.text_scorer, self.device = text_scorer, device
        self._local = LocalStore(self.max_bytes if local_bytes is None else int(local_bytes))
        self.evictions = 0  # images this process's puts evicted from Redis
        try:
            self._client = redis.Redis.from_url(
                url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
                retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), 3),
                retry_on_error=[redis.ConnectionError, redis.TimeoutError],
            )  # fmt: skip
        except ValueError as err:
            raise ValueError(f"--cache {_safe(url)}: not a Redis URL ({err}); use redis://host:6379/0") from None
        kwargs = self._client.connection_pool.connection_kwargs
        self.where = kwargs.get("path") or f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}"
        self._keys = {n: f"{prefix}{n}" for n in ("lru", "sizes", "bytes", "clock")}
        self._put = self._client.register_script(_PUT)
        self._get = self._client.register_script(_GET)
        self._pop = self._client.register_script(_POP)
        self._call(self._client.ping)

    def _blob_key(self, key: str) -> str:
        return f"{self.prefix}img:{key}"

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except self._redis_errors as err:
            raise StoreUnavailableError(f"the image store (Redis at {self.where}) is unreachable: {str(err).rstrip('.')}; "
                                        "retry when it is back") from None  # fmt: skip

    def _script_keys(self, key: str) -> list[str]:
        k = self._keys
        return [self._blob_key(key), k["lru"], k["sizes"], k["bytes"], k["clock"]]

    def put(self, key: str, value: SegmentedImage, nbytes: int) -> bool:
        """Store ``value`` in Redis (and the near cache); False if its encoding alone exceeds ``max_bytes``."""
        blob = encode_segmented(value)
        if len(blob) > self.max_bytes:
            return False
        evicted = self._call(self._put, keys=self._script_keys(key),
                             args=[key, blob, len(blob), self.max_bytes, f"{self.prefix}img:"])  # fmt: skip
        self.evictions += len(evicted)
        for gone in evicted:
            self._local.pop(gone.decode() if isinstance(gone, bytes) else str(gone))
        self._local.put(key, value, nbytes)
        return True

    def get(self, key: str) -> SegmentedImage | None:
        """The image, from the near cache if Redis still holds it, else read from Redis; None if unknown."""
        near = self._local.get(key)
        found = self._call(self._get, keys=self._script_keys(key), args=[key, "0" if near is not None else "1"])
        if not found:
            self._local.pop(key)
            return None
        if near is not None:
            return near
        try:
            segmented = decode_segmented(found, self.text_scorer, self.device)
        except StoredDataError as err:
            logger.warning("image %s in Redis at %s is unreadable and was dropped: %s", key, self.where, err)
            self.pop(key)
            return None
        self._local.put(key, segmented, segmented.release_masks())  # already released: only sums the bytes
        return segmented

    @property
    def resident_bytes(self) -> int:
        """Bytes of decoded images held in this process (the near cache)."""
        return self._local.nbytes

    def shrink(self, nbytes: int) -> int:
        """Drop least recently used images from the near cache (Redis keeps them) until ``nbytes`` are freed."""
        return self._local.shrink(nbytes)

    def pop(self, key: str) -> bool:
        self._local.pop(key)
        return bool(self._call(self._pop, keys=self._script_keys(key)[:4], args=[key]))

    def __len__(self) -> int:
        return int(self._call(self._client.zcard, self._keys["lru"]))

    @property
    def nbytes(self) -> int:
        """Bytes of encoded images held in Redis (all replicas together)."""
        return int(self._call(self._client.get, self._keys["bytes"]) or 0)

    def close(self) -> None:
        self._client.close()


def _safe(url: str) -> str:
    """``url`` without its password, for messages."""
    scheme, sep, rest = url.partition("://")
    if sep and "@" in rest:
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


def open_store(
    url: str | None,
    max_bytes: int,
    text_scorer: TextScorer | None = None,
    device: str = "cpu",
) -> ImageStore:
    """The store ``fastsam serve --cache URL`` names: None or ``memory`` (this process), ``redis://``,
    ``rediss://`` or ``unix://`` (a shared Redis server)."""
    if url is None or url in ("", "memory", "memory://"):
        return LocalStore(max_bytes)
    if url.split("://", 1)[0] in ("redis", "rediss", "unix") and "://" in url:
        return RedisStore(url, max_bytes=max_bytes, text_scorer=text_scorer, device=device)
    raise ValueError(f"--cache {_safe(url)}: unknown store; use 'memory' (the default) or redis://host:6379/0")


__all__ = [
    "ImageStore", "LocalStore", "RedisStore", "StoreUnavailableError", "StoredDataError", "decode_segmented",
    "encode_segmented", "open_store",
]  # fmt: skip
