"""Storage failures: telling them from bad images, retrying them, and saying in one line what to check.

A batch run meets two kinds of failure. An image whose bytes were read but do not decode is *bad*: it is recorded
(``error`` column) and counts as done. Everything that stops the bytes from being read or the records from being
written — permissions, a missing object that was just listed, timeouts, refused connections, unknown credentials,
an unreachable endpoint — is a *storage* failure: it is retried (:class:`RetryPolicy`), and an image that still
cannot be read is not recorded, so the next run reads it again. :class:`StorageReader` also stops hammering a store
that fails every read (after ``trip_after`` failures in a row it tries one read per ``cooldown`` seconds).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from ..errors import FastSAMError
from .filesystems import scheme_of

T = TypeVar("T")

# Exceptions of these packages (or any OSError) raised while talking to a store are storage failures.
_NETWORK_PACKAGES = ("botocore", "boto3", "s3transfer", "aiobotocore", "s3fs", "gcsfs", "adlfs", "aiohttp",
                     "urllib3", "requests", "google.auth", "google.api_core", "google.cloud", "azure")  # fmt: skip


class StorageError(FastSAMError):
    """A store could not be listed, read or written (after retries); the message is one actionable line."""


@dataclass(frozen=True)
class RetryPolicy:
    """How storage operations are retried.

    Attributes:
        attempts: tries per operation (1: no retry).
        delay: seconds before the first retry; each further retry waits ``backoff`` times longer.
        backoff: growth factor of the delay.
        trip_after: consecutive failed reads after which a reader stops retrying and fails reads at once, except
            one trial read every ``cooldown`` seconds (a success resumes normal reads).
        cooldown: seconds between trial reads while tripped.
    """

    attempts: int = 3
    delay: float = 0.5
    backoff: float = 2.0
    trip_after: int = 20
    cooldown: float = 10.0

    def delays(self) -> list[float]:
        """The waits before each retry (``attempts - 1`` of them), in seconds."""
        return [self.delay * self.backoff**i for i in range(max(0, self.attempts - 1))]


def is_storage_error(err: BaseException) -> bool:
    """Whether ``err``, raised by a storage operation, is a storage/network failure (OSError or a network
    library's exception) rather than a bug or a usage error."""
    if isinstance(err, StorageError | OSError):
        return True
    return any(cls.__module__.split(".")[0] in _NETWORK_PACKAGES or cls.__module__.startswith(_NETWORK_PACKAGES)
               for cls in type(err).__mro__)  # fmt: skip


def reason(err: BaseException, limit: int = 240) -> str:
    """``err`` as a short one-line reason: ``"FileNotFoundError: ..."`` (first line, at most ``limit`` characters)."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    text = f"{type(err).__name__}: {text}" if text else type(err).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def store_of(uri: str) -> str:
    """The store a URI lives in: ``"s3://bucket"`` for ``"s3://bucket/a/b.jpg"``; a local path is returned as is."""
    scheme = scheme_of(uri)
    if scheme is None:
        return uri
    return f"{scheme}://" + uri[len(scheme) + 3 :].split("/", 1)[0]


def settings_hint(uri: str) -> str:
    """What to check for the store of ``uri``: its endpoint and the environment variables that configure it."""
    scheme = scheme_of(uri)
    if scheme in ("s3", "s3a"):
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or "AWS default"
        return f"endpoint {endpoint}, check AWS_ENDPOINT_URL / credentials"
    if scheme in ("gs", "gcs"):
        return "check GOOGLE_APPLICATION_CREDENTIALS / network"
    if scheme is None:
        return "check that the path exists and is readable"
    return "check the store's credentials / network"


def unreachable(uri: str, err: BaseException, action: str = "reach") -> StorageError:
    """The one-line error for a store that cannot be used: ``cannot reach s3://bucket (endpoint ..., check
    AWS_ENDPOINT_URL / credentials): OSError: ...``."""
    if isinstance(err, StorageError):
        return err
    return StorageError(f"cannot {action} {store_of(uri)} ({settings_hint(uri)}): {reason(err)}")


def call_with_retries(operation: Callable[[], T], policy: RetryPolicy, sleep: Callable[[float], None] = time.sleep) -> T:
    """Run ``operation``, retrying storage failures as ``policy`` says; other exceptions pass through at once.

    Raises:
        The last storage failure, when every attempt failed.
    """
    for wait in [*policy.delays(), None]:
        try:
            return operation()
        except Exception as err:
            if wait is None or not is_storage_error(err):
                raise
            sleep(wait)
    raise AssertionError("unreachable")  # pragma: no cover


class StorageReader:
    """Reads the bytes of image keys with retries, and stops retrying against a store that fails every read.

    Thread-safe: the decoding threads of :func:`fastsam.pipeline.segment_stream` share one reader.

    Args:
        policy: retries, and when to stop retrying.
        read: ``key -> bytes`` (default: :func:`fastsam.batch.filesystems.read_bytes`, looked up at each call).
    """

    def __init__(self, policy: RetryPolicy | None = None, read: Callable[[str], bytes] | None = None) -> None:
        self.policy = policy or RetryPolicy()
        self._read = read
        self._lock = threading.Lock()
        self._failures = 0  # consecutive
        self._tripped_at: float | None = None
        self._last = ""

    def __call__(self, key: str) -> bytes:
        """The bytes of ``key``.

        Raises:
            StorageError: the bytes could not be read (after retries, or at once while the reader is tripped).
        """
        with self._lock:
            tripped = self._tripped_at is not None
            if tripped and time.monotonic() - self._tripped_at < self.policy.cooldown:
                raise StorageError(f"cannot read {key}: not tried, the last {self._failures} reads failed "
                                   f"(last: {self._last})")  # fmt: skip
            if tripped:
                self._tripped_at = time.monotonic()  # this read is the trial; the others keep failing fast
        policy = RetryPolicy(attempts=1) if tripped else self.policy
        try:
            data = call_with_retries(lambda: self._read_once(key), policy)
        except Exception as err:
            if not is_storage_error(err):
                raise
            with self._lock:
                self._failures += 1
                self._last = reason(err)
                if self._failures >= self.policy.trip_after and self._tripped_at is None:
                    self._tripped_at = time.monotonic()
            raise StorageError(f"cannot read {key}: {reason(err)}") from None
        with self._lock:
            self._failures, self._tripped_at = 0, None
        return data

    def _read_once(self, key: str) -> bytes:
        if self._read is not None:
            return self._read(key)
        from . import filesystems

        return filesystems.read_bytes(key)
