"""Local paths and remote URIs (``s3://``, ``gs://``, ``hdfs://``, anything fsspec knows) behind one interface.

Local paths are handled with the standard library; a URI is opened with pyarrow's own filesystems first and, for
schemes pyarrow does not know, with fsspec (wrapped for pyarrow). Remote access needs pyarrow
(``pip install "fastsam[ray]"``) and, for fsspec schemes, the matching fsspec plugin (``s3fs``, ``gcsfs``, ...).
Stores are configured by the environment (pyarrow's S3 reads ``AWS_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL_S3``,
``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_DEFAULT_REGION``, ``AWS_PROFILE``);
a filesystem is cached per store *and* those settings, so a changed variable takes effect in the same process.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from typing import Any

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")
_SETTINGS_PREFIXES = ("AWS_", "GOOGLE_", "GCS_", "CLOUD_STORAGE_", "AZURE_", "HADOOP_", "ARROW_")


def scheme_of(text: str) -> str | None:
    """The URI scheme of ``text`` (``"s3"`` for ``"s3://b/k"``), or None for a local path (``file://`` included)."""
    match = _SCHEME.match(text)
    if match is None or match.group(1).lower() == "file":
        return None
    return match.group(1).lower()


def local_path(text: str) -> str:
    """A local path or ``file://`` URI as an absolute local path (``~`` expanded, symlinks kept)."""
    if text.lower().startswith("file://"):
        text = text[len("file://") :]
    return os.path.abspath(os.path.expanduser(text))


def remote_filesystem(uri: str) -> tuple[Any, str]:
    """``(pyarrow.fs.FileSystem, path inside it)`` for a remote URI; filesystems are cached per bucket/host.

    Raises:
        ImportError: pyarrow (or the fsspec plugin for the scheme) is not installed.
        ValueError: no filesystem is known for the URI's scheme.
    """
    scheme = scheme_of(uri)
    if scheme is None:
        raise ValueError(f"{uri} is a local path, not a URI")
    root, _, rest = uri[len(scheme) + 3 :].partition("/")
    fs, base = _filesystem_for(f"{uri[: len(scheme) + 3]}{root}", _storage_settings())
    path = f"{base.rstrip('/')}/{rest}" if rest else base
    return fs, path


def _storage_settings() -> tuple[tuple[str, str], ...]:
    """The environment variables that configure stores (endpoints, credentials, regions), as a cache key."""
    return tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith(_SETTINGS_PREFIXES)))


@lru_cache(maxsize=64)
def _filesystem_for(root_uri: str, settings: tuple[tuple[str, str], ...] = ()) -> tuple[Any, str]:
    """The filesystem of a URI's root (``s3://bucket``) and the root's path inside it (``settings``: the
    environment it was made in, only part of the cache key).

    Raises:
        OSError: pyarrow knows the scheme but could not set the filesystem up (e.g. resolving the bucket's region).
    """
    try:
        from pyarrow import fs as pafs
    except ImportError:
        raise ImportError(f'reading or writing {root_uri} needs pyarrow: pip install "fastsam[ray]"') from None
    try:
        fs, path = pafs.FileSystem.from_uri(root_uri)
    except OSError:
        raise  # a known scheme whose store could not be reached: not a reason to try fsspec
    except (ValueError, TypeError, NotImplementedError) as arrow_error:
        try:
            import fsspec
        except ImportError:
            raise ValueError(f"no filesystem for {root_uri}: {arrow_error} (install fsspec and its plugin)") from None
        try:
            fs, path = fsspec.core.url_to_fs(root_uri)
        except (ImportError, ValueError) as err:
            raise ValueError(
                f"no filesystem for {root_uri}: pyarrow says {arrow_error}; fsspec says {err} "
                "(install the fsspec plugin for this scheme, e.g. s3fs, gcsfs, adlfs)"
            ) from None
        return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), path
    return _one_attempt(fs), path


def _one_attempt(fs: Any) -> Any:
    """pyarrow's S3 filesystem ``fs`` made to try each request once (same options otherwise): the batch code
    retries storage operations itself, with backoff (:mod:`fastsam.batch.storage`), so that ``--retries`` is the
    number of attempts and an unreachable endpoint is reported in seconds. Other filesystems are returned as is."""
    from pyarrow import fs as pafs

    if not isinstance(fs, getattr(pafs, "S3FileSystem", ())):
        return fs
    try:
        _, (options,) = fs.__reduce__()  # the options it was made with (pyarrow pickles them this way)
        options = dict(options, region=options.get("region") or fs.region)
        return pafs.S3FileSystem(**options, retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=1))
    except (TypeError, ValueError):  # another pyarrow version's layout: keep pyarrow's own retries
        return fs


def read_bytes(key: str) -> bytes:
    """The whole content of a local file or remote object."""
    if scheme_of(key) is None:
        with open(local_path(key), "rb") as handle:
            return handle.read()
    fs, path = remote_filesystem(key)
    with fs.open_input_stream(path) as stream:
        return stream.read()
